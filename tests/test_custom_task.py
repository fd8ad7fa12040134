"""Writing your own task (docs/custom_task.md): the guide's example file runs, its numbers are
right (checked against enumeration written out here), it works in the sweep, as a Gymnasium
environment and with the env checker; and the common mistakes fail loudly, with one line."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import ar_envs
from ar_envs.core import FeatureMap, Task, check_task, check_task_class
from ar_envs.data import generate
from ar_envs.env import SequenceEnv, SequenceVectorEnv, make_env_classes
from examples.custom_task import ENV_ID, StickyBits

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# the example task
# --------------------------------------------------------------------------------------------


def _enumerated_h2(stay0, stay1, H, r):
    """D_H^2 between the sticky chain and the chain that repeats with probability ``r`` (an
    array: one value per entry), by enumeration of the 2^H sequences."""
    r = np.asarray(r, dtype=np.float64)
    total = np.zeros_like(r)
    for seq in itertools.product((0, 1), repeat=H):
        p_star, p = 0.5, np.full_like(r, 0.5)
        for prev, a in zip(seq, seq[1:]):
            stay = stay0 if prev == 0 else stay1
            p_star *= stay if a == prev else 1 - stay
            p = p * (r if a == prev else 1 - r)
        total += (np.sqrt(p_star) - np.sqrt(p)) ** 2
    return total


def _enumerated_best(stay0, stay1, H):
    """The minimum over the class of D_H^2: a grid over the repeat probability, then a finer one."""
    grid = np.linspace(1e-4, 1 - 1e-4, 10_001)
    r0 = grid[np.argmin(_enumerated_h2(stay0, stay1, H, grid))]
    fine = np.linspace(r0 - 2e-4, r0 + 2e-4, 4001)
    return float(_enumerated_h2(stay0, stay1, H, fine).min())


def test_example_task_passes_check_task_and_its_exact_numbers_match_enumeration():
    from ar_agents.policies.loglinear import LogLinearPolicy
    from ar_envs.metrics import sequence_metrics

    task = check_task(StickyBits(horizon=6, stay0=0.9, stay1=0.6))
    for theta in (-1.0, 0.0, 0.8, 2.5):  # the task's dynamic programme against enumeration
        h2 = sequence_metrics(task, LogLinearPolicy(task, [theta]))["hellinger2"]
        assert h2.exact and h2.method == "closed-form"
        assert h2.value == pytest.approx(_enumerated_h2(0.9, 0.6, 6, 1 / (1 + np.exp(-theta))), rel=1e-10)
    # the expert's samples follow the chain: repeat frequencies after a 0 and after a 1
    _, seq = task.sample_expert(20_000, rng=0)
    prev, nxt = seq[:, :-1].ravel(), seq[:, 1:].ravel()
    for bit, stay in ((0, 0.9), (1, 0.6)):
        freq = np.mean(nxt[prev == bit] == bit)
        assert abs(freq - stay) < 4.5 * np.sqrt(stay * (1 - stay) / np.sum(prev == bit))


def test_example_file_runs_as_the_guide_says():
    out = subprocess.run([sys.executable, "-m", "examples.custom_task"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "check_task: StickyBits(horizon=8, stay0=0.8, stay1=0.3) ok" in out.stdout
    assert f"gymnasium check_env: {ENV_ID} ok" in out.stdout


def test_example_registered_env_passes_both_checkers():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(ENV_ID, horizon=5, stay0=0.8)
    assert env.unwrapped.task.task_args() == {"horizon": 5, "stay0": 0.8, "stay1": 0.6}
    check_env(env.unwrapped)
    sb3_check_env(gym.make(ENV_ID, horizon=5))
    assert gym.spec(ENV_ID).to_json()  # string entry points: the spec serialises
    venv = gym.make_vec(ENV_ID, num_envs=4, vectorization_mode="vector_entry_point", horizon=3)
    _, info = venv.reset(seed=0)
    assert info["expert_action"].shape == (4,)


def test_sweep_on_the_example_task_by_import_path(tmp_path):
    from ar_agents.cli import main

    out = tmp_path / "sticky.jsonl"
    rc = main(["sweep", "--task", "examples.custom_task:StickyBits", "--task-arg", "stay1=0.5", "--horizons", "3,6",
               "--algorithms", "bc", "--seeds", "1", "--samples", "300", "--out", str(out), "--quiet"])
    assert rc == 0
    records = [json.loads(line) for line in out.read_text().splitlines()[1:]]
    assert [r["horizon"] for r in records] == [3, 6]
    for r in records:
        assert r["task"] == "examples.custom_task:StickyBits" and r["task_args"]["stay1"] == 0.5
        assert r["exact"] and r["best_in_class_method"] == "optimiser (markov-dp)"
        assert r["approx_factor"] >= 1.0 - 1e-9  # BC is a member of the class: never below its best
        # the recorded best in class is the minimum over the class found by enumeration
        assert r["best_in_class_hellinger2"] == pytest.approx(_enumerated_best(0.9, 0.5, r["horizon"]), abs=1e-9)


# --------------------------------------------------------------------------------------------
# the common mistakes fail loudly
# --------------------------------------------------------------------------------------------


class NoTaskArgs(StickyBits):
    """Forgets to override task_args() while its constructor takes arguments."""

    task_args = Task.task_args

    def __init__(self, horizon=4, flip=0.1):
        super().__init__(horizon=horizon)


class MissingArg(StickyBits):
    def task_args(self):
        return {"horizon": self.horizon, "stay0": self.stay0}  # stay1 forgotten


class NotADistribution(StickyBits):
    def expert_probs(self, contexts, prefixes):
        return 0.9 * super().expert_probs(contexts, prefixes)


class NaNExpert(StickyBits):
    def expert_probs(self, contexts, prefixes):
        p = super().expert_probs(contexts, prefixes).copy()
        p[:, 0] = np.nan
        return p


class NegativeExpert(StickyBits):
    def expert_probs(self, contexts, prefixes):
        p = super().expert_probs(contexts, prefixes)
        return np.stack([p[:, 0] + 0.5, p[:, 1] - 0.5], axis=1)  # sums to 1, not a distribution


class NoHorizonArg(StickyBits):
    horizon_arg = "length"


class FreshFeatureMap(StickyBits):
    def feature_map(self):
        self._fm = None
        return super().feature_map()


def test_task_args_not_overridden_is_refused_where_it_matters():
    with pytest.raises(ValueError, match=r"NoTaskArgs takes constructor arguments \['horizon', 'flip'\] but does not override task_args"):
        check_task_class(NoTaskArgs)
    with pytest.raises(ValueError, match="task_args"):
        make_env_classes(NoTaskArgs)  # registration as an environment
    with pytest.raises(ValueError, match="task_args"):
        NoTaskArgs().task_args()  # what the sweep, datasets and results call
    with pytest.raises(ValueError, match="task_args"):
        generate(NoTaskArgs(), 2, seed=0)
    assert repr(NoTaskArgs()) == "NoTaskArgs(?)"  # repr does not raise
    # a task whose constructor takes no arguments may keep the default
    check_task_class(type("Fixed", (StickyBits,), {"__init__": lambda self: StickyBits.__init__(self), "task_args": Task.task_args}))


def test_sweep_refuses_a_task_without_task_args(tmp_path):
    from ar_agents.evaluation.sweep import sweep

    with pytest.raises(ValueError, match="task_args"):
        sweep(NoTaskArgs, [2, 3], ["bc"], seeds=1, n_samples=10, progress=False)


@pytest.mark.parametrize(
    "task, message",
    [
        (MissingArg(stay1=0.8), r"task_args\(\) must return every constructor argument .*missing \['stay1'\]"),
        (NotADistribution(), r"NotADistribution.expert_probs must return distributions .* row sums in \[0.9, 0.9\]"),
        (NaNExpert(), "finite non-negative"),
        (NegativeExpert(), "finite non-negative"),
        (NoHorizonArg(), "horizon_arg is 'length'"),
        (FreshFeatureMap(), "same object on every call"),
    ],
    ids=lambda x: type(x).__name__ if isinstance(x, Task) else "",
)
def test_check_task_names_the_mistake(task, message):
    with pytest.raises(ValueError, match=message):
        check_task(task)


def test_check_task_accepts_arguments_left_out_that_are_not_needed_to_rebuild():
    """A task may leave out arguments at values that do not apply (e.g. a preset's): what counts
    is that task_args() rebuilds the same task; MissingArg at stay1's default does."""
    check_task(MissingArg())


@pytest.mark.parametrize("bad", [NotADistribution(horizon=3), NaNExpert(horizon=3)], ids=lambda t: type(t).__name__)
def test_bad_expert_rows_fail_in_the_env_and_sample_paths(bad):
    with pytest.raises(ValueError, match="expert_probs must return distributions"):
        SequenceEnv(bad).reset(seed=0)
    with pytest.raises(ValueError, match="expert_probs must return distributions"):
        SequenceVectorEnv(bad, num_envs=4).reset(seed=0)
    with pytest.raises(ValueError, match="expert_probs must return distributions"):
        bad.sample_expert(4, rng=0)


def test_check_task_accepts_every_builtin_task():
    small = {"path-star": {"degree": 2, "path_length": 3, "num_nodes": 8}, "multiplication": {"digits": 1},
             "parity": {"n_bits": 4}}
    for name, cls in ar_envs.TASKS.items():
        check_task(cls(**small.get(name, {})))
        check_task_class(cls, sweep=True)


def test_guide_code_is_the_example_file():
    """Every code block of docs/custom_task.md that defines or registers the task is copied
    from examples/custom_task.py (so the file the tests run is the code the guide shows)."""
    guide = (ROOT / "docs" / "custom_task.md").read_text()
    source = (ROOT / "examples" / "custom_task.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", guide, flags=re.S)
    shown = [b for b in blocks if "class StickyBits" in b or "make_env_classes(StickyBits)" in b]
    assert shown
    for block in shown:
        for line in block.strip().splitlines():
            if line.strip() and not line.lstrip().startswith("#") and line.strip() != "...":
                assert line.rstrip() in source, line
