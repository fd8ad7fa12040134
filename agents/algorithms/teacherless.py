"""Teacherless (multi-token) training: all answer tokens predicted at once from dummy inputs.

Bachmann & Nagarajan (2024): the model never sees an answer token. Its input is
``[BOS] + context + (H - 1) x DUMMY`` and the logits at the ``H`` answer positions of that stream
are trained with cross-entropy against the whole answer at once. The trained model is decoded in
one parallel pass: :class:`TeacherlessPolicy`.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from ar_envs.core import as_rng, sample_categorical

from ar_agents.training import (DEFAULT_POLICY, answer_cross_entropy, build_policy, check_policy_spec, check_training_args,
                        finish_log, new_log, seed_everything, train)
from ar_agents.algorithms.base import Algorithm


class TeacherlessPolicy(nn.Module):
    """A token model decoded teacherlessly: every answer position from one parallel pass.

    Let ``q_h(. | x)`` (``h = 1..H``) be the softmax of the model's logits at the ``H`` answer
    positions of the stream ``[BOS] + x + (H - 1) x DUMMY``. The policy's sequence law is their
    product::

        P(a_1 .. a_H | x) = prod_h q_h(a_h | x)

    a valid law over sequences (it sums to 1 over all ``V^H`` answers). Hence

    * ``sequence_log_prob(x, a) = sum_h log q_h(a_h | x)``;
    * ``next_token_probs(x, a_<t) = q_{t+1}(. | x)``: the conditional of a product law ignores
      the prefix, so decoding token by token with it reproduces the law exactly;
    * ``greedy(x) = (argmax q_1, .., argmax q_H)``, the one-pass argmax decoding (equal to
      ``model.teacherless_decode(x)``); ``sample`` draws each position independently;
    * ``teacher_forced_probs(x, a)`` is ``(q_1, .., q_H)`` whatever ``a``.

    ``model`` is the trained :class:`~ar_agents.policies.base.TokenPolicy`. ``save`` writes the
    model's file; :meth:`load` reads it back as a ``TeacherlessPolicy``.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.vocab_size, self.context_length, self.horizon = model.vocab_size, model.context_length, model.horizon

    def position_log_probs(self, contexts) -> np.ndarray:
        """``(log q_1, .., log q_H)`` for each context, ``(n, H, V)``, from one forward pass
        (evaluation mode, no gradients; the model's mode is restored)."""
        model = self.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return torch.log_softmax(model.teacherless_logits(contexts).double(), dim=-1).cpu().numpy()
        finally:
            model.train(was_training)

    def position_probs(self, contexts) -> np.ndarray:
        """``(q_1, .., q_H)`` for each context, ``(n, H, V)``, from one forward pass."""
        return np.exp(self.position_log_probs(contexts))

    def sequence_log_prob(self, contexts, sequences) -> np.ndarray:
        """``sum_h log q_h(a_h | x)``, ``(n,)`` (natural log), in batches of 4096."""
        seq = np.asarray(sequences, dtype=np.int64)
        ctx = np.asarray(contexts)
        out = []
        for start in range(0, len(seq), 4096):
            logq = self.position_log_probs(ctx[start : start + 4096])
            out.append(np.take_along_axis(logq, seq[start : start + 4096, :, None], axis=-1)[..., 0].sum(axis=1))
        return np.concatenate(out) if out else np.zeros(0)

    def next_token_probs(self, contexts, prefixes) -> np.ndarray:
        t = np.asarray(prefixes).shape[1]
        if not 0 <= t < self.horizon:
            raise ValueError(f"prefixes must have length in [0, {self.horizon - 1}], got {t}")
        return self.position_probs(contexts)[:, t]

    def teacher_forced_probs(self, contexts, sequences) -> np.ndarray:
        return self.position_probs(contexts)

    def greedy(self, contexts) -> np.ndarray:
        return self.position_probs(contexts).argmax(axis=-1)

    def sample(self, contexts, rng=None) -> np.ndarray:
        rng = as_rng(rng)
        q = self.position_probs(contexts)
        n, H, V = q.shape
        return sample_categorical(q.reshape(n * H, V), rng).reshape(n, H)

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        """SB3-style ``predict`` on raw observations ``(L + H,)`` or ``(n, L + H)`` (padding id ``V``)."""
        obs = np.asarray(observation, dtype=np.int64).reshape(-1, self.context_length + self.horizon)
        steps = (obs[:, self.context_length :] != self.vocab_size).sum(axis=1)
        if np.any(steps >= self.horizon):
            raise ValueError("observation holds a complete sequence: there is no next token to predict")
        q = self.position_probs(obs[:, : self.context_length])[np.arange(len(obs)), steps]
        if deterministic:
            actions = q.argmax(axis=1)
        else:  # torch's global generator, as TokenPolicy.predict
            actions = torch.distributions.Categorical(probs=torch.as_tensor(q)).sample().numpy()
        return (actions[0] if np.asarray(observation).ndim == 1 else actions), state

    def save(self, path: str | os.PathLike) -> None:
        self.model.save(path)

    @classmethod
    def load(cls, path: str | os.PathLike, classes=()) -> "TeacherlessPolicy":
        """The model saved in ``path`` as a ``TeacherlessPolicy`` (``classes``: your own
        ``TokenPolicy`` subclasses the file may name; see :meth:`TokenPolicy.load`)."""
        from ar_agents.policies.base import TokenPolicy

        return cls(TokenPolicy.load(path, classes=classes))

    def describe(self) -> str:
        return f"TeacherlessPolicy({self.model.describe()})"


class Teacherless(Algorithm):
    """Teacherless training: all answer tokens predicted at once from dummy inputs, decoded in one pass.

    Minimises ``sum_h CE(a_h, logits_h([BOS] + x + (H-1) x DUMMY))`` over the demonstrations.

    Bachmann & Nagarajan (2024). The loss is on all ``H`` answer positions; the returned
    :class:`TeacherlessPolicy` decodes in one parallel pass and its sequence law is the product
    of the per-position distributions. ``policy`` (``"linear"``, ``"mlp"``, ``"transformer"``
    default, or a ``TokenPolicy`` to start from) and ``policy_args`` choose the model; ``epochs``
    (20), ``lr`` (1e-3), ``batch_size`` (64) the Adam training.
    """

    name = "teacherless"

    def __init__(self, policy=None, policy_args: dict | None = None, epochs: int = 20, lr: float = 1e-3,
                 batch_size: int = 64):
        super().__init__()
        check_policy_spec(policy, policy_args)
        self.policy, self.policy_args = policy, policy_args
        self.epochs, self.lr, self.batch_size = check_training_args(epochs, lr, batch_size)

    def fit(self, task, demos, seed: int = 0):
        rng = seed_everything(seed)
        model = build_policy(self.policy or DEFAULT_POLICY, task, self.policy_args, seed=seed)
        self.log = new_log(model)

        def loss(batch, epoch):
            contexts, sequences = batch
            # (n, H, V): every answer token at once
            return answer_cross_entropy(model.teacherless_logits(contexts), sequences)

        train(model, loss, (demos.contexts, demos.sequences), epochs=self.epochs, lr=self.lr,
              batch_size=self.batch_size, rng=rng, log=self.log, tokens_per_row=task.horizon)
        finish_log(self.log, decoding="teacherless (one parallel pass)", epochs=self.epochs, lr=self.lr,
                   batch_size=self.batch_size)
        return TeacherlessPolicy(model)
