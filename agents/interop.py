"""Interoperability with the ``imitation`` library (HumanCompatibleAI/imitation).

``imitation`` 1.0.1 pins ``gymnasium~=0.29`` and ``stable-baselines3~=2.2``; a plain ``pip install
imitation`` would downgrade both, so it is not a dependency of this package. Install it beside
Gymnasium 1.x without its pins (its data types and BC run there)::

    pip install --no-deps imitation==1.0.1

:func:`to_imitation_trajectories` turns our demonstrations into ``imitation.data.types.Trajectory``
objects, one per episode, with the observations the environments (:mod:`ar_envs.env`) produce:
:func:`episode_observations` builds them without running an env.
"""

from __future__ import annotations

import numpy as np

from ar_envs.core import Task
from ar_envs.env import token_dtype

INSTALL_HINT = (
    "the 'imitation' library is not importable; it pins gymnasium~=0.29, so install it without its "
    "dependencies beside this package's Gymnasium 1.x: pip install --no-deps imitation==1.0.1"
)


def episode_observations(task: Task, contexts, sequences) -> np.ndarray:
    """The ``H + 1`` observations of each episode, ``(n, H + 1, L + H)``, in the environments'
    token dtype (:func:`ar_envs.env.token_dtype`).

    Observation ``t`` (``t = 0 .. H``) is what :class:`ar_envs.env.SequenceEnv` shows after ``t``
    tokens: the context, the first ``t`` tokens of the sequence, then the padding id ``V``.
    Observation ``0`` is the reset observation, observation ``H`` the terminal one.
    """
    contexts = np.asarray(contexts)
    sequences = np.asarray(sequences)
    L, H, V = task.context_length, task.horizon, task.vocab_size
    if sequences.ndim != 2 or sequences.shape[1] != H:
        raise ValueError(f"sequences must have shape (n, {H}) (n, horizon), got {sequences.shape}")
    n = len(sequences)
    if contexts.shape != (n, L):
        raise ValueError(f"contexts must have shape ({n}, {L}) (n, context_length), got {contexts.shape}")
    if sequences.size and (sequences.min() < 0 or sequences.max() >= V):
        raise ValueError(f"sequences must hold tokens in [0, {V - 1}], got values in [{sequences.min()}, {sequences.max()}]")
    obs = np.full((n, H + 1, L + H), V, dtype=token_dtype(task))
    obs[:, :, :L] = contexts[:, None, :]
    shown = np.arange(H)[None, :] < np.arange(H + 1)[:, None]  # (H + 1, H): token h is shown after step t > h
    obs[:, :, L:] = np.where(shown[None], sequences[:, None, :], V)
    return obs


def to_imitation_trajectories(demos, task: Task, rewards: bool = False) -> list:
    """``imitation.data.types.Trajectory`` objects, one per demonstration.

    ``obs``: the ``H + 1`` env observations of the episode (:func:`episode_observations`),
    ``acts``: the ``H`` tokens, ``infos``: ``None``, ``terminal``: ``True`` (every episode ends at
    the horizon). ``rewards=True`` gives ``TrajectoryWithRew`` with the env's rewards (the task's
    sequence reward at the last step, 0 before). Raises ``ImportError`` with the install recipe
    when ``imitation`` is not importable.
    """
    try:
        from imitation.data import types
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    if not isinstance(task, Task):
        raise ValueError(f"task must be an ar_envs Task, got {type(task).__name__}")
    obs = episode_observations(task, demos.contexts, demos.sequences)
    acts = np.asarray(demos.sequences, dtype=np.int64)
    if not rewards:
        return [types.Trajectory(obs=obs[i], acts=acts[i], infos=None, terminal=True) for i in range(len(acts))]
    final = np.asarray(task.reward(demos.contexts, demos.sequences), dtype=np.float32)
    rews = np.zeros(acts.shape, dtype=np.float32)
    rews[:, -1] = final
    return [types.TrajectoryWithRew(obs=obs[i], acts=acts[i], infos=None, terminal=True, rews=rews[i])
            for i in range(len(acts))]
