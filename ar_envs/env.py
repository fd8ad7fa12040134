"""Gymnasium environments over any :class:`~ar_envs.core.Task`.

* :class:`SequenceEnv`: one episode = one sequence; generating a token is a step.
* :class:`SequenceVectorEnv`: ``num_envs`` copies stepped with array operations (no Python loop
  over copies), autoreset mode ``NEXT_STEP`` like Gymnasium's own ``CartPoleVectorEnv``.

Observation: ``MultiDiscrete`` token array of fixed length ``L + H``: the context tokens, then the
tokens generated so far, padded with the token id ``V`` (one past the vocabulary). Its dtype is
the smallest signed integer type that holds every token and SB3's one-hot width
(:func:`token_dtype`: ``int16`` for every task at its defaults), which keeps copies and replay
buffers small; ``gymnasium.wrappers.DtypeObservation`` (``gymnasium.wrappers.vector.DtypeObservation``)
converts, e.g. to ``np.int64``. Stock SB3 policies accept it (they one-hot encode it). Action:
``Discrete(V)``. Reward: the task's sequence reward at the last step, ``0`` before.

``info``: ``step`` (tokens generated so far) and ``expert_action`` (a draw from the expert's
next-token distribution; for a deterministic expert, its token). On request
(``expert_probs=True`` at construction, e.g. ``gym.make(env_id, expert_probs=True)``) also
``expert_probs``, that distribution (float64, ``(V,)`` per copy): it is ``V`` numbers per copy
and step, so it is off by default. ``info`` has the same keys, dtypes and shapes after
:meth:`reset` and after every step, the last one included, so the natural loop
``env.step(info["expert_action"])`` never fails and recorders that need fixed info keys (e.g.
Minari's ``DataCollector(record_infos=True)``) work: after the last token, where there is
nothing left to predict, ``expert_action`` is the placeholder :data:`END_ACTION` (token ``0``, a
valid action; the vector env marks it with ``_expert_action`` false) and ``expert_probs`` is
one-hot on it. The vector env's autoreset step ignores its actions, so passing that placeholder
on (or anything of the right shape) is accepted there.
``action_masks()`` gives the task's :meth:`~ar_envs.core.Task.action_mask` for the next token
(sb3-contrib's MaskablePPO reads it).

The expert's draws come from their own generator, derived from the environment's ``np_random``
at the first reset and at every seeded reset, so the contexts do not depend on them. With the
same seed, ``SequenceVectorEnv(task, 1)`` reproduces ``SequenceEnv(task)`` step for step
(observations, rewards and expert actions over consecutive episodes).
"""

from __future__ import annotations

import copyreg
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .core import (DeterministicTask, Task, check_bool, check_int, check_memory, check_probability_rows, check_task_class,
                   one_hot_probs, sample_categorical)

END_ACTION = 0
"""``info["expert_action"]`` after the last token of an episode, where the expert has nothing
left to predict: token ``0``, always a valid action (``info["expert_probs"]`` is one-hot on it).
The single env never steps on it (the episode is over: call ``reset``); the vector env's next
step is its autoreset step, which ignores its actions."""


def token_dtype(task: Task) -> np.dtype:
    """The observations' dtype: the smallest of ``int16``, ``int32``, ``int64`` that holds every
    token and the observation space's one-hot width ``sum(nvec) = L * C + H * (V + 1)``.

    ``MultiDiscrete`` stores ``nvec`` in its dtype, and SB3 sizes its one-hot encoding with
    ``sum(observation_space.nvec)``, computed in that dtype: the width must fit, or stock SB3
    policies would see an overflowed size. Signed, so token arithmetic does not wrap around.
    """
    width = task.context_length * task.context_vocab_size + task.horizon * (task.vocab_size + 1)
    for dtype in (np.int16, np.int32):
        if width <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def check_env_memory(owner: str, task: Task, num_envs: int, expert_probs: bool) -> None:
    """Refuse (``ValueError`` naming ``owner``'s arguments and the task) ``num_envs`` copies of
    ``task`` whose buffers would not fit in :func:`~ar_envs.core.memory_limit`: the
    observation spaces (``nvec`` of ``L + H`` entries, batched), the observation buffer and
    the copy each step returns, sampling the episodes (:meth:`~ar_envs.core.Task.sample_bytes`)
    and, with ``expert_probs``, the ``(num_envs, V)`` distributions."""
    L, H, V = task.context_length, task.horizon, task.vocab_size
    nbytes = 8 * 3 * (L + H) + num_envs * (L + H) * (4 * token_dtype(task).itemsize + 8) + task.sample_bytes(num_envs)
    if expert_probs:
        nbytes += 8 * 2 * num_envs * V
    check_memory(f"{owner} of {task.describe()}", nbytes,
                 f"the observations and expert work of {num_envs} cop{'y' if num_envs == 1 else 'ies'}")


def observation_space(task: Task) -> spaces.MultiDiscrete:
    nvec = [task.context_vocab_size] * task.context_length + [task.vocab_size + 1] * task.horizon
    return spaces.MultiDiscrete(np.array(nvec, dtype=np.int64), dtype=token_dtype(task))


def _sample_rows(probs: np.ndarray, rng: np.random.Generator, one_hot: bool = False, task: Task | None = None) -> np.ndarray:
    """The same draws as :func:`~ar_envs.core.sample_categorical` (same generator use, same
    results), faster on the env's hot path: for one-hot rows (deterministic experts) the inverse
    CDF of a uniform in [0, 1) is the argmax, and for short rows the CDF is built column by
    column (sequential sums, exactly as ``cumsum``, without its slow short-axis loop).
    ``task``: check that the rows sum to 1 (:func:`~ar_envs.core.check_probability_rows`)."""
    n, V = probs.shape
    if V > 8 and not one_hot:
        if task is not None:
            check_probability_rows(task, probs)
        return sample_categorical(probs, rng)
    r = rng.random(n)
    if one_hot:
        return probs.argmax(axis=1)
    cdf = [probs[:, 0]]
    for v in range(1, V):  # a loop over tokens, not over copies
        cdf.append(cdf[-1] + probs[:, v])
    if task is not None:
        check_probability_rows(task, probs, cdf[-1].min(), cdf[-1].max())
    u = r * cdf[-1]
    out = (u >= cdf[0]).astype(np.int64)
    for c in cdf[1:]:
        out += u >= c
    return np.minimum(out, V - 1, out=out)


def _sample_row(probs: np.ndarray, rng: np.random.Generator, task: Task | None = None) -> int:
    """One draw from ``probs`` ``(V,)``, equal to ``sample_categorical(probs[None], rng)[0]``;
    ``task``: check that the row sums to 1 (:func:`~ar_envs.core.check_probability_rows`)."""
    row = probs.tolist()
    u = rng.random()
    total = 0.0
    cdf = []
    for p in row:  # Python floats add exactly like numpy's sequential cumsum
        total += p
        cdf.append(total)
    if task is not None:
        check_probability_rows(task, None, total, total)
    u *= total
    k = 0
    for c in cdf:
        k += u >= c
    return min(k, len(row) - 1)


def _check_render_mode(render_mode, render_modes) -> str | None:
    """``render_mode`` as given: ``None`` or a string. A mode the environment does not render
    (e.g. the ``"rgb_array"`` SB3's ``make_vec_env`` passes to every env) is accepted with a
    warning, as ``gymnasium.make`` and Gymnasium's own environments do; :meth:`render` then
    warns and returns ``None``."""
    if render_mode is not None and not isinstance(render_mode, str):
        raise ValueError(f"render_mode must be None or a string such as 'ansi', got {render_mode!r}")
    if render_mode is not None and render_mode not in render_modes:
        gym.logger.warn(f"render_mode={render_mode!r} is not one of the render modes of this environment "
                        f"({list(render_modes)}): render() will return None")
    return render_mode


def _render_unsupported(render_mode) -> None:
    if render_mode is None:
        gym.logger.warn("render() without a render mode returns None; construct the environment with "
                        "render_mode='ansi', e.g. gym.make(env_id, render_mode='ansi'), to render text")
    else:
        gym.logger.warn(f"render_mode={render_mode!r} is not supported (only 'ansi'): render() returns None")


class SequenceEnv(gym.Env):
    """A task as a single Gymnasium environment (see the module docstring for the spaces)."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, task: Task, render_mode: str | None = None, expert_probs: bool = False):
        if not isinstance(task, Task):
            raise ValueError(f"task must be an ar_envs Task, got {type(task).__name__}")
        self.render_mode = _check_render_mode(render_mode, self.metadata["render_modes"])
        self.task = task
        self.expert_probs = check_bool("expert_probs", expert_probs)
        check_env_memory(type(self).__name__, task, 1, self.expert_probs)
        self.observation_space = observation_space(task)
        self.action_space = spaces.Discrete(task.vocab_size)
        L, H = task.context_length, task.horizon
        self._obs = np.full(L + H, task.vocab_size, dtype=token_dtype(task))
        self._t = 0
        self._done = True
        self._expert_rng: np.random.Generator | None = None
        self._plan = None

    # the expert's distribution and a draw from it, after the current prefix
    def _expert_info(self, info: dict) -> dict:
        L = self.task.context_length
        ctx, prefix = self._obs[None, :L], self._obs[None, L : L + self._t]
        if self._t == self.task.horizon:  # nothing to predict after the last token: no draw
            action = END_ACTION
            if self.expert_probs:
                probs = one_hot_probs(action, self.task.vocab_size)
        elif isinstance(self.task, DeterministicTask):  # one token, no draw
            action = int(self.task.expert_next_token_planned(ctx, prefix, self._plan)[0])
            if self.expert_probs:
                probs = one_hot_probs(action, self.task.vocab_size)
        else:
            probs = self.task.expert_probs_planned(ctx, prefix, self._plan)[0]
            action = _sample_row(probs, self._expert_rng, self.task)
        info["expert_action"] = action
        if self.expert_probs:
            info["expert_probs"] = probs
        return info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        L = self.task.context_length
        self._obs[:] = self.task.vocab_size
        _, self._plan = self.task.sample_contexts_planned(1, self.np_random, out=self._obs[None, :L])
        if seed is not None or self._expert_rng is None:
            self._expert_rng = np.random.default_rng(self.np_random.integers(0, 2**63))
        self._t = 0
        self._done = False
        return self._obs.copy(), self._expert_info({"step": 0})

    def _check_action(self, action) -> int:
        V = self.task.vocab_size
        if isinstance(action, np.ndarray) and action.shape == ():
            action = action.item()
        if type(action) is int or isinstance(action, np.integer):
            a = int(action)
        elif isinstance(action, (float, np.floating)) and float(action).is_integer():
            a = int(action)  # an integral float (e.g. from a float array) names a token
        else:
            a = -1
        if not 0 <= a < V:
            raise ValueError(f"action must be a token in [0, {V - 1}], got {action!r}")
        return a

    def step(self, action):
        if self._done:
            raise RuntimeError("the episode is over: call reset() before step()")
        action = self._check_action(action)
        L, H = self.task.context_length, self.task.horizon
        self._obs[L + self._t] = action
        self._t += 1
        terminated = self._t == H
        reward = 0.0
        info: dict[str, Any] = {"step": self._t}
        if terminated:
            self._done = True
            reward = float(self.task.reward_planned(self._obs[None, :L], self._obs[None, L:], self._plan)[0])
        self._expert_info(info)  # the same keys at every step (END_ACTION after the last token)
        return self._obs.copy(), reward, terminated, False, info

    def action_masks(self) -> np.ndarray:
        """The task's :meth:`~ar_envs.core.Task.action_mask` for the next token, bool ``(V,)``
        (sb3-contrib's MaskablePPO reads it); every token while no episode is running."""
        if self._done:
            return np.ones(self.task.vocab_size, dtype=bool)
        L = self.task.context_length
        return np.asarray(self.task.action_mask(self._obs[None, :L], self._obs[None, L : L + self._t])[0], dtype=bool)

    def render(self):
        if self.render_mode != "ansi":
            _render_unsupported(self.render_mode)
            return None
        L = self.task.context_length
        return self.task.render_tokens(self._obs[:L], self._obs[L : L + self._t])


class SequenceVectorEnv(VectorEnv):
    """``num_envs`` copies of a task, stepped in one batch (autoreset mode ``NEXT_STEP``).

    ``max_episode_steps`` truncates episodes early (``None`` or ``>= H``: episodes end by
    termination at the horizon). ``info`` holds ``step`` ``(n,)`` and ``expert_action`` ``(n,)``
    (and with ``expert_probs=True`` ``expert_probs`` ``(n, V)``) with the masks
    ``_expert_action`` (``_expert_probs``) for the copies that are running (all of them, except
    on the step an episode ends, where the keys hold :data:`END_ACTION` and its one-hot row).

    All copies move in lockstep: every episode lasts exactly ``H`` steps (or
    ``max_episode_steps``) and :meth:`reset` resets every copy, so the copies share one step
    count, end their episodes on the same step and, ``NEXT_STEP``, all reset on the next one
    (that step's actions are ignored). A step is therefore a handful of whole-array operations.
    """

    metadata = {"render_modes": ["ansi"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, task: Task, num_envs: int = 1, max_episode_steps: int | None = None, render_mode: str | None = None,
                 expert_probs: bool = False):
        if not isinstance(task, Task):
            raise ValueError(f"task must be an ar_envs Task, got {type(task).__name__}")
        render_mode = _check_render_mode(render_mode, self.metadata["render_modes"])
        self.task = task
        self.expert_probs = check_bool("expert_probs", expert_probs)
        self.num_envs = check_int("num_envs", num_envs, 1)
        self.max_episode_steps = None if max_episode_steps is None else check_int("max_episode_steps", max_episode_steps, 1)
        check_env_memory(f"{type(self).__name__}: num_envs={self.num_envs}", task, self.num_envs, self.expert_probs)
        self.render_mode = render_mode
        self.single_observation_space = observation_space(task)
        self.single_action_space = spaces.Discrete(task.vocab_size)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        n, L, H = self.num_envs, task.context_length, task.horizon
        self._obs = np.full((n, L + H), task.vocab_size, dtype=token_dtype(task))
        self._t = 0  # tokens generated so far, the same in every copy
        self._ended = False  # the episodes ended on the last step: the next step resets them
        self._expert_rng: np.random.Generator | None = None
        self._plan = None

    def _new_episodes(self) -> None:
        L = self.task.context_length
        self._obs[:, L:] = self.task.vocab_size
        if L:
            _, self._plan = self.task.sample_contexts_planned(self.num_envs, self.np_random, out=self._obs[:, :L])
        else:
            self._plan = self.task.expert_plan(self._obs[:, :0])
        self._t = 0
        self._ended = False

    def _expert_info(self, info: dict) -> dict:
        n, V, L = self.num_envs, self.task.vocab_size, self.task.context_length
        probs = None
        if self._ended:  # nothing to predict after the last token: a valid placeholder, masked
            actions = np.full(n, END_ACTION, dtype=np.int64)
            if self.expert_probs:
                probs = one_hot_probs(actions, V)
        elif isinstance(self.task, DeterministicTask):  # the expert's tokens, no draw
            actions = self.task.expert_next_token_planned(self._obs[:, :L], self._obs[:, L : L + self._t], self._plan)
            if self.expert_probs:
                probs = one_hot_probs(actions, V)
        else:
            probs = self.task.expert_probs_planned(self._obs[:, :L], self._obs[:, L : L + self._t], self._plan)
            actions = _sample_rows(probs, self._expert_rng, self.task.deterministic_expert, self.task)
        running = np.full(n, not self._ended)
        info["expert_action"] = actions
        info["_expert_action"] = running
        if self.expert_probs:
            info["expert_probs"] = probs
            info["_expert_probs"] = running.copy()
        return info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._new_episodes()
        if seed is not None or self._expert_rng is None:
            self._expert_rng = np.random.default_rng(self.np_random.integers(0, 2**63))
        n = self.num_envs
        info = {"step": np.zeros(n, dtype=np.int64), "_step": np.ones(n, dtype=bool)}
        return self._obs.copy(), self._expert_info(info)

    def _check_actions(self, actions) -> np.ndarray | None:
        """``actions`` as int64 tokens ``(n,)``, or ``ValueError``; on the autoreset step, whose
        actions are ignored, only their shape is checked (and ``None`` returned)."""
        n, V = self.num_envs, self.task.vocab_size
        actions = np.asarray(actions)
        if actions.shape != (n,):
            raise ValueError(f"actions must be {n} integer tokens, shape ({n},), got shape {actions.shape}")
        if self._ended:
            return None
        if not np.issubdtype(actions.dtype, np.integer):
            integral = np.issubdtype(actions.dtype, np.floating) and bool(np.all(np.mod(actions, 1) == 0))
            if not integral:
                raise ValueError(f"actions must be {n} integer tokens, shape ({n},), got dtype {actions.dtype}")
            actions = actions.astype(np.int64)
        lo, hi = actions.min(), actions.max()
        if lo < 0 or hi >= V:
            raise ValueError(f"actions must be tokens in [0, {V - 1}], got values in [{lo}, {hi}]")
        return actions

    def step(self, actions):
        if self._expert_rng is None:
            raise RuntimeError("call reset() before step()")
        actions = self._check_actions(actions)
        n, L, H = self.num_envs, self.task.context_length, self.task.horizon
        terminated = truncated = False
        if self._ended:  # NEXT_STEP autoreset: every copy starts a new episode, actions ignored
            self._new_episodes()
        else:
            self._obs[:, L + self._t] = actions
            self._t += 1
            terminated = self._t == H
            truncated = not terminated and self.max_episode_steps is not None and self._t >= self.max_episode_steps
            self._ended = terminated or truncated
        if terminated:
            rewards = np.array(self.task.reward_planned(self._obs[:, :L], self._obs[:, L:], self._plan), dtype=np.float64)
        else:
            rewards = np.zeros(n)
        info = {"step": np.full(n, self._t, dtype=np.int64), "_step": np.ones(n, dtype=bool)}
        obs = self._obs.copy()
        return obs, rewards, np.full(n, terminated), np.full(n, truncated), self._expert_info(info)

    def action_masks(self) -> np.ndarray:
        """The task's :meth:`~ar_envs.core.Task.action_mask` for every copy, bool ``(n, V)``;
        every token on the autoreset step (its actions are ignored) and before :meth:`reset`."""
        n, V, L = self.num_envs, self.task.vocab_size, self.task.context_length
        if self._ended or self._expert_rng is None:
            return np.ones((n, V), dtype=bool)
        return np.asarray(self.task.action_mask(self._obs[:, :L], self._obs[:, L : L + self._t]), dtype=bool)

    def render(self):
        if self.render_mode != "ansi":
            _render_unsupported(self.render_mode)
            return None
        L, t = self.task.context_length, self._t
        return "\n".join(self.task.render_tokens(self._obs[i, :L], self._obs[i, L : L + t]) for i in range(self.num_envs))


# --------------------------------------------------------------------------------------------
# per-task classes for string entry points (``gymnasium.make`` passes task arguments as kwargs)
# --------------------------------------------------------------------------------------------


class _TaskEnvClass(type):
    """The metaclass of the classes :func:`make_env_classes` makes. They are made at run time, so
    pickle cannot find them by name; :mod:`copyreg` pickles them (and so their instances) as
    "``make_env_classes(task_cls)``", which any process that can import ``task_cls`` rebuilds:
    ``AsyncVectorEnv`` / SB3's ``SubprocVecEnv`` and ``pickle`` work with them."""


def _env_class(task_cls: type[Task], vector: bool) -> type:
    return make_env_classes(task_cls)[1 if vector else 0]


def _reduce_env_class(cls):
    made = _ENV_CLASSES.get(cls._task_cls, ())
    if cls in made:
        return _env_class, (cls._task_cls, cls._is_vector)
    return cls.__qualname__  # a user's subclass of one of them: by name, as any class


copyreg.pickle(_TaskEnvClass, _reduce_env_class)

_ENV_CLASSES: dict[type, tuple[type, type]] = {}


def make_env_classes(task_cls: type[Task]):
    """``(Env, VectorEnv)`` subclasses that build ``task_cls(**kwargs)`` themselves, the entry
    points to register a task as a Gymnasium environment::

        MyTaskEnv, MyTaskVectorEnv = make_env_classes(MyTask)        # at module level
        gymnasium.register("my_pkg/MyTask-v0", entry_point="my_pkg.tasks:MyTaskEnv",
                           vector_entry_point="my_pkg.tasks:MyTaskVectorEnv")

    The same class pair for the same ``task_cls`` (made once per process). They pickle by
    reference to ``task_cls`` (so subprocess vector envs work) and are named
    ``<module of task_cls>.<TaskName>Env`` / ``...VectorEnv``. Raises ``ValueError`` for a task
    class that cannot be rebuilt from its :meth:`~ar_envs.core.Task.task_args` (see
    :func:`~ar_envs.core.check_task_class`).
    """
    if task_cls in _ENV_CLASSES:
        return _ENV_CLASSES[task_cls]
    check_task_class(task_cls)

    class _Env(SequenceEnv, metaclass=_TaskEnvClass):
        def __init__(self, render_mode: str | None = None, expert_probs: bool = False, **task_kwargs):
            super().__init__(task_cls(**task_kwargs), render_mode=render_mode, expert_probs=expert_probs)

    class _VectorEnv(SequenceVectorEnv, metaclass=_TaskEnvClass):
        def __init__(self, num_envs: int = 1, max_episode_steps: int | None = None, render_mode: str | None = None,
                     expert_probs: bool = False, **task_kwargs):
            super().__init__(task_cls(**task_kwargs), num_envs=num_envs, max_episode_steps=max_episode_steps,
                             render_mode=render_mode, expert_probs=expert_probs)

    base = task_cls.__name__
    module = "ar_envs.envs" if task_cls.__module__.startswith("ar_envs.") else task_cls.__module__
    for cls, suffix, vector in ((_Env, "Env", False), (_VectorEnv, "VectorEnv", True)):
        cls.__name__ = cls.__qualname__ = base + suffix
        cls.__module__ = module
        cls.__doc__ = task_cls.__doc__
        cls._task_cls, cls._is_vector = task_cls, vector
    _ENV_CLASSES[task_cls] = (_Env, _VectorEnv)
    return _Env, _VectorEnv
