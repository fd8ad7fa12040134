"""The sequence-level rho-estimator (Baraud-Birgé-Sart) over a finite grid of the class."""

from __future__ import annotations

import numpy as np

from ..loglinear_fit import parameter_grid, per_sequence_counts
from ..policies.loglinear import LogLinearPolicy
from .base import Algorithm


def rho_select(loglik: np.ndarray, weights: np.ndarray | None = None, block: int = 64) -> tuple[int, np.ndarray]:
    """The rho-estimator's choice among ``K`` candidates.

    ``loglik``: ``(m, K)`` sequence log-likelihoods of ``m`` samples under each candidate,
    ``weights``: multiplicity of each sample (``None``: all 1). With
    ``T(j, k) = sum_i w_i tanh((l_k(i) - l_j(i)) / 4)`` it returns
    ``argmin_j max_k T(j, k)`` and the vector ``max_k T(j, k)``. Only likelihood ratios enter.
    """
    m, K = loglik.shape
    w = np.ones(m) if weights is None else np.asarray(weights, dtype=np.float64)
    worst = np.empty(K)
    for start in range(0, K, block):
        lj = loglik[:, start : start + block]  # (m, B)
        with np.errstate(invalid="ignore"):
            diff = (loglik[:, None, :] - lj[:, :, None]) / 4.0  # (m, B, K)
        diff = np.nan_to_num(diff, nan=0.0)  # both candidates give 0 to the sample: a tie
        T = np.einsum("m,mbk->bk", w, np.tanh(diff))
        worst[start : start + block] = T.max(axis=1)
    return int(np.argmin(worst)), worst


def local_grid(task, demos, k: int, seed: int) -> np.ndarray:
    """A finite class for many parameters, where a lattice is hopeless: the per-token fits (BC,
    per-token Hellinger BC) and Gaussian perturbations of them at scales 0.1, 0.3 and 1."""
    from .bc import BC
    from .hellinger_bc import HellingerBC

    fm = task.feature_map()
    centres = [BC().fit(task, demos, seed).theta, HellingerBC().fit(task, demos, seed).theta]
    rng = np.random.default_rng(seed)
    pts = list(centres)
    scales = (0.1, 0.3, 1.0)
    per = max(1, (k - len(centres)) // (len(centres) * len(scales)))
    for c in centres:
        for sc in scales:
            pts.extend(c + sc * rng.standard_normal((per, fm.dim)))
    grid = np.asarray(pts)
    if fm.norm_bound is not None:
        idx = list(fm.bounded_dims)
        grid = grid[np.linalg.norm(grid[:, idx], axis=1) <= fm.norm_bound + 1e-12]
    return grid


class RhoEstimator(Algorithm):
    """Sequence-level rho-estimator over a finite grid of the class (bounded C(H)).

    ``argmin_pi max_pi' sum_i tanh((log P_pi'(a^i) - log P_pi(a^i)) / 4)`` over the grid.

    The grid is a lattice over the class's ``grid_ranges`` (``max_candidates`` points at most,
    by default 1024 for classes with at most 2 parameters and 343 otherwise), restricted to the
    norm ball. With more than 3 parameters a lattice is hopeless and the finite class is local
    instead (:func:`local_grid`: the per-token fits and perturbations of them), a data-dependent
    choice that is documented as such in the fit log.
    Cost ``O(K^2 m)`` with ``m`` the number of *distinct* demonstrations (samples with equal
    visit counts have equal likelihoods under every member and are merged).
    Its approximation factor stays bounded as H grows (Rohatgi et al. 2025).
    """

    name = "rho"

    def __init__(self, max_candidates: int | None = None):
        super().__init__()
        self.max_candidates = max_candidates  # default: 1024 for <= 2 parameters, else 343

    def fit(self, task, demos, seed: int = 0):
        fm = task.feature_map()
        if fm is None:
            raise ValueError(f"{self.name} needs a task with a log-linear learner class; {task.name!r} has none")
        k = self.max_candidates or (1024 if fm.dim <= 2 else 343)
        if fm.dim <= 3:
            grid = parameter_grid(fm, k, rng=seed)
        else:
            grid = local_grid(task, demos, k, seed)
        counts = per_sequence_counts(fm, demos.contexts, demos.sequences)
        uniq, mult = np.unique(counts, axis=0, return_counts=True)
        log_tables = np.stack([fm.log_probs(theta).ravel() for theta in grid], axis=1)  # (CSV, K)
        loglik = uniq @ np.where(uniq.sum(axis=0)[:, None] > 0, log_tables, 0.0)
        best, worst = rho_select(loglik, mult)
        self.log = {"candidates": len(grid), "grid": "lattice" if fm.dim <= 3 else "local (per-token fits + perturbations)",
                    "distinct_samples": len(uniq), "theta": grid[best].tolist(),
                    "max_T": float(worst[best])}
        return LogLinearPolicy(task, grid[best], fm)
