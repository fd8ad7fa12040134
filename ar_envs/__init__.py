"""ar-envs: sequence generation as Gymnasium environments with experts after any prefix.

``import ar_envs`` registers every environment under the ``ar_envs/`` namespace::

    import gymnasium as gym
    env = gym.make("ar_envs/TwoBranch-v0", horizon=50, eps=0.01)
    venv = gym.make_vec("ar_envs/TwoBranch-v0", num_envs=1024, vectorization_mode="vector_entry_point")
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import diagnostics, metrics
from .core import FeatureMap, Task
from .env import SequenceEnv, SequenceVectorEnv
from .expert import ExpertPolicy
from .tasks import TASKS, get_task_class, make_task


def _register_all() -> None:
    import gymnasium as gym

    from .envs import ENV_IDS

    for env_id, cls in ENV_IDS.items():
        full = f"ar_envs/{env_id}"
        if full in gym.registry:
            continue
        gym.register(
            id=full,
            entry_point=f"ar_envs.envs:{cls}Env",
            vector_entry_point=f"ar_envs.envs:{cls}VectorEnv",
        )


_register_all()

__all__ = [
    "Task",
    "FeatureMap",
    "SequenceEnv",
    "SequenceVectorEnv",
    "ExpertPolicy",
    "TASKS",
    "get_task_class",
    "make_task",
    "metrics",
    "diagnostics",
    "__version__",
]
