"""Policy classes.

* :class:`LogLinearPolicy`: the log-linear ("autoregressive linear") class over a task's feature map.
* Neural policies over one causal token stream (:class:`TokenPolicy`, see
  :mod:`ar_agents.policies.base`): :class:`WindowPolicy` (linear and MLP over a fixed window) and
  :class:`GPTPolicy` (a small GPT-style transformer), and Hugging Face ``transformers``
  architectures (:mod:`ar_agents.policies.hf`: ``hf:gpt2``, ``hf:llama``, ``hf:mamba``; the optional
  extra ``ar-envs[hf]``). :func:`make_policy` builds one by name.
"""

from __future__ import annotations

import inspect

import torch

from ar_envs.core import Task, check_choice, check_int

from ar_agents.policies.base import TokenPolicy, stream_spec
from ar_agents.policies.hf import HF_POLICY_CLASSES, HFGPT2Policy, HFLlamaPolicy, HFMambaPolicy, HFPolicy, require_transformers
from ar_agents.policies.loglinear import LogLinearPolicy
from ar_agents.policies.transformer import GPTConfig, GPTPolicy
from ar_agents.policies.window import WindowPolicy

POLICY_KINDS = ("linear", "mlp", "transformer", *HF_POLICY_CLASSES)
# the classes of the kinds: the only ones TokenPolicy.load builds unless it is given others
POLICY_CLASSES = (WindowPolicy, GPTPolicy, *HF_POLICY_CLASSES.values())
DEFAULT_MLP_HIDDEN = 128


def make_policy(kind: str, task: Task, seed: int | None = None, **kwargs) -> TokenPolicy:
    """A neural policy for ``task`` by name.

    * ``"linear"``: :class:`WindowPolicy` with ``hidden=0`` (a linear map of the embedded window).
    * ``"mlp"``: :class:`WindowPolicy` with ``hidden`` > 0 (default 128) hidden units.
    * ``"transformer"``: :class:`GPTPolicy` (keyword arguments: the fields of :class:`GPTConfig`).
    * ``"hf:gpt2"``, ``"hf:llama"``, ``"hf:mamba"``: a Hugging Face ``transformers`` model
      (:mod:`ar_agents.policies.hf`: ``n_layer``, ``n_embd``, ``n_head``, ``dropout``,
      ``max_len`` and fields of the model's transformers config); needs ``pip install 'ar-envs[hf]'``.

    ``kwargs`` go to the class's constructor. ``seed`` (an int >= 0) makes the initial weights
    reproducible without touching torch's global generator; ``None`` draws them from it.
    """
    check_choice("kind", kind, POLICY_KINDS)
    if not isinstance(task, Task):
        raise ValueError(f"task must be an ar_envs Task, got {type(task).__name__}")
    if seed is not None:
        seed = check_int("seed", seed, 0, 2**63 - 1)
    if kind in HF_POLICY_CLASSES:
        require_transformers(kind)
        cls = HF_POLICY_CLASSES[kind]  # checks its own arguments (common names + transformers config fields)
    elif kind == "transformer":
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
    if unknown and kind not in HF_POLICY_CLASSES:
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
    "HFPolicy",
    "HFGPT2Policy",
    "HFLlamaPolicy",
    "HFMambaPolicy",
    "make_policy",
    "POLICY_KINDS",
    "POLICY_CLASSES",
]
