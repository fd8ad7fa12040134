"""The best model of a learner's own class: ``min over the class of D_H^2(P^pi, P*)``.

Order of preference (the method used is reported, because it decides what C(H) means):

1. ``closed-form``: the task's own minimisation (``task.best_in_class()``), e.g. TwoBranch and
   MixtureTeacher, where the objective is an explicit function of one or two parameters.
2. ``optimiser (markov-dp)``: the task's expert is Markov in the class state
   (``task.expert_state_probs()``), so ``D_H^2`` is an exact, differentiable dynamic programme
   (a matrix power); L-BFGS from several starts (zero, the per-token fits BC and Hellinger BC on
   20,000 expert samples, and grid points).
3. ``optimiser (enumeration)``: the same on the exact objective by enumeration of all sequences
   (``contexts x V^H <= 2^16``).
4. ``optimiser (monte-carlo)``: the same on a Monte-Carlo objective over fixed expert samples.

For 2-4 the value is the best *found*: an upper bound on the minimum, so ``C = error / best``
is a lower bound on the true approximation factor. Every start (the caller's ``starts``, e.g. the
learners' own fits, included) is a candidate too, and every candidate is re-scored exactly (or,
for 4, on fresh samples, where the optimiser's own samples would flatter the members fitted to
them) before the minimum is taken: the best in class is never worse than a member it was given.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ar_envs.core import Task
from ar_envs.metrics import all_sequences, can_enumerate, markov_metrics, sequence_metrics

from ar_agents.loglinear_fit import minimise, parameter_grid, per_sequence_counts
from ar_agents.policies.loglinear import LogLinearPolicy


def _transition_tensor(fm) -> torch.Tensor:
    S, V = fm.transitions.shape
    T = torch.zeros(S, V, S, dtype=torch.float64)
    T[torch.arange(S)[:, None], torch.arange(V)[None, :], torch.as_tensor(fm.transitions)] = 1.0
    return T


def markov_log_affinity_torch(fm, expert_table, context_probs, horizon):
    """A function ``log_table -> log sum sqrt(P* P_theta)`` (exact, any H) for Markov experts."""
    T = _transition_tensor(fm)
    sqrt_expert = torch.as_tensor(np.sqrt(expert_table))
    start = torch.zeros(fm.shape[1], dtype=torch.float64)
    start[fm.initial_state] = 1.0
    cp = torch.as_tensor(np.asarray(context_probs, dtype=np.float64))

    def log_affinity(log_table):
        w = sqrt_expert * torch.exp(0.5 * log_table)  # (C, S, V)
        K = torch.einsum("csa,sat->cst", w, T)  # (C, S, S)
        v = start @ torch.linalg.matrix_power(K, horizon)  # (C, S)
        return torch.log((cp * v.sum(dim=-1)).sum())

    return log_affinity


def _sample_objective(task, fm, contexts, sequences, expert_logp, weights):
    """``log_table -> log sum_i w_i sqrt(P_theta(a^i) / P*(a^i))`` (weights = P* / proposal)."""
    counts = torch.as_tensor(per_sequence_counts(fm, contexts, sequences))
    half_lp = torch.as_tensor(-0.5 * expert_logp)
    lw = torch.as_tensor(np.log(weights))

    def log_affinity(log_table):
        ll = counts @ log_table.reshape(-1)
        return torch.logsumexp(lw + half_lp + 0.5 * ll, dim=0)

    return log_affinity


def best_in_class(task: Task, starts: list[np.ndarray] | None = None, seed: int = 0, mc_samples: int = 20_000) -> dict:
    """``{"hellinger2", "method", "theta", "exact"}`` for ``task``'s canonical log-linear class."""
    closed = task.best_in_class()
    if closed is not None:
        return {"hellinger2": float(closed["hellinger2"]), "method": closed["method"],
                "theta": np.asarray(closed["theta"]).tolist(), "exact": True}
    fm = task.feature_map()
    if fm is None:
        raise ValueError(f"task {task.name!r} has no log-linear learner class: its best in class is not defined here")
    expert_table = getattr(task, "expert_state_probs", lambda: None)()
    exact = True
    if expert_table is not None:
        _, cprobs = task.enumerate_contexts()
        objective = markov_log_affinity_torch(fm, expert_table, cprobs, task.horizon)
        method = "optimiser (markov-dp)"
    elif can_enumerate(task, 2**16):
        contexts, cprobs = task.enumerate_contexts()
        seqs = all_sequences(task.vocab_size, task.horizon)
        ctx = np.repeat(contexts, len(seqs), axis=0)
        seq = np.tile(seqs, (len(contexts), 1))
        lp = task.expert_log_prob(ctx, seq)
        keep = np.isfinite(lp)
        w = np.repeat(cprobs, len(seqs))[keep] * np.exp(lp[keep])  # sum_x,a D(x) P*(a|x) sqrt(Q/P*)
        objective = _sample_objective(task, fm, ctx[keep], seq[keep], lp[keep], w)
        method = "optimiser (enumeration)"
    else:
        ctx, seq = task.sample_expert(mc_samples, np.random.default_rng(seed + 7919))
        lp = task.expert_log_prob(ctx, seq)
        objective = _sample_objective(task, fm, ctx, seq, lp, np.full(len(lp), 1.0 / len(lp)))
        method = "optimiser (monte-carlo)"
        exact = False

    # starts: zero, the caller's (e.g. the learners' fits), the per-token fits on a large expert
    # sample, a few grid points; every start is also a candidate itself, so the best in class is
    # never worse than a member we were given
    from ar_envs.data import generate

    from ar_agents.algorithms.bc import BC
    from ar_agents.algorithms.hellinger_bc import HellingerBCOracle

    big = generate(task, 20_000, seed=seed + 15485863)
    given = [np.asarray(t, dtype=np.float64) for t in (starts or [])]
    candidates = [np.zeros(fm.dim)] + given
    candidates += [BC().fit(task, big, seed).theta, HellingerBCOracle().fit(task, big, seed).theta]
    grid = parameter_grid(fm, 64, rng=seed)
    candidates += list(grid[np.random.default_rng(seed).permutation(len(grid))[:8]])
    found = list(given)
    for start in candidates:
        try:
            theta, _ = minimise(fm, lambda lt: -objective(lt), theta0=start, max_iter=300)
        except FloatingPointError:
            continue
        found.append(theta)
    if not found:
        raise FloatingPointError(f"best_in_class: every optimiser start diverged on {task!r}")
    # score every candidate the same way: exactly, or (Monte Carlo) on fresh samples, so that a
    # member that only looks good on the optimiser's own samples cannot win
    if exact and expert_table is not None:
        _, cprobs = task.enumerate_contexts()

        def score(theta):
            policy = LogLinearPolicy(task, theta, fm)
            return markov_metrics(fm, expert_table, policy.state_probs, cprobs, task.horizon)["hellinger2"], None
    elif exact:
        def score(theta):
            return sequence_metrics(task, LogLinearPolicy(task, theta, fm), exact_only=True)["hellinger2"].value, None
    else:
        def score(theta):
            est = sequence_metrics(task, LogLinearPolicy(task, theta, fm), n_samples=mc_samples, rng=seed + 104729)["hellinger2"]
            return est.value, est.ci95
    scored = [(*score(theta), theta) for theta in found]
    value, ci, best_theta = min(scored, key=lambda item: item[0])
    value = max(float(value), 0.0)  # rounding can leave -1e-16 for a member equal to the expert
    out = {"hellinger2": value, "method": method, "theta": np.asarray(best_theta).tolist(), "exact": exact,
           "candidates": len(found)}
    if ci is not None:
        out["ci95"] = [max(float(ci[0]), 0.0), float(ci[1])]
        out["method"] = f"{method}, best of {len(found)} candidates re-scored on {mc_samples} fresh samples"
    return out
