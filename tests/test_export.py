"""Minari export: the dataset holds exactly the environment's episodes along the expert's path."""

import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest

from ar_envs.data import generate
from ar_envs.export import to_minari
from ar_envs.tasks import LinearAR, Multiplication, PathStar

minari = pytest.importorskip("minari")


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


def _export(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Minari asks for an author, an email, a permalink
        return to_minari(*args, **kwargs)


@pytest.mark.parametrize(
    "task", [PathStar(degree=2, path_length=4, num_nodes=20), Multiplication(digits=2), LinearAR(horizon=4)],
    ids=lambda t: t.name,
)
def test_minari_episodes_are_the_env_episodes(task):
    demos = generate(task, 12, seed=3)
    _export(demos, f"ar_envs/{task.name}/expert-v0", task=task, author="tests")
    dataset = minari.load_dataset(f"ar_envs/{task.name}/expert-v0")
    assert dataset.total_episodes == 12 and dataset.total_steps == 12 * task.horizon
    # replay each demonstration in the recovered environment: same observations and rewards
    env = dataset.recover_environment()
    assert env.spec.kwargs == task.task_args() and env.observation_space == dataset.observation_space
    L = task.context_length
    for i, episode in enumerate(dataset.iterate_episodes()):
        assert np.array_equal(episode.actions, demos.sequences[i])
        assert episode.terminations.tolist() == [False] * (task.horizon - 1) + [True] and not episode.truncations.any()
        obs = episode.observations
        assert obs.shape == (task.horizon + 1, L + task.horizon) and obs.dtype == env.observation_space.dtype
        assert np.array_equal(obs[0, :L], demos.contexts[i]) and (obs[0, L:] == task.vocab_size).all()
        rewards = []
        for h, a in enumerate(episode.actions):
            assert np.array_equal(obs[h, L + h :], np.full(task.horizon - h, task.vocab_size))
            assert np.array_equal(obs[h + 1, L : L + h + 1], demos.sequences[i, : h + 1])
            rewards.append(0.0 if h < task.horizon - 1 else float(task.reward(demos.contexts[i : i + 1], demos.sequences[i : i + 1])[0]))
        assert np.allclose(episode.rewards, rewards)
    if task.deterministic_expert:  # the expert's own answers: reward 1 at the last step
        assert all(e.rewards[-1] == 1.0 for e in dataset.iterate_episodes())


def test_task_is_rebuilt_from_the_demonstrations_and_metadata_is_kept(minari_root):
    task = PathStar(degree=2, path_length=3, num_nodes=9, order="reverse")
    demos = generate(task, 4, seed=11)
    dataset = _export(demos, "ar_envs/rev-v0", author="someone", code_permalink="https://example.org/x")
    assert dataset.total_episodes == 4
    meta = dataset.storage.metadata
    assert meta["author"] == {"someone"} or meta["author"] == "someone"
    assert "path-star" in meta["description"] and '"seed": 11' in meta["description"] and '"order": "reverse"' in meta["description"]
    assert meta["env_spec"] is not None and "PathStar" in str(meta["env_spec"])


def test_bad_input_and_existing_ids():
    task = PathStar(degree=2, path_length=3, num_nodes=9)
    demos = generate(task, 3, seed=0)
    with pytest.raises(ValueError, match="demos must be"):
        to_minari((demos.contexts, demos.sequences), "ar_envs/x-v0", task=task)
    with pytest.raises(ValueError, match="dataset_id"):
        to_minari(demos, "", task=task)
    with pytest.raises(ValueError, match="sequences must have shape"):
        to_minari(demos, "ar_envs/x-v0", task=PathStar(degree=2, path_length=4, num_nodes=9))
    demos.task_name = ""
    with pytest.raises(ValueError, match="pass task"):
        to_minari(demos, "ar_envs/x-v0")
    _export(demos, "ar_envs/x-v0", task=task)
    with pytest.raises(Exception, match="exist"):  # Minari refuses to overwrite
        _export(demos, "ar_envs/x-v0", task=task)


def test_without_minari_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "minari", None)
    task = PathStar(degree=2, path_length=3, num_nodes=9)
    with pytest.raises(ImportError, match=r"pip install \"minari\[hdf5\]"):
        to_minari(generate(task, 2, seed=0), "ar_envs/y-v0", task=task)
