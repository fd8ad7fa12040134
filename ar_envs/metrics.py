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

A policy's outputs are validated before they are scored, so an unnormalised or broken policy
gets a ``ValueError`` naming its class and what is wrong instead of a meaningless number:
log-probabilities must be real, of shape ``(n,)``, ``-inf`` or finite and ``<= LOG_PROB_TOL``;
on the enumeration path each context's probabilities over all ``V^H`` sequences must sum to 1
within ``NORMALISATION_TOL``; a state table must be finite, non-negative, with rows summing to
1; sampled sequences must be ``(n, H)`` tokens in ``[0, V-1]``. (The Monte-Carlo path sees only
expert samples, so it checks each value, not the normalisation.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .core import FeatureMap, Task, as_rng, check_int, check_memory

METRICS = ("hellinger2", "tv", "kl", "regret")
ENUMERATE_LIMIT = 2**20
Z95 = 1.959963984540054
LOG_PROB_TOL = 1e-6  # how far above 0 a log-probability may round
NORMALISATION_TOL = 1e-6  # how far from 1 a law's total probability may round
MC_FALSE_ALARM = 1e-6  # the most often a probability law fails the Monte-Carlo normalisation check


# --------------------------------------------------------------------------------------------
# what a policy returns, checked before it is scored
# --------------------------------------------------------------------------------------------


def policy_log_probs(policy, contexts, sequences) -> np.ndarray:
    """``policy.sequence_log_prob(contexts, sequences)`` as float64 ``(n,)``, checked: real
    numbers, each ``-inf`` or finite and ``<= LOG_PROB_TOL`` (a probability is at most 1).
    Anything else raises ``ValueError`` naming the policy's class and the offending value."""
    who = f"{type(policy).__name__}.sequence_log_prob"
    raw = np.asarray(policy.sequence_log_prob(contexts, sequences))
    n = len(sequences)
    if raw.dtype.kind == "c":
        raise ValueError(f"{who} returned complex numbers; log-probabilities must be real")
    try:
        lq = raw.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{who} returned {raw.dtype} values; log-probabilities must be real numbers") from None
    if lq.shape != (n,):
        raise ValueError(f"{who} returned shape {lq.shape} for {n} sequences; it must return one log-probability each, ({n},)")
    bad = np.isnan(lq) | (lq > LOG_PROB_TOL)
    if bad.any():
        i = int(np.argmax(bad))
        seq = np.asarray(sequences)[i].tolist()
        shown = str(seq) if len(seq) <= 20 else f"{str(seq[:20])[:-1]}, ...]"
        raise ValueError(
            f"{who} returned {float(lq[i])!r} for sequence {shown}: log-probabilities must be "
            f"<= 0 (within {LOG_PROB_TOL}) or -inf, never NaN or +inf"
        )
    return lq


def check_normalised(policy, total: float, where: str) -> None:
    """``ValueError`` unless ``total`` (a law's probability summed over all sequences) is 1
    within ``NORMALISATION_TOL``."""
    if not abs(total - 1.0) <= NORMALISATION_TOL:
        raise ValueError(
            f"{type(policy).__name__}.sequence_log_prob is not a probability law: its probabilities sum to "
            f"{total:.10g} over {where} (must be 1 within {NORMALISATION_TOL})"
        )


def check_state_table(policy, table: np.ndarray, shape: tuple) -> np.ndarray:
    """A policy's ``(C, S, V)`` next-token table, checked: the class's shape, finite,
    non-negative, every row summing to 1 within ``NORMALISATION_TOL``."""
    who = f"{type(policy).__name__}.state_probs"
    if table.shape != tuple(shape):
        raise ValueError(f"{who} has shape {table.shape}; the class's states need {tuple(shape)}")
    if not np.all(np.isfinite(table)) or np.any(table < 0):
        raise ValueError(f"{who} holds negative or non-finite probabilities")
    sums = table.sum(axis=-1)
    worst = np.unravel_index(int(np.argmax(np.abs(sums - 1.0))), sums.shape)
    if not abs(sums[worst] - 1.0) <= NORMALISATION_TOL:
        raise ValueError(f"{who} is not normalised: row (context, state) {tuple(int(i) for i in worst)} sums to "
                         f"{sums[worst]:.10g} (must be 1 within {NORMALISATION_TOL})")
    return table


def check_affinity_sample(policy, root_ratio: np.ndarray, false_alarm: float = MC_FALSE_ALARM) -> None:
    """``ValueError`` when expert samples prove, beyond chance, that the policy's law sums to more than 1.

    ``root_ratio`` holds ``sqrt(P(a|x) / P*(a|x))`` at ``n`` expert samples. For a probability
    law ``P``, ``Y = sqrt(P / P*)`` has ``E[Y] <= 1`` and ``Var(Y) <= E[Y^2] = E[P / P*] <= 1``, so
    by Cantelli's inequality its sample mean exceeds ``1 + t`` with probability at most
    ``1 / (1 + n t^2)``. With ``t = sqrt((1 - false_alarm) / (false_alarm n))`` a policy that is a
    probability law is refused with probability at most ``false_alarm`` (default 1e-6), whatever
    the tasks and the law; a grossly unnormalised one (e.g. log-probability 0 for every
    sequence) is caught.
    """
    n = len(root_ratio)
    t = math.sqrt((1.0 - false_alarm) / (false_alarm * n))
    m = float(np.mean(root_ratio))
    if m > 1.0 + t:
        raise ValueError(
            f"{type(policy).__name__}.sequence_log_prob is not a probability law: over {n} expert samples the mean of "
            f"sqrt(P/P*) is {m:.4g} > {1.0 + t:.4g}, which a law summing to 1 exceeds with probability <= {false_alarm:g}"
        )


def policy_samples(task: Task, policy, contexts, rng) -> np.ndarray:
    """``policy.sample(contexts, rng)`` checked to be ``(n, H)`` tokens of the task."""
    try:
        return task.check_tokens("sequences", policy.sample(contexts, rng), n=len(contexts), exact_len=task.horizon)
    except ValueError as exc:
        raise ValueError(f"{type(policy).__name__}.sample returned bad {exc}") from None


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
    """All four metrics exactly, by summing over every (context, sequence). The policy's
    probabilities of each context must sum to 1 (:func:`check_normalised`)."""
    contexts, cprobs = task.enumerate_contexts()
    seqs = all_sequences(task.vocab_size, task.horizon)
    aff = tv = kl = j_star = j_pol = 0.0
    for i, (c, pc) in enumerate(zip(contexts, cprobs)):
        mass = 0.0
        for start in range(0, len(seqs), chunk):
            s = seqs[start : start + chunk]
            ctx = np.repeat(c[None, :], len(s), axis=0)
            lp = task.expert_log_prob(ctx, s)
            lq = policy_log_probs(policy, ctx, s)
            p, q = np.exp(lp), np.exp(lq)
            mass += q.sum()
            r = task.reward(ctx, s)
            aff += pc * np.sqrt(p * q).sum()
            tv += pc * 0.5 * np.abs(p - q).sum()
            with np.errstate(invalid="ignore"):
                kl_terms = np.where(p > 0, p * (lp - lq), 0.0)
            kl += pc * kl_terms.sum()
            j_star += pc * (p * r).sum()
            j_pol += pc * (q * r).sum()
        check_normalised(policy, mass, f"the {task.vocab_size}^{task.horizon} sequences of context #{i}")
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
    lq = policy_log_probs(policy, ctx, seq)
    log_ratio = lq - lp
    ratio = np.exp(np.minimum(log_ratio, 700.0))
    check_affinity_sample(policy, np.sqrt(ratio))
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
            r_pol = task.reward(pctx, policy_samples(task, policy, pctx, rng))
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
    return check_state_table(policy, np.asarray(table() if callable(table) else table, dtype=np.float64), fm.shape)


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
    A policy whose outputs are not a probability law (see the module docstring) raises
    ``ValueError`` naming its class and what is wrong.
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
