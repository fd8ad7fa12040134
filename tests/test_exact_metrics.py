"""Closed forms and dynamic programmes against brute-force enumeration; Monte Carlo coverage."""

import math

import numpy as np
import pytest

from ar_agents.policies import LogLinearPolicy
from ar_envs.metrics import (
    all_sequences,
    enumerate_metrics,
    markov_metrics,
    monte_carlo_metrics,
    sequence_metrics,
)
from ar_envs.tasks import LinearAR, MixtureTeacher, TwoBranch, TwoBranchLinear


class OpaquePolicy:
    """Hides the state table so that only the generic (enumeration / Monte-Carlo) paths apply."""

    def __init__(self, policy):
        self._p = policy

    def sequence_log_prob(self, contexts, sequences):
        return self._p.sequence_log_prob(contexts, sequences)

    def sample(self, contexts, rng=None):
        return self._p.sample(contexts, rng)


def brute_force(task, policy):
    """Independent enumeration: P(x, a) from the chain rule of next-token probabilities."""
    contexts, cprobs = task.enumerate_contexts()
    aff = tv = kl = reg = 0.0
    for c, pc in zip(contexts, cprobs):
        for seq in all_sequences(task.vocab_size, task.horizon):
            p = q = 1.0
            for h in range(task.horizon):
                p *= task.expert_probs(c[None], seq[None, :h])[0, seq[h]]
                q *= policy.next_token_probs(c[None], seq[None, :h])[0, seq[h]]
            r = task.reward(c[None], seq[None])[0]
            aff += pc * math.sqrt(p * q)
            tv += pc * abs(p - q) / 2
            kl += pc * (p * math.log(p / q) if p > 0 else 0.0)
            reg += pc * (p - q) * r
    return {"hellinger2": 2 - 2 * aff, "tv": tv, "kl": kl, "regret": reg}


TASKS = [
    (TwoBranch, dict(eps=0.1)),
    (TwoBranchLinear, dict(eps=0.2, norm_bound=3.0, kappa=0.7)),
    (MixtureTeacher, dict(p=0.2, q=0.7, w=0.3)),
    (LinearAR, dict(vocab_size=3, num_contexts=2, feature_dim=2, misspec=1.5)),
]


@pytest.mark.parametrize("cls,kw", TASKS, ids=lambda x: getattr(x, "__name__", ""))
@pytest.mark.parametrize("horizon", [1, 2, 5])
def test_exact_paths_equal_brute_force(cls, kw, horizon):
    task = cls(horizon=horizon, **kw)
    rng = np.random.default_rng(horizon)
    for _ in range(3):
        theta = rng.normal(size=task.feature_map().dim) * 2
        if task.feature_map().norm_bound is not None:
            idx = list(task.feature_map().bounded_dims)
            theta[idx] *= 0.9 * task.feature_map().norm_bound / np.linalg.norm(theta[idx])
        pol = LogLinearPolicy(task, theta)
        ref = brute_force(task, pol)
        exact = sequence_metrics(task, pol)  # closed form / DP (+ enumeration for what is left)
        enum = enumerate_metrics(task, pol)
        for m, v in ref.items():
            assert exact[m].exact
            assert exact[m].value == pytest.approx(v, abs=1e-10), (m, "closed form")
            assert enum[m] == pytest.approx(v, abs=1e-10), (m, "enumeration")


def test_two_branch_closed_form_equals_markov_dp_at_long_horizon():
    task = TwoBranch(horizon=700, eps=0.01)
    pol = LogLinearPolicy(task, np.array([-4.0, -6.5]))
    closed = task.exact_metrics(pol.state_probs)
    dp = markov_metrics(task.feature_map(), task.expert_state_probs(), pol.state_probs, [1.0], task.horizon)
    assert closed["hellinger2"] == pytest.approx(dp["hellinger2"], rel=1e-10)
    assert closed["kl"] == pytest.approx(dp["kl"], rel=1e-10)


def test_expert_log_prob_is_a_distribution_and_matches_expert_probs():
    for cls, kw in TASKS:
        task = cls(horizon=4, **kw)
        contexts, cprobs = task.enumerate_contexts()
        seqs = all_sequences(task.vocab_size, 4)
        for c in contexts:
            ctx = np.repeat(c[None], len(seqs), axis=0)
            lp = task.expert_log_prob(ctx, seqs)
            assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-12)
            step = task.expert_step_probs(ctx, seqs)
            assert np.allclose(step.sum(-1), 1.0)
            with np.errstate(divide="ignore"):
                chain = np.log(np.take_along_axis(step, seqs[..., None], -1)[..., 0]).sum(1)
            assert np.allclose(np.exp(chain), np.exp(lp))


@pytest.mark.parametrize("cls,kw", TASKS, ids=lambda x: getattr(x, "__name__", ""))
def test_sample_expert_matches_expert_law(cls, kw):
    task = cls(horizon=3, **kw)
    n = 40_000
    ctx, seq = task.sample_expert(n, 123)
    contexts, cprobs = task.enumerate_contexts()
    seqs = all_sequences(task.vocab_size, 3)
    codes = seq @ (task.vocab_size ** np.arange(2, -1, -1))
    for c, pc in zip(contexts, cprobs):
        rows = np.all(ctx == c, axis=1)
        assert rows.mean() == pytest.approx(pc, abs=5 * math.sqrt(pc * (1 - pc) / n) + 1e-12)
        expected = np.exp(task.expert_log_prob(np.repeat(c[None], len(seqs), 0), seqs))
        observed = np.bincount(codes[rows], minlength=len(seqs)) / rows.sum()
        sd = np.sqrt(expected * (1 - expected) / rows.sum())
        assert np.all(np.abs(observed - expected) <= 5 * sd + 1e-9)


def test_best_in_class_closed_form_beats_a_fine_brute_force_grid():
    for H in [3, 40, 400]:
        task = TwoBranch(horizon=H, eps=0.02)
        best = task.best_in_class()
        pol = LogLinearPolicy(task, best["theta"])
        assert task.exact_metrics(pol.state_probs)["hellinger2"] == pytest.approx(best["hellinger2"], abs=1e-9)
        grid = [(a, t) for a in np.linspace(-8, 0, 41) for t in np.linspace(-30, 3, 167)]
        brute = min(task.exact_metrics(LogLinearPolicy(task, np.array(g)).state_probs)["hellinger2"] for g in grid)
        assert best["hellinger2"] <= brute + 1e-12
        assert best["hellinger2"] >= brute - 0.03 * brute  # and the grid comes within 3% of it
    # the best member stays near eps while the horizon grows
    assert TwoBranch(horizon=500, eps=0.01).best_in_class()["hellinger2"] == pytest.approx(0.01, rel=0.02)


def test_mixture_best_in_class_matches_grid():
    task = MixtureTeacher(horizon=30, p=0.1, q=0.9, w=0.05)
    best = task.best_in_class()
    grid = np.linspace(-6, 6, 4001)
    vals = [task.exact_metrics(LogLinearPolicy(task, np.array([g])).state_probs)["hellinger2"] for g in grid]
    assert best["hellinger2"] <= min(vals) + 1e-12
    assert best["hellinger2"] == pytest.approx(min(vals), abs=1e-6)


def test_monte_carlo_intervals_cover_the_exact_value_at_the_stated_rate():
    task = TwoBranch(horizon=12, eps=0.3)
    pol = LogLinearPolicy(task, np.array([-0.5, -2.0]))
    exact = sequence_metrics(task, pol)
    opaque = OpaquePolicy(pol)
    reps, hits = 300, {m: 0 for m in ("hellinger2", "tv", "kl", "regret")}
    rng = np.random.default_rng(2024)
    for _ in range(reps):
        est = monte_carlo_metrics(task, opaque, 400, rng)
        for m in hits:
            lo, hi = est[m].ci95
            hits[m] += lo <= exact[m].value <= hi
    for m, k in hits.items():
        # nominal 95%: with 300 replications the rate is within 0.95 +- 0.04 (3.2 sd) unless broken
        assert 0.90 <= k / reps <= 0.99, (m, k / reps)


def test_generic_path_falls_back_to_enumeration_then_monte_carlo():
    task = LinearAR(horizon=6)
    pol = LogLinearPolicy(task, np.zeros(3))
    m = sequence_metrics(task, OpaquePolicy(pol))
    assert all(e.exact and e.method == "enumeration" for e in m.values())
    big = LinearAR(horizon=30)
    pol = LogLinearPolicy(big, np.zeros(3))
    m = sequence_metrics(big, OpaquePolicy(pol), n_samples=2000, rng=0)
    assert not m["hellinger2"].exact and m["hellinger2"].ci95 is not None
    exact = sequence_metrics(big, pol)
    assert exact["hellinger2"].exact
    lo, hi = m["hellinger2"].ci95
    assert lo - 0.05 <= exact["hellinger2"].value <= hi + 0.05
    with pytest.raises(ValueError, match="no exact path"):
        sequence_metrics(big, OpaquePolicy(pol), exact_only=True)
