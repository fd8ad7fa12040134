"""The sequence-level rho-estimator (Baraud-Birgé-Sart) over a cover of the class refined around its leaders."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import torch

from ar_envs.core import check_float, check_int

from ar_agents.loglinear_fit import learner_class, log_table_torch, parameter_grid, per_sequence_counts
from ar_agents.policies.loglinear import LogLinearPolicy
from ar_agents.algorithms.base import Algorithm

_CHUNK = 1 << 24  # elements of one (samples x rows x columns) tanh block


def rho_duels(loglik_rows: np.ndarray, loglik_all: np.ndarray, weights: np.ndarray, block: int | None = None) -> np.ndarray:
    """``T[j, k] = sum_i w_i tanh((l_k(i) - l_j(i)) / 4)`` for the candidates ``j`` of
    ``loglik_rows`` ``(m, J)`` against those of ``loglik_all`` ``(m, K)``: how strongly ``k``
    beats ``j`` on the samples. Two candidates that both give a sample probability 0 tie on it.
    ``block``: rows per chunk (default: as many as keep a chunk near 2^24 numbers)."""
    m, J = loglik_rows.shape
    K = loglik_all.shape[1]
    out = np.empty((J, K))
    step = block or max(1, _CHUNK // max(1, m * K))
    for start in range(0, J, step):
        lj = loglik_rows[:, start : start + step]
        with np.errstate(invalid="ignore"):
            diff = (loglik_all[:, None, :] - lj[:, :, None]) / 4.0  # (m, B, K)
        out[start : start + step] = np.einsum("m,mbk->bk", weights, np.tanh(np.nan_to_num(diff, nan=0.0)))
    return out


def rho_select(loglik: np.ndarray, weights: np.ndarray | None = None, block: int | None = None) -> tuple[int, np.ndarray]:
    """The rho-estimator's choice among ``K`` candidates.

    ``loglik``: ``(m, K)`` sequence log-likelihoods of ``m`` samples under each candidate,
    ``weights``: multiplicity of each sample (``None``: all 1). With
    ``T(j, k) = sum_i w_i tanh((l_k(i) - l_j(i)) / 4)`` it returns
    ``argmin_j max_k T(j, k)`` and the vector ``max_k T(j, k)``. Only likelihood ratios enter.
    """
    w = np.ones(loglik.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    worst = rho_duels(loglik, loglik, w, block).max(axis=1)
    return int(np.argmin(worst)), worst


def fisher_scale(fm, counts: np.ndarray, theta: np.ndarray, n: int) -> np.ndarray:
    """Per-parameter standard errors of the maximum-likelihood fit: ``sqrt(diag(I^-1) / n)``
    with ``I`` the observed information (the Hessian of the mean log loss at ``theta``); ``inf``
    along directions the data do not pin down (a singular or indefinite Hessian)."""
    counts_t = torch.as_tensor(counts)

    def mean_log_loss(th):
        return -(counts_t * log_table_torch(fm, th)).sum() / n

    hess = torch.autograd.functional.hessian(mean_log_loss, torch.as_tensor(theta, dtype=torch.float64)).numpy()
    try:
        cov = np.linalg.inv(hess)
    except np.linalg.LinAlgError:
        return np.full(fm.dim, math.inf)
    var = np.diag(cov) / n
    return np.where((var > 0) & np.isfinite(var), np.sqrt(np.abs(var)), math.inf)


def _stencil(d: int) -> np.ndarray:
    """Neighbour offsets of a point: the full ``3^d - 1`` cube for ``d <= 3``, else ``+-`` each axis."""
    if d <= 3:
        return np.array([o for o in itertools.product((-1.0, 0.0, 1.0), repeat=d) if any(o)])
    eye = np.eye(d)
    return np.concatenate([eye, -eye])


class RhoEstimator(Algorithm):
    """Sequence-level rho-estimator over a cover of the class refined around its leaders (bounded C(H)).

    ``argmin_pi max_pi' sum_i tanh((log P_pi'(a^i) - log P_pi(a^i)) / 4)`` over a finite cover of the class.

    The finite class: a lattice over the class's ``grid_ranges`` (random points for more than 3
    parameters) inside the norm ball, the per-token fits (BC, smoothed BC, Hellinger BC), and
    then refinement rounds: each round halves the spacing ``delta`` and adds, around each of the
    ``leaders`` candidates with the smallest worst-case ``max_pi' T``, its neighbours at
    ``+- delta`` (the full cube for up to 3 parameters, the axes otherwise). Every new candidate
    duels every other one (candidates and challengers are the same set, as in the finite-class
    estimator). Rounds stop when the spacing is below ``resolution`` times the statistical error
    of each parameter (the standard errors of the BC fit from its observed information; a
    direction the data do not pin down needs ``min_spacing``) or at ``max_candidates``; the
    log records the candidate count, the final spacing and the target, and a warning says so
    when the target was not reached (the estimate is then coarser than its statistical error).
    Classes with more than ``max_dim`` parameters (default 3: above that the refinement steps
    along the axes only, which is no cover; e.g. the HMM's bigram class) are refused unless
    ``max_dim`` is raised, and then a warning says the choice is not resolved.
    Cost ``O(K^2 m)`` with ``m`` the number of *distinct* demonstrations (samples with equal
    visit counts have equal likelihoods under every member and are merged).
    Its approximation factor stays bounded as H grows (Rohatgi et al. 2025).
    """

    name = "rho"

    def __init__(self, max_candidates: int = 3000, resolution: float = 0.25, leaders: int = 4,
                 min_spacing: float = 1e-3, max_rounds: int = 16, max_dim: int = 3):
        super().__init__()
        self.max_dim = check_int("max_dim", max_dim, 1)
        self.max_candidates = check_int("max_candidates", max_candidates, 2, 100_000)
        self.resolution = check_float("resolution", resolution, 0.0, 1.0, low_open=True)
        self.leaders = check_int("leaders", leaders, 1)
        self.min_spacing = check_float("min_spacing", min_spacing, 0.0, low_open=True)
        self.max_rounds = check_int("max_rounds", max_rounds, 0)

    def fit(self, task, demos, seed: int = 0):
        from ar_agents.algorithms.bc import BC
        from ar_agents.algorithms.hellinger_bc import HellingerBC
        from ar_agents.algorithms.smoothed_bc import SmoothedBC

        fm = learner_class(task, demos, self.name)
        if fm.dim > self.max_dim:
            raise ValueError(
                f"{self.name}: the log-linear class of {task.name!r} has {fm.dim} parameters; a cover finer than the "
                f"statistical error is out of reach above max_dim={self.max_dim} (a full cube of neighbours grows like 3^d). Raise "
                "max_dim (--algo-arg max_dim=N) to run it anyway: the log then records the spacing reached and a "
                "warning says when it is coarser than the statistical error")
        counts = per_sequence_counts(fm, demos.contexts, demos.sequences)
        uniq, mult = np.unique(counts, axis=0, return_counts=True)
        used = uniq.sum(axis=0) > 0  # (context, state, token) cells some sample visits
        uniq, w = uniq[:, used], mult.astype(np.float64)

        def loglik(thetas):
            tables = np.stack([fm.log_probs(t).ravel()[used] for t in thetas], axis=1)
            return uniq @ tables

        def inside(points):
            if fm.norm_bound is None:
                return points
            idx = list(fm.bounded_dims)
            return points[np.linalg.norm(points[:, idx], axis=1) <= fm.norm_bound + 1e-12]

        bc = BC().fit(task, demos, seed).theta
        fits = [bc, SmoothedBC().fit(task, demos, seed).theta, HellingerBC().fit(task, demos, seed).theta]
        start_k = min(1024 if fm.dim <= 2 else 343, self.max_candidates)
        cand = np.concatenate([inside(np.asarray(fits)), parameter_grid(fm, start_k, rng=seed)])
        lo = np.array([r[0] for r in fm.grid_ranges])
        hi = np.array([r[1] for r in fm.grid_ranges])
        per = max(2, int(np.floor(start_k ** (1.0 / fm.dim) + 1e-9))) if fm.dim <= 3 else start_k ** (1.0 / fm.dim)
        spacing = (hi - lo) / (per - 1)
        se = fisher_scale(fm, counts.sum(axis=0).reshape(fm.shape), bc, len(demos))
        target = np.maximum(self.resolution * np.where(np.isfinite(se), se, 0.0), self.min_spacing)

        LL = loglik(cand)
        T = rho_duels(LL, LL, w)
        stencil = _stencil(fm.dim)
        rounds = 0
        while np.any(spacing > target) and rounds < self.max_rounds and len(cand) < self.max_candidates:
            rounds += 1
            spacing = spacing / 2.0
            worst = T.max(axis=1)
            lead = cand[np.argsort(worst, kind="stable")[: self.leaders]]
            new = inside((lead[:, None, :] + stencil[None] * spacing).reshape(-1, fm.dim))
            new = new[: self.max_candidates - len(cand)]
            if len(new) == 0:
                break
            LL_new = loglik(new)
            LL_all = np.concatenate([LL, LL_new], axis=1)
            rows = rho_duels(LL_new, LL_all, w)  # (N, K + N); the rest by antisymmetry
            K = len(cand)
            T = np.block([[T, -rows[:, :K].T], [rows]])
            cand, LL = np.concatenate([cand, new]), LL_all
        worst = T.max(axis=1)
        best = int(np.argmin(worst))
        reached = bool(np.all(spacing <= target)) and fm.dim <= 3  # above 3 parameters the axes are no cover
        if not reached:
            why = (f"the cover's spacing {np.round(spacing, 4).tolist()} is coarser than its target "
                   f"{np.round(target, 4).tolist()} (resolution x the statistical error) after {len(cand)} candidates; "
                   "raise max_candidates / max_rounds") if fm.dim <= 3 else (
                   f"with {fm.dim} parameters the refinement steps along the axes only, which is no cover at its "
                   "spacing: the choice is not resolved to the statistical error")
            warnings.warn(f"rho on {task.name}: {why}", RuntimeWarning, stacklevel=2)
        self.log = {"candidates": len(cand), "rounds": rounds, "spacing": spacing.tolist(),
                    "target_spacing": target.tolist(), "resolution_reached": reached,
                    "grid": "lattice + per-token fits, refined around the leaders",
                    "distinct_samples": len(uniq), "theta": cand[best].tolist(), "max_T": float(worst[best])}
        return LogLinearPolicy(task, cand[best], fm)
