"""Mixture teacher: a two-component i.i.d. mixture imitated by a single i.i.d. learner."""

from __future__ import annotations

import math

import numpy as np

from ..core import FeatureMap, Task, as_rng, check_float, check_int, check_memory
from ..mathutil import log_abs_diff_exp, log_binom, logsumexp
from .two_branch import _maximise_1d, _single_context


class MixtureTeacher(Task):
    """Mixture teacher: ``P* = (1-w) Bern(p)^{⊗H} + w Bern(q)^{⊗H}``.

    ## Description
    One context. The teacher first picks a component (``q`` with probability ``w``) and then emits
    ``H`` i.i.d. binary tokens from it. The learner class is ``{Bern(mu)^{⊗H}}``.

    ## Action Space
    ``Discrete(2)``.

    ## Observation Space
    ``MultiDiscrete([3] * H)``: the tokens so far, padded with ``2``.
    The dtype is ``int16`` at the defaults (:func:`ar_envs.env.token_dtype`: wider for big vocabularies).

    ## Rewards
    ``1`` at the last step if the fraction of ones ``k/H`` is within ``|q - p| / 4`` of ``p`` or
    of ``q`` (the sequence "sounds like" one of the teachers), else ``0``. A learner that blends
    the teachers into one rate sounds like neither.

    ## Expert
    The Bayes predictive: after ``k`` ones in ``t`` tokens the posterior weight of component ``q``
    is ``w q^k (1-q)^(t-k) / Z`` and the next token is ``1`` with probability
    ``(1 - w_t) p + w_t q``. Defined after every prefix (all have positive probability).

    ## Misspecification
    No i.i.d. law equals a mixture (unless ``w`` is 0). Log loss fits the average rate
    ``(1-w) p + w q``, which misfits the common component on every token, so its error grows with
    ``H``; the best in class in squared Hellinger stays near the common component.

    ## Exact metrics
    Everything depends on the number of ones ``k``: sums over ``k = 0..H`` (closed form, O(H)).

    ## Arguments
    * ``horizon`` (H >= 1), ``p`` in [0, 1), ``q`` in (p, 1], ``w`` in [0, 1].

    ## Version History
    * v0: initial release.
    """

    name = "mixture"
    env_id = "MixtureTeacher-v0"
    vocab_size = 2
    context_length = 0
    context_vocab_size = 1

    def __init__(self, horizon: int = 50, p: float = 0.1, q: float = 0.9, w: float = 0.05):
        self.horizon = check_int("horizon", horizon, 1)
        self.p = check_float("p", p, 0.0, 1.0, high_open=True)
        self.q = check_float("q", q, 0.0, 1.0)
        if not self.q > self.p:
            raise ValueError(f"q must be in (p, 1] = ({self.p}, 1], got {q!r}")
        self.w = check_float("w", w, 0.0, 1.0)
        self._fm = None
        self.check_episode_size(f"horizon={self.horizon}")
        check_memory(f"MixtureTeacher: horizon={self.horizon}", 80 * (self.horizon + 1),
                     "the exact metrics' arrays over the H + 1 counts of ones")

    def task_args(self) -> dict:
        return {"horizon": self.horizon, "p": self.p, "q": self.q, "w": self.w}

    # ------------------------------------------------------------------ expert
    def _log_components(self, k, t):
        with np.errstate(divide="ignore"):
            lp = _xlog(k, self.p) + _xlog(t - k, 1.0 - self.p)
            lq = _xlog(k, self.q) + _xlog(t - k, 1.0 - self.q)
            lw, lnw = math.log(self.w) if self.w > 0 else -np.inf, math.log1p(-self.w) if self.w < 1 else -np.inf
        return lnw + lp, lw + lq

    def expert_probs(self, contexts, prefixes):
        prefixes = np.asarray(prefixes)
        t = prefixes.shape[1]
        k = prefixes.sum(axis=1)
        a, b = self._log_components(k, t)
        with np.errstate(invalid="ignore"):
            post_q = np.exp(b - np.logaddexp(a, b))
        post_q = np.where(np.isnan(post_q), self.w, post_q)  # prefix impossible under both
        p1 = (1.0 - post_q) * self.p + post_q * self.q
        return np.stack([1.0 - p1, p1], axis=1)

    def sample_expert(self, n, rng=None):
        rng = as_rng(rng)
        n = self.check_sample_size(n)
        comp = rng.random(n) < self.w
        rate = np.where(comp, self.q, self.p)
        seq = (rng.random((n, self.horizon)) < rate[:, None]).astype(np.int64)
        return np.zeros((n, 0), dtype=np.int64), seq

    def expert_log_prob(self, contexts, sequences):
        seq = np.asarray(sequences)
        a, b = self._log_components(seq.sum(axis=1), seq.shape[1])
        return np.logaddexp(a, b)

    def _reward_of_count(self, k):
        frac = np.asarray(k) / self.horizon
        delta = (self.q - self.p) / 4.0
        return ((np.abs(frac - self.p) <= delta + 1e-12) | (np.abs(frac - self.q) <= delta + 1e-12)).astype(float)

    def reward(self, contexts, sequences):
        return self._reward_of_count(np.asarray(sequences).sum(axis=1))

    # ------------------------------------------------------------------ learner class
    def feature_map(self) -> FeatureMap:
        if self._fm is None:
            feats = np.zeros((1, 1, 2, 1))
            feats[0, 0, 1, 0] = 1.0
            self._fm = FeatureMap(
                features=feats,
                offset=np.zeros((1, 1, 2)),
                transitions=np.zeros((1, 2), dtype=np.int64),
                initial_state=0,
                context_index=_single_context,
                param_names=["logit_mu"],
                grid_ranges=[(-8.0, 8.0)],
                description="i.i.d. Bern(mu) tokens, theta = logit(mu)",
            )
        return self._fm

    def exact_metrics(self, state_probs):
        return mixture_metrics(self, float(state_probs[0, 0, 1]))

    def best_in_class(self):
        def log_aff(x):
            mu = 1.0 / (1.0 + math.exp(-x))
            return _log_affinity(self, mu)

        x, la = _maximise_1d(log_aff, -30.0, 30.0)
        return {"hellinger2": -2.0 * math.expm1(la), "method": "closed-form", "theta": np.array([x])}


def _xlog(k, p):
    k = np.asarray(k, dtype=np.float64)
    if p == 0:
        return np.where(k == 0, 0.0, -np.inf)
    return k * math.log(p)


def _log_laws(task: MixtureTeacher, mu: float):
    H = task.horizon
    k = np.arange(H + 1)
    a, b = task._log_components(k, H)
    lstar = np.logaddexp(a, b)
    with np.errstate(divide="ignore"):
        lq = _xlog(k, mu) + _xlog(H - k, 1.0 - mu)
    return k, log_binom(H, k), lstar, lq


def _log_affinity(task, mu):
    _, lb, ls, lq = _log_laws(task, mu)
    return float(logsumexp(lb + 0.5 * (ls + lq)))


def mixture_metrics(task: MixtureTeacher, mu: float) -> dict:
    """Exact metrics between the mixture teacher and ``Bern(mu)^{⊗H}`` (sums over the count)."""
    k, lb, ls, lq = _log_laws(task, mu)
    hellinger2 = -2.0 * math.expm1(float(logsumexp(lb + 0.5 * (ls + lq))))
    tv = 0.5 * float(np.exp(logsumexp(lb + log_abs_diff_exp(ls, lq))))
    pos = np.isfinite(ls)
    if np.any(pos & ~np.isfinite(lq)):
        kl = math.inf
    else:
        kl = float(np.sum(np.exp(lb[pos] + ls[pos]) * (ls[pos] - lq[pos])))
    r = task._reward_of_count(k)
    regret = float(np.sum((np.exp(lb + ls) - np.exp(lb + lq)) * r))
    return {"hellinger2": hellinger2, "tv": tv, "kl": kl, "regret": regret}
