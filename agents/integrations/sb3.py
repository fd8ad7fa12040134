"""Stable-Baselines3 adapters.

:class:`ExpertSB3Policy` wraps a task's expert as an SB3 ``BasePolicy``, for code that accepts
nothing else: SB3's ``evaluate_policy``, the ``imitation`` library's DAgger (its expert must be a
``BasePolicy``; callables fail), or any roll-out helper that calls ``policy.predict``.
"""

from __future__ import annotations

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy

from ar_envs.core import Task
from ar_envs.env import observation_space
from ar_envs.expert import ExpertPolicy


class ExpertSB3Policy(BasePolicy):
    """A task's expert as an SB3 ``BasePolicy`` (no parameters, nothing to train).

    Observations are those of ``SequenceEnv`` / ``SequenceVectorEnv`` (the context, then the
    tokens so far padded with ``vocab_size``). ``predict(obs, deterministic=True)`` returns the
    expert's most likely next token (argmax of ``task.expert_probs``); ``deterministic=False``
    returns a draw from the expert's distribution, from a generator seeded by ``seed``.

    Args:
        task: the :class:`ar_envs.Task` whose expert this is.
        seed: seed of the generator used for sampled (non-deterministic) actions.
    """

    def __init__(self, task: Task, seed: int | None = None):
        if not isinstance(task, Task):
            raise ValueError(f"task must be an ar_envs Task, got {type(task).__name__}")
        super().__init__(observation_space(task), spaces.Discrete(task.vocab_size))
        self.task = task
        self.seed = seed
        self.expert = ExpertPolicy(task, seed=seed)

    def _predict(self, observation: th.Tensor, deterministic: bool = False) -> th.Tensor:
        obs = observation.detach().cpu().numpy()
        if obs.ndim == 1:
            obs = obs[None]
        actions, _ = self.expert.predict(np.rint(obs).astype(np.int64), deterministic=deterministic)
        return th.as_tensor(np.asarray(actions, dtype=np.int64), device=observation.device)

    def forward(self, observation: th.Tensor, deterministic: bool = False) -> th.Tensor:
        return self._predict(observation, deterministic=deterministic)

    def action_probs(self, observation) -> np.ndarray:
        """The expert's next-token distribution for raw observations, ``(n, V)``."""
        return self.expert.action_probs(observation)

    def _get_constructor_parameters(self) -> dict:
        return {"task": self.task, "seed": self.seed}
