"""Every registered ``ar_envs/`` environment: checkers, registration, the native vector env,
invalid input, rendering, the expert policy and a stock SB3 PPO run.

The environment ids are read from ``gymnasium.registry`` when the tests are collected, so a task
registered later is covered without editing this file (``SMALL`` only keeps instances small).
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import ar_envs
from ar_envs import ExpertPolicy, SequenceEnv, SequenceVectorEnv
from ar_envs.core import sample_categorical
from ar_envs.env import token_dtype
from ar_envs.tasks import PathStar, TwoBranch

# small instances where the defaults are big; ids not listed here are made with no kwargs
SMALL = {
    "ar_envs/TwoBranch-v0": {"horizon": 6, "eps": 0.2},
    "ar_envs/TwoBranchLinear-v0": {"horizon": 6, "eps": 0.2},
    "ar_envs/MixtureTeacher-v0": {"horizon": 6},
    "ar_envs/LinearAR-v0": {"horizon": 5, "vocab_size": 3},
    "ar_envs/PathStar-v0": {"degree": 2, "path_length": 3, "num_nodes": 8},
    "ar_envs/Multiplication-v0": {"digits": 1},
    "ar_envs/Parity-v0": {"n_bits": 4},
    "ar_envs/HMMLanguage-v0": {"horizon": 6},
}

ENV_IDS = sorted(k for k in gym.registry if k.startswith("ar_envs/"))


def small(env_id: str) -> dict:
    return dict(SMALL.get(env_id, {}))


def make(env_id: str, **kwargs):
    return gym.make(env_id, **{**small(env_id), **kwargs})


def make_vec(env_id: str, num_envs: int, **kwargs):
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **{**small(env_id), **kwargs})


def test_every_task_is_registered():
    assert len(ENV_IDS) >= 5
    for cls in ar_envs.TASKS.values():
        assert f"ar_envs/{cls.env_id}" in ENV_IDS


# ------------------------------------------------------------------------------------------
# the two checkers
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("render_mode", [None, "ansi"])
def test_gymnasium_check_env(env_id, render_mode):
    env = make(env_id, render_mode=render_mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_check_env(env_id):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(make(env_id))


# ------------------------------------------------------------------------------------------
# registration
# ------------------------------------------------------------------------------------------


def test_make_with_module_prefix_in_a_fresh_interpreter(tmp_path):
    code = (
        "import sys, gymnasium as gym\n"
        "assert 'ar_envs' not in sys.modules\n"
        "env = gym.make('ar_envs:ar_envs/TwoBranch-v0', horizon=3)\n"
        "obs, info = env.reset(seed=0)\n"
        "print(type(env.unwrapped).__name__, obs.tolist(), sorted(info))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "TwoBranchEnv"
    assert "[2, 2, 2]" in out.stdout  # three padding tokens (id 2 = V)
    assert "'expert_action'" in out.stdout and "'step'" in out.stdout


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spec_json_round_trip(env_id):
    env = make(env_id)
    spec = env.spec
    assert isinstance(spec.entry_point, str) and isinstance(spec.vector_entry_point, str)
    text = spec.to_json()
    again = EnvSpec.from_json(text)
    assert again == spec
    remade = gym.make(again)
    assert remade.unwrapped.task.task_args() == env.unwrapped.task.task_args()
    # the same seed gives the same first observation through the re-made spec
    assert np.array_equal(remade.reset(seed=5)[0], env.reset(seed=5)[0])


# ------------------------------------------------------------------------------------------
# the native vector env
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_vec_gives_native_vector_env(env_id):
    venv = make_vec(env_id, num_envs=3)
    assert isinstance(venv.unwrapped, SequenceVectorEnv)
    assert venv.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    assert venv.num_envs == 3
    single = make(env_id)
    assert venv.single_observation_space == single.observation_space
    assert venv.single_action_space == single.action_space
    obs, info = venv.reset(seed=0)
    assert obs.shape == (3,) + single.observation_space.shape
    assert venv.observation_space.contains(obs)
    assert info["step"].tolist() == [0, 0, 0]
    assert venv.action_space.contains(info["expert_action"])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_observation_dtype_holds_every_token_and_the_sb3_one_hot_width(env_id):
    from stable_baselines3.common.preprocessing import get_flattened_obs_dim

    env = make(env_id)
    space, task = env.observation_space, env.unwrapped.task
    L, H, C, V = task.context_length, task.horizon, task.context_vocab_size, task.vocab_size
    width = L * C + H * (V + 1)
    assert space.dtype == token_dtype(task) and np.issubdtype(space.dtype, np.signedinteger)
    assert width <= np.iinfo(space.dtype).max and max(C - 1, V) <= np.iinfo(space.dtype).max
    # SB3 sums nvec in the space's dtype: the sum must not wrap around
    assert get_flattened_obs_dim(space) == width == int(np.sum(space.nvec, dtype=np.int64))
    obs, _ = env.reset(seed=0)
    assert obs.dtype == space.dtype and space.contains(obs)


@pytest.mark.parametrize(
    "task, dtype",
    [
        (TwoBranch(horizon=50), np.int16),  # 50 x 3
        (PathStar(), np.int16),  # 63 x 54 + 5 x 55 = 3677
        (PathStar(degree=10, path_length=20, num_nodes=200), np.int32),  # 573 x 204 + 20 x 205
        (PathStar(degree=2, path_length=2, num_nodes=40_000), np.int32),  # vocabulary > int16
    ],
    ids=lambda x: getattr(x, "describe", lambda: str(x))(),
)
def test_token_dtype_is_the_smallest_that_fits(task, dtype):
    assert token_dtype(task) == np.dtype(dtype)
    venv = SequenceVectorEnv(task, num_envs=2)
    obs, _ = venv.reset(seed=0)
    assert obs.dtype == dtype and venv.observation_space.contains(obs)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_observations_are_int16_at_the_defaults(env_id):  # as every task's docstring says
    assert gym.make(env_id).observation_space.dtype == np.int16


def test_dtype_observation_wrappers_give_int64_tokens():
    from gymnasium.wrappers import DtypeObservation
    from gymnasium.wrappers.vector import DtypeObservation as VectorDtypeObservation

    env = DtypeObservation(make("ar_envs/PathStar-v0"), np.int64)
    raw = make("ar_envs/PathStar-v0")
    obs, _ = env.reset(seed=5)
    assert obs.dtype == np.int64 and env.observation_space.contains(obs)
    assert np.array_equal(obs, raw.reset(seed=5)[0])
    venv = VectorDtypeObservation(make_vec("ar_envs/PathStar-v0", num_envs=3), np.int64)
    vobs, _ = venv.reset(seed=5)
    assert vobs.dtype == np.int64 and venv.observation_space.contains(vobs)


def test_make_vec_max_episode_steps_truncates():
    H, cut = 6, 4
    venv = make_vec("ar_envs/TwoBranch-v0", num_envs=5, max_episode_steps=cut)
    obs, info = venv.reset(seed=1)
    zeros = np.zeros(5, dtype=np.int64)
    for episode in range(2):
        for t in range(1, cut + 1):
            obs, r, term, trunc, info = venv.step(zeros)
            assert info["step"].tolist() == [t] * 5
            assert not term.any() and trunc.tolist() == [t == cut] * 5
            assert np.all(r == 0.0)
        assert not info["_expert_action"].any()  # nothing to predict once an episode ended
        # NEXT_STEP: the following step resets and ignores its actions
        obs, r, term, trunc, info = venv.step(np.ones(5, dtype=np.int64))
        assert np.all(obs == 2) and info["step"].tolist() == [0] * 5
        assert not term.any() and not trunc.any() and np.all(r == 0.0)
        assert info["_expert_action"].all()
    # a limit registered in the spec reaches the vector env too, as it reaches gym.make's TimeLimit
    spec = dataclasses.replace(gym.spec("ar_envs/TwoBranch-v0"), max_episode_steps=2, kwargs={"horizon": H})
    venv = gym.make_vec(spec, num_envs=3, vectorization_mode="vector_entry_point")
    assert venv.unwrapped.max_episode_steps == 2
    env = gym.make(spec)
    venv.reset(seed=0)
    env.reset(seed=0)
    for t in (1, 2):
        _, _, vterm, vtrunc, _ = venv.step(np.zeros(3, dtype=np.int64))
        _, _, term, trunc, _ = env.step(0)
        assert vtrunc.tolist() == [t == 2] * 3 and trunc == (t == 2) and not vterm.any() and not term
    # a limit at or beyond the horizon never truncates: episodes terminate at H
    venv = make_vec("ar_envs/TwoBranch-v0", num_envs=2, max_episode_steps=H)
    venv.reset(seed=0)
    for t in range(1, H + 1):
        _, r, term, trunc, _ = venv.step(np.zeros(2, dtype=np.int64))
    assert term.all() and not trunc.any() and np.all(r == 1.0)  # all zeros lies on the common branch


def _first_episodes(env_id, seed, episodes, action_rng_seed=0):
    """Run SequenceEnv and SequenceVectorEnv(num_envs=1) side by side; assert they agree."""
    env = make(env_id, expert_probs=True)
    venv = make_vec(env_id, num_envs=1, expert_probs=True)
    V = env.action_space.n
    rng = np.random.default_rng(action_rng_seed)
    obs, info = env.reset(seed=seed)
    vobs, vinfo = venv.reset(seed=seed)
    steps = 0
    for episode in range(episodes):
        while True:
            assert np.array_equal(obs, vobs[0])
            assert info["step"] == vinfo["step"][0]
            assert info["expert_action"] == vinfo["expert_action"][0]
            assert np.array_equal(info["expert_probs"], vinfo["expert_probs"][0])
            # follow the expert most of the time, leave its path sometimes
            a = info["expert_action"] if rng.random() < 0.7 else int(rng.integers(V))
            obs, r, term, trunc, info = env.step(a)
            vobs, vr, vterm, vtrunc, vinfo = venv.step(np.array([a]))
            steps += 1
            assert np.array_equal(obs, vobs[0]) and r == vr[0]
            assert (term, trunc) == (bool(vterm[0]), bool(vtrunc[0]))
            assert info["step"] == vinfo["step"][0]
            if term:
                # nothing left to predict: the placeholder, masked in the vector env
                assert info["expert_action"] == vinfo["expert_action"][0] == ar_envs.env.END_ACTION
                assert not vinfo["_expert_action"][0]
                break
            assert info["expert_action"] == vinfo["expert_action"][0]
        # the single env resets; the vector env's next step is its reset step
        obs, info = env.reset()
        vobs, vr, vterm, vtrunc, vinfo = venv.step(np.array([0]))
        assert vr[0] == 0.0 and not vterm[0] and not vtrunc[0] and vinfo["step"][0] == 0
    return steps


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vector_env_with_one_copy_equals_single_env(env_id):
    steps = _first_episodes(env_id, seed=11, episodes=4)
    assert steps == 4 * make(env_id).unwrapped.task.horizon


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vector_env_is_deterministic_under_a_seed(env_id):
    def run(seed):
        venv = make_vec(env_id, num_envs=32, expert_probs=True)
        V = venv.single_action_space.n
        H = venv.unwrapped.task.horizon
        rng = np.random.default_rng(0)
        obs, info = venv.reset(seed=seed)
        trace = [obs, info["expert_action"]]
        for _ in range(2 * H + 3):  # two whole episodes, their reset steps, and a bit more
            obs, r, term, trunc, info = venv.step(rng.integers(0, V, size=32))
            trace += [obs, r, term, trunc, info["step"], info["expert_action"], info["expert_probs"]]
        return trace

    a, b = run(3), run(3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_vector_env_seed_matters():
    def first_actions(seed):
        venv = make_vec("ar_envs/TwoBranch-v0", num_envs=256, eps=0.5)
        return venv.reset(seed=seed)[1]["expert_action"]

    assert np.array_equal(first_actions(1), first_actions(1))
    assert not np.array_equal(first_actions(1), first_actions(2))  # equal with probability 2^-256


def test_fast_sampler_matches_sample_categorical():
    from ar_envs.env import _sample_row, _sample_rows

    g = np.random.default_rng(0)
    for V in (2, 3, 8, 9, 40):
        p = g.dirichlet(np.full(V, 0.3), size=300)
        one_hot = np.eye(V)[g.integers(0, V, size=300)]
        for probs, flag in ((p, False), (one_hot, False), (one_hot, True)):
            expected = sample_categorical(probs, np.random.default_rng(V))
            assert np.array_equal(_sample_rows(probs, np.random.default_rng(V), one_hot=flag), expected)
        rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
        assert [_sample_row(row, rng_a) for row in p[:50]] == [sample_categorical(row[None], rng_b)[0] for row in p[:50]]


# ------------------------------------------------------------------------------------------
# invalid input
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_single_env_rejects_actions_outside_the_space(env_id):
    env = make(env_id).unwrapped
    V = env.action_space.n
    env.reset(seed=0)
    for bad in (V, -1, 1.5, "a", None, True, np.array([0, 1])):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)
    # valid spellings of a token: int, numpy integer, 0-d array, integral float
    env.step(np.int64(0))
    if env.task.horizon > 1:
        env.step(np.array(0))
    if env.task.horizon > 2:
        env.step(0.0)


def test_single_env_step_after_termination_raises():
    env = make("ar_envs/TwoBranch-v0", horizon=2).unwrapped
    env.reset(seed=0)
    env.step(0)
    _, _, term, _, _ = env.step(0)
    assert term
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset()
    env.step(0)  # fine again


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vector_env_rejects_actions_outside_the_space(env_id):
    venv = make_vec(env_id, num_envs=3)
    V = venv.single_action_space.n
    venv.reset(seed=0)
    for bad in ([0, 1, V], [-1, 0, 0], [0, 0], [[0, 0, 0]], [0.5, 0, 0], ["a", "b", "c"], 0):
        with pytest.raises(ValueError, match="actions"):
            venv.step(np.asarray(bad))
    obs, *_ = venv.step(np.array([0.0, 1.0, 0.0]))  # integral floats name tokens
    assert venv.unwrapped._t == 1


@pytest.mark.parametrize(
    "env_id, kwargs, argument",
    [
        ("ar_envs/TwoBranch-v0", {"eps": 1.5}, "eps"),
        ("ar_envs/TwoBranch-v0", {"eps": 0.0}, "eps"),
        ("ar_envs/TwoBranch-v0", {"horizon": 0}, "horizon"),
        ("ar_envs/TwoBranch-v0", {"horizon": 2.5}, "horizon"),
        ("ar_envs/TwoBranch-v0", {"offset": -1.0}, "offset"),
        ("ar_envs/TwoBranch-v0", {"eps": float("nan")}, "eps"),
        ("ar_envs/LinearAR-v0", {"vocab_size": 1}, "vocab_size"),
        ("ar_envs/MixtureTeacher-v0", {"p": 0.6, "q": 0.4}, "q"),
        ("ar_envs/PathStar-v0", {"degree": 3, "path_length": 4, "num_nodes": 9}, "num_nodes"),
        ("ar_envs/TwoBranch-v0", {"expert_probs": "yes"}, "expert_probs"),
        ("ar_envs/PathStar-v0", {"expert_probs": 1}, "expert_probs"),
    ],
)
def test_bad_constructor_arguments_name_the_argument(env_id, kwargs, argument):
    if env_id not in gym.registry:
        pytest.skip(f"{env_id} not registered")
    with pytest.raises(ValueError, match=argument), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gym.make(env_id, **kwargs)
    with pytest.raises(ValueError, match=argument):
        gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", **kwargs)


@pytest.mark.parametrize("kwargs, argument", [({"num_envs": 0}, "num_envs"), ({"num_envs": 2, "max_episode_steps": 0}, "max_episode_steps")])
def test_bad_vector_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        gym.make_vec("ar_envs/TwoBranch-v0", vectorization_mode="vector_entry_point", **kwargs)


def test_env_classes_reject_a_non_task():
    with pytest.raises(ValueError, match="task"):
        SequenceEnv("two-branch")
    with pytest.raises(ValueError, match="task"):
        SequenceVectorEnv(object(), num_envs=2)


# ------------------------------------------------------------------------------------------
# rendering and info
# ------------------------------------------------------------------------------------------


def test_render_ansi_two_branch():
    env = gym.make("ar_envs/TwoBranch-v0", horizon=4, render_mode="ansi")
    env.reset(seed=0)
    assert env.render() == ""
    env.step(1)
    env.step(0)
    assert env.render() == "1 0"
    venv = gym.make_vec("ar_envs/TwoBranch-v0", num_envs=2, vectorization_mode="vector_entry_point", horizon=4, render_mode="ansi")
    venv.reset(seed=0)
    venv.step(np.array([1, 0]))
    assert venv.render() == "1\n0"
    plain = gym.make("ar_envs/TwoBranch-v0")
    plain.reset(seed=0)
    assert plain.render() is None  # no render mode, nothing rendered


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_render_ansi_is_a_readable_string(env_id):
    env = make(env_id, render_mode="ansi")
    obs, info = env.reset(seed=0)
    env.step(info["expert_action"])
    text = env.render()
    assert isinstance(text, str) and text.strip() and text.isprintable()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_info_carries_step_and_expert_action(env_id):
    env = make(env_id, expert_probs=True)
    plain = make(env_id)  # without expert_probs=True the info has no distribution
    task = env.unwrapped.task
    L = task.context_length
    obs, info = env.reset(seed=2)
    _, plain_info = plain.reset(seed=2)
    for t in range(1, task.horizon + 1):
        assert info["step"] == t - 1
        assert env.action_space.contains(info["expert_action"])
        probs = info["expert_probs"]
        assert probs.dtype == np.float64 and probs.shape == (task.vocab_size,)
        assert math.isclose(probs.sum(), 1.0) and probs[info["expert_action"]] > 0
        # exactly the task's distribution after this prefix
        expected = task.expert_probs(obs[None, :L].astype(np.int64), obs[None, L : L + t - 1].astype(np.int64))[0]
        assert np.array_equal(probs, expected)
        assert "expert_probs" not in plain_info and plain_info["expert_action"] == info["expert_action"]
        action = info["expert_action"]
        obs, r, term, trunc, info = env.step(action)
        _, _, _, _, plain_info = plain.step(action)
        assert info["step"] == t and term == (t == task.horizon) and not trunc
    assert info["expert_action"] == ar_envs.env.END_ACTION and 0.0 <= r <= 1.0
    assert np.array_equal(info["expert_probs"], np.eye(task.vocab_size)[ar_envs.env.END_ACTION])


# ------------------------------------------------------------------------------------------
# the expert policy
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_expert_policy_predict_single_and_batched(env_id):
    venv = make_vec(env_id, num_envs=16, expert_probs=True)
    task = venv.unwrapped.task
    expert = ExpertPolicy(task, seed=0)
    obs, info = venv.reset(seed=4)
    for _ in range(task.horizon):
        actions, state = expert.predict(obs, deterministic=True)
        assert state is None and actions.shape == (16,)
        assert np.array_equal(actions, info["expert_probs"].argmax(axis=1))
        one, _ = expert.predict(obs[0], deterministic=True)
        assert np.ndim(one) == 0 and one == actions[0]
        sampled, _ = expert.predict(obs)  # a draw lies in the expert's support
        assert np.all(info["expert_probs"][np.arange(16), sampled] > 0)
        obs, r, term, trunc, info = venv.step(sampled)
    assert term.all()
    # a finished sequence has no next token: predict gives the placeholder 0 (the NEXT_STEP reset
    # step ignores it), action_probs refuses
    assert np.array_equal(expert.predict(obs)[0], np.zeros(16))
    with pytest.raises(ValueError, match="complete sequence"):
        expert.action_probs(obs)
    with pytest.raises(ValueError, match="observation"):
        expert.predict(obs[:, :-1])


def test_expert_policy_drives_the_vector_env_across_autoresets():
    H, n = 4, 50
    venv = gym.make_vec("ar_envs/TwoBranch-v0", num_envs=n, vectorization_mode="vector_entry_point", horizon=H, eps=0.5)
    expert = ExpertPolicy(venv.unwrapped.task, seed=0)
    obs, _ = venv.reset(seed=0)
    total, episodes = 0.0, 0
    for _ in range(3 * (H + 1)):  # three episodes, each followed by its reset step
        obs, r, term, trunc, _ = venv.step(expert.predict(obs)[0])
        total += r.sum()
        episodes += term.sum()
    assert episodes == 3 * n and total == 3 * n


def test_vector_env_step_before_reset_raises():
    venv = SequenceVectorEnv(TwoBranch(horizon=3), num_envs=2)
    with pytest.raises(RuntimeError, match="reset"):
        venv.step(np.zeros(2, dtype=np.int64))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_expert_rollouts_stay_on_the_expert_support(env_id):
    n = 64
    venv = make_vec(env_id, num_envs=n)
    task = venv.unwrapped.task
    L, H = task.context_length, task.horizon
    obs, info = venv.reset(seed=9)
    for _ in range(H):
        obs, r, term, trunc, info = venv.step(info["expert_action"])
    assert term.all()
    assert np.all(np.isfinite(task.expert_log_prob(obs[:, :L], obs[:, L:])))
    assert np.array_equal(r, task.reward(obs[:, :L], obs[:, L:]))
    if task.deterministic_expert:
        assert np.all(r == 1.0)


def test_two_branch_expert_rollouts_reproduce_the_sequence_law():
    eps, H, n = 0.3, 3, 4000
    venv = gym.make_vec("ar_envs/TwoBranch-v0", num_envs=n, vectorization_mode="vector_entry_point", horizon=H, eps=eps)
    obs, info = venv.reset(seed=123)
    for _ in range(H):
        obs, r, term, trunc, info = venv.step(info["expert_action"])
    assert term.all() and np.all(r == 1.0)  # every expert sequence is in the support
    # the law: 000 with probability 1 - eps, 1xy with eps / 4 each, nothing else
    seqs = [tuple(s) for s in obs.tolist()]
    law = {(0, 0, 0): 1 - eps, (1, 0, 0): eps / 4, (1, 0, 1): eps / 4, (1, 1, 0): eps / 4, (1, 1, 1): eps / 4}
    assert set(seqs) <= set(law)
    for s, p in law.items():
        k = seqs.count(s)
        assert abs(k / n - p) <= 5 * math.sqrt(p * (1 - p) / n), (s, k)


def test_two_branch_expert_policy_in_the_single_env():
    eps, H, n = 0.25, 4, 600
    env = gym.make("ar_envs/TwoBranch-v0", horizon=H, eps=eps)
    expert = ExpertPolicy(env.unwrapped.task, seed=0)
    ones, total = 0, 0.0
    for episode in range(n):
        obs, _ = env.reset(seed=episode)
        for _ in range(H):
            obs, r, term, _, _ = env.step(expert.predict(obs)[0])
            total += r
        ones += obs[0] == 1
        assert obs[0] == 1 or not obs.any()
    assert total == n
    assert abs(ones / n - eps) <= 4 * math.sqrt(eps * (1 - eps) / n)


# ------------------------------------------------------------------------------------------
# stock SB3 PPO
# ------------------------------------------------------------------------------------------


def _ppo(env_id, seed=0):
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", make(env_id), n_steps=64, batch_size=64, n_epochs=2, seed=seed, device="cpu")
    model.learn(256)
    return model


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_stock_ppo_runs(env_id):
    model = _ppo(env_id)
    assert model.num_timesteps == 256
    obs = model.get_env().reset()
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (1,) and model.action_space.contains(int(actions[0]))


def test_stock_ppo_same_seed_same_parameters():
    a = _ppo("ar_envs/TwoBranch-v0", seed=5).policy.state_dict()
    b = _ppo("ar_envs/TwoBranch-v0", seed=5).policy.state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
