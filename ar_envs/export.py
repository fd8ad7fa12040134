"""Export demonstrations to `Minari <https://minari.farama.org>`_, Farama's offline-RL dataset format.

Minari is optional (``pip install "ar-envs[minari]"``, i.e. ``minari[hdf5]``, which installs
beside Gymnasium 1.x). :func:`to_minari` writes one Minari episode per demonstration with
exactly what the environment shows along the expert's path: the ``H + 1`` observations
(:func:`~ar_envs.data.episode_observations`), the ``H`` tokens as actions, the rewards (``0``,
then the task's sequence reward at the last step), ``terminations`` true at the last step and no
truncations. The dataset records the environment spec with the task's arguments, so
``dataset.recover_environment()`` makes the same environment, and Minari's metadata fields
carry the task and the seed::

    from ar_envs.data import generate
    from ar_envs.export import to_minari
    from ar_envs.tasks import PathStar

    task = PathStar(degree=2, path_length=4, num_nodes=20)
    dataset = to_minari(generate(task, 1000, seed=0), "ar_envs/path-star/expert-v0", task=task)
    dataset = minari.load_dataset("ar_envs/path-star/expert-v0")   # later, anywhere

Minari writes under its dataset root (``MINARI_DATASETS_PATH``, default ``~/.minari/datasets``)
and refuses an id that exists there. A task of your own works too, once registered as a
Gymnasium environment with string entry points (see ``docs/custom_task.md``): it is found by its
``env_id`` in any namespace, or pass ``env=`` (the registered id, or an environment made with
``gymnasium.make``).
"""

from __future__ import annotations

import json

import numpy as np

from .core import Task
from .data import Demonstrations, episode_observations, episode_rewards

__all__ = ["to_minari", "registered_env_id", "INSTALL_HINT"]

INSTALL_HINT = 'Minari is not installed: pip install "minari[hdf5]>=0.5" (or "ar-envs[minari]")'


def registered_env_id(task: Task) -> str:
    """The registered Gymnasium id of ``task``'s environment: ``ar_envs/<env_id>`` for ours, else
    the one id in any namespace whose name is ``task.env_id`` (``my_pkg/MyTask-v0`` for
    ``env_id = "MyTask-v0"``); ``ValueError`` if there is none or more than one."""
    import gymnasium as gym

    own = f"ar_envs/{task.env_id}"
    if own in gym.registry:
        return own
    found = sorted(k for k in gym.registry if k == task.env_id or k.endswith("/" + task.env_id))
    if len(found) != 1:
        what = "no environment is registered" if not found else f"several environments are registered ({found})"
        raise ValueError(f"{what} for env_id {task.env_id!r} of {type(task).__name__}: register it with "
                         "gymnasium.register (docs/custom_task.md) or pass env= (an id or an environment)")
    return found[0]


def _check_env_fits(env, task: Task) -> None:
    from .env import observation_space

    inner = getattr(env.unwrapped, "task", None)
    if inner is not None and (type(inner) is not type(task) or inner.task_args() != task.task_args()):
        raise ValueError(f"env holds the task {inner!r}, not the demonstrations' task {task!r}")
    if env.observation_space != observation_space(task) or getattr(env.action_space, "n", None) != task.vocab_size:
        raise ValueError(f"env's spaces ({env.observation_space}, {env.action_space}) are not those of {task!r}")
    if env.spec is None:
        raise ValueError("env has no spec (it was not made by gymnasium.make): pass a registered id or gymnasium.make(id)")


def to_minari(demos: Demonstrations, dataset_id: str, task: Task | None = None, *, env=None, author: str | None = None,
              author_email: str | None = None, code_permalink: str | None = None, description: str | None = None,
              data_format: str | None = None):
    """Write ``demos`` as the Minari dataset ``dataset_id`` and return it (a ``MinariDataset``).

    ``task``: the demonstrations' task; ``None`` takes the task of ``env`` if given, else
    rebuilds it from ``demos.task_name`` and ``demos.task_args`` (as
    :func:`~ar_envs.data.generate` records them). ``env``: the environment the dataset records
    (its spec, so ``recover_environment()`` makes it again): a registered id (made with the
    task's arguments), an environment made by ``gymnasium.make`` for this task, or ``None`` for
    :func:`registered_env_id`. ``author``,
    ``author_email``, ``code_permalink``, ``description``: Minari's metadata (it warns about the
    first three when they are missing). ``data_format``: Minari's storage format (``None``: its
    default, ``"hdf5"``). Raises ``ImportError`` with the install command when Minari is
    missing, ``ValueError`` for demonstrations that do not fit the task, and Minari's own error
    for an id it cannot use or that exists.
    """
    try:
        import gymnasium as gym
        import minari
        from minari.data_collector import EpisodeBuffer
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    if not isinstance(demos, Demonstrations):
        raise ValueError(f"demos must be ar_envs.data.Demonstrations, got {type(demos).__name__}")
    if len(demos) == 0:
        raise ValueError("demos must hold at least one demonstration")
    if env is not None and not isinstance(env, (str, gym.Env)):
        raise ValueError(f"env must be None, a registered environment id or a gymnasium.Env, got {type(env).__name__}")
    if task is None and isinstance(env, gym.Env) and isinstance(getattr(env.unwrapped, "task", None), Task):
        task = env.unwrapped.task
    if task is None:
        from .tasks import make_task

        if not demos.task_name:
            raise ValueError("demos carry no task name: pass task")
        task = make_task(demos.task_name, **demos.task_args)
    if not isinstance(task, Task):
        raise ValueError(f"task must be an ar_envs Task, got {type(task).__name__}")
    if not isinstance(dataset_id, str) or not dataset_id:
        raise ValueError(f"dataset_id must be a non-empty string such as 'ar_envs/path-star/expert-v0', got {dataset_id!r}")
    obs = episode_observations(task, demos.contexts, demos.sequences)  # checks shapes and token range
    rewards = episode_rewards(task, demos.contexts, demos.sequences)
    actions = np.asarray(demos.sequences, dtype=np.int64)
    H = task.horizon
    terminations = np.zeros(H, dtype=bool)
    terminations[-1] = True
    episodes = [
        EpisodeBuffer(id=i, observations=obs[i], actions=actions[i], rewards=rewards[i],
                      terminations=terminations.copy(), truncations=np.zeros(H, dtype=bool), infos={})
        for i in range(len(demos))
    ]
    own_env = not isinstance(env, gym.Env)  # made here, closed here
    if own_env:
        env_id = registered_env_id(task) if env is None else env
        if env_id not in gym.registry:
            raise ValueError(f"env {env_id!r} is not a registered environment id")
        env = gym.make(env_id, **task.task_args())
    try:
        _check_env_fits(env, task)
    except ValueError:
        if own_env:
            env.close()
        raise
    meta = {"task": task.name, "task_args": task.task_args(), "seed": demos.seed}
    text = f"Expert demonstrations of ar_envs {task.describe()} (ar_envs metadata: {json.dumps(meta, sort_keys=True)})"
    try:
        return minari.create_dataset_from_buffers(
            dataset_id, episodes, env=env, eval_env=env.spec, algorithm_name="ar_envs expert", author=author,
            author_email=author_email, code_permalink=code_permalink, description=description or text,
            data_format=data_format,
        )
    finally:
        if own_env:
            env.close()
