"""Per-token Hellinger BC: match the expert's next-token distributions in squared Hellinger."""

from __future__ import annotations

import torch

from ar_envs.core import check_int

from ..loglinear_fit import minimise, state_sqrt_expert, warn_unconverged
from ..policies.loglinear import LogLinearPolicy
from .base import Algorithm


class HellingerBC(Algorithm):
    """Per-token Hellinger BC: squared Hellinger to the expert's next-token distributions.

    Minimises ``sum_i sum_h H^2(pi*(.|x^i, a^i_<h), pi_theta(.|x^i, a^i_<h))`` over demonstrations.

    Uses the expert's next-token distributions along the demonstrated prefixes (the task's
    expert is queried there; ``demos.expert_probs`` is used when present). Still a per-token
    objective: Rohatgi et al. show every such objective has an approximation factor Omega(H).
    With ``H^2(p, q) = 2 - 2 sum_a sqrt(p_a q_a)`` the loss needs only
    ``R[c, s, a] = sum over visits of sqrt(pi*(a | prefix))``.
    """

    name = "hellinger-bc"

    def __init__(self, max_iter: int = 500):
        super().__init__()
        self.max_iter = check_int("max_iter", max_iter, 1)

    def fit(self, task, demos, seed: int = 0):
        fm = task.feature_map()
        if fm is None:
            raise ValueError(f"{self.name} needs a task with a log-linear learner class; {task.name!r} has none")
        probs = demos.expert_probs
        if probs is None:
            probs = task.expert_step_probs(demos.contexts, demos.sequences)
        n = len(demos)
        R = torch.as_tensor(state_sqrt_expert(fm, demos.contexts, demos.sequences, probs))
        visits = float(demos.sequences.size)

        def loss(log_table):
            return (2.0 * visits - 2.0 * (R * torch.exp(0.5 * log_table)).sum()) / n

        status = {}
        theta, value = minimise(fm, loss, max_iter=self.max_iter, status=status)
        self.log = {"loss": value, "theta": theta.tolist(), **status}
        warn_unconverged(self.name, status, self.max_iter)
        return LogLinearPolicy(task, theta, fm)
