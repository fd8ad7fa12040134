"""Block Hellinger: the compute-for-statistics knob between next-token and sequence-level estimation.

This is **our interpolation**, not the algorithm of Rohatgi et al. (2025): the paper shows that for
binary tokens computation can be traded for a better approximation factor, but its algorithm is
not public. We cut every sequence into blocks of ``K`` tokens (the last one shorter when ``K``
does not divide ``H``) and fit the class by minimum Hellinger distance between the
*empirical law of the next block* and the class's law of that block, per class state at the
block's start:

    minimise  sum_{(c, s, k)} N(c, s, k) * H^2( p_hat(. | c, s, k), P_theta(. | c, s, k) )

where ``(c, s, k)`` is (context index, class state at the block's start, block length),
``N`` the number of such blocks in the demonstrations, ``p_hat`` their empirical law over the
``V^k`` possible blocks and ``P_theta(B | c, s, k)`` the product of the member's next-token
probabilities along ``B`` (the class state moves with the tokens).
With ``H^2(p, q) = 2 - 2 sum_B sqrt(p_B q_B)`` only blocks that occur enter:
``loss = (2 sum N - 2 sum_B sqrt(N(c,s,k) count(B)) sqrt(P_theta(B | c, s, k))) / n``.

* ``K = 1``: per-token Hellinger BC on the demonstrations (``hellinger-bc``), a robust
  next-token objective, with approximation factor Omega(H) on the two-branch instance.
* ``K = H``: the sequence-level minimum-Hellinger-distance estimator (Beran 1977) against the
  empirical law of whole sequences.

Cost: one evaluation of the loss costs one term per *distinct* (state, block) pair, at most
``min(n H / K, C S V^K)``: up to ``2^K`` per state for binary tokens, and the empirical law of
``2^K`` outcomes needs about ``2^K`` blocks per state to be estimated (the statistical price of
long blocks). The objective is non-convex: L-BFGS from zero, lattice points and the BC fit.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ar_envs.core import check_int

from ar_agents.loglinear_fit import learner_class
from ar_agents.policies.loglinear import LogLinearPolicy
from ar_agents.algorithms.base import Algorithm


def block_groups(fm, contexts, sequences, block: int):
    """The distinct (context, start state, block) triples of the demonstrations cut into blocks
    of ``block`` tokens. Returns ``(U (G, C*S*V), count (G,), N_start (G,))``: each group's
    visit counts of (context, state, token) (so ``log P_theta(B | c, s) = U @ log_table``), how
    many blocks it has, and how many blocks start at its (context, state, length)."""
    c, s, a = fm.index(contexts, sequences)
    n, H = a.shape
    C, S, V = fm.shape
    keys, flats = [], []
    for start in range(0, H, block):
        stop = min(start + block, H)
        k = stop - start
        tok = np.full((n, block), -1, dtype=np.int64)
        tok[:, :k] = a[:, start:stop]
        keys.append(np.concatenate([c[:, None], s[:, start : start + 1], np.full((n, 1), k), tok], axis=1))
        flats.append((c[:, None] * S + s[:, start:stop]) * V + a[:, start:stop])
    key = np.concatenate(keys)
    uniq, first, inverse, count = np.unique(key, axis=0, return_index=True, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    # the (c, s, length) of each group and the number of blocks starting there
    _, start_inv = np.unique(uniq[:, :3], axis=0, return_inverse=True)
    start_inv = start_inv.reshape(-1)
    n_start = np.bincount(start_inv, weights=count)[start_inv]
    U = np.zeros((len(uniq), C * S * V))
    offset = 0
    for flat in flats:  # one representative occurrence per group gives its counts
        rows = first[(first >= offset) & (first < offset + len(flat))]
        g = inverse[rows]
        local = flat[rows - offset]
        np.add.at(U, (np.repeat(g, local.shape[1]), local.ravel()), 1.0)
        offset += len(flat)
    return U, count.astype(np.float64), n_start


class BlockHellinger(Algorithm):
    """Block Hellinger (our K-knob): minimum Hellinger distance between empirical and model laws of blocks of K tokens.

    Minimises ``sum_{c,s,k} N(c,s,k) H^2(p_hat(B | c,s,k), P_theta(B | c,s,k))`` over blocks ``B`` of ``K`` tokens.

    ``block`` (K >= 1; capped at H): ``K = 1`` is per-token Hellinger BC, ``K = H`` the
    sequence-level minimum-Hellinger-distance estimator; cost up to ``2^K`` terms per state for
    binary tokens. See the module docstring: an interpolation of ours, not the paper's algorithm.
    """

    name = "block-hellinger"

    def __init__(self, block: int = 1, max_iter: int = 500):
        super().__init__()
        self.block = check_int("block", block, 1)
        self.max_iter = check_int("max_iter", max_iter, 1)

    def fit(self, task, demos, seed: int = 0):
        from ar_agents.algorithms.bc import minimise_from_bc

        fm = learner_class(task, demos, self.name)
        start_time = time.perf_counter()
        K = min(self.block, task.horizon)
        U, count, n_start = block_groups(fm, demos.contexts, demos.sequences, K)
        U_t = torch.as_tensor(U)
        weight = torch.as_tensor(np.sqrt(n_start * count))
        total = float(count.sum())
        n = len(demos)

        def loss(log_table):
            log_p = U_t @ log_table.reshape(-1)  # log P_theta(B | c, s) per group
            return (2.0 * total - 2.0 * (weight * torch.exp(0.5 * log_p)).sum()) / n

        theta, value, _ = minimise_from_bc(self, task, demos, fm, loss, seed)  # non-convex: several starts
        self.log = {"loss": value, "theta": theta.tolist(), "block": K, "groups": len(count),
                    "blocks": int(total), "fit_s": time.perf_counter() - start_time}
        return LogLinearPolicy(task, theta, fm)
