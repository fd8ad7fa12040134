"""Multi-digit multiplication, with or without an exact chain of thought (Malach 2024)."""

from __future__ import annotations

import numpy as np

from ..core import DeterministicTask, as_rng, check_choice, check_int

COT_MODES = ("none", "full")
OFF_PATH_MODES = ("consistent", "reference")
MAX_DIGITS = 6

STAR, EQUALS, SEMI = 10, 11, 12
# how a sequence position turns its inputs ``v`` into a token
_SEP, _DIGIT, _CARRY, _PRODUCT = 0, 1, 2, 3


class Multiplication(DeterministicTask):
    """Multi-digit multiplication ``a * b`` with an optional chain of thought (Malach 2024).

    ## Description
    Both operands have exactly ``digits`` digits: each digit is uniform on ``0..9``
    independently, so an operand is uniform on ``0 .. 10^digits - 1`` and may have leading
    zeros (``007`` is a 3-digit operand). The prompt is the two operands written as humans write
    them (most significant digit first) with the separators ``'*'`` and ``'='``::

        a_{d-1} ... a_1 a_0 * b_{d-1} ... b_1 b_0 =          (context_length = 2 d + 2)

    Everything the model writes is written **least-significant digit first**. The answer is the
    product with exactly ``2 d`` digits (zero padded), digit ``10^0`` first. In this order each
    answer digit is a function of the operands and of the carry into its column, which the
    digits already written determine; most-significant-first would ask for the whole product
    before the first token. Read the answer backwards to get the usual notation.

    Tokens: digits ``0..9``, ``'*' = 10``, ``'=' = 11``, ``';' = 12`` (the context uses the same
    ids), so ``vocab_size = 13``.

    **cot="none"**: the sequence is the answer alone, ``H = 2 d``.

    **cot="full"**: our own exact chain of thought (the paper's format is not published), long
    multiplication written out with every carry:

    1. Partial product ``P_j = a * b_j`` for ``j = 0 .. d-1``: ``d`` pairs ``(digit, carry)``,
       pair ``i`` = ``((a_i b_j + c) mod 10, (a_i b_j + c) div 10)`` where ``c`` is the carry of
       pair ``i - 1`` (0 for ``i = 0``); the carry of the last pair is ``P_j``'s top digit
       (``10^d``). Then ``';'``. ``2 d + 1`` tokens.
    2. After ``P_j`` for ``j >= 1``, the running sum ``S_j = S_{j-1} + P_j 10^j`` (``S_0 = P_0``):
       ``2 d`` pairs ``(digit, carry)``, pair ``k`` = ``((s_k + p_{k-j} + c) mod 10,
       (s_k + p_{k-j} + c) div 10)`` with ``s_k`` digit ``k`` of ``S_{j-1}``, ``p_m`` digit ``m`` of
       ``P_j`` (0 outside ``0..d``) and ``c`` the carry of pair ``k - 1``. Then ``';'``.
       ``4 d + 1`` tokens; the carry out of the last pair is dropped (it is always 0).
    3. The answer: the ``2 d`` digits of ``S_{d-1}`` (of ``P_0`` if ``d = 1``).

    Order: ``P_0 ; P_1 ; S_1 ; P_2 ; S_2 ; ... ; P_{d-1} ; S_{d-1} ; answer``, so
    ``H = d (2 d + 1) + (d - 1)(4 d + 1) + 2 d = 6 d^2 - 1`` (5, 23, 53, 95, 149, 215 for
    ``d = 1 .. 6``).

    Worked example ``47 * 86`` (``d = 2``, ``H = 23``), as :meth:`render_tokens` shows it (each
    pair as ``digit(carry)``): ``7*6 = 42``, ``4*6 + 4 = 28`` give ``P_0 = 282``; ``7*8 = 56``,
    ``4*8 + 5 = 37`` give ``P_1 = 376``; ``S_1 = 282 + 3760``: ``2+0 = 2``, ``8+6 = 14``,
    ``2+7+1 = 10``, ``0+3+1 = 4``; the answer ``2404`` read backwards is ``4042 = 47 * 86``::

        47*86= 2(4) 8(2) ; 6(5) 7(3) ; 2(0) 4(1) 0(1) 4(0) ; 2404

    ## Action Space
    ``Discrete(13)``: the next token. ``action_mask`` (the environments' ``action_masks()``)
    allows ``';'`` alone at separator positions and the digits everywhere else.

    ## Observation Space
    ``MultiDiscrete([13] * (2 d + 2) + [14] * H)``: the prompt, then the tokens written so far
    padded with ``13``.
    The dtype is ``int16`` at the defaults (:func:`ar_envs.env.token_dtype`: wider for big vocabularies).

    ## Rewards
    ``1`` at the last step if the answer (the last ``2 d`` tokens) equals the product, else
    ``0``. The chain of thought is not scored: a wrong CoT with a right answer gets ``1``.
    ``extra_metrics`` reports ``answer_exact_match``, ``per_digit_accuracy`` (and the accuracy of each answer digit,
    ``digit_accuracy_k`` for the digit of ``10^k``) and, with ``cot="full"``,
    ``cot_exact_match``.

    ## Expert
    Deterministic (one-hot): the algorithm above. Off the expert's own path (what DAgger
    queries) the choice is set by ``off_path``:

    * ``"consistent"`` (default): continue the computation from what has been written. Every
      token is computed from its inputs *as written*: the carry of the previous pair (in ``P_j``
      and ``S_j``), the written digits of ``P_j`` (its ``d`` digit tokens and its last carry as
      the top digit) and of ``S_{j-1}`` (in ``S_j``), the written digits of ``S_{d-1}`` (copied
      into the answer). The operand digits ``a_i b_j`` are always read from the prompt. A
      separator or ``'*'``/``'='`` written where a digit is an input is read as ``0``. A wrong
      token thus propagates exactly as it would on paper: a carry ``c'`` written instead of
      ``c`` in pair ``i`` of ``P_j`` makes the continuation write ``P_j + (c' - c) 10^(i+1)``
      (a wrong digit ``x'`` instead of ``x``: ``P_j + (x' - x) 10^i``; a digit does not feed its
      own pair's carry, both are computed from the same inputs), every later running sum is
      ``S_j = (S_{j-1} + P_j 10^j) mod 10^(2d)`` of the numbers as written, and the answer is
      ``S_{d-1}`` as written. Separators are emitted at their fixed positions whatever the prefix.
    * ``"reference"``: emit the token of the correct chain of thought at the current position,
      whatever the prefix.

    With ``cot="none"`` the written answer digits are nobody's input, so both modes emit the
    true product's digit at each position.

    ## Misspecification
    Malach's learners are next-token predictors over a window of embedded tokens (linear or a
    shallow MLP). Without a chain of thought (``cot="none"``) answer digit ``k`` depends on every
    operand digit of weight at most ``10^k`` (through the carries), a hard function for a
    small class to produce in one token. With ``cot="full"`` every token is a small lookup:
    a function of at most three earlier tokens and two prompt digits at fixed,
    position-dependent offsets, so a class that sees those positions can represent every step,
    at the price of a horizon ``H = 6 d^2 - 1`` over which its errors compound. ``digits`` sets
    both the difficulty and the horizon.

    ## Exact metrics
    ``enumerate_contexts`` lists all ``10^(2d)`` operand pairs for ``d <= 2``; the generic
    enumeration of ``ar_envs.metrics`` then applies while ``10^(2d) * 13^H`` is small (in
    practice ``d = 1, cot="none"``). Monte Carlo otherwise.

    ## Arguments
    * ``digits`` (d in [1, 6]): digits per operand.
    * ``cot`` (``"none"`` | ``"full"``).
    * ``off_path`` (``"consistent"`` | ``"reference"``): the expert off its own path.

    ## Version History
    * v0: initial release.
    """

    name = "multiplication"
    horizon_arg = "digits"
    env_id = "Multiplication-v0"
    vocab_size = 13
    context_vocab_size = 13

    def __init__(self, digits: int = 2, cot: str = "none", off_path: str = "consistent"):
        self.digits = check_int("digits", digits, 1, MAX_DIGITS)
        self.cot = check_choice("cot", cot, COT_MODES)
        self.off_path = check_choice("off_path", off_path, OFF_PATH_MODES)
        d = self.digits
        self.context_length = 2 * d + 2
        self.horizon = 2 * d if cot == "none" else 6 * d * d - 1
        self.answer_length = 2 * d
        self._build_layout()

    def task_args(self) -> dict:
        return {"digits": self.digits, "cot": self.cot, "off_path": self.off_path}

    def token_names(self) -> list[str]:
        return [str(i) for i in range(10)] + ["*", "=", ";"]

    def context_token_names(self) -> list[str]:
        return self.token_names()

    # ------------------------------------------------------------------ the grammar as tables
    def _build_layout(self) -> None:
        """Per sequence position: how its token is computed.

        ``mode``: separator, ``digit`` (``v mod 10``), ``carry`` (``v div 10``) or product digit
        (``cot="none"``). ``v = a_i b_j + R(in1) + R(in2) + R(in3)`` where ``a_i b_j`` uses the
        prompt positions ``apos``/``bpos`` (``L`` = none, read as 0) and ``R(p)`` is the written
        token at position ``p`` if it is a digit, else 0 (``p = H``: none).
        """
        d, H, L = self.digits, self.horizon, self.context_length
        self._mode = np.full(H, _SEP, dtype=np.int64)
        self._apos = np.full(H, L, dtype=np.int64)
        self._bpos = np.full(H, L, dtype=np.int64)
        self._inputs = np.full((H, 3), H, dtype=np.int64)
        self._power = np.zeros(H, dtype=np.int64)  # the product digit (cot="none")
        self._role = ["sep"] * H  # for rendering: "digit", "carry", "sep", "answer"
        a_ctx = lambda i: d - 1 - i  # noqa: E731  (a_i is written most significant first)
        b_ctx = lambda j: 2 * d - j  # noqa: E731
        if self.cot == "none":
            self._mode[:] = _PRODUCT
            self._power[:] = np.arange(H)
            self._role = ["answer"] * H
            return
        pos = 0
        p_start, s_start = {}, {}

        def p_digit(j, m):  # the sequence position holding digit 10^m of the written P_j
            if 0 <= m < d:
                return p_start[j] + 2 * m
            if m == d:
                return p_start[j] + 2 * (d - 1) + 1
            return H

        def s_digit(j, k):  # digit 10^k of the written S_j (S_0 = P_0)
            if j == 0:
                return p_digit(0, k)
            return s_start[j] + 2 * k

        for j in range(d):
            p_start[j] = pos
            for i in range(d):
                for r, mode in ((0, _DIGIT), (1, _CARRY)):
                    t = pos + 2 * i + r
                    self._mode[t] = mode
                    self._apos[t], self._bpos[t] = a_ctx(i), b_ctx(j)
                    self._inputs[t, 0] = pos + 2 * i - 1 if i > 0 else H
                    self._role[t] = "digit" if r == 0 else "carry"
            pos += 2 * d + 1  # the separator sits at pos - 1 (mode _SEP by default)
            if j >= 1:
                s_start[j] = pos
                for k in range(2 * d):
                    for r, mode in ((0, _DIGIT), (1, _CARRY)):
                        t = pos + 2 * k + r
                        self._mode[t] = mode
                        self._inputs[t] = (s_digit(j - 1, k), p_digit(j, k - j), pos + 2 * k - 1 if k > 0 else H)
                        self._role[t] = "digit" if r == 0 else "carry"
                pos += 4 * d + 1
        for k in range(2 * d):
            t = pos + k
            self._mode[t] = _DIGIT
            self._inputs[t, 0] = s_digit(d - 1, k)
            self._role[t] = "answer"
        assert pos + 2 * d == H

    # ------------------------------------------------------------------ prompts
    def sample_contexts(self, n, rng):
        rng = as_rng(rng)
        n = self.check_sample_size(n)
        d = self.digits
        ctx = np.empty((n, self.context_length), dtype=np.int64)
        digits = rng.integers(0, 10, size=(n, 2 * d))
        ctx[:, :d] = digits[:, :d]
        ctx[:, d] = STAR
        ctx[:, d + 1 : 2 * d + 1] = digits[:, d:]
        ctx[:, 2 * d + 1] = EQUALS
        return ctx

    def make_contexts(self, a, b) -> np.ndarray:
        """Prompts for operand arrays ``a``, ``b`` (ints in ``[0, 10^digits - 1]``), ``(n, L)``."""
        d = self.digits
        a = np.atleast_1d(np.asarray(a, dtype=np.int64))
        b = np.atleast_1d(np.asarray(b, dtype=np.int64))
        for name, x in (("a", a), ("b", b)):
            if x.ndim != 1 or (x.size and (x.min() < 0 or x.max() >= 10**d)):
                raise ValueError(f"{name} must be integers in [0, {10**d - 1}] ({d} digits)")
        if a.shape != b.shape:
            raise ValueError(f"a and b must have the same length, got {a.shape} and {b.shape}")
        powers = 10 ** np.arange(d - 1, -1, -1, dtype=np.int64)
        ctx = np.empty((len(a), self.context_length), dtype=np.int64)
        ctx[:, :d] = (a[:, None] // powers) % 10
        ctx[:, d] = STAR
        ctx[:, d + 1 : 2 * d + 1] = (b[:, None] // powers) % 10
        ctx[:, 2 * d + 1] = EQUALS
        return ctx

    def operands(self, contexts) -> tuple[np.ndarray, np.ndarray]:
        """The operands ``(a, b)`` of each prompt, ``(n,)`` each."""
        ctx = self._check_contexts(contexts)
        d = self.digits
        powers = 10 ** np.arange(d - 1, -1, -1, dtype=np.int64)
        return ctx[:, :d] @ powers, ctx[:, d + 1 : 2 * d + 1] @ powers

    def enumerate_contexts(self):
        if self.digits > 2:
            return None
        m = 10**self.digits
        a, b = np.divmod(np.arange(m * m, dtype=np.int64), m)
        return self.make_contexts(a, b), np.full(m * m, 1.0 / (m * m))

    def _check_contexts(self, contexts) -> np.ndarray:
        ctx = self.check_contexts(contexts)
        d = self.digits
        if ctx.size:
            digit_slots = np.r_[0:d, d + 1 : 2 * d + 1]
            bad = (
                np.any(ctx[:, digit_slots] < 0)
                or np.any(ctx[:, digit_slots] > 9)
                or np.any(ctx[:, d] != STAR)
                or np.any(ctx[:, 2 * d + 1] != EQUALS)
            )
            if bad:
                raise ValueError(f"contexts must be prompts 'a * b =' with {d} digits (0..9) per operand (as made by sample_contexts)")
        return ctx

    # ------------------------------------------------------------------ expert
    def product_digits(self, contexts) -> np.ndarray:
        """The true answer: ``2 d`` product digits, least significant first, ``(n, 2d)``."""
        a, b = self.operands(contexts)
        powers = 10 ** np.arange(2 * self.digits, dtype=np.int64)
        return ((a * b)[:, None] // powers) % 10

    def _consistent_next(self, ctx, seq, positions) -> np.ndarray:
        """The consistent expert's token at each of ``positions`` given the written ``seq``
        (only tokens before a position are read), ``(n, len(positions))``."""
        n, H = len(ctx), self.horizon
        written = np.zeros((n, H + 1), dtype=np.int64)  # column H: "no input", read as 0
        T = seq.shape[1]
        written[:, :T] = np.where(seq <= 9, seq, 0)
        ctx_pad = np.concatenate([ctx, np.zeros((n, 1), dtype=np.int64)], axis=1)
        pos = np.asarray(positions, dtype=np.int64)
        v = ctx_pad[:, self._apos[pos]] * ctx_pad[:, self._bpos[pos]]
        v = v + written[:, self._inputs[pos]].sum(axis=-1)
        mode = self._mode[pos]
        out = np.where(mode == _DIGIT, v % 10, np.where(mode == _CARRY, v // 10, SEMI))
        if np.any(mode == _PRODUCT):
            prod = self.product_digits(ctx)
            out = np.where(mode == _PRODUCT, prod[:, np.minimum(self._power[pos], 2 * self.digits - 1)], out)
        return out

    def reference(self, contexts) -> np.ndarray:
        """The expert's own sequence (chain of thought and answer) for each prompt, ``(n, H)``."""
        ctx = self._check_contexts(contexts)
        if self.cot == "none":
            return self.product_digits(ctx)
        n, H = len(ctx), self.horizon
        ctx_pad = np.concatenate([ctx, np.zeros((n, 1), dtype=np.int64)], axis=1)
        prod = ctx_pad[:, self._apos] * ctx_pad[:, self._bpos]
        seq = np.zeros((n, H + 1), dtype=np.int64)  # column H: "no input"; inputs are never separators
        for t in range(H):  # each token reads earlier tokens only
            v = prod[:, t] + seq[:, self._inputs[t]].sum(axis=1)
            mode = self._mode[t]
            seq[:, t] = v % 10 if mode == _DIGIT else (v // 10 if mode == _CARRY else SEMI)
        return seq[:, :H].copy()

    def expert_next_tokens(self, contexts, sequences) -> np.ndarray:
        """The expert's token at every position given the written tokens before it, ``(n, T)``
        (the teacher-forced expert actions, one vectorised pass)."""
        ctx = self._check_contexts(contexts)
        seq = self.check_tokens("sequences", sequences, len(ctx), max_len=self.horizon)
        T = seq.shape[1]
        if self.off_path == "reference":
            return self.reference(ctx)[:, :T]
        return self._consistent_next(ctx, seq, np.arange(T))

    def expert_next_token(self, contexts, prefixes):
        ctx = self._check_contexts(contexts)
        pre = self.check_tokens("prefixes", prefixes, len(ctx), max_len=self.horizon - 1)
        t = pre.shape[1]
        if self.off_path == "reference":
            return self.reference(ctx)[:, t]
        return self._consistent_next(ctx, pre, [t])[:, 0]

    def action_mask(self, contexts, prefixes):
        """The grammar's token class at the next position, ``(n, V)``: ``';'`` alone at a
        separator position, the digits ``0..9`` everywhere else (``'*'``/``'='`` never). Off its
        own path the expert also writes a digit (every carry is at most 9) or ``';'`` there."""
        ctx = self._check_contexts(contexts)
        t = self.check_tokens("prefixes", prefixes, len(ctx), max_len=self.horizon - 1).shape[1]
        mask = np.zeros((len(ctx), self.vocab_size), dtype=bool)
        if self._mode[t] == _SEP:
            mask[:, SEMI] = True
        else:
            mask[:, :10] = True
        return mask

    # ------------------------------------------------------------------ scoring
    def reward(self, contexts, sequences):
        ctx = self._check_contexts(contexts)
        seq = self.check_tokens("sequences", sequences, len(ctx), exact_len=self.horizon)
        return np.all(seq[:, -self.answer_length :] == self.product_digits(ctx), axis=1).astype(np.float64)

    def extra_metrics(self, contexts, generated) -> dict[str, float]:
        """``answer_exact_match``, ``per_digit_accuracy`` (mean over the ``2 d`` answer digits),
        ``digit_accuracy_k`` (the digit of ``10^k``, ``k = 0 .. 2d-1``) and, with
        ``cot="full"``, ``cot_exact_match`` (every CoT token equals the reference's)."""
        ctx = self._check_contexts(contexts)
        gen = self.check_tokens("generated", generated, len(ctx), exact_len=self.horizon)
        if len(ctx) == 0:
            raise ValueError("extra_metrics needs at least one generated sequence (n >= 1)")
        right = gen[:, -self.answer_length :] == self.product_digits(ctx)
        out = {
            "answer_exact_match": float(np.mean(np.all(right, axis=1))),
            "per_digit_accuracy": float(np.mean(right)),
        }
        for k in range(self.answer_length):
            out[f"digit_accuracy_{k}"] = float(np.mean(right[:, k]))
        if self.cot == "full":
            cot_len = self.horizon - self.answer_length
            out["cot_exact_match"] = float(np.mean(np.all(gen[:, :cot_len] == self.reference(ctx)[:, :cot_len], axis=1)))
        return out

    # ------------------------------------------------------------------ display
    def render_tokens(self, context, tokens) -> str:
        """The prompt, then the written tokens: pairs as ``digit(carry)``, blocks separated by
        ``' ; '``, the answer digits run together (least significant first)."""
        names = self.token_names()

        def name(t):
            t = int(t)
            return names[t] if 0 <= t < len(names) else f"<{t}>"

        out = ["".join(name(t) for t in np.asarray(context).ravel())]
        prev = None
        for t, tok in enumerate(np.asarray(tokens).ravel()[: self.horizon]):
            role = self._role[t]
            if role == "carry":
                out.append(f"({name(tok)})")
            elif role == "answer" and prev == "answer":
                out.append(name(tok))
            elif role == "answer" and self.cot == "none":
                out.append(name(tok))
            else:
                out.append(" " + name(tok))
            prev = role
        return "".join(out)
