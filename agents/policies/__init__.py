"""Policy classes.

* :class:`LogLinearPolicy`: the log-linear ("autoregressive linear") class over a task's feature map.
* Neural policies over one causal token stream (:class:`TokenPolicy`, see
  :mod:`ar_agents.policies.base`): :class:`WindowPolicy` (linear and MLP over a fixed window) and
  :class:`GPTPolicy` (a small GPT-style transformer). :func:`make_policy` builds one by name.
"""

from __future__ import annotations

import inspect

import torch

from ar_envs.core import Task, check_choice, check_int

from ar_agents.policies.base import TokenPolicy, stream_spec
from ar_agents.policies.loglinear import LogLinearPolicy
from ar_agents.policies.transformer import GPTConfig, GPTPolicy
from ar_agents.policies.window import WindowPolicy

POLICY_KINDS = ("linear", "mlp", "transformer")
# the classes of the kinds: the only ones TokenPolicy.load builds unless it is given others
POLICY_CLASSES = (WindowPolicy, GPTPolicy)
DEFAULT_MLP_HIDDEN = 128


def make_policy(kind: str, task: Task, seed: int | None = None, **kwargs) -> TokenPolicy:
    """A neural policy for ``task`` by name.

    * ``"linear"``: :class:`WindowPolicy` with ``hidden=0`` (a linear map of the embedded window).
    * ``"mlp"``: :class:`WindowPolicy` with ``hidden`` > 0 (default 128) hidden units.
    * ``"transformer"``: :class:`GPTPolicy` (keyword arguments: the fields of :class:`GPTConfig`).

    ``kwargs`` go to the class's constructor. ``seed`` (an int >= 0) makes the initial weights
    reproducible without touching torch's global generator; ``None`` draws them from it.
    """
    check_choice("kind", kind, POLICY_KINDS)
    if not isinstance(task, Task):
        raise ValueError(f"task must be an ar_envs Task, got {type(task).__name__}")
    if seed is not None:
        seed = check_int("seed", seed, 0, 2**63 - 1)
    if kind == "transformer":
        cls = GPTPolicy
    else:
        cls = WindowPolicy
        if kind == "linear":
            if kwargs.get("hidden", 0) != 0:
                raise ValueError(f"hidden must be 0 for kind='linear' (use kind='mlp'), got {kwargs['hidden']!r}")
            kwargs["hidden"] = 0
        else:
            kwargs["hidden"] = check_int("hidden", kwargs.get("hidden", DEFAULT_MLP_HIDDEN), 1)
    allowed = [name for name in inspect.signature(cls.__init__).parameters if name not in ("self", "spec")]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown} for kind={kind!r}; allowed: {allowed}")
    if seed is None:
        return cls.for_task(task, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls.for_task(task, **kwargs)


__all__ = [
    "LogLinearPolicy",
    "TokenPolicy",
    "stream_spec",
    "WindowPolicy",
    "GPTPolicy",
    "GPTConfig",
    "make_policy",
    "POLICY_KINDS",
    "POLICY_CLASSES",
]
