"""Small numerically careful helpers (numpy only)."""

from __future__ import annotations

import math

import numpy as np


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def logsumexp(z, axis=None):
    z = np.asarray(z, dtype=np.float64)
    m = np.max(z, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True)) + m
    return np.squeeze(out, axis=axis) if axis is not None else out.reshape(())[()]


def log_binom(n: int, k) -> np.ndarray:
    """log C(n, k), elementwise over k."""
    k = np.asarray(k, dtype=np.int64)
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])
    return log_fact[n] - log_fact[k] - log_fact[n - k]


def log_abs_diff_exp(x, y) -> np.ndarray:
    """log |e^x - e^y| elementwise (-inf where equal)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    hi = np.maximum(x, y)
    lo = np.minimum(x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(np.isfinite(lo), lo - hi, -np.inf)
        out = hi + np.log(-np.expm1(d))
    return np.where(np.isneginf(hi), -np.inf, out)


def shuffle_rows(rng: np.random.Generator, values: np.ndarray, bits: int) -> np.ndarray:
    """Each row of ``values`` ``(n, m)`` (integers in ``[0, 2^bits)``) in an independent,
    uniformly random order; the draws come from ``rng`` only. Returns a new array of the
    narrowest unsigned dtype used for the keys (``uint32`` for ``bits <= 12``, else ``uint64``).

    A row is sorted by the keys ``(random bits << bits) | value``: a plain unsigned-integer sort
    that carries the values along in the low bits (no arg-sort, no gather). A row in which two
    random parts tie is drawn again: given distinct i.i.d. random parts every order is equally
    likely, so the orders are exactly uniform. The redraws are bounded: after
    :data:`MAX_REDRAWS` rounds the rows still tied are shuffled by ``rng.permuted`` (Fisher-Yates,
    exactly uniform), and when the random part is too short for its row (more than
    :data:`MAX_TIED_PAIRS` expected tied pairs per row, e.g. thousands of keys of 20 random
    bits) every row is shuffled that way from the start. Each row's order is uniform given
    whichever way drew it, so the orders stay exactly uniform and nothing loops unboundedly.
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"values must be a 2-d array (n, m), got shape {values.shape}")
    if not 1 <= bits <= 44:
        raise ValueError(f"bits must be in [1, 44], got {bits}")
    dtype, low = _key_dtype(bits)
    if not np.issubdtype(values.dtype, np.integer) or (
        values.size and ((np.issubdtype(values.dtype, np.signedinteger) and values.min() < 0) or values.max() > int(low))
    ):
        raise ValueError(f"values must be integers in [0, 2^{bits} - 1]")
    return _shuffle(rng, values.astype(dtype, copy=False), low)


def _key_dtype(bits: int):
    """``(key dtype, value mask)`` for values of ``bits`` bits: 32-bit keys while at least 20
    random bits remain above the value, else 64-bit."""
    dtype = np.uint32 if bits <= 12 else np.uint64
    return dtype, dtype((1 << bits) - 1)


MAX_REDRAWS = 8  # rounds of redrawing tied rows before the still-tied rows are shuffled directly
MAX_TIED_PAIRS = 2.0**-6  # expected tied pairs per row above which the packed sort is not used


def _shuffle(rng: np.random.Generator, values: np.ndarray, low) -> np.ndarray:
    """:func:`shuffle_rows` on checked ``values`` of the key dtype; ``low`` = the value mask."""
    n, m = values.shape
    dtype = values.dtype
    width = dtype.itemsize * 8
    if n == 0 or m == 0:
        return values.copy()
    random_bits = width - int(low).bit_length()
    if m * (m - 1) / 2 > MAX_TIED_PAIRS * 2.0**random_bits:
        # too few random bits for this many keys: most rows would tie in every round
        return rng.permuted(values, axis=1)

    def keys(rows) -> np.ndarray:
        count = (len(rows) if rows is not None else n) * m
        words = count * (width // 32)
        raw = rng.bit_generator.random_raw((words + 1) // 2).view(np.uint32)[:words]
        out = raw.view(dtype).reshape(-1, m)
        out &= ~low
        out |= values if rows is None else values[rows]
        out.sort(axis=1)
        return out

    out = keys(None)
    for _ in range(MAX_REDRAWS):
        tied = _tied_rows(out, low)
        if len(tied) == 0:
            break
        out[tied] = keys(tied)
    else:
        tied = _tied_rows(out, low)
        if len(tied):  # still tied after MAX_REDRAWS rounds: an exact shuffle of those rows
            out[tied] = rng.permuted(values[tied], axis=1)
    out &= low
    return out


def _tied_rows(out: np.ndarray, low) -> np.ndarray:
    """The rows of the sorted keys ``out`` ``(n, m)`` in which two random parts are equal.

    A tie leaves two adjacent keys (after the sort) whose XOR fits in the value bits: one pass
    over the flat array finds them (pairs that straddle two rows are skipped)."""
    m = out.shape[1]
    if m < 2:
        return np.zeros(0, dtype=np.int64)
    flat = out.reshape(-1)
    near = flat[1:] ^ flat[:-1]
    if near.min() > low:
        return np.zeros(0, dtype=np.int64)
    pos = np.flatnonzero(near <= low)
    return np.unique(pos[pos % m != m - 1] // m)


def random_orders(rng: np.random.Generator, n: int, m: int, k: int | None = None) -> np.ndarray:
    """The first ``k`` entries (default all ``m``) of ``n`` independent uniformly random
    permutations of ``0 .. m-1``, ``(n, k)`` (:func:`shuffle_rows` of ``0 .. m-1``), as
    ``uint32`` for ``m <= 4096``, else ``uint64``."""
    k = m if k is None else k
    if not 0 <= k <= m:
        raise ValueError(f"k must be in [0, {m}], got {k}")
    dtype, low = _key_dtype(max(1, (m - 1).bit_length()))
    return _shuffle(rng, np.broadcast_to(np.arange(m, dtype=dtype), (n, m)), low)[:, :k]
