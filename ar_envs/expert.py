"""The expert as a policy object with Stable-Baselines3's ``predict`` signature."""

from __future__ import annotations

import numpy as np

from .core import Task, sample_categorical


class ExpertPolicy:
    """Query a task's expert from raw environment observations.

    ``predict(observation, state=None, episode_start=None, deterministic=False)`` returns
    ``(actions, None)`` like an SB3 policy. ``observation`` is one observation ``(L + H,)`` or a
    batch ``(n, L + H)`` as produced by :class:`~ar_envs.env.SequenceEnv`; the prefix is read off
    the observation (the tokens before the first padding id). ``deterministic=True`` takes the
    expert's most likely token, otherwise a draw from its distribution (seeded by ``seed``).
    A complete sequence (the last observation of an episode, which a Gymnasium vector env with
    ``NEXT_STEP`` autoreset returns before its reset step) has no next token: ``predict`` gives
    it the placeholder action ``0``, which that reset step ignores; ``action_probs`` refuses it.
    For code that needs an actual SB3 ``BasePolicy`` use ``agents.sb3.ExpertSB3Policy``.
    """

    def __init__(self, task: Task, seed: int | None = None):
        if not isinstance(task, Task):
            raise ValueError(f"task must be an ar_envs Task, got {type(task).__name__}")
        self.task = task
        self.rng = np.random.default_rng(seed)

    def split(self, observation):
        obs = np.asarray(observation)
        L, H = self.task.context_length, self.task.horizon
        if obs.shape[-1] != L + H or obs.ndim not in (1, 2):
            raise ValueError(f"observation must have shape ({L + H},) or (n, {L + H}), got {obs.shape}")
        obs2 = obs.reshape(-1, L + H).astype(np.int64)
        gen = obs2[:, L:]
        lengths = (gen != self.task.vocab_size).sum(axis=1)
        return obs2[:, :L], gen, lengths, obs.ndim == 1

    def _probs(self, ctx, gen, lengths) -> np.ndarray:
        probs = np.zeros((len(ctx), self.task.vocab_size))
        for t in np.unique(lengths):
            rows = lengths == t
            probs[rows] = self.task.expert_probs(ctx[rows], gen[rows, :t])
        return probs

    def action_probs(self, observation) -> np.ndarray:
        """The expert's next-token distribution for each observation, ``(n, V)``."""
        ctx, gen, lengths, _ = self.split(observation)
        if np.any(lengths >= self.task.horizon):
            raise ValueError("observation holds a complete sequence: there is no next token to predict")
        return self._probs(ctx, gen, lengths)

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        ctx, gen, lengths, single = self.split(observation)
        live = lengths < self.task.horizon  # complete sequences get the placeholder 0
        actions = np.zeros(len(ctx), dtype=np.int64)
        if live.all():
            probs = self._probs(ctx, gen, lengths)
        else:
            probs = self._probs(ctx[live], gen[live], lengths[live])
        if len(probs):
            actions[live] = probs.argmax(axis=1) if deterministic else sample_categorical(probs, self.rng)
        return (actions[0] if single else actions), state

    # the policy protocol of ar_envs.metrics / ar_envs.diagnostics (contexts and prefixes directly)
    def next_token_probs(self, contexts, prefixes) -> np.ndarray:
        return self.task.expert_probs(np.asarray(contexts), np.asarray(prefixes))

    def sequence_log_prob(self, contexts, sequences) -> np.ndarray:
        return self.task.expert_log_prob(np.asarray(contexts), np.asarray(sequences))

    def sample(self, contexts, rng=None) -> np.ndarray:
        contexts = np.asarray(contexts)
        rng = self.rng if rng is None else rng
        seq = np.zeros((len(contexts), self.task.horizon), dtype=np.int64)
        for h in range(self.task.horizon):
            seq[:, h] = sample_categorical(self.task.expert_probs(contexts, seq[:, :h]), rng)
        return seq

    def __call__(self, observation):
        return self.predict(observation, deterministic=True)[0]
