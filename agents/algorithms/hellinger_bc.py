"""Per-token Hellinger BC: match next-token distributions in squared Hellinger.

Two variants, with their own names in records because they see different information:

* ``hellinger-bc`` uses only the demonstrations (like ``bc``): the empirical next-token
  frequencies of each class state.
* ``hellinger-bc-oracle`` is fed the expert's exact next-token distributions along the
  demonstrated prefixes (more information than ``bc`` has: not a like-for-like comparison).
"""

from __future__ import annotations

import numpy as np
import torch

from ar_envs.core import check_bool, check_int

from ar_agents.loglinear_fit import learner_class, state_sqrt_expert, visit_counts, warn_unconverged
from ar_agents.policies.loglinear import LogLinearPolicy
from ar_agents.algorithms.base import Algorithm


class HellingerBC(Algorithm):
    """Per-token Hellinger BC: squared Hellinger between empirical next-token frequencies and the policy, per state.

    Minimises ``sum_{c,s} N(c,s) H^2(p_hat(.|c,s), pi_theta(.|c,s))`` with ``p_hat`` the demonstrations' frequencies.

    ``N(c, s)`` is the number of visits of (context, class state) in the demonstrations and
    ``p_hat(a | c, s) = N(c, s, a) / N(c, s)``. With ``H^2(p, q) = 2 - 2 sum_a sqrt(p_a q_a)`` the
    loss needs only ``R[c, s, a] = sqrt(N(c, s) N(c, s, a))``. A per-token objective: Rohatgi et
    al. (2025) show every such objective has an approximation factor Omega(H). It is
    :class:`~ar_agents.algorithms.block_hellinger.BlockHellinger` with blocks of one token.

    ``oracle=True`` (the ``hellinger-bc-oracle`` algorithm) uses the expert's next-token
    distributions along the demonstrated prefixes instead of the frequencies
    (``R[c, s, a] = sum over visits of sqrt(pi*(a | prefix))``; ``demos.expert_probs`` when
    present, else the task's expert is queried): extra information ``bc`` does not get.
    Non-convex: L-BFGS from zero, a few lattice points of the class, and the BC fit; the lowest
    loss wins.
    """

    name = "hellinger-bc"

    def __init__(self, max_iter: int = 500, oracle: bool = False):
        super().__init__()
        self.max_iter = check_int("max_iter", max_iter, 1)
        self.oracle = check_bool("oracle", oracle)

    def fit(self, task, demos, seed: int = 0):
        from ar_agents.algorithms.bc import minimise_from_bc

        fm = learner_class(task, demos, self.name)
        n = len(demos)
        if self.oracle:
            probs = demos.expert_probs
            if probs is None:
                probs = task.expert_step_probs(demos.contexts, demos.sequences)
            R = state_sqrt_expert(fm, demos.contexts, demos.sequences, probs)
        else:
            N = visit_counts(fm, demos.contexts, demos.sequences)  # N[c, s, a]
            R = np.sqrt(N.sum(axis=-1, keepdims=True) * N)
        R_t = torch.as_tensor(R)
        visits = float(demos.sequences.size)

        def loss(log_table):
            return (2.0 * visits - 2.0 * (R_t * torch.exp(0.5 * log_table)).sum()) / n

        theta, value, status = minimise_from_bc(self, task, demos, fm, loss, seed)  # non-convex: several starts
        self.log = {"loss": value, "theta": theta.tolist(), "information": "expert distributions" if self.oracle
                    else "demonstrations only", **status}
        warn_unconverged(self.name, status, self.max_iter)
        return LogLinearPolicy(task, theta, fm)


class HellingerBCOracle(HellingerBC):
    """Per-token Hellinger BC fed the expert's exact next-token distributions (more information than bc)."""

    name = "hellinger-bc-oracle"

    def __init__(self, max_iter: int = 500):
        super().__init__(max_iter=max_iter, oracle=True)
