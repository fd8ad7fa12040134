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
from ar_envs.data import episode_observations, episode_rewards

__all__ = ["episode_observations", "to_imitation_trajectories", "INSTALL_HINT"]

INSTALL_HINT = (
    "the 'imitation' library is not importable; it pins gymnasium~=0.29, so install it without its "
    "dependencies beside this package's Gymnasium 1.x: pip install --no-deps imitation==1.0.1"
)


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
    rews = episode_rewards(task, demos.contexts, demos.sequences).astype(np.float32)
    return [types.TrajectoryWithRew(obs=obs[i], acts=acts[i], infos=None, terminal=True, rews=rews[i])
            for i in range(len(acts))]
