"""Linear and MLP predictors over a fixed window of embedded tokens (Malach 2024)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ar_envs.core import Task, check_int

from ar_agents.policies.base import TokenPolicy, check_start, stream_spec


class WindowPolicy(TokenPolicy):
    """Next-token logits from the last ``window`` stream tokens, each embedded (``embed_dim``).

    ``hidden=0``: a linear map of the concatenated embeddings (Malach's linear autoregressive
    predictor; with one-hot embeddings, ``embed_dim = input_vocab_size``, it is exactly linear in
    the one-hot window). ``hidden > 0``: an MLP with ``layers`` hidden layers of that width.
    Positions before the start of the stream are zero vectors. A finite ``window`` is a knob of
    misspecification (e.g. on HMMLanguage, whose predictive depends on the whole prefix).
    """

    def __init__(self, spec: dict, window: int = 8, embed_dim: int = 32, hidden: int = 0, layers: int = 1,
                 one_hot: bool = False):
        super().__init__(spec)
        self.window = check_int("window", window, 1)
        self.hidden = check_int("hidden", hidden, 0)
        self.layers = check_int("layers", layers, 1)
        self.one_hot = bool(one_hot)
        self.embed_dim = self.input_vocab_size if self.one_hot else check_int("embed_dim", embed_dim, 1)
        if not self.one_hot:
            self.embed = nn.Embedding(self.input_vocab_size, self.embed_dim)
        width = self.window * self.embed_dim
        if self.hidden == 0:
            self.head = nn.Linear(width, self.vocab_size)
        else:
            mods, d = [], width
            for _ in range(self.layers):
                mods += [nn.Linear(d, self.hidden), nn.GELU()]
                d = self.hidden
            mods.append(nn.Linear(d, self.vocab_size))
            self.head = nn.Sequential(*mods)

    @classmethod
    def for_task(cls, task: Task, **kwargs) -> "WindowPolicy":
        return cls(stream_spec(task), **kwargs)

    @property
    def config(self) -> dict:
        return {"window": self.window, "embed_dim": self.embed_dim, "hidden": self.hidden, "layers": self.layers,
                "one_hot": self.one_hot}

    def forward(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        n, T = ids.shape
        start = check_start(start, T)
        if self.one_hot:
            e = F.one_hot(ids, self.input_vocab_size).to(torch.get_default_dtype())
        else:
            e = self.embed(ids)  # (n, T, E)
        if start == T:  # no position asked for
            return self.head(e.new_zeros((n, 0, self.window * self.embed_dim)))
        e = F.pad(e, (0, 0, self.window - 1, 0))[:, start:]  # zeros before the stream start
        win = e.unfold(1, self.window, 1)  # (n, T - start, E, window): positions t-window+1 .. t
        feats = win.permute(0, 1, 3, 2).reshape(n, T - start, self.window * self.embed_dim)
        return self.head(feats)  # only the positions asked for go through the head
