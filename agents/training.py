"""Shared machinery of the neural algorithms: seeding, policies by name, minibatches, one Adam loop,
the fit log, and the expert oracle of the interactive methods.

The algorithms in ``agents/algorithms/*.py`` read top to bottom and write their loss in a few
visible lines; everything they have in common lives here and is called, not copied.

* :func:`seed_everything`: ``torch.manual_seed(seed)`` and a numpy ``Generator`` from the same
  seed (no global numpy state is touched: every random draw of an algorithm goes through the
  returned generator).
* :func:`build_policy`: a :class:`~ar_agents.policies.base.TokenPolicy` from a kind name
  (``"linear"``, ``"mlp"``, ``"transformer"``, ``"hf:gpt2"``, ..., via ``ar_agents.policies.make_policy``) or a copy of a
  given policy (fine-tuning starts from its weights).
* :func:`minibatches` and :func:`train`: Adam over a loss function of minibatches of row-aligned
  arrays, one loss value per epoch in the log.
* :func:`new_log` / :func:`finish_log`: the ``self.log`` dict every neural algorithm sets: the
  policy class, the loss curve per epoch, expert queries used, wall time, training tokens per
  second.
* :class:`ExpertOracle`, :func:`mixture_rollout` and :func:`mix_actions`: the task's expert
  behind a query counter, and the beta-mixture roll-in of DAgger that labels every visited
  prefix with the expert's next-token distribution.
"""

from __future__ import annotations

import copy
import time
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from ar_envs.core import Task, check_float, check_int, sample_categorical

from ar_agents.evaluation.progress import report

DEFAULT_POLICY = "transformer"


# --------------------------------------------------------------------------------------------
# seeding, policies and arguments
# --------------------------------------------------------------------------------------------


def seed_everything(seed) -> np.random.Generator:
    """Seed torch's global generator (initial weights, dropout) and return a numpy generator
    for everything else (minibatch order, roll-outs). Same seed, same numbers."""
    seed = check_int("seed", seed, 0, 2**63 - 1)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def build_policy(policy, task: Task | None, policy_args: dict | None = None, seed: int | None = None):
    """A fresh neural policy for ``task``.

    ``policy``: a kind name (see ``ar_agents.policies.POLICY_KINDS``; keyword arguments from
    ``policy_args``) or a ``TokenPolicy`` instance, which is deep-copied (its weights are the
    starting point; ``policy_args`` must then be empty; its stream must be ``task``'s unless
    ``task`` is ``None``). ``seed`` makes the initial weights reproducible.
    """
    from ar_agents.policies import POLICY_KINDS, make_policy
    from ar_agents.policies.base import TokenPolicy, stream_spec

    policy_args = dict(policy_args or {})
    if isinstance(policy, TokenPolicy):
        if policy_args:
            raise ValueError(f"policy_args must be empty when policy is a TokenPolicy instance, got {policy_args}")
        if task is not None and policy.spec != stream_spec(task):
            raise ValueError(f"policy was built for another stream ({policy.spec}); this task needs {stream_spec(task)}")
        return copy.deepcopy(policy)
    if policy not in POLICY_KINDS:
        raise ValueError(f"policy must be one of {POLICY_KINDS} or a TokenPolicy instance, got {policy!r}")
    return make_policy(policy, task, seed=seed, **policy_args)


def policy_kind(policy) -> str:
    """The kind name of a neural policy (``"linear"``, ``"mlp"``, ``"transformer"``, ``"hf:gpt2"``, ...)
    or its class name."""
    from ar_agents.policies import GPTPolicy, WindowPolicy
    from ar_agents.policies.hf import HF_POLICY_CLASSES

    if type(policy) in HF_POLICY_CLASSES.values():  # exactly these: a user's subclass keeps its class name
        return policy.kind
    if isinstance(policy, GPTPolicy):
        return "transformer"
    if isinstance(policy, WindowPolicy):
        return "linear" if policy.hidden == 0 else "mlp"
    return type(policy).__name__


def check_policy_spec(policy, policy_args) -> None:
    """Constructor-time check of ``policy`` / ``policy_args`` (the policy itself is built in ``fit``)."""
    from ar_agents.policies import POLICY_KINDS
    from ar_agents.policies.base import TokenPolicy

    if policy is not None and not isinstance(policy, TokenPolicy) and policy not in POLICY_KINDS:
        raise ValueError(f"policy must be one of {POLICY_KINDS}, a TokenPolicy instance or None, got {policy!r}")
    if isinstance(policy, str) and policy.startswith("hf:"):
        from ar_agents.policies.hf import require_transformers

        require_transformers(policy)  # at construction, not in the first cell of a sweep
    if policy_args is not None and not isinstance(policy_args, dict):
        raise ValueError(f"policy_args must be a dict of keyword arguments, got {policy_args!r}")


def check_training_args(epochs, lr, batch_size) -> tuple[int, float, int]:
    """``epochs >= 1``, ``lr > 0``, ``batch_size >= 1`` as (int, float, int), or ``ValueError``."""
    return (
        check_int("epochs", epochs, 1),
        check_float("lr", lr, 0.0, low_open=True),
        check_int("batch_size", batch_size, 1),
    )


# --------------------------------------------------------------------------------------------
# minibatches and the training loop
# --------------------------------------------------------------------------------------------


def minibatches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Row indices of one epoch: a random permutation of ``0..n-1`` cut into batches."""
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def train(
    policy: torch.nn.Module,
    loss_fn: Callable[[tuple, int], torch.Tensor],
    arrays: Sequence[np.ndarray],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    rng: np.random.Generator,
    log: dict,
    tokens_per_row: int,
) -> None:
    """Adam on ``loss_fn(batch, epoch)`` over minibatches of the row-aligned ``arrays``.

    ``batch`` is the tuple of the arrays' rows in the minibatch; the loss is a mean over the
    batch. Appends the epoch's mean loss to ``log["loss_curve"]`` and counts training tokens
    (``tokens_per_row`` per row and epoch) and training time for ``tokens_per_s``. A fresh
    optimiser each call: calling it again continues from the current weights (warm start).
    The policy is left in evaluation mode. Reports ``("epoch", i, epochs)`` as each epoch begins
    (``ar_agents.evaluation.progress``).
    """
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"arrays must have the same number of rows, got {[len(a) for a in arrays]}")
    if n == 0:
        raise ValueError("there is no training data (0 rows)")
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    policy.train()
    start = time.perf_counter()
    for epoch in range(epochs):
        report("epoch", epoch + 1, epochs)
        total = 0.0
        for idx in minibatches(n, batch_size, rng):
            loss = loss_fn(tuple(a[idx] for a in arrays), epoch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if not np.isfinite(total):
            raise FloatingPointError(f"the training loss is not finite at epoch {epoch} (try a smaller lr)")
        log["loss_curve"].append(total / n)
    policy.eval()
    log["train_s"] += time.perf_counter() - start
    log["train_tokens"] += epochs * n * tokens_per_row


def new_log(policy) -> dict:
    """The log of a neural fit; :func:`finish_log` completes it."""
    return {
        "policy_class": policy_kind(policy),
        "policy": policy.describe(),
        "loss_curve": [],
        "expert_queries": 0,
        "train_tokens": 0,
        "train_s": 0.0,
        "_start": time.perf_counter(),
    }


def finish_log(log: dict, **extra) -> dict:
    """Add ``wall_s``, ``tokens_per_s`` (training tokens per second of training) and ``extra``."""
    log["wall_s"] = time.perf_counter() - log.pop("_start")
    log["tokens_per_s"] = log["train_tokens"] / log["train_s"] if log["train_s"] > 0 else None
    log["final_loss"] = log["loss_curve"][-1] if log["loss_curve"] else None
    log.update(extra)
    return log


# --------------------------------------------------------------------------------------------
# the expert of the interactive methods
# --------------------------------------------------------------------------------------------


class ExpertOracle:
    """A task's expert behind a counter: each row of each ``expert_probs`` call is one query."""

    def __init__(self, task: Task):
        self.task = task
        self.queries = 0

    def probs(self, contexts, prefixes) -> np.ndarray:
        """The expert's next-token distribution after equal-length ``prefixes``, ``(n, V)``."""
        out = np.asarray(self.task.expert_probs(contexts, prefixes), dtype=np.float64)
        self.queries += len(out)
        return out

    def relabel(self, contexts, sequences) -> np.ndarray:
        """The expert's distribution after every prefix of ``sequences`` ``(n, T)``, ``(n, T, V)``:
        one batched query per position, ``n * T`` queries in all."""
        sequences = np.asarray(sequences)
        n, T = sequences.shape
        out = np.empty((n, T, self.task.vocab_size))
        for h in range(T):
            out[:, h] = self.probs(contexts, sequences[:, :h])
        return out


def mixture_rollout(policy, oracle: ExpertOracle, contexts, beta: float, rng: np.random.Generator):
    """Roll out the beta-mixture of the expert and ``policy`` from ``contexts`` ``(n, L)``.

    At every step each row executes the expert's action (a draw from its distribution) with
    probability ``beta``, else a draw from the policy. The expert is queried exactly once at
    every visited prefix (all rows, one batched call per position): that query is both the
    expert's action and the prefix's label. Returns ``(sequences (n, H), labels (n, H, V))``.
    """
    beta = check_float("beta", beta, 0.0, 1.0)
    contexts = np.asarray(contexts)
    n, H, V = len(contexts), oracle.task.horizon, oracle.task.vocab_size
    seq = np.zeros((n, H), dtype=np.int64)
    labels = np.empty((n, H, V))
    stepper = policy.stepper(contexts) if callable(getattr(policy, "stepper", None)) else None  # O(1) per step
    for h in range(H):
        labels[:, h] = oracle.probs(contexts, seq[:, :h])
        own = stepper.probs() if stepper is not None else policy.next_token_probs(contexts, seq[:, :h])
        seq[:, h] = mix_actions(labels[:, h], own, beta, rng)
        if stepper is not None:
            stepper.advance(seq[:, h])
    return seq, labels


def mix_actions(expert_probs, policy_probs, beta: float, rng: np.random.Generator) -> np.ndarray:
    """One step of the beta-mixture, ``(n,)`` tokens: per row, a draw from ``expert_probs``
    ``(n, V)`` with probability ``beta``, else a draw from ``policy_probs`` ``(n, V)``."""
    expert_tok = sample_categorical(expert_probs, rng)
    policy_tok = sample_categorical(policy_probs, rng)
    return np.where(rng.random(len(expert_tok)) < beta, expert_tok, policy_tok)


def answer_cross_entropy(logits: torch.Tensor, sequences) -> torch.Tensor:
    """Mean log loss of the demonstrated tokens ``sequences (n, H)`` under ``logits (n, H, V)``."""
    targets = torch.as_tensor(np.asarray(sequences), dtype=torch.long, device=logits.device)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def one_hot(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """``(n, H)`` tokens as ``(n, H, V)`` float32 distributions (hard labels)."""
    return np.eye(vocab_size, dtype=np.float32)[np.asarray(tokens)]
