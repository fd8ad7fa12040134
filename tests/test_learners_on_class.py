"""Issue 8: every learner on the log-linear class (exact C(H)), the rare-token instance, the K-knob,
the refined rho-estimator and a best in class that is never worse than a member we fitted."""

import itertools
import math

import numpy as np
import pytest

from ar_agents.algorithms import (BC, BlockHellinger, DAgger, HellingerBC, RhoEstimator, ScheduledSampling, SmoothedBC,
                               get_algorithm)
from ar_agents.algorithms.block_hellinger import block_groups
from ar_agents.evaluation.best_in_class import best_in_class
from ar_agents.loglinear_fit import log_table_torch, state_label_sums
from ar_agents.policies.loglinear import LogLinearPolicy
from ar_agents.evaluation.sweep import Cell, approx_factor_flag, run_cell
from ar_envs.data import generate
from ar_envs.metrics import Estimate, enumerate_metrics, sequence_metrics
from ar_envs.tasks import HMMLanguage, LinearAR, RareToken, TwoBranch


def _C(task, policy):
    return sequence_metrics(task, policy)["hellinger2"].value / best_in_class(task)["hellinger2"]


# ------------------------------------------------------------------ interactive learners on the class


def test_state_label_sums_matches_a_direct_loop():
    task = LinearAR(horizon=4, vocab_size=3, num_contexts=2)
    fm = task.feature_map()
    ctx, seq = task.sample_expert(30, 1)
    labels = np.random.default_rng(2).random((30, 4, 3))
    W = state_label_sums(fm, ctx, seq, labels)
    direct = np.zeros(fm.shape)
    for i in range(30):
        for h in range(4):
            s = fm.next_state(ctx[i : i + 1], seq[i : i + 1, :h])[0]
            direct[ctx[i, 0], s] += labels[i, h]
    assert np.allclose(W, direct)


def test_dagger_on_the_class_is_bc_at_round_zero_and_exact_in_the_sweep():
    task = TwoBranch(horizon=50, eps=0.01)
    demos = generate(task, 1000, seed=0)
    assert np.allclose(DAgger(rounds=0).fit(task, demos, 0).theta, BC().fit(task, demos, 0).theta)
    alg = DAgger(rounds=2, rollouts=500)
    pol = alg.fit(task, demos, 0)
    assert isinstance(pol, LogLinearPolicy)
    assert alg.log["expert_queries"] == 2 * 500 * 50  # one query per visited prefix
    # interaction does not escape the amplification here: the roll-in law equals the expert's at
    # step 1 and the labels in the common branch are the demonstrations' own
    assert _C(task, pol) > 5
    rec = run_cell(Cell("two-branch", (("eps", 0.01),), 50, "dagger", 0, 300, 1000))
    assert rec["approx_factor_exact"] and rec["approx_factor"] > 1 and rec["fit_log"]["policy_class"] == "log-linear"


def test_dagger_on_the_class_recovers_a_realisable_target():
    task = LinearAR(horizon=8, misspec=0.0)
    pol = DAgger(rounds=2).fit(task, generate(task, 3000, seed=1), 1)
    assert sequence_metrics(task, pol)["hellinger2"].value < 0.01


def test_scheduled_sampling_on_the_class_with_teacher_prob_one_is_bc():
    task = LinearAR(horizon=6, misspec=1.0)
    demos = generate(task, 400, seed=3)
    ss = ScheduledSampling(schedule="linear", slope=0.0, epochs=3).fit(task, demos, 3)
    assert np.allclose(ss.theta, BC().fit(task, demos, 3).theta, atol=1e-5)
    mixed = ScheduledSampling(epochs=4).fit(task, demos, 3)
    assert isinstance(mixed, LogLinearPolicy) and not np.allclose(mixed.theta, ss.theta, atol=1e-3)


# ------------------------------------------------------------------ the K-knob


def _block_loss_direct(task, demos, theta, K):
    """sum over (context, start state, length) of N * H^2(empirical block law, model block law) / n,
    by dictionaries and the model's next-token probabilities (no sufficient statistics)."""
    pol = LogLinearPolicy(task, theta)
    fm = task.feature_map()
    blocks = {}
    for i in range(len(demos)):
        for start in range(0, task.horizon, K):
            c = int(demos.contexts[i, 0]) if demos.contexts.shape[1] else 0
            s = int(fm.next_state(demos.contexts[i : i + 1], demos.sequences[i : i + 1, :start])[0])
            blk = tuple(demos.sequences[i, start : start + K])
            blocks.setdefault((c, s, len(blk)), {}).setdefault(blk, []).append(i)
    total = 0.0
    for (c, s, k), law in blocks.items():
        N = sum(len(v) for v in law.values())
        aff = 0.0
        for blk, rows in law.items():
            i = rows[0]
            start = next(st for st in range(0, task.horizon, K) if tuple(demos.sequences[i, st : st + K]) == blk
                         and int(fm.next_state(demos.contexts[i : i + 1], demos.sequences[i : i + 1, :st])[0]) == s)
            seq = demos.sequences[i : i + 1, : start + k]
            logp = pol.sequence_log_prob(demos.contexts[i : i + 1], seq)[0] - (
                pol.sequence_log_prob(demos.contexts[i : i + 1], seq[:, :start])[0] if start else 0.0)
            aff += math.sqrt(len(rows) / N * math.exp(logp))
        total += N * (2.0 - 2.0 * aff)
    return total / len(demos)


@pytest.mark.parametrize("K", [1, 2, 3, 5])
def test_block_hellinger_loss_matches_its_definition(K):
    import torch

    task = LinearAR(horizon=5, num_contexts=2)
    demos = generate(task, 60, seed=K)
    fm = task.feature_map()
    U, count, n_start = block_groups(fm, demos.contexts, demos.sequences, K)
    theta = np.random.default_rng(K).normal(size=fm.dim)
    log_p = U @ log_table_torch(fm, torch.as_tensor(theta)).numpy().ravel()
    ours = (2 * count.sum() - 2 * (np.sqrt(n_start * count) * np.exp(0.5 * log_p)).sum()) / len(demos)
    assert ours == pytest.approx(_block_loss_direct(task, demos, theta, K), rel=1e-10)


def test_block_hellinger_interpolates_from_per_token_to_sequence_level():
    task = TwoBranch(horizon=100, eps=0.01)
    demos = generate(task, 1000, seed=0)
    k1 = BlockHellinger(1).fit(task, demos, 0)
    assert np.allclose(k1.theta, HellingerBC().fit(task, demos, 0).theta)  # K = 1 is hellinger-bc
    c = {K: _C(task, BlockHellinger(K).fit(task, demos, 0)) for K in (1, 100)}
    assert c[1] > 5 and c[100] < 1.5, c  # K = H gives up the rare branch like the best in class


# ------------------------------------------------------------------ the rare-token instance


def test_rare_token_exact_metrics_match_enumeration():
    for H in (1, 2, 4):
        task = RareToken(horizon=H, delta=0.05, slope=7.0)
        for t in (-3.0, -0.2, 0.4):
            pol = LogLinearPolicy(task, [t])
            ours = sequence_metrics(task, pol)
            brute = enumerate_metrics(task, pol)
            for m in ("hellinger2", "tv", "kl", "regret"):
                assert ours[m].value == pytest.approx(brute[m], rel=1e-10, abs=1e-14), (H, t, m)


def test_rare_token_best_in_class_and_population_bc_closed_forms():
    task = RareToken(horizon=3, delta=0.01)
    grid = np.linspace(-30, 3, 3301)
    brute = min(enumerate_metrics(task, LogLinearPolicy(task, [t]))["hellinger2"] for t in grid)
    best = task.best_in_class()["hellinger2"]
    assert best <= brute + 1e-12 and best == pytest.approx(2 - 2 * 0.99 ** 1.5, rel=1e-9)
    assert task.population_bc() == pytest.approx(-math.log(99) / 100, abs=1e-10)  # slope = 1/delta


def test_log_loss_fails_on_rare_token_and_robust_variants_do_not():
    task = RareToken(horizon=1, delta=0.01)
    demos = generate(task, 1000, seed=0)
    C = {name: _C(task, get_algorithm(name).fit(task, demos, 0)) for name in ("bc", "smoothed-bc", "rho")}
    assert C["bc"] > 20 and C["smoothed-bc"] < 5 and C["rho"] < 15, C
    # unbounded as delta -> 0: the population BC's C(1) grows like 0.586 / delta
    c_pop = []
    for delta in (0.04, 0.01, 0.0025):
        t = RareToken(delta=delta)
        c_pop.append(_C(t, LogLinearPolicy(t, [t.population_bc()])))
    assert c_pop[0] < c_pop[1] < c_pop[2] and c_pop[2] > 200


# ------------------------------------------------------------------ rho and the best in class


def test_rho_cover_reaches_its_resolution_and_tracks_the_best_in_class():
    task = LinearAR(horizon=10, misspec=0.2)
    demos = generate(task, 1000, seed=0)
    alg = RhoEstimator()
    c_rho = _C(task, alg.fit(task, demos, 0))
    c_bc = _C(task, BC().fit(task, demos, 0))
    assert alg.log["resolution_reached"] and alg.log["candidates"] > 343
    assert np.all(np.array(alg.log["spacing"]) <= np.array(alg.log["target_spacing"]))
    assert c_rho < 2 and c_rho < c_bc * 1.5


def test_rho_same_seed_same_choice_and_a_too_small_cover_is_warned_about():
    task = LinearAR(horizon=5, misspec=1.0)
    with pytest.warns(RuntimeWarning, match="coarser than its target"):
        alg = RhoEstimator(max_candidates=600)
        a = alg.fit(task, generate(task, 200, seed=2), 2).theta
    assert alg.log["resolution_reached"] is False and alg.log["candidates"] == 600
    with pytest.warns(RuntimeWarning):
        b = RhoEstimator(max_candidates=600).fit(task, generate(task, 200, seed=2), 2).theta
    assert np.array_equal(a, b)


def test_best_in_class_is_never_worse_than_a_given_member():
    task = HMMLanguage(horizon=12)  # no Markov or enumeration path: Monte Carlo
    bc = BC().fit(task, generate(task, 1000, seed=0), 0)
    best = best_in_class(task, starts=[bc.theta], mc_samples=3000)
    bc_score = sequence_metrics(task, bc, n_samples=3000, rng=0 + 104729)["hellinger2"].value
    assert best["hellinger2"] <= bc_score + 1e-12
    assert 0 < best["hellinger2"] < 2 and "fresh samples" in best["method"] and best["ci95"] is not None


def test_approx_factor_flag_only_beyond_the_interval():
    exact = {"hellinger2": 0.1, "exact": True}
    assert approx_factor_flag(0.9, None, Estimate(0.09, True, "closed-form"), exact)
    assert approx_factor_flag(1.2, None, Estimate(0.12, True, "closed-form"), exact) is None
    mc = Estimate(0.09, False, "monte-carlo", (0.07, 0.11))
    assert approx_factor_flag(0.9, [0.7, 1.1], mc, exact) is None  # within its interval
    tight = Estimate(0.09, False, "monte-carlo", (0.085, 0.095))
    assert approx_factor_flag(0.9, [0.85, 0.95], tight, exact)
    assert approx_factor_flag(None, None, tight, exact) is None


# ------------------------------------------------------------------ the linear-ar two-branch preset


def test_linear_ar_two_branch_preset_exact_metrics_and_errors():
    task = LinearAR(horizon=6, preset="two-branch", eps=0.05)
    pol = LogLinearPolicy(task, [-1.0, -2.0, 3.0])
    ours, brute = sequence_metrics(task, pol), enumerate_metrics(task, pol)
    for m in ("hellinger2", "kl", "regret", "tv"):
        assert ours[m].value == pytest.approx(brute[m], rel=1e-9, abs=1e-14), m
    assert LinearAR(**task.task_args()).task_args() == task.task_args()
    # the expert's own sequences: 0 forever, or a coin between 1 and 2 after a first 1 or 2
    _, seq = task.sample_expert(500, 0)
    common = seq[:, 0] == 0
    assert np.all(seq[common] == 0) and np.all(seq[~common] > 0) and 5 < (~common).sum() < 60
    with pytest.raises(ValueError, match="fixes vocab_size"):
        LinearAR(preset="two-branch", vocab_size=4)
    with pytest.raises(ValueError, match="eps applies only"):
        LinearAR(eps=0.1)
    with pytest.raises(ValueError, match="preset"):
        LinearAR(preset="nope")


@pytest.mark.slow
def test_linear_ar_two_branch_preset_shows_growth():
    C = {"bc": [], "rho": []}
    for H in (20, 100, 500):
        task = LinearAR(horizon=H, preset="two-branch")
        best = best_in_class(task)["hellinger2"]
        assert best < 0.011  # far below saturation (2) at every H
        demos = generate(task, 1000, seed=0)
        for name in C:
            C[name].append(sequence_metrics(task, get_algorithm(name).fit(task, demos, 0))["hellinger2"].value / best)
    assert C["bc"][2] > 3 * C["bc"][0] and C["bc"][2] > 50, C
    assert max(C["rho"]) < 15, C


def test_class_state_stepper_matches_next_token_probs():
    task = LinearAR(horizon=7, vocab_size=3, num_contexts=3)
    pol = LogLinearPolicy(task, np.random.default_rng(0).normal(size=3))
    ctx, seq = task.sample_expert(40, 5)
    stepper = pol.stepper(ctx)
    for h in range(7):
        assert np.allclose(stepper.probs(), pol.next_token_probs(ctx, seq[:, :h]))
        stepper.advance(seq[:, h])


def test_rho_refuses_classes_whose_cover_is_out_of_reach():
    task = HMMLanguage(horizon=3, num_states=2, vocab_size=3)  # the bigram class: 12 parameters
    demos = generate(task, 50, seed=0)
    with pytest.raises(ValueError, match="12 parameters.*max_dim=3"):
        RhoEstimator().fit(task, demos, 0)
    with pytest.warns(RuntimeWarning, match="no cover"):
        alg = RhoEstimator(max_dim=12, max_candidates=400)
        alg.fit(task, demos, 0)
    assert alg.log["resolution_reached"] is False
    for bad in (dict(max_dim=0), dict(resolution="0.5"), dict(resolution=True), dict(min_spacing=float("inf")),
                dict(max_candidates=10**9)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RhoEstimator(**bad)
    with pytest.raises(ValueError, match="oracle"):
        HellingerBC(oracle="no")


@pytest.mark.parametrize("name", ["bc", "smoothed-bc", "hellinger-bc", "block-hellinger", "rho", "dagger",
                                  "scheduled-sampling"])
def test_learners_refuse_demonstrations_of_another_task_or_none(name):
    from ar_envs.data import Demonstrations

    task = TwoBranch(horizon=6)
    other = generate(TwoBranch(horizon=4), 20, seed=0)
    with pytest.raises(ValueError, match="demos.sequences"):
        get_algorithm(name).fit(task, other, 0)
    empty = Demonstrations(np.zeros((0, 0), dtype=np.int64), np.zeros((0, 6), dtype=np.int64))
    with pytest.raises(ValueError, match="at least 1 demonstration"):
        get_algorithm(name).fit(task, empty, 0)


def test_dagger_policy_args_without_a_policy_are_refused_on_the_class():
    task = TwoBranch(horizon=4)
    with pytest.raises(ValueError, match="policy_args apply to a neural policy"):
        DAgger(policy_args={"hidden": 8}).fit(task, generate(task, 20, seed=0), 0)


def test_approx_factor_interval_carries_the_best_in_class_uncertainty_and_the_noise_floor():
    from ar_agents.evaluation.sweep import WELL_SPECIFIED_BELOW, approx_factor_interval

    h2 = Estimate(0.2, False, "monte-carlo", (0.18, 0.22))
    assert approx_factor_interval(h2, 0.1, [0.09, 0.11]) == pytest.approx([0.18 / 0.11, 0.22 / 0.09])
    assert approx_factor_interval(h2, 0.1) == pytest.approx([1.8, 2.2])
    assert approx_factor_interval(Estimate(0.2, True, "closed-form"), 0.1) is None
    # a best in class at the optimisers' noise floor: no C, a note instead
    task = LinearAR(horizon=3, misspec=0.0)
    rec = run_cell(Cell("linear-ar", (("misspec", 0.0),), 3, "bc", 0, 500, 1000))
    assert rec["best_in_class_hellinger2"] <= WELL_SPECIFIED_BELOW and rec["approx_factor"] is None
    assert "C(H) is undefined" in rec["approx_factor_note"]
