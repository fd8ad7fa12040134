"""The log-linear ("autoregressive linear") policy class over a task's finite-state feature map."""

from __future__ import annotations

import numpy as np

from ar_envs.core import FeatureMap, Task, as_rng, sample_categorical


class LogLinearPolicy:
    """``pi_theta(a | x, a_<h) ∝ exp(<theta, phi(x, s_h, a)> + offset(x, s_h, a))``.

    A member of a task's canonical learner class (``task.feature_map()``). Its next-token law
    depends only on (context index, class state), so it is stored as a ``(C, S, V)`` table:
    sequence log-probabilities are table look-ups and the task's exact metrics apply.

    Implements the sequence-policy protocol used by ``ar_envs.metrics`` and
    ``ar_envs.diagnostics``: ``sequence_log_prob``, ``next_token_probs``, ``sample``, ``greedy``.
    """

    def __init__(self, task: Task, theta, feature_map: FeatureMap | None = None):
        fm = task.feature_map() if feature_map is None else feature_map
        if fm is None:
            raise ValueError(f"task {task.name!r} has no log-linear learner class (feature_map() is None)")
        theta = np.asarray(theta, dtype=np.float64).reshape(-1)
        if theta.shape != (fm.dim,):
            raise ValueError(f"theta must have shape ({fm.dim},) for this class, got {theta.shape}")
        if not np.all(np.isfinite(theta)):
            raise ValueError(f"theta must be finite, got {theta}")
        self.task = task
        self.feature_map = fm
        self.theta = theta
        self.horizon = task.horizon
        self.log_table = fm.log_probs(theta)

    @property
    def state_probs(self) -> np.ndarray:
        """``(C, S, V)`` next-token probabilities per (context index, state)."""
        return np.exp(self.log_table)

    def params(self) -> dict:
        names = self.feature_map.param_names
        return {str(k): float(v) for k, v in zip(names, self.theta)}

    # ------------------------------------------------------------------ protocol
    def sequence_log_prob(self, contexts, sequences) -> np.ndarray:
        c, s, a = self.feature_map.index(contexts, sequences)
        return self.log_table[c[:, None], s, a].sum(axis=1)

    def next_token_probs(self, contexts, prefixes) -> np.ndarray:
        c = np.asarray(self.feature_map.context_index(np.asarray(contexts)), dtype=np.int64)
        s = self.feature_map.next_state(contexts, prefixes)
        return np.exp(self.log_table[c, s])

    def stepper(self, contexts) -> "ClassStateStepper":
        """Next-token probabilities along growing prefixes in O(1) per step (the class state is
        carried forward instead of recomputed from the whole prefix): for roll-outs."""
        return ClassStateStepper(self, contexts)

    def _rollout(self, contexts, pick) -> np.ndarray:
        contexts = np.asarray(contexts)
        n = len(contexts)
        fm = self.feature_map
        c = np.asarray(fm.context_index(contexts), dtype=np.int64)
        s = np.full(n, fm.initial_state, dtype=np.int64)
        seq = np.zeros((n, self.horizon), dtype=np.int64)
        for h in range(self.horizon):
            seq[:, h] = pick(np.exp(self.log_table[c, s]))
            s = fm.transitions[s, seq[:, h]]
        return seq

    def sample(self, contexts, rng=None) -> np.ndarray:
        rng = as_rng(rng)
        return self._rollout(contexts, lambda p: sample_categorical(p, rng))

    def greedy(self, contexts) -> np.ndarray:
        return self._rollout(contexts, lambda p: p.argmax(axis=1))

    def __repr__(self) -> str:
        return f"LogLinearPolicy({self.params()})"


class ClassStateStepper:
    """``probs()`` after the prefix so far, ``advance(tokens)`` to append one token per row."""

    def __init__(self, policy: LogLinearPolicy, contexts):
        fm = policy.feature_map
        self.table, self.transitions = policy.state_probs, fm.transitions
        self.c = np.asarray(fm.context_index(np.asarray(contexts)), dtype=np.int64)
        self.s = np.full(len(self.c), fm.initial_state, dtype=np.int64)

    def probs(self) -> np.ndarray:
        return self.table[self.c, self.s]

    def advance(self, tokens) -> None:
        self.s = self.transitions[self.s, np.asarray(tokens, dtype=np.int64)]
