"""A Stable-Baselines3 ``VecEnv`` over the native batched environment, so PPO collects roll-outs
at native speed.

SB3 does not accept Gymnasium ``VectorEnv``s, only its own ``VecEnv`` interface (naming here:
Gymnasium's ``VectorEnv`` vs SB3's ``VecEnv``; :class:`ar_envs.SequenceVectorEnv` is the former,
:class:`SequenceVecEnv` the latter). The two differ in how an episode ends:

* ``SequenceVectorEnv`` (autoreset ``NEXT_STEP``) returns the complete sequence on the step an
  episode ends and resets on the following step, ignoring that step's actions.
* An SB3 ``VecEnv`` resets in the same step: ``step`` returns the *first* observation of the
  next episode, ``dones`` marks the copies whose episode ended, and each such copy's info dict
  holds the complete sequence as ``terminal_observation`` (and ``TimeLimit.truncated``).

:class:`SequenceVecEnv` performs the native env's reset step right after the final step of the
episode (the copies run in lockstep, so every copy ends on the same step) and returns its
observation. Everything else is as with ``DummyVecEnv([lambda: SequenceEnv(task)] * n)``: the
same observations, rewards (float32), ``dones`` and info dicts (``step``, ``expert_action``, and ``expert_probs`` with ``expert_probs=True``,
at every step: :data:`ar_envs.env.END_ACTION` after an episode's last token; a new episode's
first info is in ``reset_infos``), and
the same law. With ``n_envs=1`` and the same seed it reproduces that ``DummyVecEnv`` step for
step; with more copies one generator serves the whole batch (``seed(s)`` seeds it with ``s``,
where ``DummyVecEnv`` seeds copy ``i`` with ``s + i``), so the draws differ, not their law.

``action_masks()`` (``(n_envs, V)``; also through ``env_method("action_masks")``, which is what
sb3-contrib's MaskablePPO calls) gives the task's :meth:`~ar_envs.core.Task.action_mask`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from ar_envs.core import Task
from ar_envs.env import SequenceVectorEnv

__all__ = ["SequenceVecEnv"]

# methods of the batched env whose result has one row per copy (env_method returns the rows)
PER_COPY_METHODS = ("action_masks",)


class SequenceVecEnv(VecEnv):
    """``n_envs`` copies of ``task`` as an SB3 ``VecEnv`` (see the module docstring).

    Args:
        task: the :class:`ar_envs.Task`.
        n_envs: number of copies (>= 1).
        max_episode_steps: truncate episodes after this many tokens (``None``: episodes end at
            the horizon); a truncated copy has ``TimeLimit.truncated = True`` in its info.
        render_mode: ``None`` or ``"ansi"`` (``render()`` returns one line per copy).
        expert_probs: also put the expert's next-token distribution in the info dicts.

    ``env`` is the underlying :class:`ar_envs.SequenceVectorEnv`. ``get_attr`` reads its
    attributes (the same value for every index: the copies share one environment),
    ``set_attr`` sets them (for all copies at once), and ``env_method`` calls its methods once:
    ``action_masks`` returns one row per requested index, any other method's result is
    returned once per index.
    """

    def __init__(self, task: Task, n_envs: int = 1, max_episode_steps: int | None = None, render_mode: str | None = None,
                 expert_probs: bool = False):
        if not isinstance(task, Task):
            raise ValueError(f"task must be an ar_envs Task, got {type(task).__name__}")
        self.task = task
        self.env = SequenceVectorEnv(task, num_envs=n_envs, max_episode_steps=max_episode_steps, render_mode=render_mode,
                                     expert_probs=expert_probs)
        super().__init__(self.env.num_envs, self.env.single_observation_space, self.env.single_action_space)
        self._actions: np.ndarray | None = None

    # ------------------------------------------------------------------ infos
    def _running_infos(self, info: dict) -> list[dict[str, Any]]:
        """Per-copy info dicts of a step on which no episode ended (as ``SequenceEnv`` gives)."""
        steps, actions, probs = info["step"], info["expert_action"], info.get("expert_probs")
        infos = [{"step": int(steps[i]), "expert_action": int(actions[i])} for i in range(self.num_envs)]
        if probs is not None:
            for i, d in enumerate(infos):
                d["expert_probs"] = probs[i]
        return infos

    # ------------------------------------------------------------------ the VecEnv interface
    def reset(self) -> np.ndarray:
        """Start new episodes in every copy (a seed given to :meth:`seed` is used here, once)."""
        options = self._options[0] or None
        obs, info = self.env.reset(seed=self._seeds[0], options=options)
        self.reset_infos = self._running_infos(info)
        self._reset_seeds()
        self._reset_options()
        self._actions = None
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        if self._actions is None:
            raise RuntimeError("call reset() and then step_async(actions) before step_wait()")
        actions, self._actions = self._actions, None
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        dones = terminated | truncated
        if dones[0]:  # lockstep: every copy's episode ended on this step
            infos = self._running_infos(info)  # expert_action: the placeholder END_ACTION
            for i, d in enumerate(infos):
                d["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                d["terminal_observation"] = obs[i]
            # the native NEXT_STEP reset step (its actions are ignored) gives the new episodes
            obs, _, _, _, reset_info = self.env.step(np.zeros(self.num_envs, dtype=np.int64))
            self.reset_infos = self._running_infos(reset_info)
        else:
            infos = self._running_infos(info)
            for d in infos:
                d["TimeLimit.truncated"] = False
        return obs, rewards.astype(np.float32), dones, infos

    def action_masks(self) -> np.ndarray:
        """Bool ``(n_envs, V)``: the tokens the task allows next in each copy."""
        return self.env.action_masks()

    def close(self) -> None:
        self.env.close()

    def render(self, mode: str | None = None) -> str | None:
        if mode is not None and mode != self.render_mode:
            raise ValueError(f"mode must be None or the render_mode given at construction ({self.render_mode!r}), got {mode!r}")
        return self.env.render()

    def get_images(self):
        raise NotImplementedError("SequenceVecEnv renders text (render_mode='ansi'), not images")

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        idx = list(self._get_indices(indices))
        for i in idx:
            if not (isinstance(i, (int, np.integer)) and 0 <= i < self.num_envs):
                raise ValueError(f"indices must be copies in [0, {self.num_envs - 1}], got {i!r}")
        return idx

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.env, attr_name)  # AttributeError if absent (has_attr relies on it)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if sorted(self._indices(indices)) != list(range(self.num_envs)):
            raise ValueError(f"indices must name every copy (None or all of 0..{self.num_envs - 1}): the copies share one environment")
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        idx = self._indices(indices)
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        if method_name in PER_COPY_METHODS:
            return [result[i] for i in idx]
        return [result for _ in idx]

    def env_is_wrapped(self, wrapper_class, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]  # the copies are not gymnasium.Env objects
