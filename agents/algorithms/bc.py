"""Behavior cloning = next-token prediction with log loss (teacher forcing), on the log-linear class."""

from __future__ import annotations

from ..loglinear_fit import minimise, visit_counts
from ..policies.loglinear import LogLinearPolicy
from .base import Algorithm


class BC(Algorithm):
    """Behavior cloning: next-token prediction with log loss (maximum likelihood on the class).

    Maximises the sequence log-likelihood ``sum_i log P_theta(a^i | x^i)``.

    The sequence log-likelihood is the sum of the next-token log-losses, so this is a per-token
    objective; it only needs the visit counts ``N[c, s, a]`` of the class's states.
    """

    name = "bc"

    def __init__(self, max_iter: int = 500):
        super().__init__()
        self.max_iter = max_iter

    def fit(self, task, demos, seed: int = 0):
        fm = task.feature_map()
        if fm is None:
            raise ValueError(f"{self.name} needs a task with a log-linear learner class; {task.name!r} has none")
        counts = visit_counts(fm, demos.contexts, demos.sequences)
        n = len(demos)

        def loss(log_table):
            return -(counts_t * log_table).sum() / n

        import torch

        counts_t = torch.as_tensor(counts)
        theta, value = minimise(fm, loss, max_iter=self.max_iter)
        self.log = {"loss": value, "theta": theta.tolist()}
        return LogLinearPolicy(task, theta, fm)
