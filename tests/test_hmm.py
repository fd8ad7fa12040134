"""HMM language: the forward-filtering expert against brute force over hidden paths, sequence
probabilities, sampling frequencies, long prefixes, environments and errors."""

import itertools

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ar_envs.expert import ExpertPolicy
from ar_envs.metrics import all_sequences, sequence_metrics
from ar_envs.tasks.hmm import HMMLanguage

EMPTY = np.zeros((1, 0), dtype=np.int64)


def brute_force_prob(task, tokens):
    """P(a_1 .. a_t) by summing the joint over every hidden path (no recursion)."""
    S = task.num_states
    total = 0.0
    for path in itertools.product(range(S), repeat=len(tokens)):
        p = task.initial[path[0]] if tokens else 1.0
        for h, (z, a) in enumerate(zip(path, tokens)):
            if h:
                p *= task.transition[path[h - 1], z]
            p *= task.emission[z, a]
        total += p
    return total if tokens else 1.0


@settings(max_examples=15, deadline=None)
@given(
    st.integers(1, 3),
    st.integers(2, 3),
    st.integers(0, 10_000),
    st.floats(0.2, 3.0),
    st.floats(0.0, 0.9),
    st.data(),
)
def test_expert_probs_equal_brute_force_over_hidden_paths(S, V, seed, conc, stick, data):
    task = HMMLanguage(num_states=S, vocab_size=V, horizon=5, seed=seed, concentration=conc, stickiness=stick)
    prefix = data.draw(st.lists(st.integers(0, V - 1), min_size=0, max_size=4))
    p = task.expert_probs(np.zeros((1, 0)), np.array([prefix], dtype=np.int64).reshape(1, -1))[0]
    base = brute_force_prob(task, prefix)
    brute = np.array([brute_force_prob(task, prefix + [a]) for a in range(V)]) / base
    assert np.isclose(p.sum(), 1.0) and np.all(p >= 0)
    np.testing.assert_allclose(p, brute, rtol=1e-9, atol=1e-12)


def test_sequence_probabilities_sum_to_one_and_match_brute_force():
    task = HMMLanguage(num_states=3, vocab_size=3, horizon=5, seed=4)
    seqs = all_sequences(3, 5)
    ctx = np.zeros((len(seqs), 0), dtype=np.int64)
    lp = task.expert_log_prob(ctx, seqs)
    assert np.isclose(np.exp(lp).sum(), 1.0, atol=1e-12)
    for i in [0, 17, 100, 242]:
        assert np.isclose(np.exp(lp[i]), brute_force_prob(task, seqs[i].tolist()), rtol=1e-10)
    # the teacher-forced step distributions agree with expert_probs after each prefix
    steps = task.expert_step_probs(ctx[:20], seqs[:20])
    for h in range(5):
        np.testing.assert_allclose(steps[:, h], task.expert_probs(ctx[:20], seqs[:20, :h]), atol=1e-14)
    np.testing.assert_allclose(steps.sum(axis=-1), 1.0, atol=1e-12)


def test_sample_frequencies_match_expert_log_prob():
    task = HMMLanguage(num_states=3, vocab_size=2, horizon=3, seed=11)
    n = 40_000
    ctx, seq = task.sample_expert(n, np.random.default_rng(123))
    assert ctx.shape == (n, 0) and seq.shape == (n, 3)
    seqs = all_sequences(2, 3)
    expected = n * np.exp(task.expert_log_prob(np.zeros((8, 0), dtype=np.int64), seqs))
    observed = np.bincount(seq @ np.array([4, 2, 1]), minlength=8)
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 26.0  # 7 degrees of freedom: P(chi2 > 26) < 0.001


def test_long_prefixes_stay_finite_and_normalised():
    task = HMMLanguage(num_states=6, vocab_size=5, horizon=4000, seed=2, stickiness=0.9)
    ctx, seq = task.sample_expert(3, 0)
    lp = task.expert_log_prob(ctx, seq)
    assert np.all(np.isfinite(lp)) and np.all(lp < -100)
    p = task.expert_probs(ctx, seq[:, :3999])
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(axis=1), 1.0)
    # the per-step log-probabilities add up to the sequence log-probability
    steps = task.expert_step_probs(ctx, seq)
    np.testing.assert_allclose(np.log(np.take_along_axis(steps, seq[..., None], -1)[..., 0]).sum(1), lp, rtol=1e-10)


def test_impossible_tokens_are_read_as_missing_observations():
    task = HMMLanguage(num_states=2, vocab_size=3, horizon=3, seed=0)
    task.emission[:, 0] = 0.0
    task.emission /= task.emission.sum(axis=1, keepdims=True)
    p = task.expert_probs(np.zeros((1, 0)), np.array([[0]]))
    # no update from the token, but the hidden chain moves one step
    np.testing.assert_allclose(p[0], task.initial @ task.transition @ task.emission, atol=1e-14)
    assert np.all(np.isfinite(task.expert_probs(np.zeros((1, 0)), np.array([[0, 0]]))))
    assert task.expert_log_prob(np.zeros((1, 0)), np.array([[1, 0, 2]]))[0] == -np.inf


def test_reward_is_the_greedy_agreement_rate():
    task = HMMLanguage(num_states=3, vocab_size=4, horizon=6, seed=5)
    ctx = np.zeros((1, 0), dtype=np.int64)
    seq = np.zeros((1, 0), dtype=np.int64)
    for _ in range(6):  # the greedy expert agrees with itself everywhere
        seq = np.concatenate([seq, task.expert_probs(ctx, seq).argmax(1)[:, None]], axis=1)
    assert task.reward(ctx, seq)[0] == 1.0
    wrong = seq.copy()
    wrong[0, -1] = (wrong[0, -1] + 1) % 4  # only the last token changes, nothing after it
    assert np.isclose(task.reward(ctx, wrong)[0], 5 / 6)
    _, s = task.sample_expert(500, 0)
    r = task.reward(np.zeros((500, 0)), s)
    assert np.all((r >= 0) & (r <= 1)) and 0 < r.mean() < 1


def test_exact_metrics_by_enumeration():
    task = HMMLanguage(num_states=2, vocab_size=2, horizon=6, seed=1)
    out = sequence_metrics(task, ExpertPolicy(task), exact_only=True)
    assert all(e.exact for e in out.values())
    assert abs(out["hellinger2"].value) < 1e-12 and abs(out["kl"].value) < 1e-12

    class Uniform:
        def sequence_log_prob(self, contexts, sequences):
            return np.full(len(sequences), -6 * np.log(2.0))

    p = np.exp(task.expert_log_prob(np.zeros((64, 0), dtype=np.int64), all_sequences(2, 6)))
    out = sequence_metrics(task, Uniform(), exact_only=True)
    assert np.isclose(out["hellinger2"].value, 2 - 2 * np.sqrt(p / 64).sum())
    assert np.isclose(out["tv"].value, 0.5 * np.abs(p - 1 / 64).sum())


@pytest.mark.parametrize("kwargs", [{}, {"num_states": 1, "vocab_size": 2, "horizon": 3}])
def test_env_checkers(kwargs):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("ar_envs/HMMLanguage-v0", **kwargs)
    check_env(env.unwrapped)
    sb3_check_env(env)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"num_states": 0}, "num_states"),
        ({"vocab_size": 1}, "vocab_size"),
        ({"horizon": 0}, "horizon"),
        ({"seed": -1}, "seed"),
        ({"concentration": 0.0}, "concentration"),
        ({"concentration": float("nan")}, "concentration"),
        ({"stickiness": 1.0}, "stickiness"),
        ({"stickiness": -0.1}, "stickiness"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        HMMLanguage(**kwargs)


def test_bad_inputs_and_determinism():
    task = HMMLanguage(horizon=4)
    with pytest.raises(ValueError, match="prefixes"):
        task.expert_probs(np.zeros((1, 0)), np.array([[8]]))
    with pytest.raises(ValueError, match="prefixes"):
        task.expert_probs(np.zeros((1, 0)), np.zeros((1, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="sequences"):
        task.expert_log_prob(np.zeros((1, 0)), np.zeros((1, 3), dtype=np.int64))
    a, b = HMMLanguage(seed=3), HMMLanguage(seed=3)
    np.testing.assert_array_equal(a.transition, b.transition)
    np.testing.assert_array_equal(a.emission, b.emission)
    assert not np.allclose(HMMLanguage(seed=4).emission, a.emission)
    np.testing.assert_allclose(a.transition.sum(1), 1.0)
    np.testing.assert_array_equal(a.sample_expert(50, 9)[1], b.sample_expert(50, 9)[1])
    env = gym.make("ar_envs/HMMLanguage-v0")
    o1, i1 = env.reset(seed=2)
    o2, i2 = env.reset(seed=2)
    np.testing.assert_array_equal(o1, o2)
    assert i1["expert_action"] == i2["expert_action"]
