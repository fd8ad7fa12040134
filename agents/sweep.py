"""The horizon sweep: task x horizon x algorithm x seed, one JSON line per finished cell.

A cell samples ``n_samples`` expert demonstrations (seeded by the cell's seed), fits the
algorithm, and scores the returned policy against the expert with ``ar_envs.metrics`` (exact
where the task allows, Monte Carlo with 95% intervals otherwise), next to the best model of the
class (``agents.best_in_class``): ``approx_factor = hellinger2 / best_in_class_hellinger2``.

Results are appended to a JSON-lines file whose first line is a header naming the format; a
rerun with the same file skips finished cells, and a file that is not ours is refused (never
overwritten).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

import ar_envs
from ar_envs.core import Task, check_int
from ar_envs.data import generate
from ar_envs.fileio import atomic_write_bytes
from ar_envs.metrics import sequence_metrics
from ar_envs.tasks import get_task_class

from .algorithms.base import get_algorithm

RESULTS_FORMAT = "ar-envs-results"
RESULTS_VERSION = 1
REQUIRED_FIELDS = (
    "task", "task_args", "horizon", "algorithm", "seed", "n_samples", "hellinger2", "tv", "kl", "regret",
    "best_in_class_hellinger2", "best_in_class_method", "approx_factor", "exact", "ci95", "wall_s",
)


class ResultsFileError(ValueError):
    """A results file that is not ours, or is damaged beyond the last complete line."""


# --------------------------------------------------------------------------------------------
# the results file
# --------------------------------------------------------------------------------------------


class ResultsFile:
    """A JSON-lines results file: a header line, then one record per finished cell."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            self._check_header()

    def _check_header(self) -> None:
        with open(self.path, "rb") as fh:
            first = fh.readline()
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

    def _create(self) -> None:
        header = {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, "ar_envs_version": ar_envs.__version__}
        atomic_write_bytes(self.path, (json.dumps(header) + "\n").encode("utf-8"))

    def _repair_tail(self) -> None:
        """Drop a last line left incomplete by an interrupted run (it is re-run)."""
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if data and not data.endswith(b"\n"):
                cut = data.rfind(b"\n") + 1
                print(f"warning: {self.path}: dropping an incomplete last line (an interrupted cell; it will be re-run)", file=sys.stderr)
                fh.truncate(cut)

    def records(self) -> list[dict]:
        if not os.path.exists(self.path) or os.path.getsize(self.path) == 0:
            return []
        out = []
        with open(self.path, "rb") as fh:
            lines = fh.read().split(b"\n")
        complete = lines[:-1]  # the text after the last newline is an interrupted write, if any
        for number, line in enumerate(complete[1:], start=2):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ResultsFileError(f"{self.path}: line {number} is not valid JSON ({exc.msg})") from None
            missing = [f for f in REQUIRED_FIELDS if f not in rec]
            if missing:
                raise ResultsFileError(f"{self.path}: line {number} lacks fields {missing}")
            out.append(rec)
        return out

    def append(self, record: dict) -> None:
        if not os.path.exists(self.path) or os.path.getsize(self.path) == 0:
            self._create()
        else:
            self._repair_tail()
        line = (json.dumps(record, allow_nan=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line)  # one write of one line
            os.fsync(fd)
        finally:
            os.close(fd)


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

    def make_task(self) -> Task:
        cls = get_task_class(self.task)
        return cls(**{cls.horizon_arg: self.horizon}, **dict(self.task_args))


def cell_key(task_name: str, task_args: dict, algorithm: str, seed: int, n_samples: int) -> str:
    return json.dumps([task_name, task_args, algorithm, seed, n_samples], sort_keys=True)


_BEST_CACHE: dict[str, dict] = {}
_NEURAL_BEST_CACHE: dict[str, Any] = {}
# keyword arguments of agents.neural_best.NeuralBestSearch for the sweep's neural best in class
# (its budget: restarts, steps, lr, batch_size, mc_samples, ...); empty = the module's defaults.
# Set in the process that runs the cells: worker processes (workers > 1) start with the defaults.
NEURAL_BEST_OPTIONS: dict[str, Any] = {}


def _is_neural(policy) -> bool:
    """A torch policy (transformer, window MLP / linear, or a wrapper such as the teacherless
    decoder): its class is not the task's log-linear class."""
    import torch

    return isinstance(policy, torch.nn.Module)


def _policy_class(policy) -> str:
    from .policies.loglinear import LogLinearPolicy

    if isinstance(policy, LogLinearPolicy):
        return "log-linear"
    if _is_neural(policy):
        from .training import policy_kind

        return policy_kind(getattr(policy, "model", policy))
    return type(policy).__name__


def _best(task: Task, policy=None, ctor_args: dict | None = None) -> dict:
    """The best in class of ``policy``'s class, or ``hellinger2 = None`` with the reason.

    Log-linear (and non-neural) policies: the task's log-linear class (``agents.best_in_class``),
    or none when the task has no such class. Neural policies: an *estimate* in the policy's own
    architecture (:func:`_neural_best`). ``ctor_args``: every argument the task was built with
    (the cell's, with the swept one).
    """
    from .best_in_class import best_in_class

    if _is_neural(policy):
        return _neural_best(task, policy, ctor_args)
    key = json.dumps([task.name, type(task).__qualname__, task.task_args()], sort_keys=True, default=str)
    if key not in _BEST_CACHE:
        if task.feature_map() is None:
            _BEST_CACHE[key] = {"hellinger2": None, "method": "unavailable: the task has no log-linear class", "exact": False}
        else:
            _BEST_CACHE[key] = best_in_class(task)
    return _BEST_CACHE[key]


def _neural_best(task: Task, policy, ctor_args: dict | None = None) -> dict:
    """The estimated best in class of a neural policy's own class (``agents.neural_best``).

    The search (its objective and fresh restarts) is built once per (task class, its full
    constructor arguments ``ctor_args`` incl. the swept one: ``task_args()`` of a user's task may
    leave some out, architecture, config, :data:`NEURAL_BEST_OPTIONS`) and kept; every cell adds
    its learner's fit as a candidate (scored untrained and after training), so a cell's number
    does not depend on which cells ran before it in this process.
    """
    from .neural_best import NeuralBestSearch, _unwrap

    try:
        model, teacherless = _unwrap(policy, "policy")
    except TypeError:
        return {"hellinger2": None, "method": f"unavailable: {type(policy).__name__} is not a neural policy class of "
                "agents.policies", "exact": False}
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
    policy = alg.fit(task, demos, cell.seed)
    if not callable(getattr(policy, "sequence_log_prob", None)):
        raise TypeError(f"algorithm {cell.algorithm!r} returned {type(policy).__name__}, which has no sequence_log_prob()")
    metrics = sequence_metrics(task, policy, n_samples=cell.eval_samples, rng=cell.seed + 1_000_003)
    best = _best(task, policy, {**dict(cell.task_args), type(task).horizon_arg: cell.horizon})
    h2 = metrics["hellinger2"]
    b = best["hellinger2"]
    approx = approx_ci = None
    # a best in class of (numerically) zero: the class is well specified, C(H) is undefined
    if b is not None and b > 1e-9 and h2.value is not None:
        approx = h2.value / b
        if h2.ci95 is not None:
            approx_ci = [h2.ci95[0] / b, h2.ci95[1] / b]
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
        "exact": all(est.exact for est in metrics.values() if est.value is not None),
        "ci95": {name: list(est.ci95) for name, est in metrics.items() if est.ci95 is not None},
        "metric_methods": {name: est.method for name, est in metrics.items()},
        "diagnostics": _diagnostics(task, policy, cell),
        "fit_log": {"policy_class": _policy_class(policy), **getattr(alg, "log", {})},
        "wall_s": time.perf_counter() - start,
        "torch_threads": _torch_threads(),
        "ar_envs_version": ar_envs.__version__,
    }
    return _jsonable(record)


def _torch_threads() -> int | None:
    """torch's intra-op threads in this process (``None`` if torch was never imported)."""
    torch = sys.modules.get("torch")
    return None if torch is None else int(torch.get_num_threads())


def worker_threads(workers: int) -> int:
    """torch threads per worker process: the CPUs shared out, at least one (no oversubscription)."""
    return max(1, (os.cpu_count() or 1) // workers)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------------


def _picklable(obj) -> bool:
    """Instances of this package's algorithms (e.g. built by the CLI with options) go to worker
    processes when they pickle; other instances run here (their class may not be importable
    in a worker)."""
    import pickle

    if not type(obj).__module__.startswith("agents."):
        return False
    try:
        pickle.dumps(obj)
    except Exception:  # noqa: BLE001 - any failure means: run in this process
        return False
    return True


def parse_name_values(items: Iterable[str], option: str = "--task-arg") -> dict:
    """``["eps=0.01", "order=forward"]`` -> ``{"eps": 0.01, "order": "forward"}`` (JSON values,
    else strings; ``None`` / ``none`` / ``null`` -> ``None``). ``option`` names the flag in errors."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{option} must look like name=value, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip().replace("-", "_")
        if not k:
            raise ValueError(f"{option} must look like name=value, got {item!r}")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = None if v in ("None", "none", "null") else v
    return out


def parse_task_args(items: Iterable[str]) -> dict:
    """``["eps=0.01", "offset=5.8"]`` -> ``{"eps": 0.01, "offset": 5.8}`` (JSON values, else strings)."""
    out = parse_name_values(items, "--task-arg")
    if "horizon" in out:
        raise ValueError("give horizons with --horizons, not --task-arg horizon=...")
    return out


def parse_horizons(text) -> list[int]:
    if isinstance(text, str):
        try:
            values = [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"--horizons must be a comma-separated list of integers >= 1, got {text!r}") from None
    else:
        values = [check_int("horizons", h, 1) for h in text]
    if not values or min(values) < 1:
        raise ValueError(f"--horizons must be a comma-separated list of integers >= 1, got {text!r}")
    return values


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
    workers: int = 1,
    progress: bool = True,
) -> list[dict]:
    """Run every (horizon, algorithm, seed) cell; append each record to ``out`` as it finishes.

    ``task``: a catalogue name, an import path ``pkg.mod:Class`` or a Task subclass.
    ``algorithms``: names, import paths, classes or instances (see ``agents.algorithms.base``).
    ``workers > 1`` runs cells in that many processes, each with ``cpu_count // workers`` torch
    threads (:func:`worker_threads`); every record notes its ``torch_threads``.
    Returns all records for this grid (finished earlier or now).
    """
    task_args = dict(task_args or {})
    horizons = parse_horizons(horizons)
    seeds = check_int("seeds", seeds, 1)
    n_samples = check_int("n_samples", n_samples, 1)
    eval_samples = check_int("eval_samples", eval_samples, 2)
    workers = check_int("workers", workers, 1)
    if isinstance(algorithms, str):
        algorithms = [a.strip() for a in algorithms.split(",") if a.strip()]
    if not algorithms:
        raise ValueError("algorithms must name at least one algorithm")
    task_cls = get_task_class(task) if isinstance(task, str) else task
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
    # validate the task arguments once (bad input fails before any work)
    task_cls(**{harg: horizons[0]}, **task_args)

    results = ResultsFile(out) if out is not None else None
    done = {}
    if results is not None:
        for rec in results.records():
            done[cell_key(rec["task"], rec["task_args"], rec["algorithm"], rec["seed"], rec["n_samples"])] = rec
    cells, records = [], []
    for h in horizons:
        full_args = task_cls(**{harg: h}, **task_args).task_args()
        for label in alg_objs:
            for seed in range(seeds):
                key = cell_key(task_name, _jsonable(full_args), label, seed, n_samples)
                if key in done:
                    records.append(done[key])
                else:
                    cells.append(Cell(task_name, tuple(sorted(task_args.items())), h, label, seed, n_samples, eval_samples))
    total = len(cells)
    if progress and len(records):
        print(f"resuming: {len(records)} cells already in {out}, {total} to run", file=sys.stderr)
    t0 = time.perf_counter()

    def finish(i, rec):
        if results is not None:
            results.append(rec)
        records.append(rec)
        if progress:
            c = rec.get("approx_factor")
            c_txt = "n/a" if c is None else f"{c:.3g}"
            print(
                f"[{i}/{total}] {rec['task']} H={rec['horizon']} {rec['algorithm']} seed={rec['seed']}: "
                f"D_H^2={rec['hellinger2']:.4g} C={c_txt} ({rec['wall_s']:.2f}s, {time.perf_counter() - t0:.0f}s total)",
                file=sys.stderr,
            )

    picklable = all(isinstance(a, str) or _picklable(a) for a in alg_objs.values())
    if workers > 1 and total > 1 and picklable:
        # fresh interpreters ("spawn"): a forked child of a process whose torch/OpenMP thread
        # pool is already running can deadlock. Each worker gets its share of the CPUs for torch
        # (by default every process would start one thread per CPU, and they would fight).
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                 initargs=(worker_threads(workers),)) as pool:
            futures = [pool.submit(run_cell, c, alg_objs[c.algorithm]) for c in cells]
            for i, fut in enumerate(as_completed(futures), start=1):
                finish(i, fut.result())
    else:
        for i, c in enumerate(cells, start=1):
            finish(i, run_cell(c, alg_objs[c.algorithm]))
    order = {(h, a, s): k for k, (h, a, s) in enumerate((h, a, s) for h in horizons for a in alg_objs for s in range(seeds))}
    records.sort(key=lambda r: order.get((r.get("sweep_arg", {}).get(harg, r["horizon"]), r["algorithm"], r["seed"]), 0))
    return records
