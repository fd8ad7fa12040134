"""The learners' benchmark runs with tiny settings; its C(H) column agrees with a direct fit (no timing is asserted)."""

from __future__ import annotations

import re

import pytest

from ar_agents.evaluation import bench_learners
from ar_agents.algorithms import BlockHellinger
from ar_envs.data import generate
from ar_envs.metrics import sequence_metrics
from ar_envs.tasks import TwoBranch

TINY = ["--samples", "200", "--rho-horizon", "6", "--knob-horizon", "12", "--blocks", "1,12", "--seeds", "1"]


def test_bench_learners_prints_rho_cells_and_the_knob(capsys):
    assert bench_learners.main(TINY) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"rho\s+\d+\.\d s \(\d+ candidates, \d+ rounds, resolution (reached|NOT reached); (ok|ABOVE)\)", out)) == 2
    rows = {int(k): float(c) for k, c in re.findall(r"^\s+(\d+)\s+(\d+\.\d+) \[", out, re.M)}
    task = TwoBranch(horizon=12, eps=0.01)
    for K in (1, 12):  # the printed C(H) is the exact one of the same fit
        pol = BlockHellinger(K).fit(task, generate(task, 200, seed=0), 0)
        assert rows[K] == round(sequence_metrics(task, pol)["hellinger2"].value / task.best_in_class()["hellinger2"], 2)


@pytest.mark.parametrize("argv", [["--blocks", "1,x"], ["--blocks", "1,1"], ["--knob-horizon", "6", "--blocks", "10"],
                                  ["--knob-horizon", "0"], ["--seeds", "0"], ["--rho-horizon", "0"]])
def test_bench_learners_refuses_bad_flags_before_any_work(capsys, argv):
    assert bench_learners.main(argv) == 2
    out = capsys.readouterr()
    assert argv[0] in out.err and "rho" not in out.out  # nothing ran
