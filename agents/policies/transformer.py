"""A small GPT-style causal transformer over the token stream of :mod:`ar_agents.policies.base`.

Architecture (a decoder-only transformer, written for this package)::

    x = token_embedding(ids) + position_embedding(0 .. T-1)       (n, T, n_embd)
    repeat n_layer times:
        x = x + attention(layer_norm(x))       causal multi-head self-attention
        x = x + mlp(layer_norm(x))             n_embd -> 4 n_embd -> GELU -> n_embd
    logits = head(layer_norm(x))                (n, T, vocab_size)

Pre-LayerNorm blocks, learned absolute positions, no weight tying (the stream has more input ids
than output tokens: BOS, DUMMY, padding). Weights start at ``N(0, 0.02)``, biases at zero; the
two projections that write into the residual stream get a standard deviation divided by
``sqrt(2 n_layer)`` so that the residual stream's scale does not grow with depth.
Dropout (attention weights, residual branches, embeddings) is active only in training mode;
the scoring and decoding methods of :class:`TokenPolicy` run in evaluation mode.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ar_envs.core import Task, check_float, check_int

from ar_agents.policies.base import TokenPolicy, check_start, stream_spec


@dataclass
class GPTConfig:
    """Hyperparameters of :class:`GPTPolicy` (everything but the task's stream shape).

    * ``n_layer`` (>= 1): transformer blocks.
    * ``n_head`` (>= 1): attention heads; must divide ``n_embd``.
    * ``n_embd`` (>= 1): width of the residual stream.
    * ``dropout`` (in [0, 1)): dropout probability in training mode.
    * ``bias``: biases in the linear layers and LayerNorms.
    * ``max_len`` (>= 1 or ``None``): the longest stream the position table covers; ``None``
      means the task's ``1 + L + H`` (``[BOS] + context + a whole answer``). It must be at least
      ``L + H``, the length of the teacher-forced stream.
    """

    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0
    bias: bool = True
    max_len: int | None = None

    def __post_init__(self):
        self.n_layer = check_int("n_layer", self.n_layer, 1)
        self.n_head = check_int("n_head", self.n_head, 1)
        self.n_embd = check_int("n_embd", self.n_embd, 1)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd must be a multiple of n_head={self.n_head}, got n_embd={self.n_embd}")
        self.dropout = check_float("dropout", self.dropout, 0.0, 1.0, high_open=True)
        if not isinstance(self.bias, bool):
            raise ValueError(f"bias must be True or False, got {self.bias!r}")
        if self.max_len is not None:
            self.max_len = check_int("max_len", self.max_len, 1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, T, C = x.shape
        # (n, T, 3C) -> three tensors (n, heads, T, head_dim)
        q, k, v = self.qkv(x).view(n, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).reshape(n, T, C)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_attn = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_mlp = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias),
            nn.GELU(),
            nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x))
        return x + self.mlp(self.ln_mlp(x))


class GPTPolicy(TokenPolicy):
    """A GPT-style causal transformer policy (see the module docstring for the architecture).

    Build it for a task with ``GPTPolicy.for_task(task, n_layer=2, n_head=4, n_embd=64)``; the
    keyword arguments are the fields of :class:`GPTConfig`. Initial weights come from torch's
    global generator: seed it (or use ``ar_agents.policies.make_policy(..., seed=...)``) for
    reproducible weights.
    """

    def __init__(self, spec: dict, n_layer: int = 2, n_head: int = 4, n_embd: int = 64, dropout: float = 0.0,
                 bias: bool = True, max_len: int | None = None):
        super().__init__(spec)
        cfg = GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=dropout, bias=bias, max_len=max_len)
        longest = self.context_length + self.horizon  # the teacher-forced / observation stream
        if cfg.max_len is None:
            cfg.max_len = longest + 1
        elif cfg.max_len < longest:
            raise ValueError(
                f"max_len must be >= context_length + horizon = {longest} (the teacher-forced stream), got {cfg.max_len}"
            )
        self.cfg = cfg
        self.tok_emb = nn.Embedding(self.input_vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.head = nn.Linear(cfg.n_embd, self.vocab_size, bias=cfg.bias)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        residual_std = 0.02 / math.sqrt(2 * self.cfg.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp[2].weight, mean=0.0, std=residual_std)

    @classmethod
    def for_task(cls, task: Task, **config) -> "GPTPolicy":
        return cls(stream_spec(task), **config)

    @property
    def config(self) -> dict:
        return asdict(self.cfg)

    def forward(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        if ids.ndim != 2:
            raise ValueError(f"ids must have shape (n, T), got {tuple(ids.shape)}")
        n, T = ids.shape
        if T > self.cfg.max_len:
            raise ValueError(f"ids must be a stream of length T <= max_len = {self.cfg.max_len}, got T = {T}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.input_vocab_size):
            raise ValueError(
                f"ids must hold stream ids in [0, {self.input_vocab_size - 1}], got values in [{int(ids.min())}, {int(ids.max())}]"
            )
        start = check_start(start, T)
        pos = torch.arange(T, device=ids.device)
        x = self.drop(self.tok_emb(ids) + self.pos_emb(pos))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x[:, start:]))  # attention needs every position; the head only these

    def num_parameters(self, embeddings: bool = True) -> int:
        """Parameter count; ``embeddings=False`` leaves out the token and position tables."""
        n = sum(p.numel() for p in self.parameters())
        if not embeddings:
            n -= self.tok_emb.weight.numel() + self.pos_emb.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs (forward + backward) per token, the usual estimate::

            6 * N  +  12 * n_layer * n_embd * T

        ``N`` = parameters outside the embedding tables (a table lookup is not a matrix
        multiply; the output head is counted): each costs 2 FLOPs per token in the forward pass
        (one multiply-add) and 4 in the backward pass. The attention term counts the score and
        weighted-sum products, ``2 * T * n_embd`` FLOPs each per token and layer forward, times 3
        for forward + backward, over the full ``T x T`` matrix (the causal mask does not make a
        dense kernel cheaper). ``T`` = ``seq_len``, default the teacher-forced stream length
        ``L + H``. LayerNorms, softmax, GELU and biases beyond their parameter count are ignored.
        A forward pass alone costs about a third of this.
        """
        T = self.context_length + self.horizon if seq_len is None else check_int("seq_len", seq_len, 1, self.cfg.max_len)
        return 6 * self.num_parameters(embeddings=False) + 12 * self.cfg.n_layer * self.cfg.n_embd * T
