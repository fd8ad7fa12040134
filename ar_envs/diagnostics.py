"""Reasoning diagnostics: how a policy decodes, position by position, against reference answers.

Pure functions over arrays and policies. A *policy* is any object with

* ``next_token_probs(contexts (n, L), prefixes (n, t)) -> (n, V)`` (all prefixes of one length),
* optionally ``teacher_forced_probs(contexts, sequences (n, H)) -> (n, H, V)``: the next-token
  distribution at every position given the reference prefix before it, in one pass (used when
  present; otherwise the functions below call ``next_token_probs`` once per position).

:class:`ar_envs.expert.ExpertPolicy` is such a policy, so on a deterministic task the expert's
:func:`reasoning_report` is 1.0 everywhere.

The two per-position accuracies separate the two ways of being right (Bachmann & Nagarajan 2024):

* ``teacher_forced_accuracy``: argmax prediction given the *reference* prefix. This is what
  next-token training optimises; on path-star a "Clever Hans" policy scores 1 at every position
  after the first hard decision.
* ``free_running_accuracy``: the policy's own greedy roll-out against the reference. Errors
  compound here; it is what the sequence reward sees.
"""

from __future__ import annotations

import numpy as np

from .core import Task, as_rng, check_choice, check_int, sample_categorical

__all__ = [
    "greedy_decode",
    "sample_decode",
    "teacher_forced_probs",
    "teacher_forced_accuracy",
    "free_running_accuracy",
    "exact_match_rate",
    "reasoning_report",
]

DECODE_MODES = ("greedy", "sample")


def _check_contexts(task: Task, contexts) -> np.ndarray:
    ctx = np.asarray(contexts)
    if ctx.ndim != 2 or ctx.shape[1] != task.context_length:
        raise ValueError(f"contexts must have shape (n, {task.context_length}) for {task!r}, got {ctx.shape}")
    if ctx.shape[0] < 1:
        raise ValueError("contexts must hold at least one row (n >= 1)")
    return ctx


def _check_sequences(task: Task, sequences, n: int, name: str = "sequences") -> np.ndarray:
    seq = np.asarray(sequences)
    if seq.shape != (n, task.horizon):
        raise ValueError(f"{name} must have shape ({n}, {task.horizon}) (n, horizon), got {seq.shape}")
    if not np.issubdtype(seq.dtype, np.integer):
        raise ValueError(f"{name} must hold integer tokens, got dtype {seq.dtype}")
    if seq.min() < 0 or seq.max() >= task.vocab_size:
        raise ValueError(f"{name} must hold tokens in [0, {task.vocab_size - 1}], got values in [{seq.min()}, {seq.max()}]")
    return seq.astype(np.int64, copy=False)


def _check_probs(task: Task, probs, shape: tuple, what: str) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != shape:
        raise ValueError(f"the policy's {what} must have shape {shape}, got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"the policy's {what} must be finite and non-negative")
    return p


def _decode(task: Task, policy, contexts, pick) -> np.ndarray:
    ctx = _check_contexts(task, contexts)
    n, H, V = len(ctx), task.horizon, task.vocab_size
    seq = np.zeros((n, H), dtype=np.int64)
    for h in range(H):
        p = _check_probs(task, policy.next_token_probs(ctx, seq[:, :h]), (n, V), "next_token_probs")
        seq[:, h] = pick(p)
    return seq


def greedy_decode(task: Task, policy, contexts) -> np.ndarray:
    """The policy's greedy roll-out ``(n, H)`` (argmax at every step; ties to the lowest token)."""
    return _decode(task, policy, contexts, lambda p: p.argmax(axis=1))


def sample_decode(task: Task, policy, contexts, rng=None) -> np.ndarray:
    """One sampled roll-out per context, ``(n, H)`` (same ``rng`` seed, same sequences)."""
    rng = as_rng(rng)
    return _decode(task, policy, contexts, lambda p: sample_categorical(p, rng))


def teacher_forced_probs(task: Task, policy, contexts, sequences) -> np.ndarray:
    """The policy's next-token distributions given the reference prefixes, ``(n, H, V)``."""
    ctx = _check_contexts(task, contexts)
    seq = _check_sequences(task, sequences, len(ctx))
    n, H, V = len(ctx), task.horizon, task.vocab_size
    batched = getattr(policy, "teacher_forced_probs", None)
    if batched is not None:
        return _check_probs(task, batched(ctx, seq), (n, H, V), "teacher_forced_probs")
    out = np.empty((n, H, V))
    for h in range(H):
        out[:, h] = _check_probs(task, policy.next_token_probs(ctx, seq[:, :h]), (n, V), "next_token_probs")
    return out


def teacher_forced_accuracy(task: Task, policy, contexts, sequences) -> np.ndarray:
    """Per-position accuracy ``(H,)`` of the argmax prediction given the reference prefix."""
    seq = np.asarray(sequences)
    pred = teacher_forced_probs(task, policy, contexts, seq).argmax(axis=-1)
    return (pred == seq).mean(axis=0)


def free_running_accuracy(task: Task, policy, contexts, sequences, generated=None) -> np.ndarray:
    """Per-position accuracy ``(H,)`` of the policy's own greedy roll-out (or of ``generated``,
    if given) against the reference ``sequences``."""
    ctx = _check_contexts(task, contexts)
    seq = _check_sequences(task, sequences, len(ctx))
    gen = greedy_decode(task, policy, ctx) if generated is None else _check_sequences(task, generated, len(ctx), "generated")
    return (gen == seq).mean(axis=0)


def exact_match_rate(task: Task, policy, contexts, sequences, generated=None) -> float:
    """Fraction of contexts whose greedy roll-out (or ``generated``) equals the reference exactly."""
    ctx = _check_contexts(task, contexts)
    seq = _check_sequences(task, sequences, len(ctx))
    gen = greedy_decode(task, policy, ctx) if generated is None else _check_sequences(task, generated, len(ctx), "generated")
    return float(np.mean(np.all(gen == seq, axis=1)))


def reasoning_report(task: Task, policy, n: int = 1000, seed: int | None = 0, decode: str = "greedy") -> dict:
    """Diagnostics of ``policy`` on ``n`` fresh expert samples of ``task`` (seeded by ``seed``).

    Returns a dict of plain floats / lists: ``exact_match`` (roll-out equals the expert's
    sequence), ``reward`` (mean task reward of the roll-outs), ``teacher_forced_accuracy`` and
    ``free_running_accuracy`` (per position, lists of length H), then everything from
    ``task.extra_metrics(contexts, generated)`` (which wins on a name clash). ``decode`` is
    ``"greedy"`` (default, as in the reasoning literature) or ``"sample"``.
    """
    n = check_int("n", n, 1)
    check_choice("decode", decode, DECODE_MODES)
    rng = as_rng(seed)
    ctx, seq = task.sample_expert(n, rng)
    gen = greedy_decode(task, policy, ctx) if decode == "greedy" else sample_decode(task, policy, ctx, rng)
    report = {
        "exact_match": exact_match_rate(task, policy, ctx, seq, generated=gen),
        "reward": float(np.mean(task.reward(ctx, gen))),
        "teacher_forced_accuracy": [float(a) for a in teacher_forced_accuracy(task, policy, ctx, seq)],
        "free_running_accuracy": [float(a) for a in free_running_accuracy(task, policy, ctx, seq, generated=gen)],
    }
    report.update({k: float(v) for k, v in task.extra_metrics(ctx, gen).items()})
    return report
