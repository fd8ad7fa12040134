"""Hugging Face ``transformers`` architectures as policy classes: ``hf:gpt2``, ``hf:llama``, ``hf:mamba``.

Researchers who study next-token prediction ask whether *their* architecture behaves as our small
GPT does. These classes put the model definitions of ``transformers`` (the field's reference
implementations) behind the :class:`~ar_agents.policies.base.TokenPolicy` interface, so that every
learner, the SB3 adapter, the sweep and the neural best in class run on them unchanged.

* **Built from a config, random initialisation.** ``AutoConfig.for_model(model_type, **config)``
  and ``AutoModelForCausalLM.from_config``: nothing is fetched from a hub, no weights are needed.
  ``transformers`` is an optional extra: ``pip install 'ar-envs[hf]'``; without it, building an
  ``hf:`` policy raises an ``ImportError`` saying so.
* **The stream.** The model reads the stream of :mod:`ar_agents.policies.base` as its
  ``input_ids``: its ``vocab_size`` is the stream's ``input_vocab_size`` (context ids, answer ids,
  the padding id, BOS and DUMMY share one table, as in our GPT). Its language-model head scores
  all those ids; the policy's logits are the first ``vocab_size`` of them (the answer tokens), so
  the policy's distribution is the softmax over answer tokens only and the other rows of the head
  never matter. With tied embeddings (GPT-2's and Mamba's default) the output row of an answer
  token is its input embedding, as in the original models. The config's ``bos_token_id`` is our
  BOS; ``eos_token_id`` and ``pad_token_id`` are ``None`` (no token is special to the model: a
  ``pad_token_id`` would give one of our real ids a frozen zero embedding in Llama).
* **Positions.** ``max_len`` (default ``1 + L + H``, at least ``L + H``) is GPT-2's
  ``n_positions`` and Llama's ``max_position_embeddings``; longer streams are refused for every
  class (Mamba has no position table; the check keeps the classes interchangeable).
* **Determinism.** Dropout is off unless asked for (``dropout``, default 0: GPT-2's three dropout
  rates, Llama's ``attention_dropout``); the initial weights come from torch's global generator
  (``make_policy(..., seed=...)`` seeds it). No cache is used (``use_cache=False``).

Arguments (``make_policy("hf:gpt2", task, n_layer=1, n_embd=16, ...)``, ``--policy-arg``):

* the common names, mapped onto each model's own config fields:

  ============  ==================  =========================  ======================
  ours          ``hf:gpt2``          ``hf:llama``               ``hf:mamba``
  ============  ==================  =========================  ======================
  ``n_layer``   ``n_layer``          ``num_hidden_layers``      ``num_hidden_layers``
  ``n_embd``    ``n_embd``           ``hidden_size``            ``hidden_size``
  ``n_head``    ``n_head``           ``num_attention_heads``    (refused: no heads)
  ``dropout``   ``resid_pdrop``,     ``attention_dropout``      (must be 0)
                ``embd_pdrop``,
                ``attn_pdrop``
  ``max_len``   ``n_positions``      ``max_position_embeddings`` (length check only)
  ============  ==================  =========================  ======================

  with our GPT's defaults (``n_layer=2``, ``n_embd=64``, ``n_head=4``), so that ``hf:gpt2`` and
  ``transformer`` built with the same arguments have the same width and depth. Llama's MLP width
  ``intermediate_size`` defaults to ``4 n_embd`` (transformers' default, 11008, is for 4096-wide
  models);
* any other field of the model's ``transformers`` config class (``GPT2Config``, ``LlamaConfig``,
  ``MambaConfig``: e.g. ``n_inner``, ``activation_function``, ``num_key_value_heads``,
  ``rms_norm_eps``, ``state_size``, ``expand``, ``conv_kernel``, ``use_mambapy``,
  ``tie_word_embeddings``), passed through as given (plain values: numbers, strings, booleans,
  ``None``). Refused with a ``ValueError``: unknown names, the config names of the common ones
  (``hidden_size``: use ``n_embd``), and what the stream fixes (``vocab_size``, the special token
  ids, ``use_cache``).

``config`` (what a policy file stores, and what the neural best in class rebuilds members from)
holds the common names and the pass-through fields; it rebuilds the same module.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import torch

from ar_envs.core import Task, check_float, check_int

from ar_agents.policies.base import TokenPolicy, check_start, stream_spec

INSTALL_HINT = "pip install 'ar-envs[hf]'"

# our common argument -> each model type's config field(s); None: the model type has no such field
_COMMON = {
    "gpt2": {"n_layer": ("n_layer",), "n_embd": ("n_embd",), "n_head": ("n_head",),
             "dropout": ("resid_pdrop", "embd_pdrop", "attn_pdrop"), "max_len": ("n_positions",)},
    "llama": {"n_layer": ("num_hidden_layers",), "n_embd": ("hidden_size",), "n_head": ("num_attention_heads",),
              "dropout": ("attention_dropout",), "max_len": ("max_position_embeddings",)},
    "mamba": {"n_layer": ("num_hidden_layers",), "n_embd": ("hidden_size",), "n_head": None, "dropout": None,
              "max_len": ()},
}
# config fields the stream fixes (not arguments)
_FIXED = ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id", "use_cache")
# other names of the common fields in transformers' configs (refused: use the common name)
_ALIASES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings", "n_positions",
            "n_embd", "n_layer", "n_head", "resid_pdrop", "embd_pdrop", "attn_pdrop", "attention_dropout")


def transformers_available() -> bool:
    """Whether the optional ``transformers`` package is installed (without importing it)."""
    return importlib.util.find_spec("transformers") is not None


def require_transformers(kind: str) -> None:
    """``ImportError`` with the install command unless ``transformers`` is installed."""
    if not transformers_available():
        raise ImportError(f"policy {kind!r} needs Hugging Face transformers, an optional extra: {INSTALL_HINT}")


def _config_fields(model_type: str) -> set[str]:
    """The fields of ``transformers``' config class of ``model_type`` beyond the common base class's."""
    from transformers import CONFIG_MAPPING, PretrainedConfig

    cls = CONFIG_MAPPING[model_type]
    base = {f.name for f in dataclasses.fields(PretrainedConfig)} if dataclasses.is_dataclass(PretrainedConfig) else set()
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls)} - base
    return set(cls().to_dict()) - base - set(PretrainedConfig().to_dict())


def _plain(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


class HFPolicy(TokenPolicy):
    """A ``transformers`` causal language model as a policy (see the module docstring).

    Subclasses fix ``model_type``: :class:`HFGPT2Policy`, :class:`HFLlamaPolicy`,
    :class:`HFMambaPolicy`; build one with ``make_policy("hf:gpt2", task, ...)`` or
    ``HFGPT2Policy.for_task(task, n_layer=1, n_embd=16)``. ``self.hf_model`` is the
    ``transformers`` model.
    """

    model_type: str = ""

    def __init__(self, spec: dict, n_layer: int = 2, n_embd: int = 64, n_head: int | None = None,
                 dropout: float = 0.0, max_len: int | None = None, **hf_config):
        super().__init__(spec)
        kind = f"hf:{self.model_type}"
        if self.model_type not in _COMMON:
            raise TypeError(f"{type(self).__name__} is abstract: use one of {sorted(HF_POLICY_CLASSES)}")
        require_transformers(kind)
        from transformers import AutoConfig, AutoModelForCausalLM

        mapping = _COMMON[self.model_type]
        n_layer = check_int("n_layer", n_layer, 1)
        n_embd = check_int("n_embd", n_embd, 1)
        dropout = check_float("dropout", dropout, 0.0, 1.0, high_open=True)
        if mapping["n_head"] is None:
            if n_head is not None:
                raise ValueError(f"n_head does not apply to {kind} (it has no attention heads), got {n_head!r}")
        else:
            n_head = check_int("n_head", 4 if n_head is None else n_head, 1)
            if n_embd % n_head:
                raise ValueError(f"n_embd must be a multiple of n_head={n_head}, got n_embd={n_embd}")
        if mapping["dropout"] is None and dropout != 0.0:
            raise ValueError(f"dropout must be 0 for {kind} (the model has no dropout), got {dropout}")
        longest = self.context_length + self.horizon  # the teacher-forced / observation stream
        if max_len is None:
            max_len = longest + 1
        else:
            max_len = check_int("max_len", max_len, 1)
            if max_len < longest:
                raise ValueError(f"max_len must be >= context_length + horizon = {longest} (the teacher-forced stream), "
                                 f"got {max_len}")
        fields = _config_fields(self.model_type)
        for name, value in hf_config.items():
            if name in _FIXED:
                raise ValueError(f"{name} is fixed by the task's token stream for {kind}; it is not an argument")
            if name in _ALIASES:
                common = next((k for k, v in mapping.items() if v and name in v), None)
                hint = f"use {common}" if common else "not adjustable here"
                raise ValueError(f"{name} is set through the common arguments for {kind} ({hint})")
            if name not in fields:
                raise ValueError(f"unknown argument {name!r} for kind={kind!r}; allowed: n_layer, n_embd"
                                 f"{', n_head' if mapping['n_head'] else ''}, dropout, max_len and the fields of "
                                 f"transformers' {self.model_type} config: {sorted(fields - set(_FIXED) - set(_ALIASES))}")
            if not (_plain(value) or (isinstance(value, (list, tuple)) and all(_plain(v) for v in value))):
                raise ValueError(f"{name} must be a number, string, boolean or None, got {value!r}")
        self.hf_config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(hf_config.items())}
        self.common = {"n_layer": n_layer, "n_embd": n_embd, "n_head": n_head, "dropout": dropout, "max_len": max_len}
        if mapping["n_head"] is None:
            del self.common["n_head"]

        values = {"vocab_size": self.input_vocab_size, "bos_token_id": self.bos, "eos_token_id": None,
                  "pad_token_id": None, "use_cache": False}
        for name, value in self.common.items():
            for field in mapping[name] or ():
                values[field] = value
        if self.model_type == "llama":
            values["intermediate_size"] = 4 * n_embd
        values.update(self.hf_config)
        config = AutoConfig.for_model(self.model_type, **values)
        kwargs = {} if self.model_type == "mamba" else {"attn_implementation": "sdpa"}
        self.hf_model = AutoModelForCausalLM.from_config(config, **kwargs)
        self.hf_model.float()

    @classmethod
    def for_task(cls, task: Task, **config) -> "HFPolicy":
        return cls(stream_spec(task), **config)

    @property
    def kind(self) -> str:
        return f"hf:{self.model_type}"

    @property
    def config(self) -> dict:
        return {**self.common, **self.hf_config}

    def forward(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        if ids.ndim != 2:
            raise ValueError(f"ids must have shape (n, T), got {tuple(ids.shape)}")
        n, T = ids.shape
        if T > self.common["max_len"]:
            raise ValueError(f"ids must be a stream of length T <= max_len = {self.common['max_len']}, got T = {T}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.input_vocab_size):
            raise ValueError(
                f"ids must hold stream ids in [0, {self.input_vocab_size - 1}], got values in [{int(ids.min())}, {int(ids.max())}]"
            )
        start = check_start(start, T)
        if start == T or n == 0:  # nothing to score (transformers would read logits_to_keep=0 as "all")
            return torch.zeros((n, T - start, self.vocab_size), device=ids.device)
        out = self.hf_model(input_ids=ids, use_cache=False, logits_to_keep=T - start)
        return out.logits[..., : self.vocab_size]

    def num_parameters(self, embeddings: bool = True) -> int:
        """Parameter count (tied weights once); ``embeddings=False`` leaves out the input token table
        and a position table (GPT-2's), as :meth:`GPTPolicy.num_parameters` does; a tied output
        head is then counted (it is a matrix multiply)."""
        params = {id(p): p for p in self.parameters()}
        n = sum(p.numel() for p in params.values())
        if not embeddings:
            tables = [self.hf_model.get_input_embeddings().weight]
            pos = getattr(getattr(self.hf_model, "transformer", None), "wpe", None)
            if pos is not None:
                tables.append(pos.weight)
            out = self.hf_model.get_output_embeddings()
            tied = out is not None and out.weight is tables[0]
            n -= sum(t.numel() for t in tables) - (tables[0].numel() if tied else 0)
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs (forward + backward) per token with the estimate of
        :meth:`GPTPolicy.flops_per_token`: ``6 N`` (``N`` = parameters outside the embedding
        tables, the output head counted, at its full ``input_vocab_size`` rows) plus, for the
        attention models, ``12 n_layer n_embd T`` for the score and weighted-sum products. For
        Mamba only ``6 N`` (its scan is elementwise work, not matrix products)."""
        T = self.context_length + self.horizon if seq_len is None else check_int("seq_len", seq_len, 1, self.common["max_len"])
        attention = 0 if self.model_type == "mamba" else 12 * self.common["n_layer"] * self.common["n_embd"] * T
        return 6 * self.num_parameters(embeddings=False) + attention


class HFGPT2Policy(HFPolicy):
    """``hf:gpt2``: transformers' GPT-2 (``GPT2LMHeadModel``) over the token stream."""

    model_type = "gpt2"


class HFLlamaPolicy(HFPolicy):
    """``hf:llama``: transformers' Llama (``LlamaForCausalLM``: RMSNorm, rotary positions, SwiGLU)."""

    model_type = "llama"


class HFMambaPolicy(HFPolicy):
    """``hf:mamba``: transformers' Mamba (``MambaForCausalLM``, a selective state-space model; on a
    CPU without the ``mamba_ssm`` kernels transformers runs its slow reference scan)."""

    model_type = "mamba"


HF_POLICY_CLASSES = {f"hf:{c.model_type}": c for c in (HFGPT2Policy, HFLlamaPolicy, HFMambaPolicy)}
