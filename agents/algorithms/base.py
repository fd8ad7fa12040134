"""The algorithm interface, and lookup by name or import path.

An algorithm is anything with ``fit(task, demos, seed) -> policy`` where

* ``task`` is an :class:`ar_envs.Task` (its expert may be queried after any prefix by
  interactive algorithms),
* ``demos`` is an :class:`ar_envs.data.Demonstrations` of ``n`` expert sequences,
* the returned policy has ``sequence_log_prob(contexts, sequences) -> (n,)`` (natural log;
  optionally ``sample(contexts, rng)`` for Monte-Carlo regret, and ``next_token_probs`` for the
  reasoning diagnostics).

A plain function ``fit(task, demos, seed)`` works too. Algorithms set ``self.log`` (a dict: what
they did, e.g. the final loss or the chosen grid point) after ``fit``; the sweep stores it.
"""

from __future__ import annotations

from typing import Any

from ar_envs.core import load_object


class Algorithm:
    """Base class (optional: any object with a matching ``fit`` is accepted)."""

    name: str = "algorithm"

    def __init__(self):
        self.log: dict[str, Any] = {}

    def fit(self, task, demos, seed: int = 0):
        raise NotImplementedError


class FunctionAlgorithm(Algorithm):
    """Wrap a plain function ``fit(task, demos, seed) -> policy``."""

    def __init__(self, fn, name: str):
        super().__init__()
        self.fn = fn
        self.name = name

    def fit(self, task, demos, seed: int = 0):
        return self.fn(task, demos, seed)


def _registry():
    from .bc import BC
    from .block_hellinger import BlockHellinger
    from .dagger import DAgger
    from .hellinger_bc import HellingerBC, HellingerBCOracle
    from .ppo import PPO, PPOFromBC
    from .rho import RhoEstimator
    from .scheduled_sampling import ScheduledSampling
    from .smoothed_bc import SmoothedBC
    from .teacherless import Teacherless

    return {"bc": BC, "smoothed-bc": SmoothedBC, "hellinger-bc": HellingerBC, "hellinger-bc-oracle": HellingerBCOracle,
            "block-hellinger": BlockHellinger, "rho": RhoEstimator,
            "dagger": DAgger, "scheduled-sampling": ScheduledSampling, "teacherless": Teacherless,
            "ppo": PPO, "ppo-from-bc": PPOFromBC}


def algorithm_names() -> list[str]:
    return list(_registry())


def get_algorithm(spec) -> Algorithm:
    """An algorithm instance from a name (``bc``), an import path (``pkg.mod:Name``: a class is
    instantiated without arguments, a function is wrapped), a class, or an instance."""
    if not isinstance(spec, str):
        obj = spec
        label = getattr(spec, "name", getattr(spec, "__name__", type(spec).__name__))
    else:
        reg = _registry()
        if spec in reg:
            return reg[spec]()
        if ":" not in spec:
            raise ValueError(f"unknown algorithm {spec!r}; choose one of {sorted(reg)} or give package.module:Name")
        obj = load_object(spec, "algorithm")
        label = spec
    if isinstance(obj, type):
        obj = obj()
    if hasattr(obj, "fit"):
        if not getattr(obj, "name", None) or obj.name == "algorithm":
            obj.name = label
        if not hasattr(obj, "log"):
            obj.log = {}
        return obj
    if callable(obj):
        return FunctionAlgorithm(obj, label)
    raise ValueError(f"algorithm {spec!r} has no fit(task, demos, seed) method and is not callable")
