"""Gymnasium environments over any :class:`~ar_envs.core.Task`.

* :class:`SequenceEnv`: one episode = one sequence; generating a token is a step.
* :class:`SequenceVectorEnv`: ``num_envs`` copies stepped with array operations (no Python loop
  over copies), autoreset mode ``NEXT_STEP`` like Gymnasium's own ``CartPoleVectorEnv``.

Observation: ``MultiDiscrete`` token array of fixed length ``L + H``: the context tokens, then the
tokens generated so far, padded with the token id ``V`` (one past the vocabulary). Stock SB3
policies accept it (they one-hot encode it). Action: ``Discrete(V)``. Reward: the task's sequence
reward at the last step, ``0`` before. ``info``: ``step`` (tokens generated so far) and, while the
episode is running, ``expert_action`` (a draw from the expert's next-token distribution) and
``expert_probs`` (that distribution).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .core import Task, check_int, sample_categorical


def observation_space(task: Task) -> spaces.MultiDiscrete:
    nvec = [task.context_vocab_size] * task.context_length + [task.vocab_size + 1] * task.horizon
    return spaces.MultiDiscrete(np.array(nvec, dtype=np.int64), dtype=np.int64)


class SequenceEnv(gym.Env):
    """A task as a single Gymnasium environment (see the module docstring for the spaces)."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, task: Task, render_mode: str | None = None):
        if not isinstance(task, Task):
            raise ValueError(f"task must be an ar_envs Task, got {type(task).__name__}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.task = task
        self.render_mode = render_mode
        self.observation_space = observation_space(task)
        self.action_space = spaces.Discrete(task.vocab_size)
        L, H = task.context_length, task.horizon
        self._obs = np.full(L + H, task.vocab_size, dtype=np.int64)
        self._t = 0
        self._done = True
        self._expert_rng = np.random.default_rng(0)

    # the expert's distribution and a draw from it, after the current prefix
    def _expert_info(self, info: dict) -> dict:
        L = self.task.context_length
        probs = self.task.expert_probs(self._obs[None, :L], self._obs[None, L : L + self._t])[0]
        info["expert_probs"] = probs
        info["expert_action"] = int(sample_categorical(probs[None], self._expert_rng)[0])
        return info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        L = self.task.context_length
        self._obs[:] = self.task.vocab_size
        self._obs[:L] = self.task.sample_contexts(1, self.np_random)[0]
        self._expert_rng = np.random.default_rng(self.np_random.integers(0, 2**63))
        self._t = 0
        self._done = False
        return self._obs.copy(), self._expert_info({"step": 0})

    def step(self, action):
        if self._done:
            raise RuntimeError("the episode is over: call reset() before step()")
        if not self.action_space.contains(action):
            try:
                action = int(action)
            except (TypeError, ValueError):
                action = None
            if action is None or not self.action_space.contains(action):
                raise ValueError(f"action must be a token in [0, {self.task.vocab_size - 1}], got {action!r}")
        L, H = self.task.context_length, self.task.horizon
        self._obs[L + self._t] = int(action)
        self._t += 1
        terminated = self._t == H
        reward = 0.0
        info: dict[str, Any] = {"step": self._t}
        if terminated:
            self._done = True
            reward = float(self.task.reward(self._obs[None, :L], self._obs[None, L:])[0])
        else:
            self._expert_info(info)
        return self._obs.copy(), reward, terminated, False, info

    def render(self):
        if self.render_mode != "ansi":
            return None
        L = self.task.context_length
        return self.task.render_tokens(self._obs[:L], self._obs[L : L + self._t])


class SequenceVectorEnv(VectorEnv):
    """``num_envs`` copies of a task, stepped in one batch (autoreset mode ``NEXT_STEP``).

    ``max_episode_steps`` truncates episodes early (``None`` or ``>= H``: episodes end by
    termination at the horizon). ``info`` holds ``step`` ``(n,)`` and ``expert_action`` ``(n,)`` /
    ``expert_probs`` ``(n, V)`` with the mask ``_expert_action`` for the copies that are running.
    """

    metadata = {"render_modes": ["ansi"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, task: Task, num_envs: int = 1, max_episode_steps: int | None = None, render_mode: str | None = None):
        if not isinstance(task, Task):
            raise ValueError(f"task must be an ar_envs Task, got {type(task).__name__}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.task = task
        self.num_envs = check_int("num_envs", num_envs, 1)
        self.max_episode_steps = None if max_episode_steps is None else check_int("max_episode_steps", max_episode_steps, 1)
        self.render_mode = render_mode
        self.single_observation_space = observation_space(task)
        self.single_action_space = spaces.Discrete(task.vocab_size)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        n, L, H = self.num_envs, task.context_length, task.horizon
        self._obs = np.full((n, L + H), task.vocab_size, dtype=np.int64)
        self._t = np.zeros(n, dtype=np.int64)
        self._autoreset = np.zeros(n, dtype=bool)
        self._rows = np.arange(n)
        self._expert_rng = np.random.default_rng(0)

    def _reset_rows(self, mask: np.ndarray) -> None:
        L = self.task.context_length
        k = int(mask.sum())
        self._obs[mask] = self.task.vocab_size
        if L:
            self._obs[mask, :L] = self.task.sample_contexts(k, self.np_random)
        self._t[mask] = 0

    def _expert_info(self, info: dict, running: np.ndarray) -> dict:
        n, V, L = self.num_envs, self.task.vocab_size, self.task.context_length
        probs = np.zeros((n, V))
        for t in np.unique(self._t[running]):  # all copies share one step count unless truncated
            rows = running & (self._t == t)
            probs[rows] = self.task.expert_probs(self._obs[rows, :L], self._obs[rows, L : L + t])
        actions = np.full(n, -1, dtype=np.int64)
        if running.any():
            actions[running] = sample_categorical(probs[running], self._expert_rng)
        info["expert_probs"] = probs
        info["expert_action"] = actions
        info["_expert_action"] = running.copy()
        info["_expert_probs"] = running.copy()
        return info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._reset_rows(np.ones(self.num_envs, dtype=bool))
        self._expert_rng = np.random.default_rng(self.np_random.integers(0, 2**63))
        self._autoreset[:] = False
        running = np.ones(self.num_envs, dtype=bool)
        info = {"step": self._t.copy(), "_step": running.copy()}
        return self._obs.copy(), self._expert_info(info, running)

    def step(self, actions):
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            if actions.shape == (self.num_envs,) and np.all(np.mod(actions, 1) == 0):
                actions = actions.astype(np.int64)
            else:
                raise ValueError(
                    f"actions must be {self.num_envs} integer tokens, shape ({self.num_envs},), got shape {actions.shape} dtype {actions.dtype}"
                )
        V, L, H = self.task.vocab_size, self.task.context_length, self.task.horizon
        if actions.min() < 0 or actions.max() >= V:
            raise ValueError(f"actions must be tokens in [0, {V - 1}], got values in [{actions.min()}, {actions.max()}]")
        resetting = self._autoreset.copy()
        if resetting.any():
            self._reset_rows(resetting)
        live = ~resetting
        self._obs[self._rows[live], L + self._t[live]] = actions[live]
        self._t[live] += 1
        terminated = live & (self._t == H)
        truncated = np.zeros(self.num_envs, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = live & ~terminated & (self._t >= self.max_episode_steps)
        rewards = np.zeros(self.num_envs)
        if terminated.any():
            rewards[terminated] = self.task.reward(self._obs[terminated, :L], self._obs[terminated, L:])
        self._autoreset = terminated | truncated
        running = ~self._autoreset
        info = {"step": self._t.copy(), "_step": np.ones(self.num_envs, dtype=bool)}
        return self._obs.copy(), rewards, terminated, truncated, self._expert_info(info, running)

    def render(self):
        if self.render_mode != "ansi":
            return None
        L = self.task.context_length
        return "\n".join(
            self.task.render_tokens(self._obs[i, :L], self._obs[i, L : L + self._t[i]]) for i in range(self.num_envs)
        )


# --------------------------------------------------------------------------------------------
# per-task classes for string entry points (``gymnasium.make`` passes task arguments as kwargs)
# --------------------------------------------------------------------------------------------


def make_env_classes(task_cls: type[Task]):
    """``(Env, VectorEnv)`` subclasses that build ``task_cls(**kwargs)`` themselves."""

    class _Env(SequenceEnv):
        def __init__(self, render_mode: str | None = None, **task_kwargs):
            super().__init__(task_cls(**task_kwargs), render_mode=render_mode)

    class _VectorEnv(SequenceVectorEnv):
        def __init__(self, num_envs: int = 1, max_episode_steps: int | None = None, render_mode: str | None = None, **task_kwargs):
            super().__init__(task_cls(**task_kwargs), num_envs=num_envs, max_episode_steps=max_episode_steps, render_mode=render_mode)

    base = task_cls.__name__
    for cls, suffix in ((_Env, "Env"), (_VectorEnv, "VectorEnv")):
        cls.__name__ = cls.__qualname__ = base + suffix
        cls.__module__ = "ar_envs.envs"
        cls.__doc__ = task_cls.__doc__
    return _Env, _VectorEnv
