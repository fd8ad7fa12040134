"""The Task interface: a distribution over (context, sequence) pairs plus an expert.

Everything is batched numpy. A task never imports torch.

Conventions
-----------
* ``contexts``: int array ``(n, context_length)`` (``context_length`` may be 0).
* ``prefixes`` / ``sequences``: int array ``(n, t)`` of tokens in ``0 .. vocab_size-1``.
* The expert's next-token distribution is defined after *any* prefix, including prefixes the
  expert itself would never produce (that is what DAgger queries).

A task may also expose a :class:`FeatureMap`: a finite-state feature map for its canonical
log-linear learner class. The learner's next-token distribution at step ``h`` then depends only
on ``(context index, state_h)``, which makes fitting and exact metrics cheap.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "Task",
    "FeatureMap",
    "check_int",
    "check_float",
    "check_probability",
    "check_memory",
    "memory_limit",
    "as_rng",
    "check_task",
    "check_task_class",
]


# --------------------------------------------------------------------------------------------
# argument validation (every constructor uses these, so errors read the same everywhere)
# --------------------------------------------------------------------------------------------


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int, or raise ``ValueError`` naming ``name`` and the allowed range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer{_range_text(low, high)}, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer{_range_text(low, high)}, got {value}")
    return value


def check_float(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    reason: str = "",
) -> float:
    """Return ``value`` as a finite float in the given range, or raise ``ValueError``.

    Only real numbers are accepted (Python and numpy ints and floats): a bool, a string (even
    ``"0.5"``), ``None`` or a container is refused rather than converted. ``reason`` (e.g.
    "beyond it the expert's logits overflow") is added to the message of an out-of-range value.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        out = math.nan  # e.g. an int beyond float's range: reported as out of range below
    lo_ok = low is None or (out > low if low_open else out >= low)
    hi_ok = high is None or (out < high if high_open else out <= high)
    if not math.isfinite(out) or not lo_ok or not hi_ok:
        lb = "" if low is None else ("(" if low_open else "[") + f"{low}"
        hb = "" if high is None else f"{high}" + (")" if high_open else "]")
        rng = f" in {lb or '(-inf'}, {hb or 'inf)'}"
        why = f" ({reason})" if reason else ""
        raise ValueError(f"{name} must be a finite number{rng}{why}, got {value!r}")
    return out


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError`` listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` as a bool if it is ``True`` or ``False`` (numpy's too), else raise."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


MAX_BYTES_VAR = "AR_ENVS_MAX_BYTES"
DEFAULT_MAX_BYTES = 4 * 2**30


def memory_limit() -> int:
    """The most memory (bytes) one task, environment or sample may need: ``AR_ENVS_MAX_BYTES``
    from the environment if set (a positive number of bytes, e.g. ``16e9``), else 4 GiB."""
    raw = os.environ.get(MAX_BYTES_VAR, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        limit = float(raw)
    except ValueError:
        limit = math.nan
    if not (math.isfinite(limit) and limit >= 1):
        raise ValueError(f"{MAX_BYTES_VAR} must be a positive number of bytes (e.g. 16e9), got {raw!r}")
    return int(limit)


# the largest logit scale a task knob may set (LinearAR's scale and misspec, TwoBranchLinear's
# norm_bound and kappa): logits up to about 1e12 stay far from float overflow, so every softmax
# is finite and normalised; beyond 1e6 the probabilities are 0 and 1 up to rounding anyway
MAX_LOGIT_SCALE = 1e6


def _gib(nbytes) -> str:
    try:
        return f"{nbytes / 2**30:.3g} GiB"
    except OverflowError:  # an int beyond float's range (e.g. from a huge argument)
        from decimal import Decimal

        return f"{Decimal(nbytes) / 2**30:.3g} GiB"


def check_memory(owner: str, nbytes: int | float, what: str) -> None:
    """Refuse up front (``ValueError``) a size whose arrays would need more than
    :func:`memory_limit` bytes, instead of failing inside numpy with a bare ``MemoryError``.

    ``owner`` names the object and the arguments that set the size (``"LinearAR: vocab_size=10000"``);
    ``nbytes`` is an estimate of the memory the largest arrays need (a Python number, computed
    without allocating); ``what`` says which arrays. The message reads
    ``"LinearAR: vocab_size=10000 needs ~14.9 GiB for its feature tables (limit 4 GiB; set
    AR_ENVS_MAX_BYTES to raise it)"``.
    """
    limit = memory_limit()
    if nbytes > limit:
        raise ValueError(f"{owner} needs ~{_gib(nbytes)} for {what} (limit {_gib(limit)}; "
                         f"set {MAX_BYTES_VAR} to raise it)")


def one_hot_probs(tokens, vocab_size: int) -> np.ndarray:
    """Tokens of any shape as float64 one-hot distributions, shape ``tokens.shape + (V,)``."""
    tokens = np.asarray(tokens)
    out = np.zeros(tokens.shape + (vocab_size,))
    np.put_along_axis(out, tokens[..., None], 1.0, axis=-1)
    return out


def check_probability(name: str, value: Any, open_low: bool = False, open_high: bool = False) -> float:
    return check_float(name, value, 0.0, 1.0, low_open=open_low, high_open=open_high)


def _range_text(low, high) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def load_object(spec: str, what: str):
    """The object named by an import path ``package.module:Name``. Raises ``ValueError`` naming
    ``what`` on failure.

    Importing runs the module's code, so this is only for import paths a user explicitly asks
    for (``--algorithms pkg.mod:Name``, ``--task pkg.mod:Class``: user code by design), never for
    a name read from a file (policy and demonstration files resolve names from allow-lists).
    As with ``python -m``, the current directory is importable: it is appended to ``sys.path``
    (after everything else, so it cannot shadow an installed module) if not already there.
    Callers check that the object is what they asked for before using it."""
    import importlib
    import os
    import sys

    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{what} {spec!r} must be a known name or an import path package.module:Name")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{what} {spec!r} could not be imported: {exc}") from None


def as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


# --------------------------------------------------------------------------------------------
# finite-state feature maps for log-linear learner classes
# --------------------------------------------------------------------------------------------


@dataclass
class FeatureMap:
    """A log-linear learner class whose features depend on a finite, Markov state.

    ``pi_theta(a | x, a_<h) ∝ exp(<theta, features[c, s_h, a]> + offset[c, s_h, a])`` where
    ``c = context_index(x)``, ``s_0 = initial_state`` and ``s_{h+1} = transitions[s_h, a_h]``.

    Because the state is Markov with a fixed transition table, sequence log-probabilities are
    sums over a table, fitting reduces to visit counts, and sequence-level distances to a policy
    or expert of the same structure can be computed exactly by dynamic programming for any H.

    Attributes:
        features: ``(C, S, V, d)`` float array.
        offset: ``(C, S, V)`` fixed logit offsets (zeros if the class has none).
        transitions: ``(S, V)`` int array, the next state after emitting a token.
        initial_state: the state before the first token.
        context_index: maps contexts ``(n, L)`` to ``(n,)`` indices in ``0..C-1``.
        norm_bound: ``||theta[bounded_dims]|| <= norm_bound``; ``None`` for an unbounded class.
        bounded_dims: indices of ``theta`` under the norm bound (all if ``None``).
        param_names: readable names of the ``d`` parameters.
        grid_ranges: per-parameter ``(low, high)`` used to build finite grids of the class.
    """

    features: np.ndarray
    offset: np.ndarray
    transitions: np.ndarray
    initial_state: int
    context_index: Callable[[np.ndarray], np.ndarray]
    norm_bound: float | None = None
    bounded_dims: Sequence[int] | None = None
    param_names: Sequence[str] | None = None
    grid_ranges: Sequence[tuple[float, float]] | None = None
    description: str = ""

    def __post_init__(self):
        self.features = np.asarray(self.features, dtype=np.float64)
        if self.features.ndim != 4:
            raise ValueError(f"features must have shape (C, S, V, d), got {self.features.shape}")
        C, S, V, d = self.features.shape
        self.offset = np.asarray(self.offset, dtype=np.float64)
        if self.offset.shape != (C, S, V):
            raise ValueError(f"offset must have shape {(C, S, V)} (C, S, V), got {self.offset.shape}")
        self.transitions = np.asarray(self.transitions, dtype=np.int64)
        if self.transitions.shape != (S, V):
            raise ValueError(f"transitions must have shape {(S, V)} (S, V), got {self.transitions.shape}")
        if self.transitions.min() < 0 or self.transitions.max() >= S:
            raise ValueError(f"transitions must hold states in [0, {S - 1}]")
        self.initial_state = check_int("initial_state", self.initial_state, 0, S - 1)
        if self.norm_bound is not None:
            self.norm_bound = check_float("norm_bound", self.norm_bound, 0.0, low_open=True)
        if self.bounded_dims is None:
            self.bounded_dims = list(range(d))
        if self.param_names is None:
            self.param_names = [f"theta{i}" for i in range(d)]
        if self.grid_ranges is None:
            self.grid_ranges = [(-8.0, 8.0)] * d
        if len(self.grid_ranges) != d or len(self.param_names) != d:
            raise ValueError("grid_ranges and param_names need one entry per parameter")

    @property
    def dim(self) -> int:
        return self.features.shape[3]

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.features.shape[:3]

    def logits(self, theta: np.ndarray) -> np.ndarray:
        """``(C, S, V)`` logits for parameter ``theta`` (d,)."""
        return self.features @ np.asarray(theta, dtype=np.float64) + self.offset

    def log_probs(self, theta: np.ndarray) -> np.ndarray:
        z = self.logits(theta)
        return z - _logsumexp(z, axis=-1, keepdims=True)

    def states(self, contexts: np.ndarray, sequences: np.ndarray) -> np.ndarray:
        """The state before each token, ``(n, T)``."""
        sequences = np.asarray(sequences, dtype=np.int64)
        n, T = sequences.shape
        out = np.empty((n, T), dtype=np.int64)
        s = np.full(n, self.initial_state, dtype=np.int64)
        for h in range(T):
            out[:, h] = s
            s = self.transitions[s, sequences[:, h]]
        return out

    def next_state(self, contexts: np.ndarray, prefixes: np.ndarray) -> np.ndarray:
        """The state after ``prefixes`` ``(n, t)``: the state in which the next token is drawn."""
        prefixes = np.asarray(prefixes, dtype=np.int64)
        s = np.full(prefixes.shape[0], self.initial_state, dtype=np.int64)
        for h in range(prefixes.shape[1]):
            s = self.transitions[s, prefixes[:, h]]
        return s

    def index(self, contexts: np.ndarray, sequences: np.ndarray):
        """``(context index (n,), states (n, T), tokens (n, T))``."""
        c_idx = np.asarray(self.context_index(np.asarray(contexts)), dtype=np.int64)
        return c_idx, self.states(contexts, sequences), np.asarray(sequences, dtype=np.int64)

    def counts(self, contexts: np.ndarray, sequences: np.ndarray) -> np.ndarray:
        """Per-sequence visit counts ``(n, C*S*V)`` of (context, state, token)."""
        c_idx, s_idx, a_idx = self.index(contexts, sequences)
        n, T = a_idx.shape
        C, S, V = self.shape
        flat = (c_idx[:, None] * S + s_idx) * V + a_idx
        out = np.zeros((n, C * S * V), dtype=np.float64)
        np.add.at(out, (np.repeat(np.arange(n), T), flat.ravel()), 1.0)
        return out


def _logsumexp(z: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    m = np.max(z, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


# --------------------------------------------------------------------------------------------
# the Task base class
# --------------------------------------------------------------------------------------------


class Task:
    """Base class of all tasks. Subclasses set the attributes and implement ``expert_probs``.

    Required attributes: ``name`` (the CLI name), ``env_id`` (registered id, without namespace),
    ``vocab_size`` V >= 2, ``horizon`` H >= 1, ``context_length`` L >= 0,
    ``context_vocab_size`` (number of distinct context token values; >= 1).

    Optional exact hooks (return ``None`` when they do not apply):

    * ``enumerate_contexts() -> (contexts (C, L), probs (C,))``: the finite context support.
    * ``exact_metrics(state_probs)`` for policies whose next-token distribution depends only on
      the task's :meth:`feature_map` state: closed forms.
    """

    name: str = "task"
    env_id: str = "Task-v0"
    vocab_size: int = 2
    horizon: int = 1
    context_length: int = 0
    context_vocab_size: int = 1
    deterministic_expert: bool = False
    # the constructor argument a horizon sweep varies (the horizon H itself, or e.g. path-star's
    # path_length, multiplication's digits); the sweep records the resulting ``horizon``
    horizon_arg: str = "horizon"

    # ------------------------------------------------------------------ required
    def sample_contexts(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.context_length == 0:
            return np.zeros((n, 0), dtype=np.int64)
        raise NotImplementedError

    def expert_probs(self, contexts: np.ndarray, prefixes: np.ndarray) -> np.ndarray:
        """The expert's next-token distribution ``(n, V)`` after equal-length ``prefixes``."""
        raise NotImplementedError

    def reward(self, contexts: np.ndarray, sequences: np.ndarray) -> np.ndarray:
        """Sequence-level reward in [0, 1], ``(n,)``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ generic, overridable
    def task_args(self) -> dict:
        """The constructor arguments that reproduce this task (JSON-serialisable): every one of
        them, so that ``type(task)(**task.task_args())`` rebuilds it. Environment specs,
        datasets and the sweep's results are keyed by it. This default serves tasks whose
        constructor takes no arguments; for any other it raises ``ValueError`` (override it)."""
        names, _ = _constructor_parameters(type(self))
        if names:
            raise ValueError(f"{type(self).__qualname__} takes constructor arguments {names} but does not override "
                             "task_args(): it must return every constructor argument")
        return {}

    def token_names(self) -> list[str]:
        return [str(i) for i in range(self.vocab_size)]

    def context_token_names(self) -> list[str]:
        return [str(i) for i in range(self.context_vocab_size)]

    def sample_bytes(self, n: int) -> int:
        """An estimate of the memory (bytes) that sampling ``n`` episodes needs: a few int64
        copies of their ``L + H`` tokens and of one step's ``V`` next-token probabilities.
        A task whose sampler or expert needs more (per-episode tables) overrides it."""
        return 8 * n * (3 * (self.context_length + self.horizon) + 8 * self.vocab_size)

    def check_sample_size(self, n, name: str = "n") -> int:
        """``n`` as an int >= 0 whose ``n`` episodes fit in :func:`memory_limit`, else
        ``ValueError`` naming ``name`` and the estimate (:meth:`sample_bytes`)."""
        n = check_int(name, n, 0)
        check_memory(f"{type(self).__name__}: {name}={n}", self.sample_bytes(n),
                     f"{n} episodes of {self.context_length} + {self.horizon} tokens ({self.describe()})")
        return n

    def check_episode_size(self, args: str) -> None:
        """At construction: refuse (``ValueError`` naming ``args``, the arguments that set the
        sizes, e.g. ``"horizon=10**9"``) a task one episode of which would not fit in memory."""
        check_memory(f"{type(self).__name__}: {args}", self.sample_bytes(1),
                     f"one episode of {self.context_length} + {self.horizon} tokens")

    def sample_expert(self, n: int, rng: np.random.Generator | int | None = None):
        """``(contexts (n, L), sequences (n, H))`` sampled from the expert."""
        rng = as_rng(rng)
        n = self.check_sample_size(n)
        contexts = self.sample_contexts(n, rng)
        seq = np.zeros((n, self.horizon), dtype=np.int64)
        for h in range(self.horizon):
            p = self.expert_probs(contexts, seq[:, :h])
            check_probability_rows(self, p)
            seq[:, h] = sample_categorical(p, rng)
        return contexts, seq

    def expert_plan(self, contexts: np.ndarray):
        """Per-context work the expert can reuse at every step of an episode (e.g. path-star's
        parsed graph); ``None`` when there is nothing to reuse. Environments call it once per
        episode and pass the result to :meth:`expert_probs_planned`."""
        return None

    def expert_probs_planned(self, contexts: np.ndarray, prefixes: np.ndarray, plan) -> np.ndarray:
        """:meth:`expert_probs` given :meth:`expert_plan`'s result for the same ``contexts``."""
        return self.expert_probs(contexts, prefixes)

    def sample_contexts_planned(self, n: int, rng: np.random.Generator, out: np.ndarray | None = None):
        """``(contexts, expert_plan(contexts))``, the same contexts as :meth:`sample_contexts`
        for the same generator; a task whose sampler already knows the plan overrides this.

        ``out``: an integer array ``(n, L)`` (e.g. the environments' observation buffer, whose
        dtype holds every context token) to write the contexts into; it is then returned as
        the contexts.
        """
        if out is not None:
            self.check_context_buffer(out, n)
        contexts = self.sample_contexts(n, rng)
        plan = self.expert_plan(contexts)
        if out is None:
            return contexts, plan
        out[...] = contexts
        return out, plan

    def check_context_buffer(self, out, n: int) -> np.ndarray:
        """``out`` if it is an integer array ``(n, L)`` whose dtype holds every context token,
        else ``ValueError`` (a narrower dtype would wrap tokens around)."""
        shape = (n, self.context_length)
        if not isinstance(out, np.ndarray) or out.shape != shape or not np.issubdtype(out.dtype, np.integer):
            got = f"{type(out).__name__} {getattr(out, 'dtype', '')} {np.shape(out)}"
            raise ValueError(f"out must be an integer array of shape {shape}, got {got}")
        if np.iinfo(out.dtype).max < self.context_vocab_size - 1:
            raise ValueError(f"out must have a dtype that holds context tokens up to {self.context_vocab_size - 1}, "
                             f"got {out.dtype}")
        return out

    def reward_planned(self, contexts: np.ndarray, sequences: np.ndarray, plan) -> np.ndarray:
        """:meth:`reward` given :meth:`expert_plan`'s result for the same ``contexts``."""
        return self.reward(contexts, sequences)

    def action_mask(self, contexts: np.ndarray, prefixes: np.ndarray) -> np.ndarray:
        """Which next tokens can ever be right after equal-length ``prefixes``: bool ``(n, V)``.

        ``False`` marks a token that is never valid at that step for that context (path-star:
        ids that are not nodes of the prompt's graph; multiplication: a separator where the
        grammar has a digit and vice versa), so that action-masking RL (sb3-contrib's
        MaskablePPO, through the environments' ``action_masks()``) never samples it. The
        expert's next token is always allowed, after any prefix. Default: every token allowed.
        """
        return np.ones((len(contexts), self.vocab_size), dtype=bool)

    def check_step_probs_size(self, sequences) -> None:
        """Refuse (``ValueError``) ``sequences`` ``(n, T)`` whose teacher-forced expert
        distributions ``(n, T, V)`` float64 would not fit in :func:`memory_limit`."""
        shape = np.shape(sequences)
        if len(shape) == 2:
            n, T = shape
            check_memory(f"{type(self).__name__}: {n} sequences of {T} tokens, vocab_size={self.vocab_size}",
                         8 * n * T * self.vocab_size, "the expert's distributions at every position (n, T, V)")

    def expert_step_probs(self, contexts: np.ndarray, sequences: np.ndarray) -> np.ndarray:
        """Teacher-forced expert distributions at every position, ``(n, T, V)``."""
        self.check_step_probs_size(sequences)
        sequences = np.asarray(sequences)
        out = np.empty(sequences.shape + (self.vocab_size,), dtype=np.float64)
        for h in range(sequences.shape[1]):
            out[:, h] = self.expert_probs(contexts, sequences[:, :h])
        return out

    def expert_log_prob(self, contexts: np.ndarray, sequences: np.ndarray) -> np.ndarray:
        """Exact sequence log-probability under the expert (``-inf`` off its support)."""
        sequences = np.asarray(sequences, dtype=np.int64)
        p = self.expert_step_probs(contexts, sequences)
        pa = np.take_along_axis(p, sequences[..., None], axis=-1)[..., 0]
        with np.errstate(divide="ignore"):
            return np.log(pa).sum(axis=1)

    def extra_metrics(self, contexts: np.ndarray, generated: np.ndarray) -> dict[str, float]:
        """Task-specific diagnostics of generated sequences ``(n, H)`` (e.g. path-star's
        first-decision accuracy, multiplication's per-digit accuracy): name -> mean value."""
        return {}

    def feature_map(self) -> FeatureMap | None:
        """The canonical log-linear learner class, if the task has one."""
        return None

    def enumerate_contexts(self):
        if self.context_length == 0:
            return np.zeros((1, 0), dtype=np.int64), np.ones(1)
        return None

    def exact_metrics(self, state_probs: np.ndarray) -> dict | None:
        return None

    def best_in_class(self):
        """Closed-form / task-specific best in class, or ``None`` to use the generic optimiser."""
        return None

    # ------------------------------------------------------------------ helpers
    def check_tokens(self, name: str, tokens, n: int | None = None, max_len: int | None = None,
                     exact_len: int | None = None) -> np.ndarray:
        """``tokens`` as an int64 ``(n, t)`` array of tokens in ``[0, V-1]``, or ``ValueError``
        naming ``name`` (rows must be ``n`` if given; length ``<= max_len`` / ``== exact_len``)."""
        tok = np.asarray(tokens)
        if tok.ndim != 2 or (n is not None and tok.shape[0] != n):
            rows = "" if n is None else f" with n = {n} rows"
            raise ValueError(f"{name} must have shape (n, t){rows}, got {tok.shape}")
        if exact_len is not None and tok.shape[1] != exact_len:
            raise ValueError(f"{name} must have shape ({tok.shape[0]}, {exact_len}), got {tok.shape}")
        if max_len is not None and tok.shape[1] > max_len:
            raise ValueError(f"{name} must have length in [0, {max_len}] (the horizon is {self.horizon}), got {tok.shape[1]}")
        if tok.size and not np.issubdtype(tok.dtype, np.integer):
            raise ValueError(f"{name} must hold integer tokens, got dtype {tok.dtype}")
        tok = tok.astype(np.int64, copy=False)
        if tok.size and (tok.min() < 0 or tok.max() >= self.vocab_size):
            raise ValueError(f"{name} must hold tokens in [0, {self.vocab_size - 1}], got values in [{tok.min()}, {tok.max()}]")
        return tok

    def check_contexts(self, contexts, n: int | None = None) -> np.ndarray:
        """``contexts`` as an int64 ``(n, L)`` array, or ``ValueError`` (shape and integer dtype
        only: each task checks its own grammar on top)."""
        ctx = np.asarray(contexts)
        if ctx.ndim != 2 or ctx.shape[1] != self.context_length or (n is not None and ctx.shape[0] != n):
            rows = "n" if n is None else str(n)
            raise ValueError(f"contexts must have shape ({rows}, {self.context_length}), got {ctx.shape}")
        if ctx.size and not np.issubdtype(ctx.dtype, np.integer):
            raise ValueError(f"contexts must hold integer tokens, got dtype {ctx.dtype}")
        return ctx.astype(np.int64, copy=False)

    def check_actions(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions)
        if actions.size and (actions.min() < 0 or actions.max() >= self.vocab_size):
            raise ValueError(f"actions must be tokens in [0, {self.vocab_size - 1}], got {actions}")

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.task_args().items())
        return f"{type(self).__name__}({args})"

    def render_tokens(self, context: np.ndarray, tokens: np.ndarray) -> str:
        names = self.token_names()
        cnames = self.context_token_names()
        ctx = " ".join(cnames[int(t)] for t in context)
        gen = " ".join(names[int(t)] for t in tokens)
        return (f"[{ctx}] " if len(context) else "") + gen

    def __repr__(self) -> str:
        try:
            return self.describe()
        except ValueError:  # a task_args() that fails (see check_task) must not break repr
            return f"{type(self).__name__}(?)"


class DeterministicTask(Task):
    """A task whose expert emits one token after every prefix (one-hot ``expert_probs``).

    Subclasses implement ``expert_next_tokens(contexts, sequences) -> (n, T)`` (the expert's
    token at every position given the prefix before it: the teacher-forced expert actions) and
    ``reference(contexts) -> (n, H)`` (the expert's own sequence); the expert's distributions,
    log-probabilities and samples follow from those two.
    """

    deterministic_expert = True

    def expert_next_token(self, contexts, prefixes) -> np.ndarray:
        """The expert's next token after equal-length ``prefixes``, ``(n,)``."""
        pre = self.check_tokens("prefixes", prefixes, len(np.asarray(contexts)), max_len=self.horizon - 1)
        padded = np.concatenate([pre, np.zeros((len(pre), 1), dtype=np.int64)], axis=1)
        return self.expert_next_tokens(contexts, padded)[:, pre.shape[1]]

    def expert_probs(self, contexts, prefixes):
        return one_hot_probs(self.expert_next_token(contexts, prefixes), self.vocab_size)

    def expert_next_token_planned(self, contexts, prefixes, plan) -> np.ndarray:
        """:meth:`expert_next_token` given :meth:`expert_plan`'s result for the same
        ``contexts`` (a fresh array); environments read the expert's action from it."""
        return self.expert_next_token(contexts, prefixes)

    def expert_probs_planned(self, contexts, prefixes, plan):
        return one_hot_probs(self.expert_next_token_planned(contexts, prefixes, plan), self.vocab_size)

    def expert_step_probs(self, contexts, sequences):
        self.check_step_probs_size(sequences)
        return one_hot_probs(self.expert_next_tokens(contexts, sequences), self.vocab_size)

    def expert_log_prob(self, contexts, sequences):
        seq = self.check_tokens("sequences", sequences, len(np.asarray(contexts)), exact_len=self.horizon)
        ok = np.all(self.expert_next_tokens(contexts, seq) == seq, axis=1)
        return np.where(ok, 0.0, -np.inf)

    def sample_expert(self, n, rng=None):
        contexts = self.sample_contexts(self.check_sample_size(n), as_rng(rng))
        return contexts, self.reference(contexts)


def sample_categorical(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One sample per row of ``probs`` ``(n, V)`` by inverse CDF (vectorised)."""
    probs = np.asarray(probs, dtype=np.float64)
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0])[:, None] * cdf[:, -1:]
    out = (u >= cdf).sum(axis=1)
    return np.minimum(out, probs.shape[1] - 1).astype(np.int64)


# --------------------------------------------------------------------------------------------
# checks of user-written tasks (the common mistakes fail loudly, once, before any work)
# --------------------------------------------------------------------------------------------

PROB_ATOL = 1e-6
"""How far from 1 an expert's next-token distribution may sum (rounding of float64 rows)."""


def check_probability_rows(task: Task, probs, low: float | None = None, high: float | None = None) -> None:
    """``ValueError`` unless the rows of ``probs`` ``(n, V)`` sum to 1 within :data:`PROB_ATOL`
    (``NaN`` fails). ``low`` / ``high``: the row sums if the caller has them already (the
    environments' samplers do), so the check is two passes over ``n`` numbers."""
    if low is None:
        sums = np.asarray(probs, dtype=np.float64).sum(axis=-1)
        low, high = (sums.min(), sums.max()) if sums.size else (1.0, 1.0)
    if not (abs(low - 1.0) <= PROB_ATOL and abs(high - 1.0) <= PROB_ATOL):
        raise ValueError(f"{type(task).__name__}.expert_probs must return distributions over the {task.vocab_size} "
                         f"tokens (rows >= 0 summing to 1), got row sums in [{low}, {high}]; "
                         "ar_envs.core.check_task(task) checks a task")


def _constructor_parameters(cls: type) -> tuple[list[str], bool]:
    """The named parameters of ``cls.__init__`` and whether it also takes ``**kwargs``."""
    import inspect

    try:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    except (TypeError, ValueError):
        return [], True
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def check_task_class(cls, sweep: bool = False) -> type:
    """``cls`` if it is a :class:`Task` subclass that can be rebuilt from its arguments, else a
    one-line ``ValueError`` / ``TypeError``.

    The mistake it catches: a constructor that takes arguments while :meth:`Task.task_args` is
    not overridden. ``task_args()`` must return every constructor argument: the environments'
    specs, saved datasets and the sweep's results (and which cells are finished, and which best
    in class is reused) are keyed by it, so a task that returns ``{}`` makes different tasks
    look the same. ``sweep=True`` also requires :attr:`Task.horizon_arg` to be a constructor
    argument (the sweep sets it to each horizon).
    """
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TypeError(f"task class must be a subclass of ar_envs.Task, got {cls!r}")
    names, var_kw = _constructor_parameters(cls)
    if names and cls.task_args is Task.task_args:
        raise ValueError(f"{cls.__qualname__} takes constructor arguments {names} but does not override task_args(): "
                         f"it must return every constructor argument, e.g. {{{', '.join(repr(n) + ': ...' for n in names)}}}")
    if sweep and cls.horizon_arg not in names and not var_kw:
        raise ValueError(f"{cls.__qualname__}.horizon_arg is {cls.horizon_arg!r}, which is not an argument of its "
                         f"constructor ({names}): set horizon_arg to the argument the horizon sweep varies")
    return cls


def check_task(task: Task, n: int = 8, seed: int = 0) -> Task:
    """Check a task, typically one you wrote, and return it; ``ValueError`` / ``TypeError`` with
    one line saying what is wrong. Costs ``H`` calls of ``expert_probs`` on ``n`` rows.

    Checks: the class (:func:`check_task_class`, with the sweep's ``horizon_arg``); the required
    attributes (``name``, ``env_id``, ``vocab_size >= 2``, ``horizon >= 1``, ``context_length >=
    0``, ``context_vocab_size >= 1``); that ``task_args()`` is JSON-serialisable and rebuilds
    the same task (same sizes, context law, expert and reward on the roll-outs below: an
    argument left out of it shows when its value is not the default, so check a task with
    non-default arguments); ``sample_contexts`` (shape ``(n, L)``,
    integer tokens in range); along ``n`` expert roll-outs, that every ``expert_probs`` row is a
    distribution (finite, non-negative, sums to 1; one-hot if ``deterministic_expert``), that
    ``action_mask`` allows the expert's token, and that ``reward`` gives ``n`` numbers in
    ``[0, 1]``; and that a :meth:`~Task.feature_map`, if any, is a :class:`FeatureMap` over the
    same vocabulary, the same object on every call, whose ``context_index`` maps the contexts
    into its ``C`` contexts.
    """
    import json

    if not isinstance(task, Task):
        raise TypeError(f"task must be an ar_envs.Task instance, got {type(task).__name__}")
    cls = type(task)
    what = cls.__qualname__
    check_task_class(cls, sweep=True)
    if not isinstance(task.name, str) or not task.name or not isinstance(task.env_id, str) or not task.env_id:
        raise ValueError(f"{what}: name and env_id must be non-empty strings, got {task.name!r}, {task.env_id!r}")
    for attr, low in (("vocab_size", 2), ("horizon", 1), ("context_length", 0), ("context_vocab_size", 1)):
        value = getattr(task, attr)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{what}.{attr} must be an integer >= {low}, got {value!r}")
    args = task.task_args()
    if not isinstance(args, dict):
        raise ValueError(f"{what}.task_args() must return a dict of the constructor arguments, got {type(args).__name__}")
    try:
        json.dumps(args)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}.task_args() must be JSON-serialisable (plain numbers, strings, lists): {exc}") from None
    names, var_kw = _constructor_parameters(cls)
    missing = [k for k in names if k not in args]
    not_rebuilt = (f"{what}.task_args() must return every constructor argument (it must rebuild the task); "
                   f"missing {missing}" if missing else f"{what}(**task_args()) does not rebuild the task")
    try:
        again = cls(**args)
    except Exception as exc:  # noqa: BLE001 - any failure means the arguments do not rebuild the task
        raise ValueError(f"{not_rebuilt}: {type(exc).__name__}: {exc}") from None
    attrs = ("horizon", "vocab_size", "context_length", "context_vocab_size", "deterministic_expert")
    if again.task_args() != args or any(getattr(again, a) != getattr(task, a) for a in attrs):
        raise ValueError(f"{not_rebuilt}: task_args() {again.task_args()} != {args}")

    n = check_int("n", n, 1)
    rng = np.random.default_rng(seed)
    V, H, L = task.vocab_size, task.horizon, task.context_length
    contexts = np.asarray(task.sample_contexts(n, rng))
    if contexts.shape != (n, L) or (contexts.size and not np.issubdtype(contexts.dtype, np.integer)):
        raise ValueError(f"{what}.sample_contexts({n}, rng) must return integers of shape ({n}, {L}), "
                         f"got {contexts.dtype} {contexts.shape}")
    if contexts.size and (contexts.min() < 0 or contexts.max() >= task.context_vocab_size):
        raise ValueError(f"{what}.sample_contexts must return tokens in [0, {task.context_vocab_size - 1}] "
                         f"(context_vocab_size), got values in [{contexts.min()}, {contexts.max()}]")
    seq = np.zeros((n, H), dtype=np.int64)
    for h in range(H):
        p = np.asarray(task.expert_probs(contexts, seq[:, :h]), dtype=np.float64)
        if p.shape != (n, V):
            raise ValueError(f"{what}.expert_probs must return shape (n, V) = ({n}, {V}), got {p.shape} at step {h}")
        if not np.all(np.isfinite(p)) or p.min() < 0:
            raise ValueError(f"{what}.expert_probs must return finite non-negative probabilities, got min {p.min()} "
                             f"at step {h}")
        check_probability_rows(task, p)
        if task.deterministic_expert and not np.all(p.max(axis=1) == 1.0):
            raise ValueError(f"{what}.deterministic_expert is True but expert_probs is not one-hot at step {h}")
        seq[:, h] = sample_categorical(p, rng)
        mask = np.asarray(task.action_mask(contexts, seq[:, :h]))
        if mask.shape != (n, V) or not mask[np.arange(n), seq[:, h]].all():
            raise ValueError(f"{what}.action_mask must be bool ({n}, {V}) and allow the expert's tokens (step {h})")
    reward = np.asarray(task.reward(contexts, seq), dtype=np.float64)
    if reward.shape != (n,) or not np.all((reward >= 0) & (reward <= 1)):
        raise ValueError(f"{what}.reward must return {n} numbers in [0, 1], got shape {reward.shape}")
    # the task rebuilt from task_args() is the same task: same contexts, expert and reward (an
    # argument left out of task_args() shows here when its value is not the default)
    same = np.array_equal(np.asarray(again.sample_contexts(n, np.random.default_rng(seed))),
                          np.asarray(task.sample_contexts(n, np.random.default_rng(seed))))
    same = same and np.array_equal(np.asarray(again.reward(contexts, seq), dtype=np.float64), reward)
    for h in range(H) if same else ():
        if not np.allclose(again.expert_probs(contexts, seq[:, :h]), task.expert_probs(contexts, seq[:, :h]),
                           rtol=0, atol=1e-12):
            same = False
            break
    if not same:
        raise ValueError(f"{not_rebuilt}: {what}(**task_args()) has another expert, reward or context law")
    fm = task.feature_map()
    if fm is not None:
        if not isinstance(fm, FeatureMap):
            raise ValueError(f"{what}.feature_map() must return an ar_envs.FeatureMap or None, got {type(fm).__name__}")
        if task.feature_map() is not fm:
            raise ValueError(f"{what}.feature_map() must return the same object on every call (make it once and keep "
                             "it): the exact metrics recognise the policies of the class by it")
        C, S, fV, _ = fm.features.shape
        if fV != V:
            raise ValueError(f"{what}.feature_map() has {fV} tokens in its features, the task has vocab_size {V}")
        c_idx = np.asarray(fm.context_index(contexts))
        if c_idx.shape != (n,) or (c_idx.size and (c_idx.min() < 0 or c_idx.max() >= C)):
            raise ValueError(f"{what}.feature_map().context_index must map ({n}, {L}) contexts to {n} indices "
                             f"in [0, {C - 1}]")
    return task
