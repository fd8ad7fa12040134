"""Smoothed BC: log loss of the policy mixed with the uniform distribution at every step."""

from __future__ import annotations

import torch

from ar_envs.core import check_float, check_int

from ar_agents.loglinear_fit import learner_class, visit_counts, warn_unconverged
from ar_agents.policies.loglinear import LogLinearPolicy
from ar_agents.algorithms.base import Algorithm
from ar_agents.algorithms.bc import minimise_from_bc


class SmoothedBC(Algorithm):
    """Smoothed BC: log loss of each step mixed with the uniform distribution (weight gamma).

    Maximises ``sum log((1 - gamma) pi_theta(a | .) + gamma / V)`` over the demonstrations.

    The standard robustification of log loss (Rohatgi et al. 2025): a member with zero
    probability on an observed token no longer has log-likelihood ``-inf``. ``gamma`` defaults to
    ``1 / (n H)``. The returned policy is ``pi_theta`` itself (a member of the class).
    """

    name = "smoothed-bc"

    def __init__(self, gamma: float | None = None, max_iter: int = 500):
        super().__init__()
        self.gamma = None if gamma is None else check_float("gamma", gamma, 0.0, 1.0, high_open=True)
        self.max_iter = check_int("max_iter", max_iter, 1)

    def fit(self, task, demos, seed: int = 0):
        fm = learner_class(task, demos, self.name)
        n, V = len(demos), task.vocab_size
        gamma = self.gamma if self.gamma is not None else 1.0 / (n * task.horizon)
        counts = torch.as_tensor(visit_counts(fm, demos.contexts, demos.sequences))

        def loss(log_table):
            mixed = torch.logaddexp(log_table + torch.log1p(torch.tensor(-gamma)), torch.log(torch.tensor(gamma / V)))
            return -(counts * mixed).sum() / n

        theta, value, status = minimise_from_bc(self, task, demos, fm, loss, seed)  # non-convex: several starts
        self.log = {"loss": value, "gamma": gamma, "theta": theta.tolist(), **status}
        warn_unconverged(self.name, status, self.max_iter)
        return LogLinearPolicy(task, theta, fm)
