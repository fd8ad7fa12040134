"""Shared machinery for fitting the log-linear class: sufficient statistics and one optimiser.

Every objective of the log-linear algorithms is a function of the class's ``(C, S, V)``
log-probability table, so the algorithms only differ in the few lines that turn the table into
a loss (see ``agents/algorithms/*.py``). Parameters under a norm bound are optimised through the
smooth map ``u -> B tanh(||u||) u / ||u||`` onto the open ball, so L-BFGS runs unconstrained.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Callable

import numpy as np
import torch

from ar_envs.core import FeatureMap, check_int



def learner_class(task, demos, learner: str) -> FeatureMap:
    """The task's log-linear class for ``learner``, after checking ``demos`` against the task;
    ``ValueError`` when the task has no such class (the learners that fit only that class)."""
    from ar_envs.data import check_demonstrations

    check_demonstrations(task, demos)
    fm = task.feature_map()
    if fm is None:
        raise ValueError(f"{learner} needs a task with a log-linear learner class; {task.name!r} has none")
    return fm


def visit_counts(fm: FeatureMap, contexts, sequences) -> np.ndarray:
    """Total visit counts ``(C, S, V)`` of (context index, state, token) over the demonstrations."""
    c, s, a = fm.index(contexts, sequences)
    C, S, V = fm.shape
    flat = ((c[:, None] * S + s) * V + a).ravel()
    return np.bincount(flat, minlength=C * S * V).astype(np.float64).reshape(C, S, V)


def per_sequence_counts(fm: FeatureMap, contexts, sequences) -> np.ndarray:
    """Visit counts per sequence ``(n, C*S*V)``: sequence log-likelihoods are ``counts @ log_table``."""
    c, s, a = fm.index(contexts, sequences)
    n, T = a.shape
    C, S, V = fm.shape
    flat = (np.arange(n)[:, None] * (C * S * V) + (c[:, None] * S + s) * V + a).ravel()
    return np.bincount(flat, minlength=n * C * S * V).astype(np.float64).reshape(n, C * S * V)


def state_label_sums(fm: FeatureMap, contexts, sequences, labels) -> np.ndarray:
    """``W[c, s, a] = sum over visits of (c, s) of labels[i, h, a]``, ``(C, S, V)``: the weighted
    sufficient statistics of a cross-entropy against per-prefix labels ``(n, T, V)`` (soft
    expert distributions for DAgger; one-hot demonstrated tokens give :func:`visit_counts`)."""
    c, s, _ = fm.index(contexts, sequences)
    C, S, V = fm.shape
    idx = (c[:, None] * S + s).ravel()
    out = np.zeros((C * S, V))
    np.add.at(out, idx, np.asarray(labels, dtype=np.float64).reshape(-1, V))
    return out.reshape(C, S, V)


def state_sqrt_expert(fm: FeatureMap, contexts, sequences, expert_step_probs) -> np.ndarray:
    """``R[c, s, a] = sum over visits of (c, s) of sqrt(pi*(a | prefix))``, ``(C, S, V)``."""
    return state_label_sums(fm, contexts, sequences, np.sqrt(np.asarray(expert_step_probs, dtype=np.float64)))


def fit_cross_entropy(fm: FeatureMap, W: np.ndarray, rows: int, theta0=None, max_iter: int = 500,
                      status: dict | None = None):
    """``argmin_theta -(1/rows) sum_{c,s,a} W[c, s, a] log pi_theta(a | c, s)``: maximum
    likelihood (``W`` = visit counts) or the cross-entropy against soft labels (``W`` from
    :func:`state_label_sums`). Returns ``(theta, loss)``; ``status`` as for :func:`minimise`."""
    W_t = torch.as_tensor(W)

    def loss(log_table):
        return -(W_t * log_table).sum() / rows

    return minimise(fm, loss, theta0=theta0, max_iter=max_iter, status=status)


class ThetaMap:
    """Unconstrained ``u`` -> class parameter ``theta`` (norm ball on the bounded dims)."""

    def __init__(self, fm: FeatureMap):
        self.fm = fm
        self.bound = fm.norm_bound
        self.mask = torch.zeros(fm.dim, dtype=torch.bool)
        self.mask[list(fm.bounded_dims)] = True

    def theta(self, u: torch.Tensor) -> torch.Tensor:
        if self.bound is None:
            return u
        ub = u[self.mask]
        r = torch.sqrt((ub * ub).sum() + 1e-30)
        scaled = ub * (self.bound * torch.tanh(r) / r)
        out = u.clone()
        out[self.mask] = scaled
        return out

    def inverse(self, theta: np.ndarray) -> np.ndarray:
        """A ``u`` with ``theta(u) ≈ theta`` (points on or outside the ball are pulled inside)."""
        u = np.array(theta, dtype=np.float64)
        if self.bound is None:
            return u
        idx = list(self.fm.bounded_dims)
        tb = u[idx]
        r = float(np.linalg.norm(tb))
        if r == 0.0:
            return u
        rr = min(r / self.bound, 1.0 - 1e-9)
        u[idx] = tb / r * np.arctanh(rr)
        return u


def log_table_torch(fm: FeatureMap, theta: torch.Tensor) -> torch.Tensor:
    feats = torch.as_tensor(fm.features)
    logits = feats @ theta + torch.as_tensor(fm.offset)
    return torch.log_softmax(logits, dim=-1)


@contextlib.contextmanager
def one_torch_thread():
    """Run tiny tensor work on one torch thread: the class tables have a few hundred numbers, and
    a second thread only adds synchronisation (20x slower per L-BFGS closure on a busy 2-core
    machine). The previous thread count is restored."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def minimise(
    fm: FeatureMap,
    loss_of_log_table: Callable[[torch.Tensor], torch.Tensor],
    theta0: np.ndarray | None = None,
    max_iter: int = 500,
    status: dict | None = None,
) -> tuple[np.ndarray, float]:
    """Minimise ``loss(log_table(theta))`` over the class with L-BFGS; returns ``(theta, loss)``.

    ``max_iter`` must be an integer >= 1. ``status`` (a dict, optional) receives whether the fit
    can be trusted: ``iterations`` and ``loss_evals`` spent, ``grad_max`` (the largest entry of
    the gradient at the end, in the optimiser's unconstrained coordinates) and ``converged``:
    L-BFGS stopped on its own tolerances (largest gradient entry below 1e-10, or a step or loss
    change below 1e-13) rather than by running out of its budget (``max_iter`` iterations,
    ``1.25 max_iter`` loss evaluations).
    """
    max_iter = check_int("max_iter", max_iter, 1)
    tm = ThetaMap(fm)
    start = np.zeros(fm.dim) if theta0 is None else tm.inverse(theta0)
    u = torch.tensor(start, requires_grad=True)
    opt = torch.optim.LBFGS(
        [u], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-13,
        history_size=20, line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = loss_of_log_table(log_table_torch(fm, tm.theta(u)))
        loss.backward()
        return loss

    with one_torch_thread():
        opt.step(closure)
    with torch.no_grad():
        theta = tm.theta(u)
        loss = float(loss_of_log_table(log_table_torch(fm, theta)))
    theta = theta.detach().numpy().copy()
    if not np.all(np.isfinite(theta)) or not np.isfinite(loss):
        raise FloatingPointError(f"the optimiser diverged (theta={theta}, loss={loss})")
    if status is not None:
        state = opt.state[u]
        iterations, evals = int(state.get("n_iter", 0)), int(state.get("func_evals", 0))
        closure()  # the gradient where L-BFGS stopped
        grad_max = float(u.grad.abs().max()) if u.numel() else 0.0
        group = opt.param_groups[0]
        budget_spent = iterations >= max_iter or evals >= group["max_eval"]
        status.update(converged=bool(grad_max <= group["tolerance_grad"] or not budget_spent), iterations=iterations,
                      loss_evals=evals, grad_max=grad_max)
    return theta, loss


def warn_unconverged(name: str, status: dict, max_iter: int) -> None:
    """A ``RuntimeWarning`` when a fit's ``status`` (filled by :func:`minimise`) is not converged, so an
    unconverged fit is never reported silently (its log also says ``"converged": false``)."""
    if not status["converged"]:
        warnings.warn(
            f"{name}: L-BFGS stopped after {status['iterations']} iterations (max_iter={max_iter}) without converging "
            f"(largest gradient entry {status['grad_max']:.3g}); the fit is not the objective's minimiser: raise max_iter",
            RuntimeWarning, stacklevel=3,
        )


def parameter_grid(fm: FeatureMap, max_candidates: int = 512, rng=None) -> np.ndarray:
    """A finite grid of the class: a lattice over ``fm.grid_ranges`` (random points for d > 3),
    keeping only points inside the norm ball. ``(K, d)``."""
    d = fm.dim
    if d <= 3:
        per = max(2, int(np.floor(max_candidates ** (1.0 / d) + 1e-9)))
        axes = [np.linspace(lo, hi, per) for lo, hi in fm.grid_ranges]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d)
    else:
        rng = np.random.default_rng(0 if rng is None else rng)
        lo = np.array([r[0] for r in fm.grid_ranges])
        hi = np.array([r[1] for r in fm.grid_ranges])
        grid = lo + (hi - lo) * rng.random((max_candidates, d))
    if fm.norm_bound is not None:
        idx = list(fm.bounded_dims)
        grid = grid[np.linalg.norm(grid[:, idx], axis=1) <= fm.norm_bound + 1e-12]
    return grid


def default_starts(fm: FeatureMap, extra=(), grid_points: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Starting points for a non-convex objective over the class: zero, ``extra`` (e.g. the
    BC fit), and ``grid_points`` points of a coarse lattice of the class (seeded)."""
    grid = parameter_grid(fm, 64, rng=seed)
    picks = np.random.default_rng(seed).permutation(len(grid))[:grid_points]
    return [np.zeros(fm.dim), *[np.asarray(t, dtype=np.float64) for t in extra], *grid[picks]]


def minimise_from(fm: FeatureMap, loss_of_log_table, starts, max_iter: int = 500,
                  status: dict | None = None) -> tuple[np.ndarray, float, int]:
    """:func:`minimise` from each of ``starts``; the lowest loss wins. Returns
    ``(theta, loss, index of the winning start)``; starts that diverge are skipped. ``status``
    receives the winning start's (see :func:`minimise`) and ``starts``, their number."""
    best = (None, math.inf, -1)
    best_status: dict = {}
    for i, start in enumerate(starts):
        run: dict = {}
        try:
            theta, loss = minimise(fm, loss_of_log_table, theta0=start, max_iter=max_iter, status=run)
        except FloatingPointError:
            continue
        if loss < best[1]:
            best, best_status = (theta, loss, i), run
    if best[0] is None:
        raise FloatingPointError("the optimiser diverged from every start")
    if status is not None:
        status.update(best_status, starts=len(starts))
    return best
