"""What users of the libraries next to ours reach for first: the natural expert loop over every
kind of vector env, Minari's DataCollector, SB3's ``make_vec_env``, pickling environments of a
task defined outside the package (subprocess vector envs), and ``to_minari`` for such a task.

Heavy imports (torch, SB3, Minari) stay inside the tests: the subprocess vector envs import this
module in their workers.
"""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest

import ar_envs
from ar_envs import SequenceEnv, SequenceVectorEnv, Task
from ar_envs.core import check_float, check_int
from ar_envs.env import END_ACTION, make_env_classes
from ar_envs.tasks import HMMLanguage, PathStar, TwoBranch


# --------------------------------------------------------------------------------------------
# a task defined here, outside the package (module level: subprocess workers import it)
# --------------------------------------------------------------------------------------------


class Countdown(Task):
    """Context: a start value x in 0..V-1; the expert counts down, x-1, x-2, ... (mod V), but with
    probability ``slip`` repeats its last token instead."""

    name = "countdown"
    env_id = "Countdown-v0"
    context_length = 1

    def __init__(self, horizon: int = 4, vocab_size: int = 5, slip: float = 0.2):
        self.horizon = check_int("horizon", horizon, 1)
        self.vocab_size = self.context_vocab_size = check_int("vocab_size", vocab_size, 2)
        self.slip = check_float("slip", slip, 0.0, 1.0)

    def task_args(self):
        return {"horizon": self.horizon, "vocab_size": self.vocab_size, "slip": self.slip}

    def sample_contexts(self, n, rng):
        return rng.integers(0, self.vocab_size, size=(n, 1))

    def expert_probs(self, contexts, prefixes):
        prefixes = self.check_tokens("prefixes", prefixes, len(contexts), max_len=self.horizon - 1)
        last = np.asarray(contexts)[:, 0] if prefixes.shape[1] == 0 else prefixes[:, -1]
        p = np.zeros((len(last), self.vocab_size))
        p[np.arange(len(last)), (last - 1) % self.vocab_size] += 1.0 - self.slip
        p[np.arange(len(last)), last] += self.slip
        return p

    def reward(self, contexts, sequences):
        ref = (np.asarray(contexts)[:, :1] - 1 - np.arange(self.horizon)) % self.vocab_size
        return (np.asarray(sequences) == ref).mean(axis=1)


CountdownEnv, CountdownVectorEnv = make_env_classes(Countdown)
# string entry points (what a dataset's spec needs), and the classes themselves (pickled with the spec)
COUNTDOWN_ID, COUNTDOWN_CLASS_ID = "test_integrations/Countdown-v0", "test_integrations/CountdownByClass-v0"
if COUNTDOWN_ID not in gym.registry:
    gym.register(COUNTDOWN_ID, entry_point=f"{__name__}:CountdownEnv", vector_entry_point=f"{__name__}:CountdownVectorEnv")
    gym.register(COUNTDOWN_CLASS_ID, entry_point=CountdownEnv, vector_entry_point=CountdownVectorEnv)


def _make_countdown():
    return CountdownEnv(horizon=3, vocab_size=4)


# --------------------------------------------------------------------------------------------
# 17: info["expert_action"] is there, and valid, at every step
# --------------------------------------------------------------------------------------------

CASES = [("ar_envs/TwoBranch-v0", {"horizon": 3, "eps": 0.3}), ("ar_envs/PathStar-v0", {"degree": 2, "path_length": 3, "num_nodes": 8}),
         ("ar_envs/HMMLanguage-v0", {"horizon": 3})]


def _signature(info: dict) -> dict:
    """Key -> (dtype, shape) of an info dict (Python ints count as int64 scalars)."""
    return {k: (np.asarray(v).dtype if not isinstance(v, int) else np.dtype(np.int64), np.shape(v)) for k, v in info.items()}


@pytest.mark.parametrize("expert_probs", [False, True])
@pytest.mark.parametrize("env_id, kwargs", CASES, ids=[c[0] for c in CASES])
def test_natural_expert_loop_single_env(env_id, kwargs, expert_probs):
    env = gym.make(env_id, expert_probs=expert_probs, **kwargs)
    H, V = env.unwrapped.task.horizon, env.action_space.n
    first = None
    for episode in range(4):
        obs, info = env.reset(seed=episode)
        first = first or _signature(info)
        done, steps = False, 0
        while not done:
            assert _signature(info) == first  # the same keys, dtypes and shapes at every step
            assert env.action_space.contains(info["expert_action"])
            obs, r, term, trunc, info = env.step(info["expert_action"])
            done, steps = term or trunc, steps + 1
        assert steps == H
        if env.unwrapped.task.deterministic_expert:
            assert r == 1.0
        assert _signature(info) == first and info["expert_action"] == END_ACTION  # after the last token
        if expert_probs:
            assert np.array_equal(info["expert_probs"], np.eye(V)[END_ACTION])
        with pytest.raises(RuntimeError, match="reset"):  # the placeholder is never stepped on
            env.step(info["expert_action"])


def _vector_envs(env_id, kwargs, expert_probs):
    yield "native", gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", expert_probs=expert_probs, **kwargs)
    yield "sync", gym.make_vec(env_id, num_envs=3, vectorization_mode="sync", expert_probs=expert_probs, **kwargs)


@pytest.mark.parametrize("expert_probs", [False, True])
@pytest.mark.parametrize("env_id, kwargs", CASES, ids=[c[0] for c in CASES])
def test_natural_expert_loop_vector_envs(env_id, kwargs, expert_probs):
    H = gym.make(env_id, **kwargs).unwrapped.task.horizon
    for kind, venv in _vector_envs(env_id, kwargs, expert_probs):
        obs, info = venv.reset(seed=0)
        first = _signature(info)
        ends = 0
        for _ in range(4 * (H + 1)):  # four episodes, each with its autoreset step
            assert venv.action_space.contains(info["expert_action"]), kind
            obs, r, term, trunc, info = venv.step(info["expert_action"])
            assert _signature(info) == first, kind
            if term.all():
                ends += 1
                assert np.all(info["expert_action"] == END_ACTION), kind
        assert ends == 4, kind
        venv.close()


def test_natural_expert_loop_async_vector_env():
    env_id, kwargs = CASES[1]
    venv = gym.make_vec(env_id, num_envs=2, vectorization_mode="async", **kwargs)
    try:
        obs, info = venv.reset(seed=0)
        first = _signature(info)
        rewards = []
        for _ in range(3 * 4):  # H = 3: three episodes with their autoreset steps
            obs, r, term, trunc, info = venv.step(info["expert_action"])
            assert _signature(info) == first
            rewards += list(r[term])
        assert rewards == [1.0] * 6  # the expert solves every graph
    finally:
        venv.close()


def test_autoreset_step_ignores_its_actions():
    venv = SequenceVectorEnv(TwoBranch(horizon=2, eps=0.3), num_envs=2)
    venv.reset(seed=0)
    venv.step(np.zeros(2, dtype=np.int64))
    _, _, term, _, info = venv.step(np.zeros(2, dtype=np.int64))
    assert term.all() and not info["_expert_action"].any()
    obs, r, term, trunc, info = venv.step(np.array([-1, 99]))  # ignored: no error
    assert info["step"].tolist() == [0, 0] and info["_expert_action"].all()
    with pytest.raises(ValueError, match="shape"):
        venv.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="tokens"):  # a running step still checks its actions
        venv.step(np.array([-1, 0]))


def test_minari_data_collector_records_infos(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    pytest.importorskip("jax")  # DataCollector stores steps with jax ("minari[create]"); the tests above check the keys
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    from minari import DataCollector

    env = DataCollector(gym.make("ar_envs/TwoBranch-v0", horizon=3, eps=0.3, expert_probs=True), record_infos=True)
    for episode in range(3):
        obs, info = env.reset(seed=episode)
        done = False
        while not done:
            obs, r, term, trunc, info = env.step(info["expert_action"])
            done = term or trunc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Minari asks for an author, an email, a permalink
        dataset = env.create_dataset("ar_envs/two-branch/collected-v0", algorithm_name="expert", author="tests")
    assert dataset.total_episodes == 3
    for episode in dataset.iterate_episodes():
        # H + 1 infos (reset and every step): the actions are the recorded expert actions
        assert np.array_equal(episode.infos["expert_action"][:-1], episode.actions)
        assert episode.infos["expert_action"][-1] == END_ACTION and episode.infos["expert_probs"].shape == (4, 2)


# --------------------------------------------------------------------------------------------
# 18: SB3's make_vec_env passes render_mode="rgb_array"
# --------------------------------------------------------------------------------------------


def test_sb3_make_vec_env_and_ppo():
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        venv = make_vec_env("ar_envs/TwoBranch-v0", n_envs=2, env_kwargs={"horizon": 4})
    assert any("rgb_array" in str(w.message) for w in caught)  # a warning, as Gymnasium gives, not an error
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    assert model.num_timesteps == 64
    obs = venv.reset()
    assert venv.observation_space.contains(obs[0]) and model.predict(obs)[0].shape == (2,)


def test_unsupported_render_mode_warns_and_renders_nothing():
    task = TwoBranch(horizon=3)
    for env in (SequenceEnv(task, render_mode="rgb_array"), SequenceVectorEnv(task, 2, render_mode="human")):
        env.reset(seed=0)
        with pytest.warns(UserWarning, match="render"):
            assert env.render() is None
    for cls in (SequenceEnv, SequenceVectorEnv):
        with pytest.raises(ValueError, match="render_mode"):
            cls(task, render_mode=3)
    assert SequenceEnv(task, render_mode="ansi").render_mode == "ansi"


# --------------------------------------------------------------------------------------------
# 19: environments of a task of one's own pickle and run in subprocesses; to_minari finds them
# --------------------------------------------------------------------------------------------


def test_generated_env_classes_pickle_by_reference():
    assert make_env_classes(Countdown) == (CountdownEnv, CountdownVectorEnv)  # one pair per task class
    assert CountdownEnv.__module__ == __name__ and CountdownEnv.__qualname__ == "CountdownEnv"
    for cls in (CountdownEnv, CountdownVectorEnv, ar_envs.envs.PathStarEnv, ar_envs.envs.HMMLanguageVectorEnv):
        assert pickle.loads(pickle.dumps(cls)) is cls
    env = CountdownEnv(horizon=5, vocab_size=7, slip=0.5)
    obs, info = env.reset(seed=3)
    copy = pickle.loads(pickle.dumps(env))
    assert type(copy) is CountdownEnv and copy.task.task_args() == env.task.task_args()
    for _ in range(5):  # the copy continues exactly as the original (same state, same generators)
        a = info["expert_action"]
        step, step_copy = env.step(a), copy.step(a)
        assert np.array_equal(step[0], step_copy[0]) and step[1:4] == step_copy[1:4]
        assert step[4]["expert_action"] == step_copy[4]["expert_action"]
        info = step[4]
    venv = CountdownVectorEnv(num_envs=3, horizon=2)
    venv.reset(seed=0)
    assert np.array_equal(pickle.loads(pickle.dumps(venv)).step(np.zeros(3, dtype=np.int64))[0],
                          venv.step(np.zeros(3, dtype=np.int64))[0])


class LoudCountdownEnv(CountdownEnv):
    """A user's subclass of a generated class: pickled by its own name."""


def test_subclass_of_a_generated_class_pickles_as_itself():
    env = LoudCountdownEnv(horizon=2)
    assert pickle.loads(pickle.dumps(LoudCountdownEnv)) is LoudCountdownEnv
    assert type(pickle.loads(pickle.dumps(env))) is LoudCountdownEnv


@pytest.mark.parametrize("context", [None, "spawn"])
def test_async_vector_env_over_a_task_of_ones_own(context):
    from gymnasium.vector import AsyncVectorEnv

    sync = gym.vector.SyncVectorEnv([_make_countdown] * 2)
    venv = AsyncVectorEnv([_make_countdown] * 2, context=context)
    try:
        obs, info = venv.reset(seed=4)
        sobs, sinfo = sync.reset(seed=4)
        for _ in range(8):  # two episodes of H = 3 with their autoreset steps
            assert np.array_equal(obs, sobs) and np.array_equal(info["expert_action"], sinfo["expert_action"])
            obs, r, term, trunc, info = venv.step(info["expert_action"])
            sobs, sr, sterm, strunc, sinfo = sync.step(sinfo["expert_action"])
            assert np.array_equal(r, sr) and np.array_equal(term, sterm)
    finally:
        venv.close()
    # through the registry (class entry point, pickled with the spec) and gym.make_vec
    venv = gym.make_vec(COUNTDOWN_CLASS_ID, num_envs=2, vectorization_mode="async", horizon=2)
    try:
        _, info = venv.reset(seed=0)
        _, r, term, _, _ = venv.step(info["expert_action"])
        assert r.shape == (2,) and not term.any()
    finally:
        venv.close()


def test_sb3_subproc_vec_env_over_a_task_of_ones_own():
    from stable_baselines3.common.vec_env import SubprocVecEnv

    venv = SubprocVecEnv([_make_countdown] * 2, start_method="fork")
    try:
        obs = venv.reset()
        assert obs.shape == (2, 4) and venv.get_attr("task")[0].task_args() == {"horizon": 3, "vocab_size": 4, "slip": 0.2}
        envs = venv.get_attr("unwrapped")  # the workers' environments, pickled back through the pipes
        assert [type(e) for e in envs] == [CountdownEnv] * 2
        assert np.array_equal(np.stack([e._obs for e in envs]), obs)
    finally:
        venv.close()


def test_to_minari_with_a_task_of_ones_own(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    import minari

    from ar_envs.data import generate
    from ar_envs.export import registered_env_id, to_minari

    task = Countdown(horizon=3, vocab_size=4)
    demos = generate(task, 5, seed=0)
    assert registered_env_id(task) == COUNTDOWN_ID  # found outside the ar_envs/ namespace
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        to_minari(demos, "tests/countdown/expert-v0", task=task, author="tests")
        env = gym.make(COUNTDOWN_ID, **task.task_args())
        to_minari(demos, "tests/countdown/given-env-v0", env=env, author="tests")  # task from the env
        with pytest.raises(ValueError, match="not the demonstrations' task"):
            to_minari(demos, "tests/countdown/wrong-v0", task=Countdown(horizon=3, vocab_size=4, slip=0.3), env=env)
        with pytest.raises(ValueError, match="not a registered"):
            to_minari(demos, "tests/countdown/bad-id-v0", task=task, env="nowhere/Countdown-v0")
    dataset = minari.load_dataset("tests/countdown/given-env-v0")
    assert dataset.total_episodes == 5
    recovered = dataset.recover_environment()
    assert recovered.spec.id == COUNTDOWN_ID and recovered.spec.kwargs == task.task_args()
    for i, episode in enumerate(dataset.iterate_episodes()):
        assert np.array_equal(episode.actions, demos.sequences[i])


def test_recurrent_ppo_needs_and_works_with_flatten_observation():
    """The README's note: sb3-contrib's LSTM policy refuses the integer observations as they are
    and trains on them through gymnasium's FlattenObservation (their one-hot encoding)."""
    pytest.importorskip("sb3_contrib")
    from gymnasium.wrappers import FlattenObservation
    from sb3_contrib import RecurrentPPO

    with pytest.raises(TypeError, match="input_size"):
        RecurrentPPO("MlpLstmPolicy", gym.make("ar_envs/TwoBranch-v0", horizon=4), device="cpu")
    env = FlattenObservation(gym.make("ar_envs/TwoBranch-v0", horizon=4))
    assert env.observation_space.shape == (4 * 3,)  # H positions x (V + 1) token values
    model = RecurrentPPO("MlpLstmPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu").learn(32)
    assert model.num_timesteps == 32
