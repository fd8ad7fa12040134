"""Two-branch: the smallest instance on which next-token prediction amplifies error."""

from __future__ import annotations

import math

import numpy as np

from ..core import MAX_LOGIT_SCALE, FeatureMap, Task, check_float, check_int, check_memory
from ..mathutil import log_abs_diff_exp, log_binom, logsumexp, sigmoid


class TwoBranch(Task):
    """Two-branch binary sequences (Rohatgi et al. 2025, error amplification of next-token prediction).

    ## Description
    One context. The first token is ``a_1 ~ Bern(eps)``. After ``a_1 = 1`` the remaining
    ``H - 1`` tokens are fair coins; after ``a_1 = 0`` they are all ``0``. The rare branch has
    mass ``eps``; the common branch must never emit a ``1``.

    ## Action Space
    ``Discrete(2)``: the next token.

    ## Observation Space
    ``MultiDiscrete([3] * H)``: the tokens generated so far, padded with ``2``.
    The dtype is ``int16`` at the defaults (:func:`ar_envs.env.token_dtype`: wider for big vocabularies).

    ## Rewards
    ``1`` at the last step if the sequence lies in the expert's support (``a_1 = 1``, or all
    tokens ``0``), else ``0``. The regret of a policy is the probability that it leaks a ``1``
    into the common branch: ``(1 - p_1) (1 - (1 - s_0)^(H-1))``.

    ## Expert
    ``P(a_1 = 1) = eps``; afterwards ``(1/2, 1/2)`` if ``a_1 = 1`` and ``(1, 0)`` if ``a_1 = 0``.
    Every prefix is on the expert's support, so there is no off-track choice to make.

    ## Misspecification (the learner class)
    The first step is free (parameter ``first_logit``). For ``h >= 2`` the logit of token 1 is
    ``t`` after ``a_1 = 0`` and ``t + c`` after ``a_1 = 1``, with the *fixed* offset ``c``
    (``offset``) and one shared parameter ``t``. No member fits both branches: a fair coin on
    the rare branch forces ``s_0 = sigmoid(t) = sigmoid(-c) > 0`` leaks on the common branch.
    Per-token objectives (log loss) pick an ``H``-independent ``t`` whose sequence-level error
    grows linearly in ``H``; the best member in squared Hellinger stays near ``2 eps``.

    ## Exact metrics
    Closed forms for every policy of the class (and, by dynamic programming, for any policy
    whose next-token law depends only on the class's state): squared Hellinger, TV, KL(P*||P),
    regret, and the best in class (one-dimensional after maximising over ``first_logit``).

    ## Arguments
    * ``horizon`` (H >= 1), ``eps`` in (0, 1), ``offset`` (c > 0, default ``log(1/(0.3 eps))``).

    ## Version History
    * v0: initial release.
    """

    name = "two-branch"
    env_id = "TwoBranch-v0"
    vocab_size = 2
    context_length = 0
    context_vocab_size = 1

    def __init__(self, horizon: int = 50, eps: float = 0.01, offset: float | None = None):
        self.horizon = check_int("horizon", horizon, 1)
        self.eps = check_float("eps", eps, 0.0, 1.0, low_open=True, high_open=True)
        if offset is None:  # log(1 / (0.3 eps)), finite for every eps > 0 (even the smallest float)
            offset = -math.log(0.3) - math.log(self.eps)
        self.offset = check_float("offset", offset, 0.0, low_open=True)
        self._fm = None
        self.check_episode_size(f"horizon={self.horizon}")
        check_memory(f"{type(self).__name__}: horizon={self.horizon}", 80 * (self.horizon + 1),
                     "the exact metrics' arrays over the H + 1 counts of ones")

    def task_args(self) -> dict:
        return {"horizon": self.horizon, "eps": self.eps, "offset": self.offset}

    # ------------------------------------------------------------------ expert
    def expert_probs(self, contexts, prefixes):
        prefixes = np.asarray(prefixes)
        n, t = prefixes.shape
        out = np.empty((n, 2))
        if t == 0:
            out[:] = (1.0 - self.eps, self.eps)
            return out
        one = prefixes[:, 0] == 1
        out[one] = 0.5
        out[~one] = (1.0, 0.0)
        return out

    def sample_expert(self, n, rng=None):
        from ..core import as_rng

        rng = as_rng(rng)
        n = self.check_sample_size(n)
        first = (rng.random(n) < self.eps).astype(np.int64)
        rest = rng.integers(0, 2, size=(n, self.horizon - 1)) * first[:, None]
        return np.zeros((n, 0), dtype=np.int64), np.concatenate([first[:, None], rest], axis=1)

    def expert_log_prob(self, contexts, sequences):
        seq = np.asarray(sequences)
        one = seq[:, 0] == 1
        out = np.where(one, math.log(self.eps) - (self.horizon - 1) * math.log(2.0), math.log1p(-self.eps))
        leak = (~one) & (seq[:, 1:].sum(axis=1) > 0)
        out[leak] = -np.inf
        return out

    def reward(self, contexts, sequences):
        seq = np.asarray(sequences)
        return ((seq[:, 0] == 1) | (seq.sum(axis=1) == 0)).astype(np.float64)

    # ------------------------------------------------------------------ learner class
    def feature_map(self) -> FeatureMap:
        if self._fm is None:
            feats = np.zeros((1, 3, 2, 2))
            feats[0, 0, 1] = (1.0, 0.0)  # first step: free logit
            feats[0, 1, 1] = (0.0, 1.0)  # after a_1 = 0: t
            feats[0, 2, 1] = (0.0, 1.0)  # after a_1 = 1: t + c
            offset = np.zeros((1, 3, 2))
            offset[0, 2, 1] = self.offset
            self._fm = FeatureMap(
                features=feats,
                offset=offset,
                transitions=np.array([[1, 2], [1, 1], [2, 2]]),
                initial_state=0,
                context_index=_single_context,
                param_names=["first_logit", "t"],
                grid_ranges=[(-10.0, 2.0), (-20.0, 4.0)],
                description="first step free; logit of token 1 is t after a_1=0 and t+c after a_1=1",
            )
        return self._fm

    def expert_state_probs(self) -> np.ndarray:
        return np.array([[[1.0 - self.eps, self.eps], [1.0, 0.0], [0.5, 0.5]]])

    def exact_metrics(self, state_probs):
        p1, s0, s1 = state_probs[0, 0, 1], state_probs[0, 1, 1], state_probs[0, 2, 1]
        return two_branch_metrics(self.eps, self.horizon, p1, s0, s1)

    def best_in_class(self):
        m = self.horizon - 1
        c = self.offset

        def log_f(t):
            return _two_branch_log_best_affinity2(self.eps, m, sigmoid(t), sigmoid(t + c))

        t, lf = _maximise_1d(log_f, -60.0, 30.0)
        s0, s1 = sigmoid(t), sigmoid(t + c)
        p1 = _best_first_prob(self.eps, m, s0, s1)
        hell = -2.0 * math.expm1(0.5 * lf)
        theta = np.array([_logit(p1), t])
        return {"hellinger2": hell, "method": "closed-form", "theta": theta}


_SCALE_REASON = "the class's logits, up to norm_bound * sqrt(1 + kappa^2), must stay far from float overflow"


class TwoBranchLinear(TwoBranch):
    """Two-branch with the norm-bounded two-parameter linear class.

    ## Description
    The same sequences and expert as ``TwoBranch-v0`` (see there).

    ## Misspecification (the learner class)
    The first step is free (``first_logit``, not under the bound). For ``h >= 2`` the logit of
    token 1 is ``<theta, (1, 0)>`` after ``a_1 = 0`` and ``<theta, (1, kappa)>`` after ``a_1 = 1``
    with ``theta in R^2``, ``||theta|| <= B`` (``norm_bound``). The bound keeps the common-branch
    leak ``sigmoid(theta_1) >= sigmoid(-B)`` away from zero when the rare branch is fitted.

    ## Exact metrics
    Closed forms as for ``TwoBranch``; the best in class maximises a closed form over the disc
    (polar grid, then golden-section refinement of the angle and radius).

    ## Arguments
    * ``horizon`` (H >= 1), ``eps`` in (0, 1), ``norm_bound`` (B in (0, 1e6], default 20),
      ``kappa`` (kappa in (0, 1e6], default 0.3). With the defaults a fair coin on the rare branch
      (``theta_1 + kappa theta_2 = 0``) allows at best ``|theta_1| <= B kappa / sqrt(1 + kappa^2)``,
      about 5.7, so fitting it costs a leak of about ``sigmoid(-5.7) = 0.003`` per common-branch
      step; the best member instead gives up the rare branch (``D_H^2`` about ``eps``).

    ## Version History
    * v0: initial release.
    """

    name = "two-branch-linear"
    env_id = "TwoBranchLinear-v0"

    def __init__(self, horizon: int = 50, eps: float = 0.01, norm_bound: float = 20.0, kappa: float = 0.3):
        self.horizon = check_int("horizon", horizon, 1)
        self.eps = check_float("eps", eps, 0.0, 1.0, low_open=True, high_open=True)
        self.norm_bound = check_float("norm_bound", norm_bound, 0.0, MAX_LOGIT_SCALE, low_open=True, reason=_SCALE_REASON)
        self.kappa = check_float("kappa", kappa, 0.0, MAX_LOGIT_SCALE, low_open=True, reason=_SCALE_REASON)
        self._fm = None
        self.check_episode_size(f"horizon={self.horizon}")
        check_memory(f"{type(self).__name__}: horizon={self.horizon}", 80 * (self.horizon + 1),
                     "the exact metrics' arrays over the H + 1 counts of ones")

    def task_args(self) -> dict:
        return {"horizon": self.horizon, "eps": self.eps, "norm_bound": self.norm_bound, "kappa": self.kappa}

    def feature_map(self) -> FeatureMap:
        if self._fm is None:
            feats = np.zeros((1, 3, 2, 3))
            feats[0, 0, 1] = (1.0, 0.0, 0.0)
            feats[0, 1, 1] = (0.0, 1.0, 0.0)
            feats[0, 2, 1] = (0.0, 1.0, self.kappa)
            B = self.norm_bound
            self._fm = FeatureMap(
                features=feats,
                offset=np.zeros((1, 3, 2)),
                transitions=np.array([[1, 2], [1, 1], [2, 2]]),
                initial_state=0,
                context_index=_single_context,
                norm_bound=B,
                bounded_dims=[1, 2],
                param_names=["first_logit", "theta1", "theta2"],
                grid_ranges=[(-10.0, 2.0), (-B, B), (-B, B)],
                description="first step free; token-1 feature (1,0) after a_1=0, (1,kappa) after a_1=1; ||theta||<=B",
            )
        return self._fm

    def best_in_class(self):
        m, B, k = self.horizon - 1, self.norm_bound, self.kappa

        def log_f_polar(r, phi):
            u, v = r * math.cos(phi), r * math.sin(phi)
            return _two_branch_log_best_affinity2(self.eps, m, sigmoid(u), sigmoid(u + k * v))

        # the optimum of a smooth function over the disc: coarse polar grid, then coordinate-wise
        # golden-section refinement (angle, radius) around the best grid point
        best = (-np.inf, 0.0, 0.0)
        for r in np.linspace(0.0, B, 61):
            for phi in np.linspace(-math.pi, math.pi, 241):
                val = log_f_polar(r, phi)
                if val > best[0]:
                    best = (val, r, phi)
        _, r, phi = best
        for _ in range(3):
            phi, _ = _maximise_1d(lambda p: log_f_polar(r, p), phi - 0.05, phi + 0.05)
            r, _ = _maximise_1d(lambda q: log_f_polar(q, phi), max(0.0, r - B / 30), min(B, r + B / 30))
        lf = log_f_polar(r, phi)
        u, v = r * math.cos(phi), r * math.sin(phi)
        p1 = _best_first_prob(self.eps, m, sigmoid(u), sigmoid(u + k * v))
        hell = -2.0 * math.expm1(0.5 * lf)
        return {"hellinger2": hell, "method": "closed-form+grid", "theta": np.array([_logit(p1), u, v])}


# ---------------------------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------------------------


def _single_context(contexts):
    return np.zeros(len(contexts), dtype=np.int64)


def _logit(p):
    p = min(max(p, 1e-300), 1.0 - 1e-16)
    return math.log(p) - math.log1p(-p)


def _log_branch_affinity(m, s1):
    """log of sum_k C(m,k) sqrt(2^-m s1^k (1-s1)^(m-k)) = m log((sqrt s1 + sqrt(1-s1)) / sqrt 2)."""
    return m * (math.log(math.sqrt(s1) + math.sqrt(1.0 - s1)) - 0.5 * math.log(2.0))


def _two_branch_log_best_affinity2(eps, m, s0, s1):
    """log of max_{p1} (affinity)^2 = log((1-eps)(1-s0)^m + eps A^2)."""
    la = math.log1p(-eps) + (m * math.log1p(-s0) if s0 < 1 else (-np.inf if m > 0 else 0.0))
    lb = math.log(eps) + 2.0 * _log_branch_affinity(m, s1)
    return float(np.logaddexp(la, lb))


def _best_first_prob(eps, m, s0, s1):
    a = eps * math.exp(2.0 * _log_branch_affinity(m, s1))
    b = (1.0 - eps) * ((1.0 - s0) ** m)
    return a / (a + b)


def _maximise_1d(f, lo, hi, grid=2001, iters=80):
    xs = np.linspace(lo, hi, grid)
    vals = np.array([f(x) for x in xs])
    i = int(np.argmax(vals))
    a, b = xs[max(i - 1, 0)], xs[min(i + 1, grid - 1)]
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        if fc >= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    x = (a + b) / 2
    fx = f(x)
    if vals[i] > fx:
        return float(xs[i]), float(vals[i])
    return float(x), float(fx)


def two_branch_metrics(eps: float, horizon: int, p1: float, s0: float, s1: float) -> dict:
    """Exact sequence metrics between the two-branch expert and the policy (p1, s0, s1).

    ``p1``: probability of a_1 = 1; ``s0`` / ``s1``: probability of token 1 at every later step
    after a_1 = 0 / a_1 = 1. Returns ``hellinger2``, ``tv``, ``kl`` (KL(P*||P), ``inf`` where the
    policy misses expert mass) and ``regret`` (probability of leaving the expert's support).
    """
    m = horizon - 1
    with np.errstate(divide="ignore"):
        lp1, lq1 = np.log(p1), np.log1p(-p1)
        lq0 = np.log1p(-s0)
        ls1, lq1s = np.log(s1), np.log1p(-s1)
    le, lne = math.log(eps), math.log1p(-eps)
    # Hellinger affinity
    log_zero = lq1 + (m * lq0 if m > 0 else 0.0)  # log Q(0, 0, ..., 0)
    aff0 = math.exp(0.5 * (lne + log_zero)) if np.isfinite(log_zero) else 0.0
    aff1 = math.exp(0.5 * (le + lp1) + _log_branch_affinity(m, s1)) if np.isfinite(lp1) else 0.0
    hellinger2 = 2.0 - 2.0 * (aff0 + aff1)
    # TV: branch 0 (all-zero sequence, then the leaked mass), branch 1 summed over the count k
    q_zero = math.exp(log_zero) if np.isfinite(log_zero) else 0.0
    tv0 = abs((1.0 - eps) - q_zero) + ((1.0 - p1) - q_zero)
    k = np.arange(m + 1)
    lbin = log_binom(m, k)
    lp_star = le - m * math.log(2.0)
    with np.errstate(invalid="ignore"):
        lq = lp1 + _xlogy(k, ls1) + _xlogy(m - k, lq1s)
    tv1 = float(np.exp(logsumexp(lbin + log_abs_diff_exp(np.full(m + 1, lp_star), lq))))
    tv = 0.5 * (tv0 + tv1)
    # KL(P* || Q)
    kl = lne - log_zero
    kl = (1.0 - eps) * kl + eps * (le - m * math.log(2.0) - lp1 - 0.5 * m * (ls1 + lq1s) if m > 0 else le - lp1)
    kl = float(kl) if np.isfinite(kl) else math.inf
    regret = (1.0 - p1) * (1.0 - math.exp(m * lq0) if m > 0 else 0.0)
    return {"hellinger2": float(hellinger2), "tv": float(tv), "kl": kl, "regret": float(regret)}


def _xlogy(x, logy):
    """x * logy with 0 * -inf = 0."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x == 0, 0.0, x * logy)
