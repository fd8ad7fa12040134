"""The backends' benchmark runs with tiny settings and finds the same numbers on both (no timing
is asserted: the ratios are the benchmark's output)."""

from __future__ import annotations

import re

import pytest

from ar_agents.evaluation import bench_backends


@pytest.mark.slow
def test_bench_backends_prints_both_backends_and_the_same_numbers(capsys):
    pytest.importorskip("ray")
    assert bench_backends.main(["--horizons", "4,6", "--algorithms", "bc", "--seeds", "2", "--samples", "100",
                                "--eval-samples", "200", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("backends: 4 cells (two-branch eps=0.05, H=4,6, bc, 2 seeds, n=100), 2 workers / Ray CPUs")
    assert re.search(r"local pool +\d+\.\d\d s +\d+\.\d\d cells/s", out) and re.search(r"local Ray +\d+\.\d\d s", out)
    assert re.search(r"Ray start-up +\d+\.\d\d s", out)
    assert "same numbers: yes" in out


def test_bench_backends_refuses_bad_arguments(capsys):
    assert bench_backends.main(["--workers", "0"]) == 2
    assert capsys.readouterr().err.strip() == "bench_backends: error: --workers must be an integer >= 1, got 0"
