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
