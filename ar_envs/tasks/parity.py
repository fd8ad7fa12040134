"""Sparse parity of a hidden subset of bits, with or without a chain of thought (Malach 2024)."""

from __future__ import annotations

import math

import numpy as np

from ..core import DeterministicTask, as_rng, check_choice, check_int, check_memory

COT_MODES = ("none", "running", "short")
OFF_PATH_MODES = ("consistent", "reference")
ENUMERATE_MAX_BITS = 16


class Parity(DeterministicTask):
    """Parity of a hidden subset of ``n`` bits, with a chain of thought whose length is a knob.

    ## Description
    The context is ``n`` uniform random bits ``x_0 .. x_{n-1}`` (``n_bits``). A hidden subset
    ``S`` of ``k`` positions (``subset_size``) is drawn once from ``seed``, uniformly among the
    ``k``-subsets, and sorted: ``s_1 < ... < s_k`` (the attribute ``subset``). The answer is
    ``y = x_{s_1} xor ... xor x_{s_k}``. Tokens are the bits ``0`` and ``1`` (``vocab_size = 2``).
    What is written before the answer is set by ``cot``; the answer is always the last token.

    * ``cot="none"``: the answer alone. ``H = 1``.
    * ``cot="running"``: the running parity over *all* positions, ``r_t = r_{t-1} xor x_t`` if
      ``t`` is in ``S`` and ``r_t = r_{t-1}`` otherwise (``r_{-1} = 0``), for ``t = 0 .. n-1``.
      ``r_{n-1}`` is the answer. ``H = n``. Each token is the xor of the previous token and at
      most one context bit.
    * ``cot="short"``: the subset, in sorted order, is cut into consecutive chunks of ``c``
      positions (``chunk_size``; the last chunk may be shorter); one token per chunk, the parity
      of its bits, then the answer, the xor of the chunk tokens.
      ``H = ceil(k / c) + 1``. The default ``c = ceil(k / m)`` with ``m = max(1, ceil(log2 k))``
      gives at most ``m`` chunks, so ``H <= max(1, ceil(log2 k)) + 1``: a chain of thought of
      length about ``log k`` whose tokens are ``c``-sparse parities (compare Malach's length
      complexity ``Θ(n / k)`` when each step may compute a ``k``-sparse parity). ``chunk_size = 1`` writes out the subset
      bits themselves (``H = k + 1``); ``chunk_size = k`` one chunk, the answer twice (``H = 2``).

    Example: ``n = 8``, ``S = (1, 2, 5, 7)``, ``x = 1 1 0 1 0 1 1 1`` give ``y = 1 xor 0 xor 1 xor
    1 = 1``; ``running``: ``0 1 1 1 1 0 0 1``; ``short`` with ``c = 2``: chunks ``(1, 2)`` and
    ``(5, 7)``, tokens ``1 0`` then the answer ``1``.

    ## Action Space
    ``Discrete(2)``: the next bit.

    ## Observation Space
    ``MultiDiscrete([2] * n + [3] * H)``: the context bits, then the tokens written so far,
    padded with ``2``.
    The dtype is ``int16`` at the defaults (:func:`ar_envs.env.token_dtype`: wider for big vocabularies).

    ## Rewards
    ``1`` at the last step if the last token equals the parity ``y``, else ``0``. The chain of
    thought is not scored. ``extra_metrics`` reports ``answer_accuracy`` and, when there is a
    chain of thought, ``cot_exact_match`` (every CoT token equals the reference's).

    ## Expert
    Deterministic (one-hot). Off its own path the choice is set by ``off_path``:

    * ``"consistent"`` (default): continue the computation from what has been written.
      ``running``: ``r_t = (written r_{t-1}) xor [t in S] x_t``, so a flipped running token flips
      every later one, the answer included: the expert never repairs it. ``short``: each
      chunk token is the chunk's parity read from the context (chunk tokens are not each
      other's inputs); the answer is the xor of the chunk tokens *as written*. ``none``: the
      answer.
    * ``"reference"``: emit the correct token for the position, whatever the prefix.

    ## Misspecification
    No single linear threshold of the bits computes a parity of two or more of them, so a
    linear next-token class (Malach's linear autoregressive predictors) cannot produce the
    answer in one step; Malach's length complexity counts the chain-of-thought tokens it needs
    instead (``O(log n)`` for parity in his construction, ``Θ(n / k)`` when each step may
    compute a ``k``-sparse parity). Here ``cot`` and ``chunk_size`` set the per-step sparsity,
    and with it the horizon: one ``k``-sparse step (``none``, ``H = 1``), ``c``-sparse steps
    (``short``, ``H = ceil(k / c) + 1``), or steps with at most two inputs, the previous token
    and one bit (``running``, ``H = n``). Because ``S`` is hidden, a learner also has to find it from data:
    ``subset_size`` sets how hard that is.

    ## Exact metrics
    ``enumerate_contexts`` lists all ``2^n`` contexts for ``n <= 16``; the generic enumeration
    in ``ar_envs.metrics`` applies while ``2^n * 2^H <= 2^20``.

    ## Arguments
    * ``n_bits`` (n >= 1).
    * ``subset_size`` (k in [1, n]; default ``max(1, n // 2)``).
    * ``cot`` (``"none"`` | ``"running"`` | ``"short"``).
    * ``chunk_size`` (c in [1, k]; default ``ceil(k / max(1, ceil(log2 k)))``; used by
      ``cot="short"`` only).
    * ``seed`` (>= 0): draws the hidden subset.
    * ``off_path`` (``"consistent"`` | ``"reference"``): the expert off its own path.

    ## Version History
    * v0: initial release.
    """

    name = "parity"
    horizon_arg = "n_bits"
    env_id = "Parity-v0"
    vocab_size = 2
    context_vocab_size = 2

    def __init__(
        self,
        n_bits: int = 8,
        subset_size: int | None = None,
        cot: str = "none",
        seed: int = 0,
        chunk_size: int | None = None,
        off_path: str = "consistent",
    ):
        self.n_bits = check_int("n_bits", n_bits, 1)
        n = self.n_bits
        k = max(1, n // 2) if subset_size is None else check_int("subset_size", subset_size, 1, n)
        self.subset_size = k
        self.cot = check_choice("cot", cot, COT_MODES)
        self.off_path = check_choice("off_path", off_path, OFF_PATH_MODES)
        if chunk_size is None:
            m = max(1, math.ceil(math.log2(k)))
            chunk_size = math.ceil(k / m)
        self.chunk_size = check_int("chunk_size", chunk_size, 1, k)
        self.seed = check_int("seed", seed, 0)
        num_chunks = -(-k // self.chunk_size)
        check_memory(f"Parity: n_bits={n}, subset_size={k}, chunk_size={self.chunk_size}", 24 * n + 128 * num_chunks,
                     "the subset draw, its mask and the chunks")
        rng = np.random.default_rng(self.seed)
        self.subset = np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
        self.mask = np.zeros(n, dtype=np.int64)
        self.mask[self.subset] = 1
        c = self.chunk_size
        self.chunks = [self.subset[i : i + c] for i in range(0, k, c)]
        self.context_length = n
        if cot == "none":
            self.horizon = 1
        elif cot == "running":
            self.horizon = n
        else:
            self.horizon = len(self.chunks) + 1
        self._chunk_starts = np.arange(0, k, c)  # where each chunk starts in the subset
        self.check_episode_size(f"n_bits={n}")

    def task_args(self) -> dict:
        return {
            "n_bits": self.n_bits,
            "subset_size": self.subset_size,
            "cot": self.cot,
            "seed": self.seed,
            "chunk_size": self.chunk_size,
            "off_path": self.off_path,
        }

    # ------------------------------------------------------------------ contexts
    def sample_contexts(self, n, rng):
        n = self.check_sample_size(n)
        return as_rng(rng).integers(0, 2, size=(n, self.n_bits)).astype(np.int64)

    def enumerate_contexts(self):
        if self.n_bits > ENUMERATE_MAX_BITS:
            return None
        m = 2**self.n_bits
        powers = 2 ** np.arange(self.n_bits - 1, -1, -1, dtype=np.int64)
        ctx = (np.arange(m, dtype=np.int64)[:, None] // powers) % 2
        return ctx, np.full(m, 1.0 / m)

    def _check_contexts(self, contexts) -> np.ndarray:
        ctx = self.check_contexts(contexts)  # the context is the n_bits bits
        if ctx.size and (ctx.min() < 0 or ctx.max() > 1):
            raise ValueError("contexts must hold bits in [0, 1]")
        return ctx

    # ------------------------------------------------------------------ expert
    def answer(self, contexts) -> np.ndarray:
        """The parity of the hidden subset, ``(n,)``."""
        return (self._check_contexts(contexts) @ self.mask) % 2

    def reference(self, contexts) -> np.ndarray:
        """The expert's own sequence (chain of thought and answer), ``(n, H)``."""
        ctx = self._check_contexts(contexts)
        y = (ctx @ self.mask) % 2
        if self.cot == "none":
            return y[:, None]
        if self.cot == "running":
            return np.cumsum(ctx * self.mask, axis=1) % 2
        chunk_parity = np.add.reduceat(ctx[:, self.subset], self._chunk_starts, axis=1) % 2
        return np.concatenate([chunk_parity, y[:, None]], axis=1)

    def expert_next_tokens(self, contexts, sequences) -> np.ndarray:
        """The expert's token at every position given the written tokens before it, ``(n, T)``."""
        ctx = self._check_contexts(contexts)
        seq = self.check_tokens("sequences", sequences, len(ctx), max_len=self.horizon)
        T = seq.shape[1]
        ref = self.reference(ctx)[:, :T]
        if self.off_path == "reference" or self.cot == "none" or T == 0:
            return ref
        if self.cot == "running":
            out = (ctx[:, :T] * self.mask[:T]) % 2
            out[:, 1:] = (out[:, 1:] + seq[:, : T - 1]) % 2
            return out
        out = ref.copy()
        if T == self.horizon:  # the answer: xor of the chunk tokens as written
            out[:, -1] = seq[:, :-1].sum(axis=1) % 2
        return out

    # ------------------------------------------------------------------ scoring
    def reward(self, contexts, sequences):
        ctx = self._check_contexts(contexts)
        seq = self.check_tokens("sequences", sequences, len(ctx), exact_len=self.horizon)
        return (seq[:, -1] == self.answer(ctx)).astype(np.float64)

    def extra_metrics(self, contexts, generated) -> dict[str, float]:
        """``answer_accuracy`` and, with a chain of thought, ``cot_exact_match``."""
        ctx = self._check_contexts(contexts)
        gen = self.check_tokens("generated", generated, len(ctx), exact_len=self.horizon)
        if len(ctx) == 0:
            raise ValueError("extra_metrics needs at least one generated sequence (n >= 1)")
        out = {"answer_accuracy": float(np.mean(gen[:, -1] == self.answer(ctx)))}
        if self.cot != "none":
            ref = self.reference(ctx)
            out["cot_exact_match"] = float(np.mean(np.all(gen[:, :-1] == ref[:, :-1], axis=1)))
        return out

    def render_tokens(self, context, tokens) -> str:
        """``bits -> chain of thought | answer`` with the hidden subset's bits in brackets."""
        ctx = np.asarray(context).ravel()
        bits = "".join(f"[{int(b)}]" if self.mask[i] else str(int(b)) for i, b in enumerate(ctx))
        tok = [str(int(t)) for t in np.asarray(tokens).ravel()[: self.horizon]]
        if len(tok) == self.horizon and self.horizon > 1 and self.cot != "running":
            return f"{bits} -> {' '.join(tok[:-1])} | {tok[-1]}"
        return f"{bits} -> {' '.join(tok)}"
