"""The benchmark runs and prints its table (tiny settings; no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import ar_envs
from ar_agents.evaluation import bench

RATIO_ROW = re.compile(r"^(vector env|single env|  the same with).*\s(\d+(\.\d+)?(e[+-]\d+)?)\s+(\d+(\.\d+)?(e[+-]\d+)?)\s+(\d+\.\d\d)\s")


def test_bench_prints_rates_and_ratios(capsys):
    assert bench.main(["--rounds", "1", "--seconds", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "CartPole-v1" in out and "ratio" in out
    rows = [m for line in out.splitlines() if (m := RATIO_ROW.match(line))]
    expected = 4 if "path-star" in ar_envs.TASKS else 2  # PathStar: plain and with expert_probs=True
    assert len(rows) == expected
    for m in rows:
        ours, cart, ratio = float(m.group(2)), float(m.group(5)), float(m.group(8))
        assert ours > 0 and cart > 0
        assert ratio == pytest.approx(ours / cart, rel=0.02, abs=0.006)  # the printed ratio is ours / CartPole
    assert out.count(">= 0.5") == 3  # the three env-rate targets (TwoBranch vector + single, PathStar vector)
    if "path-star" in ar_envs.TASKS:
        assert "tokens/s" in out


def test_run_interleaves_rounds():
    rates = bench.run(rounds=2, seconds=0.01, num_envs=8)
    assert {"vector/ours", "vector/cartpole", "single/ours", "single/cartpole"} <= set(rates)
    assert all(len(v) == 2 and min(v) > 0 for v in rates.values())


def test_bench_options():
    with pytest.raises(SystemExit):
        bench.main(["--rounds", "0"])
    with pytest.raises(SystemExit):
        bench.main(["--seconds", "-1"])
    with pytest.raises(SystemExit):
        bench.main(["--unknown"])


def test_python_dash_m_with_cli_separator():
    cmd = [sys.executable, "-m", "ar_agents.evaluation.bench", "--", "--rounds", "1", "--seconds", "0.02", "--num-envs", "16"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "16 copies" in out.stdout and "ratio" in out.stdout
