"""The training benchmark runs with tiny settings and prints its ratios (no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from ar_agents.evaluation import bench_train
from ar_envs.data import generate
from ar_envs.env import observation_space
from ar_envs.tasks import PathStar

TINY = ["--degree", "2", "--path-length", "3", "--num-nodes", "6", "--samples", "64", "--n-layer", "1",
        "--n-embd", "16", "--n-head", "2", "--train-batch-size", "32", "--batch-size", "16", "--repeats", "1",
        "--hf", "none"]  # the Hugging Face rows (c): tests/test_hf_policies.py


def test_bench_train_prints_utilisation_and_speedup(capsys):
    assert bench_train.main(TINY) == 0
    out = capsys.readouterr().out
    util = re.search(r"utilisation\s+(\d+\.\d+) of matmul \(target >= 0\.25: (ok|BELOW)\)", out)
    ratio = re.search(r"ratio per-transition / ours\s+(\d+\.\d)x \(target >= 10x: (ok|BELOW)\)", out)
    assert util and ratio, out
    assert float(util.group(1)) > 0 and float(ratio.group(1)) > 0
    assert "stream tokens/s" in out and "GFLOP/s" in out and "s/epoch" in out


def test_transitions_are_the_environment_observations():
    task = PathStar(degree=2, path_length=3, num_nodes=6)
    demos = generate(task, 4, seed=0)
    obs, actions = bench_train.transitions(task, demos)
    L, H = task.context_length, task.horizon
    assert obs.shape == (4 * H, L + H) and actions.shape == (4 * H,)
    assert all(observation_space(task).contains(o) for o in obs)
    for i in range(4):
        for h in range(H):
            row = obs[i * H + h]
            np.testing.assert_array_equal(row[:L], demos.contexts[i])
            np.testing.assert_array_equal(row[L : L + h], demos.sequences[i, :h])
            assert np.all(row[L + h :] == task.vocab_size)  # padding
            assert actions[i * H + h] == demos.sequences[i, h]


def test_bench_train_options():
    for bad in (["--samples", "0"], ["--threads", "0"], ["--lr", "-1"], ["--policy", "rnn"]):
        with pytest.raises(SystemExit):
            bench_train.main(bad)


def test_python_dash_m():
    res = subprocess.run([sys.executable, "-m", "ar_agents.evaluation.bench_train", *TINY], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "ratio per-transition / ours" in res.stdout
