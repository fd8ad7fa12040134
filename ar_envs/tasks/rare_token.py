"""Rare token: the instance on which log loss fails already at H = 1 and robust variants do not."""

from __future__ import annotations

import math

import numpy as np

from ..core import FeatureMap, Task, as_rng, check_float, check_int
from ..mathutil import log_abs_diff_exp, log_binom, logsumexp
from .two_branch import _maximise_1d, _single_context


class RareToken(Task):
    """Rare token (Rohatgi et al. 2025: log loss has unbounded C already at H = 1; smoothing repairs it).

    ## Description
    One context; ``H`` i.i.d. tokens from ``{0, 1, 2}``: the bulk token ``0`` with probability
    ``1 - delta``, the rare token ``1`` with probability ``delta``, never the wrong token ``2``.

    ## Action Space
    ``Discrete(3)``.

    ## Observation Space
    ``MultiDiscrete([4] * H)``: the tokens so far, padded with ``3``.
    The dtype is ``int16`` at the defaults (:func:`ar_envs.env.token_dtype`).

    ## Rewards
    ``1`` at the last step if the sequence never contains the wrong token ``2``, else ``0``;
    the regret of a policy is ``1 - (1 - pi(2))^H``.

    ## Expert
    ``(1 - delta, delta, 0)`` after every prefix (the same at every step).

    ## Misspecification (the learner class)
    One parameter ``t``, the same law at every step: logits ``(0, slope * t, t)``. The rare token
    can only be covered together with the wrong one: ``pi(1) / pi(2) = exp((slope - 1) t)``, so
    giving token 1 probability about ``delta`` needs ``t`` near ``0``, where the wrong token takes
    about half the mass. With ``slope = 1 / delta`` (the default):

    * The class minimum of ``D_H^2`` is reached as ``t -> -inf`` (give up the rare token):
      ``D_H^2 = 2 - 2 (1 - delta)^(H/2)``, about ``H delta`` (computed by maximising the per-step
      affinity, which also checks that no interior ``t`` does better).
    * Log loss (BC) cannot give up a token it has seen (``log 0 = -inf``): in the population its
      optimum solves ``delta slope = (slope e^(slope t) + e^t) / (1 + e^(slope t) + e^t)``, i.e.
      ``t* = -log(slope - 1) / slope`` for ``slope = 1 / delta``, where ``pi(2) -> 1/2`` as
      ``delta -> 0``. At ``H = 1`` its ``D_H^2`` tends to ``(1 - 1/sqrt 2)^2 + 1/2 = 0.586``, so
      ``C(1) ~ 0.586 / delta``: **unbounded as delta -> 0**. (It is ``56.5`` at ``delta = 0.01``.)
    * Smoothed log loss (mixing the policy with the uniform law, weight ``gamma = 1/(nH)``) caps
      the cost of an unexplained rare token at ``log(3 / gamma)``, so it gives the rare token up
      whenever ``delta log(3 n H) < log 2`` roughly: ``C`` stays ``O(1)`` here (Rohatgi et al.:
      ``O~(H)`` in general). The sequence-level rho-estimator compares likelihood ratios through
      ``tanh`` and also gives it up.

    ## Exact metrics
    Closed forms for every member of the class (and every i.i.d. policy): ``D_H^2 = 2 - 2
    rho^H`` with ``rho`` the per-step affinity, ``KL = H KL_1``, TV as a sum over the number of
    rare tokens (``O(H)``), and the regret above.

    ## Arguments
    * ``horizon`` (H >= 1, default 1), ``delta`` in (0, 1/2] (default 0.01), ``slope`` (> 1,
      default ``1 / delta``).

    ## Version History
    * v0: initial release.
    """

    name = "rare-token"
    env_id = "RareToken-v0"
    vocab_size = 3
    context_length = 0
    context_vocab_size = 1

    def __init__(self, horizon: int = 1, delta: float = 0.01, slope: float | None = None):
        self.horizon = check_int("horizon", horizon, 1)
        self.delta = check_float("delta", delta, 0.0, 0.5, low_open=True)
        if slope is None:
            if self.delta < 1e-6:
                raise ValueError(f"delta={self.delta!r} gives the default slope 1/delta above 1e6: give delta >= 1e-6, "
                                 "or slope explicitly")
            slope = 1.0 / self.delta
        self.slope = check_float("slope", slope, 1.0, 1e6, low_open=True)
        self._probs = np.array([1.0 - self.delta, self.delta, 0.0])
        self._fm = None
        self.check_episode_size(f"horizon={self.horizon}")

    def task_args(self) -> dict:
        return {"horizon": self.horizon, "delta": self.delta, "slope": self.slope}

    def token_names(self):
        return ["bulk", "rare", "wrong"]

    # ------------------------------------------------------------------ expert
    def expert_probs(self, contexts, prefixes):
        return np.tile(self._probs, (len(np.asarray(prefixes)), 1))

    def sample_expert(self, n, rng=None):
        rng = as_rng(rng)
        n = self.check_sample_size(n)
        seq = (rng.random((n, self.horizon)) < self.delta).astype(np.int64)
        return np.zeros((n, 0), dtype=np.int64), seq

    def expert_log_prob(self, contexts, sequences):
        seq = np.asarray(sequences)
        k1 = (seq == 1).sum(axis=1)
        out = k1 * math.log(self.delta) + (seq.shape[1] - k1) * math.log1p(-self.delta)
        return np.where((seq == 2).any(axis=1), -np.inf, out)

    def reward(self, contexts, sequences):
        return (~(np.asarray(sequences) == 2).any(axis=1)).astype(np.float64)

    # ------------------------------------------------------------------ learner class
    def feature_map(self) -> FeatureMap:
        if self._fm is None:
            feats = np.zeros((1, 1, 3, 1))
            feats[0, 0, 1, 0] = self.slope
            feats[0, 0, 2, 0] = 1.0
            self._fm = FeatureMap(
                features=feats,
                offset=np.zeros((1, 1, 3)),
                transitions=np.zeros((1, 3), dtype=np.int64),
                initial_state=0,
                context_index=_single_context,
                param_names=["t"],
                grid_ranges=[(-10.0, 1.0)],
                description="logits (0, slope t, t) at every step",
            )
        return self._fm

    def expert_state_probs(self) -> np.ndarray:
        return self._probs[None, None, :]

    def member_probs(self, t: float) -> np.ndarray:
        """The class member's per-step law ``(pi(0), pi(1), pi(2))`` at parameter ``t``."""
        z = np.array([0.0, self.slope * t, t])
        z -= z.max()
        p = np.exp(z)
        return p / p.sum()

    def exact_metrics(self, state_probs):
        return iid_metrics(self._probs, np.asarray(state_probs, dtype=np.float64)[0, 0], self.horizon)

    def best_in_class(self):
        p = self._probs

        def log_affinity(t):
            return math.log(float(np.sqrt(p * self.member_probs(t)).sum()))

        t, la = _maximise_1d(log_affinity, -60.0, 5.0)
        limit = 0.5 * math.log1p(-self.delta)  # t -> -inf: the rare token given up
        if limit >= la:
            t, la = -60.0, limit
        hell = -2.0 * math.expm1(self.horizon * la)
        return {"hellinger2": hell, "method": "closed-form", "theta": np.array([t])}

    def population_bc(self) -> float:
        """``t*`` of log loss in the population (the root of its derivative, by bisection)."""
        d, K = self.delta, self.slope

        def grad(t):  # d/dt E[log pi_t] = delta K - (K e^{Kt} + e^t) / Z
            q = self.member_probs(t)
            return d * K - (K * q[1] + q[2])

        lo, hi = -60.0, 60.0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if grad(mid) > 0 else (lo, mid)
        return 0.5 * (lo + hi)


def iid_metrics(p: np.ndarray, q: np.ndarray, horizon: int) -> dict:
    """Exact metrics between two i.i.d. laws ``p^H`` and ``q^H`` over ``{0, 1, 2}`` where ``p``
    gives token 2 no mass (``p = (1 - delta, delta, 0)``); the reward is "no token 2"."""
    H = horizon
    with np.errstate(divide="ignore"):
        lq = np.log(q)
        lp = np.log(p)
    rho = float(np.sqrt(p * q).sum())
    hellinger2 = -2.0 * math.expm1(H * math.log(rho)) if rho > 0 else 2.0
    with np.errstate(invalid="ignore"):
        kl1 = float(np.where(p > 0, p * (lp - lq), 0.0).sum())
    kl = H * kl1 if math.isfinite(kl1) else math.inf
    # TV: sequences with a token 2 carry only policy mass; the rest by the number k of rare tokens
    no_wrong = math.exp(H * math.log1p(-q[2])) if q[2] < 1 else 0.0
    k = np.arange(H + 1)
    with np.errstate(invalid="ignore"):
        log_p = k * lp[1] + (H - k) * lp[0]
        log_q = np.where(k > 0, k * lq[1], 0.0) + np.where(H - k > 0, (H - k) * lq[0], 0.0)
    tv = 0.5 * ((1.0 - no_wrong) + float(np.exp(logsumexp(log_binom(H, k) + log_abs_diff_exp(log_p, log_q)))))
    return {"hellinger2": float(hellinger2), "tv": tv, "kl": kl, "regret": 1.0 - no_wrong}
