"""The task catalogue. ``TASKS`` maps the names users type to task classes."""

from __future__ import annotations

from ..core import Task, load_object
from .linear_ar import LinearAR
from .mixture import MixtureTeacher
from .path_star import PathStar
from .multiplication import Multiplication
from .parity import Parity
from .hmm import HMMLanguage
from .rare_token import RareToken
from .two_branch import TwoBranch, TwoBranchLinear

TASKS: dict[str, type[Task]] = {
    "two-branch": TwoBranch,
    "two-branch-linear": TwoBranchLinear,
    "mixture": MixtureTeacher,
    "linear-ar": LinearAR,
    "path-star": PathStar,
    "multiplication": Multiplication,
    "parity": Parity,
    "hmm": HMMLanguage,
    "rare-token": RareToken,
}


def get_task_class(name: str) -> type[Task]:
    """A task class by catalogue name or by import path ``package.module:ClassName``."""
    if name in TASKS:
        return TASKS[name]
    if ":" in name:
        obj = load_object(name, "task")
        if not (isinstance(obj, type) and issubclass(obj, Task)):
            raise ValueError(f"task {name!r} is not a subclass of ar_envs.Task")
        return obj
    raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)} or give package.module:ClassName")


def make_task(name: str, **kwargs) -> Task:
    return get_task_class(name)(**kwargs)


__all__ = ["TASKS", "get_task_class", "make_task", "TwoBranch", "TwoBranchLinear", "MixtureTeacher", "LinearAR", "PathStar", "Multiplication", "Parity", "HMMLanguage", "RareToken"]
