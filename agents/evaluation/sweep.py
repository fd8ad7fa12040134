"""The horizon sweep: task x horizon x algorithm x seed, one JSON line per finished cell.

A cell samples ``n_samples`` expert demonstrations (seeded by the cell's seed), fits the
algorithm, and scores the returned policy against the expert with ``ar_envs.metrics`` (exact
where the task allows, Monte Carlo with 95% intervals otherwise), next to the best model of the
class (``ar_agents.evaluation.best_in_class``): ``approx_factor = hellinger2 / best_in_class_hellinger2``.

Results are appended to a JSON-lines file whose first line is a header naming the format; a
rerun with the same file skips finished cells (:func:`cell_key`: every argument that changes a
number), and a file that is not ours, or not a regular file, is refused (never overwritten).
One sweep at a time writes to a file (a lock), each record is written whole or the sweep stops
with an error, and ``workers > 1`` or ``backend="ray"`` (cells as Ray tasks, on this machine or a
cluster) gives the same numbers as one process (:func:`sweep`, :func:`run_cells`).
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import stat
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

import ar_envs
from ar_envs.core import Task, check_int, check_task, check_task_class
from ar_envs.data import generate
from ar_envs.fileio import create_new_bytes, write_all
from ar_envs.metrics import sequence_metrics
from ar_envs.tasks import get_task_class

from ar_agents.algorithms.base import get_algorithm

RESULTS_FORMAT = "ar-envs-results"
RESULTS_VERSION = 1
REQUIRED_FIELDS = (
    "task", "task_args", "horizon", "algorithm", "seed", "n_samples", "hellinger2", "tv", "kl", "regret",
    "best_in_class_hellinger2", "best_in_class_method", "approx_factor", "exact", "ci95", "wall_s",
)


def _refuse_constant(name: str):
    """JSON's NaN / Infinity are never written by the sweep (``allow_nan=False``): refuse them."""
    raise ValueError(f"holds {name}, which a results file never contains (a number must be finite, or null)")


class ResultsFileError(ValueError):
    """A results file that is not ours, or is damaged beyond the last complete line."""


# --------------------------------------------------------------------------------------------
# the results file
# --------------------------------------------------------------------------------------------


class ResultsFile:
    """A JSON-lines results file: a header line, then one record per finished cell.

    Reading (:meth:`records`) needs nothing more. Writing goes through :meth:`open` (or ``with``),
    which creates the file with its header if it is missing, refuses anything at ``path`` that is
    not a regular file (a device, a directory, a symlink, ...: never replaced or written through),
    and takes an exclusive lock on it for as long as it is open, so two sweeps can never append
    to one file at the same time. :meth:`append` writes one whole line or raises
    :class:`ResultsFileError` (a full disk is an error, never a silently missing record).
    """

    def __init__(self, path: str | os.PathLike):
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ResultsFileError(f"the results file must be a file path, got {path!r}")
        self.path = os.fspath(path)
        self._fd: int | None = None
        if os.path.isdir(self.path):
            raise ResultsFileError(f"{self.path} is a directory; give a results file path such as {os.path.join(self.path, 'results.jsonl')}")
        if os.path.exists(self.path):
            if not stat.S_ISREG(os.stat(self.path).st_mode):
                raise ResultsFileError(f"{self.path} is not a regular file; choose another --out")
            if os.path.getsize(self.path) > 0:
                self._check_header(self._first_line())

    # ---------------------------------------------------------------- reading
    def _read(self) -> bytes:
        if self._fd is not None:
            size = os.fstat(self._fd).st_size
            return os.pread(self._fd, size, 0) if size else b""
        with open(self.path, "rb") as fh:
            return fh.read()

    def _first_line(self) -> bytes:
        with open(self.path, "rb") as fh:
            return fh.readline()

    def _check_header(self, first: bytes) -> None:
        try:
            header = json.loads(first.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            header = None
        if not isinstance(header, dict) or header.get("format") != RESULTS_FORMAT:
            raise ResultsFileError(
                f"{self.path} is not an ar-envs results file (its first line is not an {RESULTS_FORMAT!r} header); "
                "refusing to touch it: choose another --out"
            )
        if header.get("version") != RESULTS_VERSION:
            raise ResultsFileError(f"{self.path} has results format version {header.get('version')}, this ar-envs reads {RESULTS_VERSION}")

    def records(self) -> list[dict]:
        """The complete records, in file order (the text after the last newline, if any, is an
        interrupted write and not a record)."""
        return [rec for _, rec in self.numbered_records()]

    def numbered_records(self) -> list[tuple[int, dict]]:
        """``(line number, record)`` of every complete record, in file order."""
        if self._fd is None and (not os.path.exists(self.path) or os.path.getsize(self.path) == 0):
            return []
        out = []
        lines = self._read().split(b"\n")
        complete = lines[:-1]
        for number, line in enumerate(complete[1:], start=2):
            if not line.strip():
                continue
            try:
                rec = json.loads(line.decode("utf-8"), parse_constant=_refuse_constant)
            except UnicodeDecodeError:
                raise ResultsFileError(f"{self.path}: line {number} is not UTF-8 text") from None
            except json.JSONDecodeError as exc:
                raise ResultsFileError(f"{self.path}: line {number} is not valid JSON ({exc.msg})") from None
            except ValueError as exc:  # NaN / Infinity
                raise ResultsFileError(f"{self.path}: line {number} {exc}") from None
            if not isinstance(rec, dict):
                raise ResultsFileError(f"{self.path}: line {number} is not a record (a JSON object), it holds {line[:40].decode('utf-8')!r}")
            missing = [f for f in REQUIRED_FIELDS if f not in rec]
            if missing:
                raise ResultsFileError(f"{self.path}: line {number} lacks fields {missing}")
            out.append((number, rec))
        return out

    # ---------------------------------------------------------------- writing
    def open(self) -> "ResultsFile":
        """Create (with the header) if missing, open for appending, lock, repair an interrupted
        last line. Every failure is a :class:`ResultsFileError` naming the file, raised before
        any cell is computed."""
        if self._fd is not None:
            return self
        header = json.dumps({"format": RESULTS_FORMAT, "version": RESULTS_VERSION, "ar_envs_version": ar_envs.__version__})
        try:
            if not os.path.lexists(self.path):
                parent = os.path.dirname(os.path.abspath(self.path))
                while not os.path.exists(parent):
                    parent = os.path.dirname(parent)
                if not os.path.isdir(parent):
                    raise ResultsFileError(f"cannot create the results file {self.path}: {parent} is not a directory")
                create_new_bytes(self.path, (header + "\n").encode("utf-8"))  # never replaces anything
            st = os.lstat(self.path)
            if stat.S_ISLNK(st.st_mode):
                raise ResultsFileError(f"{self.path} is a symbolic link; refusing to write through it: give the file's own path or another --out")
            if not stat.S_ISREG(st.st_mode):
                raise ResultsFileError(f"{self.path} is not a regular file; refusing to write to it: choose another --out")
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except ResultsFileError:
            raise
        except OSError as exc:
            raise ResultsFileError(f"cannot write the results file {self.path}: {exc.strerror or exc}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between the check and the open
                raise ResultsFileError(f"{self.path} is not a regular file; refusing to write to it: choose another --out")
            _lock(fd, self.path)
            self._fd = fd
            data = self._read()
            if not data:  # an empty file of ours (or one we may take): write the header
                write_all(fd, (header + "\n").encode("utf-8"))
                os.fsync(fd)
                return self
            self._check_header(data.split(b"\n", 1)[0])
            self._repair_tail(data)
        except BaseException:
            self._fd = None
            os.close(fd)
            raise
        return self

    def _repair_tail(self, data: bytes) -> None:
        """Drop a last line left incomplete by an interrupted run (its cell is re-run); a header
        that lacks only its newline gets it (never cut)."""
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        try:
            if cut == 0:  # the header alone, checked by the caller, without its newline
                write_all(self._fd, b"\n")
            else:
                print(f"warning: {self.path}: dropping an incomplete last line (left by an interrupted write; "
                      "its cell will be re-run)", file=sys.stderr)
                os.ftruncate(self._fd, cut)
            os.fsync(self._fd)
        except OSError as exc:
            raise ResultsFileError(f"cannot repair the results file {self.path}: {exc.strerror or exc}") from None

    def append(self, record: dict) -> None:
        """Append one record as one line, whole and synced, or raise :class:`ResultsFileError`
        (leaving the file as it was before the record where the system allows it)."""
        opened_here = self._fd is None
        self.open()
        line = (json.dumps(record, allow_nan=False) + "\n").encode("utf-8")
        try:
            before = os.fstat(self._fd).st_size
            try:
                write_all(self._fd, line)
                os.fsync(self._fd)
            except OSError as exc:
                try:
                    os.ftruncate(self._fd, before)
                    state = "the file is as it was before this record"
                except OSError:
                    state = "its last line is incomplete and is dropped when the sweep resumes"
                what = f"{record.get('algorithm')} H={record.get('horizon')} seed={record.get('seed')}"
                raise ResultsFileError(
                    f"could not write the record of {what} to {self.path}: {exc.strerror or exc}; {state}; "
                    "make room and rerun the same command to resume") from None
        finally:
            if opened_here:
                self.close()

    def close(self) -> None:
        """Release the lock and close the file (records written so far stay)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor releases its lock

    def __enter__(self) -> "ResultsFile":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def _lock(fd: int, path: str) -> None:
    """An exclusive lock on the open results file, or a clear error if another sweep holds it."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ResultsFileError(
            f"another sweep is writing to {path} (it holds the file's lock); wait for it to finish, "
            "or choose another --out") from None


# --------------------------------------------------------------------------------------------
# cells
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    task: str
    task_args: tuple  # sorted (key, value) pairs, horizon excluded
    horizon: int
    algorithm: str
    seed: int
    n_samples: int
    eval_samples: int = 20_000
    suite: str | None = None  # the benchmark suite (name and version) the cell belongs to, if any
    best_in_class: bool = True  # False: no best in class (a benchmark task scored by exact match)

    def make_task(self) -> Task:
        cls = get_task_class(self.task)
        return cls(**{cls.horizon_arg: self.horizon}, **dict(self.task_args))

    def ctor_args(self) -> dict:
        """The constructor arguments of this cell's task: as given, plus the swept one."""
        return {**dict(self.task_args), get_task_class(self.task).horizon_arg: self.horizon}

    def key(self, full_args: dict | None = None) -> str:
        """:func:`cell_key` of the record this cell writes, before it runs (``full_args``: its
        task's ``task_args()``, computed here when not given)."""
        if full_args is None:
            full_args = _jsonable(self.make_task().task_args())
        fields = {"task": self.task, "task_args": full_args, "task_kwargs": _jsonable(dict(self.task_args)),
                  "sweep_arg": {get_task_class(self.task).horizon_arg: self.horizon}, "algorithm": self.algorithm,
                  "seed": self.seed, "n_samples": self.n_samples, "eval_samples": self.eval_samples, "suite": self.suite}
        if not self.best_in_class:
            fields["best_in_class_skipped"] = True
        return cell_key(fields)


def cell_key(record: dict, seed: bool = True) -> str:
    """The identity of a cell: everything that changes its numbers. ``record`` is a results
    record (or the same fields of a cell not yet run): the task's name, its arguments (the full
    ``task_args`` after defaults over the arguments as given and the swept one, so that a task
    whose ``task_args()`` is incomplete still gets one key per horizon), the algorithm's label
    (which lists the options it was built with), the seed, ``n_samples`` and ``eval_samples``.
    ``seed=False``: the key of the cell's group of seeds (records that may be pooled)."""
    args = {**(record.get("task_kwargs") or {}), **(record.get("sweep_arg") or {}), **record["task_args"]}
    if not record.get("sweep_arg"):  # an old record: the horizon was the swept argument
        args.setdefault("horizon", record.get("horizon"))
    key = {"task": record["task"], "args": _jsonable(args), "algorithm": record["algorithm"],
           "n_samples": record["n_samples"], "eval_samples": record.get("eval_samples")}
    if record.get("suite"):  # a benchmark's cell (same numbers, but its own protocol) is its own cell
        key["suite"] = record["suite"]
    if record.get("best_in_class_skipped"):
        key["best_in_class"] = False
    if seed:
        key["seed"] = record["seed"]
    return json.dumps(key, sort_keys=True)


_BEST_CACHE: dict[str, dict] = {}
_NEURAL_BEST_CACHE: dict[str, Any] = {}
# keyword arguments of ar_agents.evaluation.neural_best.NeuralBestSearch for the sweep's neural best in class
# (its budget: restarts, steps, lr, batch_size, mc_samples, ...); empty = the module's defaults.
# Set in the process that runs the sweep: run_cells hands it to every worker process and Ray task.
NEURAL_BEST_OPTIONS: dict[str, Any] = {}


def _is_neural(policy) -> bool:
    """A torch policy (transformer, window MLP / linear, or a wrapper such as the teacherless
    decoder): its class is not the task's log-linear class."""
    import torch

    return isinstance(policy, torch.nn.Module)


def _policy_class(policy) -> str:
    from ar_agents.policies.loglinear import LogLinearPolicy

    if isinstance(policy, LogLinearPolicy):
        return "log-linear"
    if _is_neural(policy):
        from ar_agents.training import policy_kind

        return policy_kind(getattr(policy, "model", policy))
    return type(policy).__name__


def _best_key(task: Task, ctor_args: dict | None = None) -> str:
    """The task's class and every argument it was built with (``ctor_args``: a task whose
    task_args() is incomplete must not share one best in class across horizons)."""
    return json.dumps([task.name, type(task).__module__, type(task).__qualname__, task.task_args(), ctor_args or {}],
                      sort_keys=True, default=str)


def _best(task: Task, policy=None, ctor_args: dict | None = None) -> dict:
    """The best in class of ``policy``'s class, or ``hellinger2 = None`` with the reason.

    Log-linear (and non-neural) policies: the task's log-linear class (``ar_agents.evaluation.best_in_class``),
    or none when the task has no such class. Neural policies: an *estimate* in the policy's own
    architecture (:func:`_neural_best`). ``ctor_args``: every argument the task was built with
    (the cell's, with the swept one).
    """
    from ar_agents.evaluation.best_in_class import best_in_class

    if _is_neural(policy):
        return _neural_best(task, policy, ctor_args)
    key = _best_key(task, ctor_args)
    if key not in _BEST_CACHE:
        if task.feature_map() is None:
            _BEST_CACHE[key] = {"hellinger2": None, "method": "unavailable: the task has no log-linear class", "exact": False}
        else:
            _BEST_CACHE[key] = best_in_class(task)
    return _BEST_CACHE[key]


def _best_given_fit(task: Task, policy, h2, ctor_args: dict | None = None) -> dict:
    """:func:`_best`, never worse than the learner's own fit: when a log-linear member we fitted
    scores below the cached best in class, the optimiser is run again with that member as a
    start (and as a candidate) and the cache is updated (``improved_by_fit``)."""
    from ar_agents.evaluation.best_in_class import best_in_class
    from ar_agents.policies.loglinear import LogLinearPolicy

    best = _best(task, policy, ctor_args)
    b = best.get("hellinger2")
    if (b is None or h2.value is None or not isinstance(policy, LogLinearPolicy) or best.get("method") == "closed-form"
            or policy.feature_map is not task.feature_map() or not h2.value < b * (1.0 - 1e-9) - 1e-15):
        return best
    key = _best_key(task, ctor_args)
    starts = [policy.theta] + ([np.asarray(best["theta"])] if best.get("theta") is not None else [])
    improved = best_in_class(task, starts=starts)
    if improved["hellinger2"] < b:
        _BEST_CACHE[key] = {**improved, "improved_by_fit": True}
    return _BEST_CACHE[key]


# A best in class below this is the optimisers' noise floor: the class (nearly) contains the expert
# there, and D_H^2 / best would be a ratio to numerical noise, not an approximation factor.
WELL_SPECIFIED_BELOW = 1e-6


def well_specified_note(best: float) -> str:
    return (f"best in class D_H^2 = {best:.3g} <= {WELL_SPECIFIED_BELOW:g}: the class (nearly) contains the expert's "
            "law, so C(H) is undefined (a ratio to numerical noise)")


def approx_factor_interval(h2, best: float, best_ci=None) -> list | None:
    """A 95% interval of ``C = D_H^2 / best`` from the intervals of both (the best in class's is
    there when it was estimated); ``None`` when both are exact."""
    if h2.ci95 is None and best_ci is None:
        return None
    lo, hi = h2.ci95 if h2.ci95 is not None else (h2.value, h2.value)
    b_lo, b_hi = best_ci if best_ci is not None else (best, best)
    return [max(lo, 0.0) / b_hi, hi / b_lo if b_lo > 0 else math.inf]


def approx_factor_flag(approx, approx_ci, h2, best: dict) -> str | None:
    """A message when ``C < 1`` beyond its uncertainty: the learner beat the reported best in
    class, so that best is not the class minimum and this C is not a result."""
    if approx is None or approx >= 1.0:
        return None
    best_ci = best.get("ci95")
    if h2.ci95 is None and best_ci is None:
        beyond = approx < 1.0 - 1e-6
    else:
        hi = h2.ci95[1] if h2.ci95 is not None else h2.value
        lo = best_ci[0] if best_ci is not None else best["hellinger2"]
        beyond = hi < lo * (1.0 - 1e-6)
    if not beyond:
        return None
    return ("C < 1 beyond its interval: the learner is closer to the expert than the reported best in class, "
            "which is therefore not the class minimum (an optimiser failure, or the learner is not in the class)")


def _neural_best(task: Task, policy, ctor_args: dict | None = None) -> dict:
    """The estimated best in class of a neural policy's own class (``ar_agents.evaluation.neural_best``).

    The search (its objective and fresh restarts) is built once per (task class, its full
    constructor arguments ``ctor_args`` incl. the swept one: ``task_args()`` of a user's task may
    leave some out, architecture, config, :data:`NEURAL_BEST_OPTIONS`) and kept; every cell adds
    its learner's fit as a candidate (scored untrained and after training), so a cell's number
    does not depend on which cells ran before it in this process.
    """
    from ar_agents.evaluation.neural_best import NeuralBestSearch, _unwrap

    try:
        model, teacherless = _unwrap(policy, "policy")
    except TypeError:
        return {"hellinger2": None, "method": f"unavailable: {type(policy).__name__} is not a neural policy class of "
                "ar_agents.policies", "exact": False}
    options = dict(NEURAL_BEST_OPTIONS)
    task_key = [task.name, task.task_args(), ctor_args if ctor_args is not None else {"horizon": task.horizon}]
    key = json.dumps([type(task).__module__, type(task).__qualname__, task_key, type(model).__qualname__,
                      model.config, teacherless, options], sort_keys=True, default=str)
    if key not in _NEURAL_BEST_CACHE:
        _NEURAL_BEST_CACHE[key] = NeuralBestSearch(task, policy, **options)
    found = _NEURAL_BEST_CACHE[key].best(policy)
    found.pop("policy")  # the member itself does not go into the record
    head = ("hellinger2", "method", "exact", "ci95")
    return {**{k: found[k] for k in head}, "search": {k: v for k, v in found.items() if k not in head}}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if x is None or isinstance(x, (str, int, bool)):
        return x
    return str(x)


def _diagnostics(task: Task, policy, cell: Cell) -> dict | None:
    """Reasoning diagnostics (exact match, per-position accuracy, task extras) for deterministic
    experts and policies that expose ``next_token_probs``."""
    if not task.deterministic_expert or not callable(getattr(policy, "next_token_probs", None)):
        return None
    from ar_envs.diagnostics import reasoning_report

    return reasoning_report(task, policy, n=min(cell.eval_samples, 1000), seed=cell.seed + 2_000_003)


def run_cell(cell: Cell, algorithm=None) -> dict:
    """Fit one algorithm on one seed's demonstrations and score it. Returns the record."""
    start = time.perf_counter()
    task = cell.make_task()
    alg = get_algorithm(algorithm if algorithm is not None else cell.algorithm)
    demos = generate(task, cell.n_samples, seed=cell.seed)
    try:
        policy = alg.fit(task, demos, cell.seed)
    except ValueError as exc:  # bad input found inside the fit: say which cell it was (still one line)
        raise ValueError(f"{cell.algorithm} on {cell.task} H={cell.horizon} seed={cell.seed}: {exc}") from None
    if not callable(getattr(policy, "sequence_log_prob", None)):
        raise TypeError(f"algorithm {cell.algorithm!r} returned {type(policy).__name__}, which has no sequence_log_prob()")
    try:  # a policy whose outputs are not a probability law fails its cell, nothing is recorded
        metrics = sequence_metrics(task, policy, n_samples=cell.eval_samples, rng=cell.seed + 1_000_003)
    except ValueError as exc:
        raise ValueError(f"{cell.algorithm} on {cell.task} H={cell.horizon} seed={cell.seed}: {exc}") from None
    h2 = metrics["hellinger2"]
    if cell.best_in_class:
        best = _best_given_fit(task, policy, h2, cell.ctor_args())  # keyed by the cell's task arguments too
    else:
        best = {"hellinger2": None, "method": "not computed (this cell is scored without its best in class)", "exact": False}
    b = best["hellinger2"]
    approx = approx_ci = approx_note = None
    if b is not None and b > WELL_SPECIFIED_BELOW and h2.value is not None:
        approx = h2.value / b
        approx_ci = approx_factor_interval(h2, b, best.get("ci95"))
    elif b is not None:  # a best in class of (numerically) zero: C(H) is undefined
        approx_note = well_specified_note(b)
    record = {
        "task": cell.task,
        "task_args": task.task_args(),
        "horizon": task.horizon,
        "sweep_arg": {task.horizon_arg: cell.horizon},
        "task_kwargs": dict(cell.task_args),  # the arguments as given (the rest are defaults)
        "algorithm": cell.algorithm,
        "seed": cell.seed,
        "n_samples": cell.n_samples,
        "eval_samples": cell.eval_samples,
        **{name: est.to_json() for name, est in metrics.items()},
        "best_in_class_hellinger2": b,
        "best_in_class_method": best["method"],
        "best_in_class_exact": bool(best.get("exact", True)),
        "best_in_class_ci95": best.get("ci95"),
        "best_in_class_search": best.get("search"),  # the neural estimate's candidates and budget
        "approx_factor": approx,
        "approx_factor_ci95": approx_ci,
        "approx_factor_flag": approx_factor_flag(approx, approx_ci, h2, best),
        "approx_factor_note": approx_note,
        "best_in_class_improved_by_fit": bool(best.get("improved_by_fit", False)),
        "exact": all(est.exact for est in metrics.values() if est.value is not None),
        "ci95": {name: list(est.ci95) for name, est in metrics.items() if est.ci95 is not None},
        "metric_methods": {name: est.method for name, est in metrics.items()},
        "metric_exact": {name: est.exact for name, est in metrics.items() if est.value is not None},
        "approx_factor_exact": approx is not None and h2.exact and bool(best.get("exact", True)),
        "diagnostics": _diagnostics(task, policy, cell),
        "fit_log": {"policy_class": _policy_class(policy), **getattr(alg, "log", {})},
        "wall_s": time.perf_counter() - start,
        "torch_threads": _torch_threads(),
        "ar_envs_version": ar_envs.__version__,
    }
    if not cell.best_in_class:
        record["best_in_class_skipped"] = True
    if cell.suite is not None:
        record["suite"] = cell.suite
    return _jsonable(record)


def _torch_threads() -> int | None:
    """torch's intra-op threads in this process (``None`` if torch was never imported)."""
    torch = sys.modules.get("torch")
    return None if torch is None else int(torch.get_num_threads())


def _set_torch_threads(threads: int) -> int:
    """Set torch's intra-op threads; returns the previous count."""
    import torch

    before = int(torch.get_num_threads())
    torch.set_num_threads(threads)
    return before


def _die_with_parent(parent_pid: int, pdeathsig: bool = True) -> None:
    """Exit when the process ``parent_pid`` is gone: on Linux the kernel sends SIGKILL at once
    (``prctl(PR_SET_PDEATHSIG)``, unless ``pdeathsig=False``); everywhere a watchdog thread checks every half second that
    the parent is still this process's parent."""
    import signal
    import threading

    if pdeathsig and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="ar-envs-parent-watchdog", daemon=True).start()


# --------------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------------


def _picklable(obj) -> bool:
    """Instances of this package's algorithms (e.g. built by the CLI with options) go to worker
    processes when they pickle; other instances run here (their class may not be importable
    in a worker)."""
    import pickle

    if not type(obj).__module__.startswith("ar_agents."):
        return False
    try:
        pickle.dumps(obj)
    except Exception:  # noqa: BLE001 - any failure means: run in this process
        return False
    return True


def parse_name_values(items: Iterable[str], option: str = "--task-arg") -> dict:
    """``["eps=0.01", "order=forward"]`` -> ``{"eps": 0.01, "order": "forward"}`` (JSON values,
    else strings; ``None`` / ``null`` -> ``None``, while ``none`` stays the string, a value of
    e.g. ``cot``). ``option`` names the flag in errors;
    a name given twice is refused (which one was meant?)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{option} must look like name=value, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip().replace("-", "_")
        if not k:
            raise ValueError(f"{option} must look like name=value, got {item!r}")
        if k in out:
            raise ValueError(f"{option} {k} is given twice; give each argument once")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = None if v == "None" else v
    return out


def parse_task_args(items: Iterable[str]) -> dict:
    """``["eps=0.01", "offset=5.8"]`` -> ``{"eps": 0.01, "offset": 5.8}`` (JSON values, else strings)."""
    out = parse_name_values(items, "--task-arg")
    if "horizon" in out:
        raise ValueError("give horizons with --horizons, not --task-arg horizon=...")
    return out


def parse_horizons(text) -> list[int]:
    """``"2,5,10"`` (or a list of ints) -> ``[2, 5, 10]``; an empty item (``"2,,3"``) is refused."""
    if isinstance(text, str):
        items = [x.strip() for x in text.split(",")]
        try:
            if not all(items):
                raise ValueError
            values = [int(x) for x in items]
        except ValueError:
            raise ValueError(f"--horizons must be a comma-separated list of integers >= 1, got {text!r}") from None
    else:
        values = [check_int("horizons", h, 1) for h in text]
    if not values or min(values) < 1:
        raise ValueError(f"--horizons must be a comma-separated list of integers >= 1, got {text!r}")
    return values


def _check_task_args(task_cls: type, task_name: str, task_args: dict) -> None:
    """Unknown task argument names are a clear error (not a TypeError from deep inside)."""
    import inspect

    try:
        params = inspect.signature(task_cls).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = sorted(k for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    unknown = sorted(set(task_args) - set(allowed))
    if unknown:
        harg = task_cls.horizon_arg
        raise ValueError(f"task {task_name!r} has no argument {', '.join(unknown)}; its arguments are "
                         f"{[a for a in allowed if a != harg]} (and {harg}, set by --horizons)")


def sweep(
    task: str | type[Task],
    horizons,
    algorithms,
    *,
    task_args: dict | None = None,
    seeds: int = 3,
    n_samples: int = 1000,
    eval_samples: int = 20_000,
    out: str | os.PathLike | None = None,
    workers: int | None = None,
    threads: int = 1,
    progress=True,
    backend: str = "local",
    address: str | None = None,
) -> list[dict]:
    """Run every (horizon, algorithm, seed) cell; append each record to ``out`` as it finishes.

    ``task``: a catalogue name, an import path ``pkg.mod:Class`` or a Task subclass.
    ``algorithms``: names, import paths, classes or instances (see ``ar_agents.algorithms.base``).
    ``workers > 1`` runs cells in that many processes (they die with this one; ``None``: one
    process, or all cores on Ray). Every cell runs
    with ``threads`` torch threads, whatever ``workers`` is, so the numbers do not depend on
    ``workers`` (torch's reductions are split by thread count; the record notes
    ``torch_threads``); keep ``workers * threads`` at most the number of CPUs.
    ``backend="ray"`` runs the cells as Ray tasks (``pip install 'ar-envs[ray]'``): on a local Ray
    of ``workers * threads`` CPUs (``workers=None``: all cores), or on the cluster at ``address``;
    the same numbers (see :func:`run_cells`). ``progress``: ``True`` (a bar on a terminal, a line
    per cell otherwise), ``False``, or a callable receiving
    :class:`ar_agents.evaluation.progress.ProgressEvent` objects.
    ``out`` is locked for the sweep's duration (a second sweep on it is refused), and a cell
    already in it (same :func:`cell_key`) is not run again, nor twice in one sweep (``horizons``
    ``2,2`` is one horizon). Returns all records for this grid (finished earlier or now).
    """
    task_args = dict(task_args or {})
    horizons = parse_horizons(horizons)
    seeds = check_int("seeds", seeds, 1)
    n_samples = check_int("n_samples", n_samples, 1)
    eval_samples = check_int("eval_samples", eval_samples, 2)
    workers = None if workers is None else check_int("workers", workers, 1)
    threads = check_int("threads", threads, 1)
    check_backend(backend, address)
    if backend == "ray":
        import_ray()  # a missing extra fails here, before any work
    if isinstance(algorithms, str):
        algorithms = [a.strip() for a in algorithms.split(",") if a.strip()]
    if not algorithms:
        raise ValueError("algorithms must name at least one algorithm")
    task_cls = check_task_class(get_task_class(task) if isinstance(task, str) else task, sweep=True)
    task_name = task if isinstance(task, str) and task in ar_envs.TASKS else (
        task if isinstance(task, str) else f"{task_cls.__module__}:{task_cls.__qualname__}")
    alg_objs = {}
    for spec in algorithms:
        obj = get_algorithm(spec)  # fails early on unknown names
        label = spec if isinstance(spec, str) else obj.name
        alg_objs[label] = spec if isinstance(spec, str) else obj
    harg = task_cls.horizon_arg
    if harg in task_args:
        raise ValueError(f"give {harg} with --horizons (the values the sweep varies), not as a task argument")
    # validate the task arguments and that each cell's samples fit in memory (bad input fails
    # before any work)
    _check_task_args(task_cls, task_name, task_args)
    for h in horizons:
        cell_task = task_cls(**{harg: h}, **task_args)
        cell_task.check_sample_size(n_samples, "n_samples")
        cell_task.check_sample_size(eval_samples, "eval_samples")
    if task_cls not in ar_envs.TASKS.values():  # a user's task: its common mistakes fail here, not mid-sweep
        check_task(task_cls(**{harg: horizons[0]}, **task_args))

    results = ResultsFile(out) if out is not None else None
    with contextlib.ExitStack() as stack:
        if results is not None:
            stack.enter_context(results)  # created, locked, repaired: before any cell is computed
        return _run(task_cls, task_name, task_args, horizons, alg_objs, seeds, n_samples, eval_samples,
                    results, workers, threads, progress, stack, backend, address)


def _run(task_cls, task_name, task_args, horizons, alg_objs, seeds, n_samples, eval_samples,
         results, workers, threads, progress, stack, backend="local", address=None) -> list[dict]:
    """The sweep's body, with ``results`` open and locked (see :func:`sweep`)."""
    harg = task_cls.horizon_arg
    done = {}
    if results is not None:
        for rec in results.records():
            done.setdefault(cell_key(rec), rec)
    cells, records, seen = [], [], set()
    for h in horizons:
        full_args = _jsonable(task_cls(**{harg: h}, **task_args).task_args())
        for label in alg_objs:
            for seed in range(seeds):
                cell = Cell(task_name, tuple(sorted(task_args.items())), h, label, seed, n_samples, eval_samples)
                key = cell.key(full_args)
                if key in seen:  # e.g. --horizons 2,2: one cell, one record
                    continue
                seen.add(key)
                if key in done:
                    records.append(done[key])
                else:
                    cells.append(cell)
    if progress is True and records:
        print(f"resuming: {len(records)} cells already in {results.path}, {len(cells)} to run", file=sys.stderr)
    records += run_cells([(c, alg_objs[c.algorithm]) for c in cells], results, workers=workers, threads=threads,
                         progress=progress, stack=stack, backend=backend, address=address)
    order = {(h, a, s): k for k, (h, a, s) in enumerate((h, a, s) for h in horizons for a in alg_objs for s in range(seeds))}
    records.sort(key=lambda r: order.get((r.get("sweep_arg", {}).get(harg, r["horizon"]), r["algorithm"], r["seed"]), 0))
    return records


BACKENDS = ("local", "ray")
# how often Ray runs a cell again whose worker process died (killed, out of memory, its node lost);
# an exception raised by the cell's own code is not retried (it would raise again)
RAY_MAX_RETRIES = 2
RAY_INSTALL_HINT = "pip install 'ar-envs[ray]'"


class CellLostError(RuntimeError):
    """A cell whose Ray worker died on every try (see :data:`RAY_MAX_RETRIES`)."""


def check_backend(backend: str, address: str | None = None) -> str:
    """``backend`` is ``"local"`` or ``"ray"``; ``address`` is only for Ray."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if address is not None and (backend != "ray" or not isinstance(address, str) or not address.strip()):
        raise ValueError(f"address (an existing Ray cluster: 'auto' or host:port) needs backend 'ray' and must be "
                         f"a non-empty string, got backend={backend!r} address={address!r}")
    return backend


def import_ray():
    """The ``ray`` module, or an ImportError saying how to install the extra."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"the Ray backend needs Ray, which is not installed: {RAY_INSTALL_HINT}") from None
    return ray


def run_cells(jobs, results=None, *, workers: int | None = None, threads: int = 1, progress=True,
              stack: contextlib.ExitStack | None = None, backend: str = "local", address: str | None = None) -> list[dict]:
    """Run ``jobs``, a list of ``(Cell, algorithm)`` pairs (an algorithm as :func:`run_cell` takes
    it), appending each record to ``results`` (an open :class:`ResultsFile`, or ``None``) as it
    finishes, in this process: the one writer. Returns the new records in the order they finished.

    The engine under :func:`sweep` and the benchmark. Every cell runs on ``threads`` torch threads
    (and with this process's :data:`NEURAL_BEST_OPTIONS`), wherever it runs, so the numbers do not
    depend on the backend or the number of workers.

    ``backend="local"``: in this process (``workers`` ``None`` or 1), or with ``workers > 1`` in
    that many spawned processes that die with this one. ``backend="ray"``: every cell is a Ray task declaring ``threads`` CPUs;
    records stream back here as tasks finish (``ray.wait``). A task whose worker dies is run again
    (up to :data:`RAY_MAX_RETRIES` times), then counted as failed (:class:`CellLostError`). Ray is
    used as it is if this process already called ``ray.init``; otherwise it is started on this
    machine with ``workers * threads`` CPUs (``workers=None``: all cores), or connected to the
    cluster at ``address`` (``"auto"`` or ``host:port``, as printed by ``ray start --head``); every
    node must have ar-envs installed (and the modules of any algorithm given by import path).

    A cell that raises does not stop the others: when all are done, the first failure's exception
    is raised (the finished cells are in ``results``; rerunning the same grid runs only the failed
    ones). Errors of the run itself (the results file cannot be written, Ctrl-C, a local worker
    process killed) stop it at once. ``progress``: ``True`` (a bar on a terminal, one line per cell
    otherwise), ``False``, or a callable receiving
    :class:`ar_agents.evaluation.progress.ProgressEvent` objects (one ``done`` or ``failed`` per
    cell, ``inner`` ones from inside running cells).
    ``stack``: an exit stack that outlives the run, on which the pool's teardown is registered
    (any error, a full disk or Ctrl-C, stops the workers); one is made here when not given.
    """
    check_backend(backend, address)
    if workers is not None:
        workers = check_int("workers", workers, 1)
    threads = check_int("threads", threads, 1)
    from ar_agents.evaluation.progress import Progress

    prog = Progress(progress)  # refuses a bad value before any work
    with contextlib.ExitStack() as own:
        return _run_cells(list(jobs), results, workers, threads, prog, stack if stack is not None else own,
                          backend, address)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _run_cells(jobs, results, workers, threads, prog, stack, backend, address) -> list[dict]:
    records: list[dict] = []
    failures: list[tuple[Cell, BaseException]] = []

    def finish(cell, rec):
        if results is not None:
            results.append(rec)
        records.append(rec)
        prog.cell_done(cell, rec)

    def fail(cell, exc):
        failures.append((cell, exc))
        prog.cell_failed(cell, _one_line(exc))

    prog.start(len(jobs))
    try:
        if not jobs:
            pass
        elif backend == "ray":
            _run_ray(jobs, workers, threads, address, finish, fail, prog)
        elif (workers or 1) > 1 and len(jobs) > 1 and all(isinstance(a, str) or _picklable(a) for _, a in jobs):
            _run_pool(jobs, workers, threads, finish, fail, prog, stack)
        else:
            _run_serial(jobs, threads, finish, fail, prog, stack)
    finally:
        prog.close()
    if failures:
        cell, exc = failures[0]
        if prog.show:
            where = f"; the {len(records)} finished are in {results.path}" if results is not None else ""
            print(f"{len(failures)} of {len(jobs)} cells failed{where}; rerunning the same command runs only the "
                  "failed cells", file=sys.stderr)
        raise exc
    return records


def _listen_inner(prog, cell):
    """Inner progress of a cell run in this process, when someone listens."""
    from ar_agents.evaluation.progress import listen

    if not prog.active:
        return contextlib.nullcontext()
    return listen(lambda stage, i, total: prog.inner(cell, stage, i, total))


def _run_serial(jobs, threads, finish, fail, prog, stack) -> None:
    stack.callback(_set_torch_threads, _set_torch_threads(threads))  # restored after the run
    for c, alg in jobs:
        try:
            with _listen_inner(prog, c):
                rec = run_cell(c, alg)
        except Exception as exc:  # noqa: BLE001 - the cell failed; the others go on
            fail(c, exc)
            continue
        finish(c, rec)


# ---------------------------------------------------------------- the local process pool

_WORKER_QUEUE = None  # a worker process's queue for inner progress (None: nobody listens)


def _init_worker(threads: int, parent_pid: int, queue=None, neural_options: dict | None = None) -> None:
    """A worker process: the sweep's torch thread count and neural best-in-class budget, death
    with the sweep's process (a ``kill -9`` of the sweep must not leave workers computing, nor
    the resource tracker they keep alive), and the queue its cells report progress to."""
    global _WORKER_QUEUE, NEURAL_BEST_OPTIONS
    _set_torch_threads(threads)
    _die_with_parent(parent_pid)
    _WORKER_QUEUE = queue
    if neural_options is not None:
        NEURAL_BEST_OPTIONS = dict(neural_options)


def _pool_cell(k: int, cell: Cell, algorithm):
    """Cell number ``k`` in a worker process, its inner progress sent to the sweep (at most
    twice a second)."""
    if _WORKER_QUEUE is None:
        return run_cell(cell, algorithm)
    from ar_agents.evaluation.progress import Throttle, listen

    with listen(Throttle(lambda stage, i, total: _WORKER_QUEUE.put((k, stage, i, total)))):
        return run_cell(cell, algorithm)


def _drain(queue, jobs, prog, get) -> None:
    while True:
        try:
            k, stage, i, total = get()
        except Exception:  # noqa: BLE001 - empty (or the queue is gone): nothing more now
            return
        prog.inner(jobs[k][0], stage, i, total)


def _run_pool(jobs, workers, threads, finish, fail, prog, stack) -> None:
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    # fresh interpreters ("spawn"): a forked child of a process whose torch/OpenMP thread
    # pool is already running can deadlock. Each worker runs its cells on ``threads`` torch
    # threads, as this process does, and dies with this process.
    context = multiprocessing.get_context("spawn")
    queue = context.Queue() if prog.active else None
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context, initializer=_init_worker,
                               initargs=(threads, os.getpid(), queue, dict(NEURAL_BEST_OPTIONS)))
    stack.callback(_stop_pool, pool)  # on any error (a full disk, Ctrl-C): stop, never finish the grid
    futures = {pool.submit(_pool_cell, k, c, alg): k for k, (c, alg) in enumerate(jobs)}
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=0.25 if queue is not None else None, return_when=FIRST_COMPLETED)
        if queue is not None:
            _drain(queue, jobs, prog, lambda: queue.get_nowait())
        for fut in done:
            cell = jobs[futures[fut]][0]
            try:
                rec = fut.result()
            except BrokenProcessPool:
                raise  # a worker was killed: the pool is gone, stop (a rerun resumes)
            except Exception as exc:  # noqa: BLE001 - the cell failed; the others go on
                fail(cell, exc)
                continue
            finish(cell, rec)
    pool.shutdown(wait=True)
    if queue is not None:
        queue.close()
        queue.join_thread()


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel the cells not started and end the workers (after a clean shutdown: nothing left)."""
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        if proc.is_alive():
            proc.terminate()


# ---------------------------------------------------------------- Ray


_RAY_WORKER_ARMED = False


def _ray_cell(k: int, cell: Cell, algorithm, threads: int, neural_options: dict, queue=None):
    """Cell number ``k`` as a Ray task: the sweep's torch threads and neural best-in-class budget
    (a Ray worker process runs many tasks: both are set for each), inner progress sent to the
    driver's ``queue`` (at most twice a second)."""
    global NEURAL_BEST_OPTIONS, _RAY_WORKER_ARMED
    if not _RAY_WORKER_ARMED:  # a worker outliving its raylet (the sweep killed) stops at once, not after its cell
        _RAY_WORKER_ARMED = True
        _die_with_parent(os.getppid(), pdeathsig=False)  # the watchdog only: the raylet's spawning thread may end
    _set_torch_threads(threads)
    NEURAL_BEST_OPTIONS = dict(neural_options)
    if queue is None:
        return run_cell(cell, algorithm)
    from ar_agents.evaluation.progress import Throttle, listen

    def send(stage, i, total):
        queue.actor.put_nowait.remote((k, stage, i, total))  # fire and forget: never waits for the driver

    with listen(Throttle(send)):
        return run_cell(cell, algorithm)


def init_ray(workers: int | None = None, threads: int = 1, address: str | None = None):
    """Ray, started or connected if this process has not done so: a local Ray on this machine
    (``workers * threads`` CPUs, or all cores), or the cluster at ``address``. Returns ``ray``."""
    ray = import_ray()
    if not ray.is_initialized():
        import logging

        # the workers' output is shown here (log_to_driver); Ray's handler of it would otherwise
        # replace builtins.print in this process for good (ray.experimental.tqdm_ray)
        os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")
        opts = dict(logging_level=logging.WARNING, log_to_driver=True)
        if address is not None:
            try:
                ray.init(address=address, **opts)
            except ConnectionError as exc:
                hint = ("; a cluster started by `ray start` (Ray >= 2.59) checks a token: set RAY_AUTH_MODE=token here, "
                        "with its token in ~/.ray/auth_token or RAY_AUTH_TOKEN" if not os.environ.get("RAY_AUTH_MODE") else "")
                raise ConnectionError(f"{exc}{hint}") from None
        else:
            cpus = workers * threads if workers is not None else (os.cpu_count() or 1)
            # "local": a new Ray of our own, never one that `ray start` left running on this machine
            ray.init(address="local", num_cpus=max(cpus, threads), include_dashboard=False, **opts)
    return ray


def _run_ray(jobs, workers, threads, address, finish, fail, prog) -> None:
    ray = init_ray(workers, threads, address)
    from ray.exceptions import RayError, RayTaskError

    queue = None
    if prog.active:
        from ray.util.queue import Queue

        queue = Queue(actor_options={"num_cpus": 0})
    task = ray.remote(_ray_cell).options(num_cpus=threads, max_retries=RAY_MAX_RETRIES, retry_exceptions=False)
    options = dict(NEURAL_BEST_OPTIONS)
    refs = {}
    for k, (c, alg) in enumerate(jobs):
        refs[task.remote(k, c, alg, threads, options, queue)] = k
    pending = list(refs)
    try:
        while pending:
            # a finite wait: Ctrl-C is only handled between two calls (Ray blocks signals inside)
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.25 if queue is not None else 1.0)
            if queue is not None:
                _drain(queue, jobs, prog, lambda: queue.get_nowait())
            for ref in ready:
                cell = jobs[refs[ref]][0]
                try:
                    rec = ray.get(ref)
                except RayTaskError as err:  # the cell's own code raised: its exception
                    cause = getattr(err, "cause", None)
                    fail(cell, cause if isinstance(cause, Exception) else RuntimeError(str(err)))
                    continue
                except RayError as err:  # its worker died on every try, or the task was lost
                    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                    fail(cell, CellLostError(
                        f"{cell.algorithm} on {cell.task} H={cell.horizon} seed={cell.seed}: its Ray task failed "
                        f"{RAY_MAX_RETRIES + 1} times (a worker killed or out of memory, or its node lost): "
                        f"{type(err).__name__}: {first}"))
                    continue
                finish(cell, rec)
    except BaseException:
        for ref in pending:  # Ctrl-C, a full disk: stop the cells still queued or running
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or gone
                pass
        raise
    finally:
        if queue is not None:
            try:
                queue.shutdown()
            except Exception:  # noqa: BLE001
                pass
