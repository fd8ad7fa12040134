"""Scheduled sampling (Bengio, Vinyals, Jaitly & Shazeer 2015).

Teacher forcing feeds the model the demonstrated prefix; at test time it reads its own tokens.
Scheduled sampling closes the gap gradually: in epoch ``i`` every input token of the answer is
the demonstrated one with probability ``eps_i`` (the *teacher probability*, Bengio et al.'s
``epsilon_i``) and otherwise a token sampled from the model's own prediction at that position,
given the (already mixed) prefix before it. The targets stay the demonstrated tokens.

Schedules of ``eps_i`` over epochs ``i = 0 .. epochs - 1`` (a decay from 1, pure teacher forcing):

* ``"linear"``: ``eps_i = max(min_teacher_prob, 1 - slope * i)``; ``slope`` defaults to
  ``(1 - min_teacher_prob) / (epochs - 1)``, so the last epoch reaches ``min_teacher_prob``.
* ``"inverse-sigmoid"``: ``eps_i = k / (k + exp(i / k))`` with ``k >= 1``; larger ``k`` decays
  later (``eps_0 = k / (k + 1)``).

With a stochastic expert the objective is biased (Huszar 2015, "How (not) to train your generative
model"): a demonstrated target drawn after the demonstrated prefix is paired with a sampled prefix
it was not drawn after, so even a realisable class is not recovered (on LinearAR with
``misspec=0`` it lands far from the expert where BC does not). With a deterministic expert whose
continuation the model already predicts, the sampled and demonstrated tokens agree and the bias vanishes.

The mixing is sequential as in the paper: position ``h``'s sampled token is drawn from the model
given the mixed prefix ``< h``, so a batch costs ``H - 1`` gradient-free forward passes (the
positions whose token is an input) plus one teacher-forced pass with gradients.
"""

from __future__ import annotations

import math

import numpy as np

from ar_envs.core import check_choice, check_float, check_int, sample_categorical
from ar_envs.data import check_demonstrations

from ar_agents.loglinear_fit import fit_cross_entropy, state_label_sums
from ar_agents.policies.loglinear import LogLinearPolicy
from ar_agents.training import (DEFAULT_POLICY, answer_cross_entropy, build_policy, check_policy_spec, check_training_args,
                        finish_log, new_log, one_hot, seed_everything, train)
from ar_agents.algorithms.base import Algorithm, fits_loglinear_class

SCHEDULES = ("linear", "inverse-sigmoid")


def mix_own_tokens(policy, contexts, sequences, prob: float, rng: np.random.Generator) -> np.ndarray:
    """``sequences`` with each input token (positions ``0 .. H-2``) replaced, with probability
    ``prob``, by a draw from ``policy`` given the mixed prefix before it."""
    mixed = np.array(sequences, dtype=np.int64)
    if prob == 0.0:
        return mixed
    n, H = mixed.shape
    stepper = policy.stepper(contexts) if callable(getattr(policy, "stepper", None)) else None  # O(1) per step
    for h in range(H - 1):  # the last answer token is never an input
        probs = stepper.probs() if stepper is not None else policy.next_token_probs(contexts, mixed[:, :h])
        own = sample_categorical(probs, rng)
        mixed[:, h] = np.where(rng.random(n) < prob, own, mixed[:, h])
        if stepper is not None:
            stepper.advance(mixed[:, h])
    return mixed


class ScheduledSampling(Algorithm):
    """Scheduled sampling: teacher forcing whose input tokens are replaced by the model's own samples more and more.

    Minimises ``CE(a_h, logits_h(x, mixed prefix))``; each input token is the model's sample with probability ``1 - eps_i``.

    Bengio et al. (2015). ``schedule`` ``"inverse-sigmoid"`` (default; ``eps_i = k / (k +
    exp(i / k))``, ``k`` default 5) or ``"linear"`` (``eps_i = max(min_teacher_prob, 1 - slope
    i)``) over epochs ``i``; see the module docstring. ``policy`` / ``policy_args`` / ``epochs``
    (20) / ``lr`` / ``batch_size`` as for BC. On a task with a log-linear class and no ``policy``
    given, it runs on that class (exact C(H)): each epoch's mixed inputs are refitted exactly
    (``lr`` / ``batch_size`` then do not apply).
    """

    name = "scheduled-sampling"

    def __init__(self, policy=None, policy_args: dict | None = None, schedule: str = "inverse-sigmoid",
                 k: float = 5.0, slope: float | None = None, min_teacher_prob: float = 0.0, epochs: int = 20,
                 lr: float = 1e-3, batch_size: int = 64):
        super().__init__()
        check_policy_spec(policy, policy_args)
        self.policy, self.policy_args = policy, policy_args
        self.schedule = check_choice("schedule", schedule, SCHEDULES)
        self.k = check_float("k", k, 1.0)
        self.min_teacher_prob = check_float("min_teacher_prob", min_teacher_prob, 0.0, 1.0)
        self.epochs, self.lr, self.batch_size = check_training_args(epochs, lr, batch_size)
        if slope is None:
            slope = (1.0 - self.min_teacher_prob) / max(1, self.epochs - 1)
        self.slope = check_float("slope", slope, 0.0)

    def teacher_prob(self, epoch: int) -> float:
        """``eps_i``: the probability of feeding the demonstrated token in epoch ``i``."""
        if self.schedule == "linear":
            return max(self.min_teacher_prob, 1.0 - self.slope * epoch)
        return self.k / (self.k + math.exp(epoch / self.k))

    def fit(self, task, demos, seed: int = 0):
        check_demonstrations(task, demos)
        if fits_loglinear_class(self, task):
            return self._fit_loglinear(task, demos, seed)
        rng = seed_everything(seed)
        policy = build_policy(self.policy or DEFAULT_POLICY, task, self.policy_args, seed=seed)
        self.log = new_log(policy)

        def loss(batch, epoch):
            contexts, sequences = batch
            inputs = mix_own_tokens(policy, contexts, sequences, 1.0 - self.teacher_prob(epoch), rng)
            logits = policy.answer_logits(contexts, inputs)  # (n, H, V): fed inputs[:, :-1], one pass
            return answer_cross_entropy(logits, sequences)  # scored against the demonstrated tokens

        train(policy, loss, (demos.contexts, demos.sequences), epochs=self.epochs, lr=self.lr,
              batch_size=self.batch_size, rng=rng, log=self.log, tokens_per_row=task.horizon)
        finish_log(self.log, schedule=self.schedule, teacher_prob=[self.teacher_prob(i) for i in range(self.epochs)],
                   epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)
        return policy

    def _fit_loglinear(self, task, demos, seed):
        """Scheduled sampling on the task's log-linear class: in epoch ``i`` the inputs are mixed
        as above with the current member, and the log loss of the demonstrated targets given the
        mixed prefixes' class states is minimised exactly (L-BFGS on the counts
        ``N[c, s(mixed prefix), demonstrated token]``, warm start from the previous epoch)."""
        fm = task.feature_map()
        rng = np.random.default_rng(check_int("seed", seed, 0))
        theta, losses = None, []
        for epoch in range(self.epochs):
            inputs = demos.sequences
            if theta is not None:
                inputs = mix_own_tokens(LogLinearPolicy(task, theta, fm), demos.contexts, demos.sequences,
                                        1.0 - self.teacher_prob(epoch), rng)
            # the demonstrated targets, counted at the class states of the mixed prefixes
            W = state_label_sums(fm, demos.contexts, inputs, one_hot(demos.sequences, task.vocab_size))
            theta, loss = fit_cross_entropy(fm, W, len(demos), theta0=theta)
            losses.append(loss)
        self.log = {"policy_class": "log-linear", "loss_curve": losses, "loss": losses[-1], "theta": theta.tolist(),
                    "schedule": self.schedule, "teacher_prob": [self.teacher_prob(i) for i in range(self.epochs)]}
        return LogLinearPolicy(task, theta, fm)
