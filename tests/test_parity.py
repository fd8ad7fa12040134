"""Parity: chain-of-thought values against a direct computation, horizons as documented, the
expert off its own path, environments and errors."""

import math

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ar_envs.expert import ExpertPolicy
from ar_envs.metrics import sequence_metrics
from ar_envs.tasks.parity import Parity

FAST = settings(max_examples=60, deadline=None)


@st.composite
def parity_tasks(draw, modes=("none", "running", "short")):
    n = draw(st.integers(1, 14))
    k = draw(st.integers(1, n))
    cot = draw(st.sampled_from(modes))
    chunk = draw(st.one_of(st.none(), st.integers(1, k)))
    seed = draw(st.integers(0, 1000))
    return Parity(n_bits=n, subset_size=k, cot=cot, seed=seed, chunk_size=chunk)


def direct(task, x):
    """The chain of thought and answer for one context, by plain Python loops."""
    S = [int(i) for i in task.subset]
    y = 0
    for i in S:
        y ^= int(x[i])
    if task.cot == "none":
        return [y]
    if task.cot == "running":
        r, out = 0, []
        for t in range(task.n_bits):
            if t in S:
                r ^= int(x[t])
            out.append(r)
        return out
    c = task.chunk_size
    chunks = [S[i : i + c] for i in range(0, len(S), c)]
    out = []
    for ch in chunks:
        p = 0
        for i in ch:
            p ^= int(x[i])
        out.append(p)
    return out + [y]


def rollout(task, ctx, prefix):
    seq = list(prefix)
    while len(seq) < task.horizon:
        p = task.expert_probs(ctx, np.array(seq, dtype=np.int64).reshape(1, -1))
        assert p.shape == (1, 2) and p.max() == 1.0 and p.sum() == 1.0
        seq.append(int(p.argmax()))
    return seq


@FAST
@given(parity_tasks(), st.integers(0, 2**31))
def test_cot_values_match_a_direct_computation(task, ctx_seed):
    n, k = task.n_bits, task.subset_size
    assert len(task.subset) == k and len(set(task.subset.tolist())) == k
    assert np.all(np.diff(task.subset) > 0) and task.subset.min() >= 0 and task.subset.max() < n
    expected_H = {"none": 1, "running": n, "short": math.ceil(k / task.chunk_size) + 1}[task.cot]
    assert task.horizon == expected_H
    ctx = task.sample_contexts(8, np.random.default_rng(ctx_seed))
    ref = task.reference(ctx)
    for x, s in zip(ctx, ref):
        assert s.tolist() == direct(task, x)
        assert rollout(task, x[None], []) == s.tolist()
    assert np.all(task.reward(ctx, ref) == 1.0)
    assert np.all(task.expert_log_prob(ctx, ref) == 0.0)
    np.testing.assert_array_equal(task.expert_next_tokens(ctx, ref), ref)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 8, 9, 16, 17, 64, 100])
def test_default_short_cot_has_about_log_k_tokens(k):
    task = Parity(n_bits=max(k, 2), subset_size=k, cot="short")
    assert task.horizon <= max(1, math.ceil(math.log2(k))) + 1
    assert task.horizon == math.ceil(k / task.chunk_size) + 1
    assert sorted(np.concatenate(task.chunks).tolist()) == task.subset.tolist()


def test_default_subset_size_and_seed():
    assert Parity(n_bits=8).subset_size == 4
    assert Parity(n_bits=1).subset_size == 1
    np.testing.assert_array_equal(Parity(n_bits=20, seed=3).subset, Parity(n_bits=20, seed=3).subset)
    subsets = {tuple(Parity(n_bits=20, seed=s).subset) for s in range(10)}
    assert len(subsets) > 1


# ---------------------------------------------------------------------------- off the expert's path


@FAST
@given(parity_tasks(modes=("running",)), st.integers(0, 2**31), st.data())
def test_running_parity_continues_from_the_written_value(task, ctx_seed, data):
    x = task.sample_contexts(1, np.random.default_rng(ctx_seed))
    ref = task.reference(x)[0].tolist()
    t = data.draw(st.integers(0, task.horizon - 1))
    seq = rollout(task, x, ref[:t] + [1 - ref[t]])
    # the flip persists: every later running value is flipped, the answer too
    assert seq[t:] == [1 - r for r in ref[t:]]
    assert task.reward(x, np.array([seq]))[0] == 0.0
    ref_mode = Parity(task.n_bits, task.subset_size, "running", task.seed, off_path="reference")
    assert rollout(ref_mode, x, ref[:t] + [1 - ref[t]])[t + 1 :] == ref[t + 1 :]


@FAST
@given(parity_tasks(modes=("short",)), st.integers(0, 2**31), st.data())
def test_short_cot_answer_is_the_xor_of_the_written_chunks(task, ctx_seed, data):
    x = task.sample_contexts(1, np.random.default_rng(ctx_seed))
    ref = task.reference(x)[0].tolist()
    m = task.horizon - 1
    flips = data.draw(st.lists(st.booleans(), min_size=m, max_size=m))
    written = [r ^ int(f) for r, f in zip(ref[:m], flips)]
    for t in range(m):  # chunk tokens come from the context, not from earlier chunk tokens
        assert rollout(task, x, written[:t])[t] == ref[t]
    seq = rollout(task, x, written)
    assert seq[-1] == sum(written) % 2
    assert task.reward(x, np.array([seq]))[0] == float(sum(flips) % 2 == 0)


# ---------------------------------------------------------------------------- roll-outs, metrics, envs


@pytest.mark.parametrize("cot", ["none", "running", "short"])
def test_expert_rollouts_get_reward_one(cot):
    task = Parity(n_bits=12, subset_size=5, cot=cot, seed=1)
    ctx = task.sample_contexts(200, np.random.default_rng(0))
    seq = ExpertPolicy(task, seed=0).sample(ctx)
    assert np.all(task.reward(ctx, seq) == 1.0)
    m = task.extra_metrics(ctx, seq)
    assert m["answer_accuracy"] == 1.0
    if cot != "none":
        assert m["cot_exact_match"] == 1.0
    wrong = seq.copy()
    wrong[:100, -1] ^= 1
    assert task.extra_metrics(ctx, wrong)["answer_accuracy"] == 0.5
    env = gym.make("ar_envs/Parity-v0", n_bits=12, subset_size=5, cot=cot, seed=1)
    for s in range(5):
        obs, info = env.reset(seed=s)
        done, total = False, 0.0
        while not done:
            obs, r, term, trunc, info = env.step(info["expert_action"])
            total += r
            done = term or trunc
        assert total == 1.0


def test_exact_metrics_by_enumeration():
    task = Parity(n_bits=5, subset_size=3, cot="running")
    out = sequence_metrics(task, ExpertPolicy(task), exact_only=True)
    assert all(e.exact for e in out.values())
    assert abs(out["hellinger2"].value) < 1e-12 and abs(out["tv"].value) < 1e-12

    class Constant:  # always writes 0: right exactly when the parity is 0 (half the contexts)
        def sequence_log_prob(self, contexts, sequences):
            return np.where(np.all(np.asarray(sequences) == 0, axis=1), 0.0, -np.inf)

    out = sequence_metrics(task, Constant(), exact_only=True)
    assert np.isclose(out["regret"].value, 0.5)
    # P* puts mass 1 on one sequence per context; the constant policy agrees on the contexts
    # whose running parity is all zeros: x_s = 0 on the subset, 1/8 of them
    assert np.isclose(out["tv"].value, 1 - 1 / 8)
    assert Parity(n_bits=17).enumerate_contexts() is None


@pytest.mark.parametrize("kwargs", [{}, {"cot": "running"}, {"cot": "short", "n_bits": 20, "subset_size": 9}])
def test_env_checkers(kwargs):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("ar_envs/Parity-v0", **kwargs)
    check_env(env.unwrapped)
    sb3_check_env(env)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"n_bits": 0}, "n_bits"),
        ({"n_bits": 8, "subset_size": 0}, "subset_size"),
        ({"n_bits": 8, "subset_size": 9}, "subset_size"),
        ({"cot": "long"}, "cot"),
        ({"n_bits": 8, "subset_size": 4, "chunk_size": 0}, "chunk_size"),
        ({"n_bits": 8, "subset_size": 4, "chunk_size": 5}, "chunk_size"),
        ({"seed": -1}, "seed"),
        ({"off_path": "repair"}, "off_path"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Parity(**kwargs)


def test_bad_inputs_and_determinism():
    task = Parity(n_bits=6, cot="running")
    x = task.sample_contexts(2, 0)
    with pytest.raises(ValueError, match="contexts"):
        task.expert_probs(x[:, :5], np.zeros((2, 0), dtype=np.int64))
    with pytest.raises(ValueError, match="prefixes"):
        task.expert_probs(x, np.full((2, 1), 2))
    with pytest.raises(ValueError, match="prefixes"):
        task.expert_probs(x, np.zeros((2, 6), dtype=np.int64))
    c1, s1 = task.sample_expert(30, 5)
    c2, s2 = task.sample_expert(30, 5)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(s1, s2)
