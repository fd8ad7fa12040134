"""Behavior cloning = next-token prediction with log loss (teacher forcing).

On a task's log-linear class (the default where the task has one) it is maximum likelihood by
L-BFGS over visit counts; on a neural policy class it is teacher-forced cross-entropy on the
answer tokens, one forward pass per batch of whole sequences.
"""

from __future__ import annotations

from ar_envs.core import check_int
from ar_envs.data import check_demonstrations

from ar_agents.loglinear_fit import default_starts, fit_cross_entropy, minimise_from, visit_counts, warn_unconverged
from ar_agents.policies.loglinear import LogLinearPolicy
from ar_agents.training import (DEFAULT_POLICY, answer_cross_entropy, build_policy, check_policy_spec, check_training_args,
                        finish_log, new_log, seed_everything, train)
from ar_agents.algorithms.base import Algorithm

NEURAL_DEFAULTS = {"epochs": 20, "lr": 1e-3, "batch_size": 64}


class BC(Algorithm):
    """Behavior cloning: next-token prediction with log loss (maximum likelihood on the class).

    Maximises the sequence log-likelihood ``sum_i log P_theta(a^i | x^i)``.

    The sequence log-likelihood is the sum of the next-token log-losses, so this is a per-token
    objective. On the task's log-linear class (used when the task has one and ``policy`` is not
    given) it only needs the visit counts ``N[c, s, a]`` of the class's states.

    With ``policy`` (``"linear"``, ``"mlp"``, ``"transformer"`` or a ``TokenPolicy`` to start
    from), or on a task without a log-linear class (then ``policy="transformer"``), it trains a
    neural policy by teacher forcing: the input ``[BOS] + context + answer[:-1]``, one forward
    pass scoring all ``H`` answer tokens (``policy.answer_logits``), cross-entropy against the
    answer, Adam for ``epochs`` passes (default 20) with learning rate ``lr`` (1e-3) and
    minibatches of ``batch_size`` sequences (64). ``policy_args`` go to the policy's constructor
    (``ar_agents.policies.make_policy``).
    """

    name = "bc"

    def __init__(self, max_iter: int = 500, policy=None, policy_args: dict | None = None, epochs: int | None = None,
                 lr: float | None = None, batch_size: int | None = None):
        super().__init__()
        self.max_iter = check_int("max_iter", max_iter, 1)
        check_policy_spec(policy, policy_args)
        self.policy = policy
        self.policy_args = policy_args
        given = {"epochs": epochs, "lr": lr, "batch_size": batch_size}
        self.neural_args_given = sorted(k for k, v in given.items() if v is not None)
        neural = {k: (NEURAL_DEFAULTS[k] if v is None else v) for k, v in given.items()}
        self.epochs, self.lr, self.batch_size = check_training_args(neural["epochs"], neural["lr"], neural["batch_size"])

    def fit(self, task, demos, seed: int = 0):
        check_demonstrations(task, demos)
        fm = task.feature_map()
        if self.policy is not None or fm is None:
            return self._fit_neural(task, demos, seed)
        if self.neural_args_given or self.policy_args:
            named = self.neural_args_given + (["policy_args"] if self.policy_args else [])
            raise ValueError(
                f"{self.name}: {', '.join(named)} apply to neural policies; {task.name!r} has a log-linear class, which "
                "BC fits by L-BFGS: give policy='linear'|'mlp'|'transformer' (CLI: --policy) to train a neural policy"
            )
        counts = visit_counts(fm, demos.contexts, demos.sequences)  # N[c, s, a]
        status = {}
        theta, value = fit_cross_entropy(fm, counts, len(demos), max_iter=self.max_iter, status=status)  # -sum N log pi / n
        self.log = {"loss": value, "theta": theta.tolist(), **status}
        warn_unconverged(self.name, status, self.max_iter)
        return LogLinearPolicy(task, theta, fm)

    def _fit_neural(self, task, demos, seed):
        rng = seed_everything(seed)
        policy = build_policy(self.policy or DEFAULT_POLICY, task, self.policy_args, seed=seed)
        self.log = new_log(policy)

        def loss(batch, epoch):
            contexts, sequences = batch
            # (n, H, V): all answer tokens, one pass
            return answer_cross_entropy(policy.answer_logits(contexts, sequences), sequences)

        train(policy, loss, (demos.contexts, demos.sequences), epochs=self.epochs, lr=self.lr,
              batch_size=self.batch_size, rng=rng, log=self.log, tokens_per_row=task.horizon)
        finish_log(self.log, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)
        return policy


def minimise_from_bc(alg, task, demos, fm, loss_of_log_table, seed) -> tuple:
    """A non-convex objective over the log-linear class (it can give up a token log loss must
    cover) minimised by L-BFGS from zero, lattice points and the BC fit, with ``alg.max_iter``;
    the lowest loss wins. Returns ``(theta, loss, status)`` (the winning start's, see
    :func:`ar_agents.loglinear_fit.minimise_from`)."""
    bc_theta = BC(alg.max_iter).fit(task, demos, seed).theta
    status: dict = {}
    theta, value, _ = minimise_from(fm, loss_of_log_table, default_starts(fm, [bc_theta], seed=seed),
                                    max_iter=alg.max_iter, status=status)
    return theta, value, status
