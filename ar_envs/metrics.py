"""Sequence-level distances between the expert's law P* and a policy's law P^pi.

All metrics are over the joint law of (context, sequence): ``P(x, a) = D(x) P(a | x)``.

* ``hellinger2``: squared Hellinger distance ``sum (sqrt P* - sqrt P)^2`` in [0, 2].
* ``tv``: total variation ``1/2 sum |P* - P|`` (the worst-case regret over rewards in [0, 1]).
* ``kl``: ``KL(P* || P^pi)`` (``inf`` where the policy misses expert mass).
* ``regret``: ``J(pi*) - J(pi)`` for the task's sequence reward.

Each is computed, in this order of preference, by a task's closed form / dynamic programme
(policies whose next-token law depends only on the task's learner-class state), by enumerating
every sequence (while ``contexts x V^H <= enumerate_limit``), or by Monte Carlo over expert
samples with a 95% confidence interval (Hellinger via ``E_{P*}[sqrt(P/P*)]``, TV via
``E_{P*}[(1 - P/P*)_+]``, KL via ``E_{P*}[log P*/P]``; regret from samples of both laws).

A *policy* here is any object with ``sequence_log_prob(contexts, sequences) -> (n,)`` (natural
log). Optional: ``sample(contexts, rng) -> sequences`` (needed for a Monte-Carlo regret) and
``state_probs`` + ``feature_map`` (a ``(C, S, V)`` table over the task's class states, which
unlocks the exact paths).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .core import FeatureMap, Task, as_rng, check_int, check_memory

METRICS = ("hellinger2", "tv", "kl", "regret")
ENUMERATE_LIMIT = 2**20
Z95 = 1.959963984540054


@dataclass
class Estimate:
    """A metric value with its provenance: exact (closed form, DP, enumeration) or Monte Carlo."""

    value: float | None
    exact: bool
    method: str
    ci95: tuple[float, float] | None = None
    n_samples: int | None = None

    def to_json(self):
        return None if self.value is None or not math.isfinite(self.value) else float(self.value)


# --------------------------------------------------------------------------------------------
# exact: Markov dynamic programmes
# --------------------------------------------------------------------------------------------


def _step_matrix(fm: FeatureMap, weights: np.ndarray) -> np.ndarray:
    """``(C, S, S)``: sum over tokens of ``weights[c, s, a]`` into the next state ``T[s, a]``."""
    C, S, V = weights.shape
    M = np.zeros((C, S, S))
    s_idx = np.repeat(np.arange(S), V)
    np.add.at(M, (slice(None), s_idx, fm.transitions.ravel()), weights.reshape(C, S * V))
    return M


def markov_metrics(fm: FeatureMap, expert: np.ndarray, policy: np.ndarray, context_probs, horizon: int) -> dict:
    """Exact ``hellinger2`` and ``kl`` between two laws that are Markov in the class state.

    ``expert`` and ``policy`` are ``(C, S, V)`` next-token tables over ``fm``'s states.
    Cost ``O(H C S^2)``; exact for any horizon.
    """
    context_probs = np.asarray(context_probs, dtype=np.float64)
    C, S, V = expert.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        aff_w = np.sqrt(expert * policy)
        kl_tok = np.where(expert > 0, expert * (np.log(expert) - np.log(policy)), 0.0).sum(axis=-1)
    A = _step_matrix(fm, aff_w)
    P = _step_matrix(fm, expert)
    v = np.zeros((C, S))
    v[:, fm.initial_state] = 1.0
    rho = v.copy()
    kl = np.zeros(C)
    for _ in range(horizon):
        with np.errstate(invalid="ignore"):
            kl += np.where(rho > 0, rho * kl_tok, 0.0).sum(axis=1)
        v = np.einsum("cs,cst->ct", v, A)
        rho = np.einsum("cs,cst->ct", rho, P)
    affinity = float(context_probs @ v.sum(axis=1))
    kl_total = float(context_probs @ kl)
    return {"hellinger2": 2.0 - 2.0 * affinity, "kl": kl_total if math.isfinite(kl_total) else math.inf}


def markov_state_reward(fm: FeatureMap, law: np.ndarray, token_reward: np.ndarray, context_probs, horizon: int):
    """``E[(1/H) sum_h token_reward[c, s_h, a_h]]`` under a Markov ``law`` ``(C, S, V)``."""
    C, S, V = law.shape
    P = _step_matrix(fm, law)
    per_state = (law * token_reward).sum(axis=-1)
    rho = np.zeros((C, S))
    rho[:, fm.initial_state] = 1.0
    total = np.zeros(C)
    for _ in range(horizon):
        total += (rho * per_state).sum(axis=1)
        rho = np.einsum("cs,cst->ct", rho, P)
    return float(np.asarray(context_probs) @ total) / horizon


# --------------------------------------------------------------------------------------------
# exact: enumeration of every sequence
# --------------------------------------------------------------------------------------------


def all_sequences(vocab_size: int, horizon: int) -> np.ndarray:
    """Every sequence in lexicographic order, ``(V^H, H)``."""
    if horizon * math.log(vocab_size) > 64 * math.log(2):
        raise ValueError(f"vocab_size^horizon = {vocab_size}^{horizon} sequences are too many to enumerate")
    check_memory(f"all_sequences: vocab_size={vocab_size}, horizon={horizon}", 8 * vocab_size**horizon * (horizon + 2),
                 f"every one of the {vocab_size}^{horizon} sequences")
    idx = np.arange(vocab_size**horizon, dtype=np.int64)
    powers = vocab_size ** np.arange(horizon - 1, -1, -1, dtype=np.int64)
    return (idx[:, None] // powers) % vocab_size


def can_enumerate(task: Task, limit: int = ENUMERATE_LIMIT) -> bool:
    ctx = task.enumerate_contexts()
    if ctx is None:
        return False
    if task.horizon * math.log(task.vocab_size) > math.log(limit) + 1e-9:
        return False
    return len(ctx[0]) * task.vocab_size**task.horizon <= limit


def enumerate_metrics(task: Task, policy, chunk: int = 1 << 16) -> dict:
    """All four metrics exactly, by summing over every (context, sequence)."""
    contexts, cprobs = task.enumerate_contexts()
    seqs = all_sequences(task.vocab_size, task.horizon)
    aff = tv = kl = j_star = j_pol = 0.0
    for c, pc in zip(contexts, cprobs):
        for start in range(0, len(seqs), chunk):
            s = seqs[start : start + chunk]
            ctx = np.repeat(c[None, :], len(s), axis=0)
            lp = task.expert_log_prob(ctx, s)
            lq = np.asarray(policy.sequence_log_prob(ctx, s), dtype=np.float64)
            p, q = np.exp(lp), np.exp(lq)
            r = task.reward(ctx, s)
            aff += pc * np.sqrt(p * q).sum()
            tv += pc * 0.5 * np.abs(p - q).sum()
            with np.errstate(invalid="ignore"):
                kl_terms = np.where(p > 0, p * (lp - lq), 0.0)
            kl += pc * kl_terms.sum()
            j_star += pc * (p * r).sum()
            j_pol += pc * (q * r).sum()
    return {
        "hellinger2": 2.0 - 2.0 * aff,
        "tv": tv,
        "kl": kl if math.isfinite(kl) else math.inf,
        "regret": j_star - j_pol,
    }


# --------------------------------------------------------------------------------------------
# Monte Carlo
# --------------------------------------------------------------------------------------------


def _mean_ci(x: np.ndarray):
    x = np.asarray(x, dtype=np.float64)
    m = float(x.mean())
    half = Z95 * float(x.std(ddof=1)) / math.sqrt(len(x)) if len(x) > 1 else math.inf
    return m, (m - half, m + half)


def monte_carlo_metrics(task: Task, policy, n_samples: int, rng, which=METRICS) -> dict[str, Estimate]:
    """Monte-Carlo estimates with 95% normal confidence intervals from ``n_samples`` expert samples."""
    n_samples = check_int("n_samples", n_samples, 2)
    rng = as_rng(rng)
    ctx, seq = task.sample_expert(n_samples, rng)
    lp = task.expert_log_prob(ctx, seq)
    lq = np.asarray(policy.sequence_log_prob(ctx, seq), dtype=np.float64)
    log_ratio = lq - lp
    ratio = np.exp(np.minimum(log_ratio, 700.0))
    out: dict[str, Estimate] = {}
    method = f"monte-carlo (n={n_samples})"
    if "hellinger2" in which:
        m, (lo, hi) = _mean_ci(np.sqrt(ratio))
        out["hellinger2"] = Estimate(2.0 - 2.0 * m, False, method, (2.0 - 2.0 * hi, 2.0 - 2.0 * lo), n_samples)
    if "tv" in which:
        m, ci = _mean_ci(np.maximum(1.0 - ratio, 0.0))
        out["tv"] = Estimate(m, False, method, ci, n_samples)
    if "kl" in which:
        if np.any(np.isneginf(log_ratio)):
            out["kl"] = Estimate(math.inf, False, method + ": policy gives 0 to an expert sample", None, n_samples)
        else:
            m, ci = _mean_ci(-log_ratio)
            out["kl"] = Estimate(m, False, method, ci, n_samples)
    if "regret" in which:
        sampler = getattr(policy, "sample", None)
        if sampler is None:
            out["regret"] = Estimate(None, False, "unavailable: the policy has no sample()")
        else:
            r_star = task.reward(ctx, seq)
            pctx = task.sample_contexts(n_samples, rng)
            r_pol = task.reward(pctx, sampler(pctx, rng))
            d = r_star - r_pol  # independent samples: the variance adds up
            m = float(d.mean())
            half = Z95 * math.sqrt(r_star.var(ddof=1) / n_samples + r_pol.var(ddof=1) / n_samples)
            out["regret"] = Estimate(m, False, method, (m - half, m + half), n_samples)
    return out


# --------------------------------------------------------------------------------------------
# the front door
# --------------------------------------------------------------------------------------------


def policy_state_table(task: Task, policy) -> np.ndarray | None:
    """The policy's ``(C, S, V)`` table if its law depends only on ``task``'s class states."""
    table = getattr(policy, "state_probs", None)
    fm = getattr(policy, "feature_map", None)
    if table is None or fm is None or task.feature_map() is not fm:
        return None
    return np.asarray(table() if callable(table) else table, dtype=np.float64)


def sequence_metrics(
    task: Task,
    policy,
    *,
    n_samples: int = 20_000,
    rng=None,
    enumerate_limit: int = ENUMERATE_LIMIT,
    exact_only: bool = False,
) -> dict[str, Estimate]:
    """``hellinger2``, ``tv``, ``kl`` and ``regret`` of ``policy`` against ``task``'s expert.

    Exact wherever the task allows; Monte Carlo (``n_samples`` expert samples, seeded by ``rng``)
    for what is left, unless ``exact_only`` (then what is left raises ``ValueError``).
    """
    out: dict[str, Estimate] = {}
    table = policy_state_table(task, policy)
    if table is not None:
        exact = task.exact_metrics(table)
        if exact is None and hasattr(task, "expert_state_probs"):
            fm = task.feature_map()
            _, cprobs = task.enumerate_contexts()
            exact = markov_metrics(fm, task.expert_state_probs(), table, cprobs, task.horizon)
        for k, v in (exact or {}).items():
            out[k] = Estimate(v, True, "closed-form")
    missing = [m for m in METRICS if m not in out]
    if missing and can_enumerate(task, enumerate_limit):
        ex = enumerate_metrics(task, policy)
        for k in missing:
            out[k] = Estimate(ex[k], True, "enumeration")
        missing = []
    if missing:
        if exact_only:
            raise ValueError(f"no exact path for {missing} on {task!r}: enumeration needs contexts x V^H <= {enumerate_limit}")
        out.update(monte_carlo_metrics(task, policy, n_samples, rng, which=missing))
    for m in METRICS:
        v = out[m].value
        if v is not None and math.isnan(v):
            raise FloatingPointError(f"{m} came out NaN for {task!r}; this is a bug, please report it")
    return {m: out[m] for m in METRICS}
