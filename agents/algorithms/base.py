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

import inspect
from typing import Any

from ar_envs.core import load_object


class Algorithm:
    """Base class (optional: any object with a matching ``fit`` is accepted)."""

    name: str = "algorithm"

    def __init__(self):
        self.log: dict[str, Any] = {}

    def fit(self, task, demos, seed: int = 0):
        raise NotImplementedError


def fits_loglinear_class(alg, task) -> bool:
    """Whether an algorithm with a neural and a log-linear version (``policy=None`` on a task
    with a log-linear class) fits the log-linear class; ``policy_args`` without a policy are
    then refused instead of ignored."""
    if alg.policy is not None or task.feature_map() is None:
        return False
    if alg.policy_args:
        raise ValueError(f"{alg.name}: policy_args apply to a neural policy; {task.name!r} has a log-linear class, "
                         "which it fits without one: give policy='linear'|'mlp'|'transformer' too")
    return True


class FunctionAlgorithm(Algorithm):
    """Wrap a plain function ``fit(task, demos, seed) -> policy``."""

    def __init__(self, fn, name: str):
        super().__init__()
        self.fn = fn
        self.name = name

    def fit(self, task, demos, seed: int = 0):
        return self.fn(task, demos, seed)


def _registry():
    from ar_agents.algorithms.bc import BC
    from ar_agents.algorithms.block_hellinger import BlockHellinger
    from ar_agents.algorithms.dagger import DAgger
    from ar_agents.algorithms.hellinger_bc import HellingerBC, HellingerBCOracle
    from ar_agents.algorithms.ppo import PPO, PPOFromBC
    from ar_agents.algorithms.rho import RhoEstimator
    from ar_agents.algorithms.scheduled_sampling import ScheduledSampling
    from ar_agents.algorithms.smoothed_bc import SmoothedBC
    from ar_agents.algorithms.teacherless import Teacherless

    return {"bc": BC, "smoothed-bc": SmoothedBC, "hellinger-bc": HellingerBC, "hellinger-bc-oracle": HellingerBCOracle,
            "block-hellinger": BlockHellinger, "rho": RhoEstimator,
            "dagger": DAgger, "scheduled-sampling": ScheduledSampling, "teacherless": Teacherless,
            "ppo": PPO, "ppo-from-bc": PPOFromBC}


def algorithm_names() -> list[str]:
    return list(_registry())


ALGORITHM_SHAPE = "needs a class with fit(task, demos, seed) or a function of (task, demos, seed)"


def _binds(fn, n_args: int) -> bool:
    """Whether ``fn`` accepts ``n_args`` positional arguments (``False`` if it has no signature)."""
    try:
        inspect.signature(fn).bind(*range(n_args))
    except (TypeError, ValueError):
        return False
    return True


def check_algorithm(obj, label: str):
    """``obj`` (a class, an instance or a function) if it has the algorithm interface, else a
    one-line ``ValueError``: a class or instance needs a ``fit`` taking ``(task, demos, seed)``,
    a function must take ``(task, demos, seed)``. Classes are checked without being built;
    builtin functions (``print``, ``os.getcwd``) are never algorithms."""

    def refuse(why: str):
        return ValueError(f"algorithm {label!r} is not an algorithm: {ALGORITHM_SHAPE} ({why})")

    if isinstance(obj, type):
        raw = inspect.getattr_static(obj, "fit", None)
        if raw is None or not callable(getattr(obj, "fit", None)):
            raise refuse(f"class {obj.__qualname__} has no fit method")
        if isinstance(raw, (staticmethod, classmethod)):
            ok = _binds(getattr(obj, "fit"), 3)
        else:  # a plain method: self comes first
            ok = not inspect.isfunction(raw) or _binds(raw, 4)
        if not ok:
            raise refuse(f"{obj.__qualname__}.fit does not take (task, demos, seed)")
        return obj
    fit = getattr(obj, "fit", None)
    if fit is not None:
        if not (callable(fit) and _binds(fit, 3)):
            raise refuse("its fit does not take (task, demos, seed)")
        return obj
    if inspect.isbuiltin(obj) or not callable(obj):
        raise refuse(f"got {type(obj).__name__} {getattr(obj, '__name__', obj)!r}")
    if not _binds(obj, 3):
        raise refuse(f"{getattr(obj, '__name__', type(obj).__name__)} does not take (task, demos, seed)")
    return obj


def load_algorithm(spec: str):
    """The class or function an import path ``package.module:Name`` names, checked with
    :func:`check_algorithm` before anything uses it. Importing runs the module's code: this is
    for paths a user asks for (``--algorithms mymod:MyAlg``), never for names read from a file."""
    return check_algorithm(load_object(spec, "algorithm"), spec)


def get_algorithm(spec) -> Algorithm:
    """An algorithm instance from a name (``bc``), an import path (``pkg.mod:Name``: a class is
    instantiated without arguments, a function is wrapped), a class, or an instance. Anything
    without the algorithm interface is refused before it is used (:func:`check_algorithm`)."""
    if not isinstance(spec, str):
        label = getattr(spec, "name", getattr(spec, "__name__", type(spec).__name__))
        obj = check_algorithm(spec, label)
    else:
        reg = _registry()
        if spec in reg:
            return reg[spec]()
        if ":" not in spec:
            raise ValueError(f"unknown algorithm {spec!r}; choose one of {sorted(reg)} or give package.module:Name")
        obj = load_algorithm(spec)
        label = spec
    if isinstance(obj, type):
        try:
            obj = obj()
        except TypeError as exc:
            raise ValueError(f"algorithm {label!r} could not be built without arguments: {exc}") from None
    if hasattr(obj, "fit"):
        if not getattr(obj, "name", None) or obj.name == "algorithm":
            obj.name = label
        if not hasattr(obj, "log"):
            obj.log = {}
        return obj
    return FunctionAlgorithm(obj, label)
