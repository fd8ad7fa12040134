"""The ar-envs benchmark: a fixed, versioned suite of cells that scores any imitation algorithm
against the shipped ones, whose reference results ship with the package.

A *suite* is data: one JSON file (``suites/<name>.json`` in this package, e.g. ``arb-v1``, or a
path), never code. It lists tasks from the catalogue with their arguments, horizons, sample and
evaluation sizes, seeds, the metric each task is scored by, the policy class the algorithms run
on (the task's log-linear class, or a neural kind with its arguments) and the reference
algorithms (names from the registry, with their arguments). Loading a suite imports nothing
and runs nothing; anything outside this schema is refused with a one-line error.

A benchmark run is a sweep over the suite's cells (``ar_agents.evaluation.sweep.run_cells``: the
same records, the same resumable results file, one writer). Every record carries the suite's
name (``suite``: its version is in its name) and the code that made it (``ar_envs_version`` and
``commit``). Scores:

* ``approx_factor`` tasks: C(H) = D_H^2(learner) / D_H^2(best in class), the normalised score
  1/C (1 = as good as the best member of the class; 0.1 = ten times its distance);
* ``exact_match`` tasks: the rate at which greedy decoding reproduces the expert's answer on
  ``min(eval_samples, 1000)`` fresh problems (the score is the rate);
* ``hellinger2`` tasks: D_H^2 itself, score ``1 - D_H^2``.

Per task the table shows each algorithm's mean over seeds with a 95% percentile-bootstrap
interval over seeds; across tasks, ``ar_agents.evaluation.aggregate`` gives the interquartile
mean of the normalised scores, the probability of improvement over each baseline and the
performance profile, with stratified-bootstrap intervals (Agarwal et al., 2021). One column of
the score matrix is one (task, horizon) cell, one row one seed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SUITE_FORMAT = "ar-envs-suite"
SUITES_DIR = Path(__file__).resolve().parent / "suites"
DEFAULT_SUITE = "arb-v1"
METRICS = ("approx_factor", "exact_match", "hellinger2")
MAX_SUITE_BYTES = 1 << 20  # a suite is a page of JSON; anything larger is not one
MAX_SEEDS = 1000
MAX_CELLS = 100_000  # (horizon, seed, algorithm) cells of a suite; arb-v1 has 680
_TASK_KEYS = {"id", "group", "task", "task_args", "horizons", "n_samples", "eval_samples", "seeds", "metric", "policy",
              "policy_args", "algo_args", "algorithms", "note"}
_SUITE_KEYS = {"format", "name", "description", "groups", "tasks"}


class SuiteError(ValueError):
    """A suite file that does not follow the schema (the message names the field)."""


@dataclass(frozen=True)
class SuiteAlgorithm:
    label: str  # the name shown in tables (e.g. block-hellinger[K=4])
    name: str  # a registry name
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SuiteTask:
    id: str
    group: str
    task: str
    task_args: dict
    horizons: tuple
    n_samples: int
    eval_samples: int
    seeds: int
    metric: str
    policy: str | None
    policy_args: dict
    algo_args: dict
    algorithms: tuple
    note: str | None = None

    @property
    def columns(self) -> list[tuple[str, int]]:
        return [(self.id, h) for h in self.horizons]


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    groups: dict
    tasks: tuple
    path: str

    def task(self, task_id: str) -> SuiteTask:
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise ValueError(f"--tasks: suite {self.name} has no task {task_id!r}; its tasks are {[t.id for t in self.tasks]}")

    def select(self, tasks=None) -> list[SuiteTask]:
        """The suite's tasks, or those named (a list or a comma-separated string of ids)."""
        if tasks is None:
            return list(self.tasks)
        ids = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
        if not ids or not all(isinstance(t, str) and t for t in ids):
            raise ValueError(f"--tasks must be a comma-separated list of task ids of suite {self.name}, got {tasks!r}")
        return [self.task(t) for t in dict.fromkeys(ids)]

    def cell_count(self, tasks=None, n_algorithms: int | None = None) -> int:
        return sum(len(t.horizons) * t.seeds * (len(t.algorithms) if n_algorithms is None else n_algorithms)
                   for t in self.select(tasks))


# --------------------------------------------------------------------------------------------
# loading and validating a suite
# --------------------------------------------------------------------------------------------


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.json"))


def _refuse(name: str):
    raise SuiteError(f"holds {name}; a suite's numbers must be finite")


def load_suite(spec: str | os.PathLike = DEFAULT_SUITE) -> Suite:
    """A suite by its name (one shipped with the package: :func:`suite_names`) or the path of a
    ``.json`` file. Reads JSON only (nothing is imported or run) and validates every field."""
    if not isinstance(spec, (str, os.PathLike)) or not os.fspath(spec):
        raise ValueError(f"--suite must be a suite name {suite_names()} or a .json path, got {spec!r}")
    text = os.fspath(spec)
    path = SUITES_DIR / f"{text}.json" if text in suite_names() else Path(text)
    if not path.is_file():
        raise ValueError(f"--suite {text!r} is neither a shipped suite {suite_names()} nor a suite file")
    if path.stat().st_size > MAX_SUITE_BYTES:
        raise SuiteError(f"{path} is {path.stat().st_size} bytes; a suite file is at most {MAX_SUITE_BYTES}")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_refuse)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SuiteError(f"{path} is not a JSON suite file ({exc})") from None
    except RecursionError:
        raise SuiteError(f"{path} is not a suite file: its JSON is nested too deeply") from None
    except SuiteError as exc:
        raise SuiteError(f"{path} {exc}") from None
    return validate_suite(data, str(path))


def _check_group(where: str, group) -> str:
    """A group name: it names the group's figure file (``<plot stem>-<group>.png``), so letters,
    digits, '-', '_' and '.' only (no path separators: a suite never writes outside --plot's folder)."""
    if not isinstance(group, str) or not group or not all(c.isalnum() or c in "-_." for c in group):
        raise SuiteError(f"{where} must be a name of letters, digits, '-', '_', '.', got {group!r}")
    return group


def _check_dict(where: str, value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise SuiteError(f"{where} must be an object of name: value, got {value!r}")
    for k, v in value.items():
        if not (v is None or isinstance(v, (str, bool, int, float))):
            raise SuiteError(f"{where}.{k} must be a number, string, boolean or null, got {v!r}")
    return dict(value)


def _check_count(where: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise SuiteError(f"{where} must be an integer {allowed}, got {value!r}")
    return value


def validate_suite(data, path: str = "<suite>") -> Suite:
    """A :class:`Suite` from parsed JSON, or a :class:`SuiteError` naming the first bad field.

    Checks: the format tag; every task a catalogue name with arguments its constructor takes,
    built at every horizon with sample sizes that fit in memory; metrics from :data:`METRICS`
    (``approx_factor`` needs a class with a best in class: the task's log-linear class);
    policies from ``ar_agents.policies.POLICY_KINDS``; algorithms from the registry, each with
    arguments its constructor takes; unique task ids and labels."""
    import inspect

    import ar_envs
    from ar_agents.algorithms.base import _registry
    from ar_agents.evaluation.sweep import _check_task_args
    from ar_agents.policies import POLICY_KINDS

    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite is a JSON object, got {type(data).__name__}")
    if data.get("format") != SUITE_FORMAT:
        raise SuiteError(f"{path}: not an ar-envs suite (its \"format\" must be {SUITE_FORMAT!r})")
    unknown = sorted(set(data) - _SUITE_KEYS)
    if unknown:
        raise SuiteError(f"{path}: unknown field(s) {unknown}; a suite has {sorted(_SUITE_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise SuiteError(f"{path}: \"name\" must be a non-empty name of letters, digits, '-', '_', '.', got {name!r}")
    groups = data.get("groups") or {}
    if not isinstance(groups, dict) or not all(isinstance(v, str) for v in groups.values()):
        raise SuiteError(f"{path}: \"groups\" must map group names to descriptions")
    for g in groups:
        _check_group(f"{path}: \"groups\"", g)
    if not isinstance(data.get("description", ""), str):
        raise SuiteError(f"{path}: \"description\" must be text")
    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise SuiteError(f"{path}: \"tasks\" must be a non-empty list")
    registry = _registry()
    tasks, ids, cells = [], set(), 0
    for i, t in enumerate(raw_tasks):
        where = f"{path}: tasks[{i}]"
        if not isinstance(t, dict):
            raise SuiteError(f"{where} must be an object")
        unknown = sorted(set(t) - _TASK_KEYS)
        if unknown:
            raise SuiteError(f"{where}: unknown field(s) {unknown}; a task has {sorted(_TASK_KEYS)}")
        tid = t.get("id")
        if not isinstance(tid, str) or not tid or "," in tid or tid in ids:
            raise SuiteError(f"{where}.id must be a unique non-empty name without commas, got {tid!r}")
        ids.add(tid)
        where = f"{path}: task {tid}"
        task_name = t.get("task")
        if task_name not in ar_envs.TASKS:  # a suite never imports: catalogue names only
            raise SuiteError(f"{where}: \"task\" must be one of the catalogue's tasks {sorted(ar_envs.TASKS)}, got {task_name!r}")
        task_cls = ar_envs.TASKS[task_name]
        task_args = _check_dict(f"{where}.task_args", t.get("task_args"))
        try:
            _check_task_args(task_cls, task_name, task_args)
        except ValueError as exc:
            raise SuiteError(f"{where}: {exc}") from None
        if task_cls.horizon_arg in task_args:
            raise SuiteError(f"{where}: {task_cls.horizon_arg} is given by \"horizons\", not task_args")
        horizons = t.get("horizons")
        if not isinstance(horizons, list) or not horizons:
            raise SuiteError(f"{where}.horizons must be a non-empty list of integers >= 1")
        horizons = tuple(_check_count(f"{where}.horizons", h, 1) for h in horizons)
        if len(set(horizons)) != len(horizons):
            raise SuiteError(f"{where}.horizons lists a horizon twice: {list(horizons)}")
        n_samples = _check_count(f"{where}.n_samples", t.get("n_samples", 1000), 1)
        eval_samples = _check_count(f"{where}.eval_samples", t.get("eval_samples", 20_000), 2)
        seeds = _check_count(f"{where}.seeds", t.get("seeds", 5), 1, MAX_SEEDS)
        n_algs = len(t["algorithms"]) if isinstance(t.get("algorithms"), list) else 1
        cells += len(horizons) * seeds * max(1, n_algs)
        if cells > MAX_CELLS:  # before any task is built: a suite's size is bounded, not just its file's
            raise SuiteError(f"{where}: the suite has more than {MAX_CELLS} (horizon, seed, algorithm) cells "
                             f"({cells} up to this task); split it")
        metric = t.get("metric")
        if metric not in METRICS:
            raise SuiteError(f"{where}.metric must be one of {list(METRICS)}, got {metric!r}")
        policy = t.get("policy")
        if policy is not None and policy not in POLICY_KINDS:
            raise SuiteError(f"{where}.policy must be null (the task's log-linear class) or one of {list(POLICY_KINDS)}, got {policy!r}")
        policy_args = _check_dict(f"{where}.policy_args", t.get("policy_args"))
        if policy_args and policy is None:
            raise SuiteError(f"{where}: policy_args need a policy")
        for h in horizons:
            try:
                task = task_cls(**{task_cls.horizon_arg: h}, **task_args)
                task.check_sample_size(n_samples, "n_samples")
                task.check_sample_size(eval_samples, "eval_samples")
            except ValueError as exc:
                raise SuiteError(f"{where} at {task_cls.horizon_arg}={h}: {exc}") from None
            if metric == "approx_factor" and policy is None and task.feature_map() is None:
                raise SuiteError(f"{where}: metric approx_factor needs a best in class, and {task_name} has no log-linear "
                                 "class; give a policy or another metric")
            if metric == "exact_match" and not task.deterministic_expert:
                raise SuiteError(f"{where}: metric exact_match needs a deterministic expert, and {task_name}'s samples")
        algo_args = _check_dict(f"{where}.algo_args", t.get("algo_args"))
        group = _check_group(f"{where}.group", t.get("group", metric))
        raw_algs = t.get("algorithms")
        if not isinstance(raw_algs, list) or not raw_algs:
            raise SuiteError(f"{where}.algorithms must be a non-empty list")
        algs, labels = [], set()
        for j, a in enumerate(raw_algs):
            if isinstance(a, str):
                a = {"name": a}
            if not isinstance(a, dict) or set(a) - {"name", "label", "args"}:
                raise SuiteError(f"{where}.algorithms[{j}] must be a registry name or {{\"name\", \"label\", \"args\"}}")
            alg_name = a.get("name")
            if alg_name not in registry:  # a suite never imports: registry names only
                raise SuiteError(f"{where}.algorithms[{j}]: {alg_name!r} is not one of the shipped algorithms {sorted(registry)}")
            label = a.get("label", alg_name)
            if not isinstance(label, str) or not label or label in labels:
                raise SuiteError(f"{where}.algorithms[{j}].label must be a unique non-empty name, got {label!r}")
            labels.add(label)
            args = _check_dict(f"{where}.algorithms[{j}].args", a.get("args"))
            accepted = set(inspect.signature(registry[alg_name].__init__).parameters) - {"self"}
            bad = sorted(set(args) - accepted)
            if bad:
                raise SuiteError(f"{where}.algorithms[{j}]: {alg_name} takes no argument {bad}")
            algs.append(SuiteAlgorithm(label, alg_name, args))
        note = t.get("note")
        if note is not None and not isinstance(note, str):
            raise SuiteError(f"{where}.note must be text")
        tasks.append(SuiteTask(tid, group, task_name, task_args, horizons, n_samples, eval_samples, seeds, metric,
                               policy, policy_args, algo_args, tuple(algs), note))
    for task in tasks:
        if task.group not in groups:
            groups = {**groups, task.group: ""}
    return Suite(name, str(data.get("description", "")), dict(groups), tuple(tasks), path)


# --------------------------------------------------------------------------------------------
# cells
# --------------------------------------------------------------------------------------------


def _accepted(cls) -> set[str] | None:
    """The constructor arguments of an algorithm class (``None``: not a class, takes nothing)."""
    import inspect

    if not isinstance(cls, type):
        return None
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return set(params) - {"self"}


def build_for_task(spec: str, task: SuiteTask, args: dict | None = None):
    """One algorithm (a registry name or a user's import path) as the suite runs it on ``task``:
    with the task's policy class and its ``algo_args`` where its constructor takes them, plus
    ``args`` (an algorithm's own). Returns a name (nothing to pass) or an instance whose label
    lists what it was built with."""
    from ar_agents.algorithms.base import _registry, load_algorithm
    from ar_agents.cli import build_algorithms

    cls = _registry().get(spec)
    if cls is None:
        cls = load_algorithm(spec)
    accepted = _accepted(cls)
    given = {**task.algo_args, **(args or {})}
    kwargs = given if accepted is None or not isinstance(cls, type) else {k: v for k, v in given.items() if k in accepted}
    takes_policy = task.policy is not None and isinstance(cls, type) and (accepted is None or "policy" in accepted)
    if not isinstance(cls, type):
        return spec
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):  # the "does not apply" notes are for the CLI
        built = build_algorithms([spec], task.policy if takes_policy else None,
                                 task.policy_args if takes_policy else None, kwargs)
    return built[0]


def _check_specs(algorithms) -> list[str]:
    """``algorithms`` as a list of specs: registry names or ``package.module:Name`` strings; a
    class or function defined in an importable module is taken as its import path (workers
    import it by that path)."""
    if isinstance(algorithms, (str, bytes)) or not isinstance(algorithms, (list, tuple)):
        raise ValueError(f"algorithms must be a list of registry names or 'package.module:Name' paths, got {algorithms!r}")
    specs = []
    for a in algorithms:
        if isinstance(a, str) and a:
            specs.append(a)
            continue
        module, qualname = getattr(a, "__module__", None), getattr(a, "__qualname__", "")
        if not callable(a) or not isinstance(module, str) or module == "__main__" or "<" in qualname:
            raise ValueError(f"algorithms: {a!r} is not a registry name, a 'package.module:Name' path, or a class or "
                             "function of an importable module (one defined in __main__ or a function body cannot be "
                             "imported by the workers)")
        specs.append(f"{module}:{qualname}")
    return specs


def _applied_args(spec: str, args: dict) -> dict:
    """The arguments of ``args`` that :func:`build_for_task` gives the algorithm ``spec``."""
    from ar_agents.algorithms.base import _registry, load_algorithm

    cls = _registry().get(spec) or load_algorithm(spec)
    if not isinstance(cls, type):
        return {}
    accepted = _accepted(cls)
    return dict(args) if accepted is None else {k: v for k, v in args.items() if k in accepted}


def reference_algorithms(suite: Suite, tasks=None) -> list[str]:
    """The labels of the suite's reference algorithms, in first-seen order."""
    return list(dict.fromkeys(a.label for t in suite.select(tasks) for a in t.algorithms))


def suite_jobs(suite: Suite, algorithms=None, tasks=None, algo_args: dict | None = None) -> tuple[list, dict]:
    """The cells of a run: ``(jobs, labels)``. ``algorithms``: ``None`` (the suite's reference
    algorithms) or specs (registry names, import paths) run on every task with the task's
    policy and ``algo_args``, and ``algo_args`` given here (which win). ``labels`` maps each
    record label to the name its table shows."""
    from ar_agents.evaluation.sweep import Cell, _jsonable

    jobs, labels = [], {}
    if algorithms is not None:
        algorithms = _check_specs(algorithms)
        if algo_args is not None and not (isinstance(algo_args, dict) and all(isinstance(k, str) for k in algo_args)):
            raise ValueError(f"algo_args must be a dict of argument name: value, got {algo_args!r}")
        applied = {spec: _applied_args(spec, algo_args or {}) for spec in algorithms}
        unused = sorted(set(algo_args or {}) - {k for a in applied.values() for k in a})
        if unused:
            raise ValueError(f"--algo-arg {', '.join(unused)} is not an argument of any of the algorithms {list(algorithms)}")
    for task in suite.select(tasks):
        if algorithms is None:
            built = [(a.label, build_for_task(a.name, task, a.args)) for a in task.algorithms]
        else:
            built = []
            for spec in algorithms:  # the name shown lists the arguments the algorithm takes, no others
                suffix = ",".join(f"{k}={v}" for k, v in sorted(applied[spec].items()))
                built.append((f"{spec}[{suffix}]" if suffix else spec, build_for_task(spec, task, algo_args)))
        for display, alg in built:
            label = alg if isinstance(alg, str) else alg.name
            labels[label] = display
            for h in task.horizons:
                for seed in range(task.seeds):
                    cell = Cell(task.task, tuple(sorted(_jsonable(task.task_args).items())), h, label, seed,
                                task.n_samples, task.eval_samples, suite=suite.name,
                                best_in_class=task.metric == "approx_factor")
                    jobs.append((cell, alg))
    return jobs, labels


def _commit() -> dict:
    """The git commit of the code that runs (and whether its tracked files had changes, results
    files ``*.jsonl`` aside: the reference results being remade are one), when it runs from a
    checkout; ``{}`` for an installed package."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return {}
        status = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        changed = [line for line in status.stdout.splitlines() if line.strip() and not line.rstrip().endswith(".jsonl")]
        return {"commit": head.stdout.strip(), "dirty": bool(changed)}
    except (OSError, subprocess.SubprocessError):
        return {}


class _Provenance:
    """The results file, with the provenance of the code added to every record it appends."""

    def __init__(self, results, provenance: dict):
        self._results, self._provenance = results, provenance
        self.path = results.path

    def append(self, record: dict) -> None:
        record.setdefault("provenance", self._provenance)
        self._results.append(record)

    def __getattr__(self, name):
        return getattr(self._results, name)


def run_benchmark(suite: Suite | str = DEFAULT_SUITE, algorithms=None, *, tasks=None, algo_args: dict | None = None,
                  out, workers: int | None = None, threads: int = 1, progress=True, backend: str = "local",
                  address: str | None = None) -> list[dict]:
    """Run ``algorithms`` (``None``: the suite's reference algorithms) on the suite's cells (or
    those of ``tasks``; ``algo_args``: constructor arguments of ``algorithms``), appending to ``out`` (resumable: finished cells are skipped). Returns
    the records of the selection, finished earlier or now. ``workers``, ``threads``, ``progress``,
    ``backend`` and ``address`` are those of ``ar_agents.evaluation.sweep.run_cells`` (local
    processes, or Ray tasks on this machine or a cluster: the same numbers)."""
    from ar_agents.evaluation.sweep import ResultsFile, cell_key, check_backend, import_ray, run_cells
    from ar_envs.core import check_int

    suite = load_suite(suite) if not isinstance(suite, Suite) else suite
    workers = None if workers is None else check_int("workers", workers, 1)
    threads = check_int("threads", threads, 1)
    check_backend(backend, address)
    if backend == "ray":
        import_ray()  # a missing extra fails here, before any work
    if out is None:
        raise ValueError("out: a benchmark run needs a results file (records are appended as cells finish)")
    if isinstance(algorithms, str):
        algorithms = [a.strip() for a in algorithms.split(",") if a.strip()]
    if algorithms is not None and not algorithms:
        raise ValueError("--algorithm must name at least one algorithm")
    if algorithms is not None:
        algorithms = _check_specs(algorithms)
    if algo_args and algorithms is None:
        raise ValueError("algo_args apply to given algorithms; the reference algorithms take the suite's own")
    jobs, _ = suite_jobs(suite, algorithms, tasks, algo_args)
    results = ResultsFile(out)
    with contextlib.ExitStack() as stack:
        stack.enter_context(results)
        done = {}
        for rec in results.records():
            done.setdefault(cell_key(rec), rec)
        todo, records, seen = [], [], set()
        for cell, alg in jobs:
            key = cell.key()
            if key in seen:
                continue
            seen.add(key)
            if key in done:
                records.append(done[key])
            else:
                todo.append((cell, alg))
        if progress is True:
            print(f"benchmark {suite.name}: {len(jobs)} cells, {len(records)} already in {results.path}, "
                  f"{len(todo)} to run", file=sys.stderr)
        records += run_cells(todo, _Provenance(results, {"ar_envs_version": _version(), **_commit()}), workers=workers,
                             threads=threads, progress=progress, stack=stack, backend=backend, address=address)
    return records


def _version() -> str:
    import ar_envs

    return ar_envs.__version__


# --------------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------------


def metric_value(record: dict, metric: str) -> float | None:
    """The task's metric of one record: C(H), the exact-match rate, or D_H^2 (``None`` when the
    record has none, e.g. C(H) where the best in class is numerically zero)."""
    if metric == "approx_factor":
        return record.get("approx_factor")
    if metric == "exact_match":
        return (record.get("diagnostics") or {}).get("exact_match")
    return record.get("hellinger2")


def normalised_score(value: float | None, metric: str) -> float | None:
    """Higher is better, 1 is perfect: ``1/C`` (C(H) = 1 is the best of the class), the
    exact-match rate, ``1 - D_H^2``."""
    if value is None:
        return None
    if metric == "approx_factor":
        return 1.0 / value if value > 0 else None
    if metric == "exact_match":
        return float(value)
    return 1.0 - float(value)


def _estimated(record: dict, metric: str) -> bool:
    if metric == "approx_factor":
        return not record.get("approx_factor_exact", False)
    if metric == "exact_match":
        return True  # a rate on fresh problems
    return not (record.get("metric_exact") or {}).get("hellinger2", record.get("exact", False))


@dataclass
class Table:
    """Per-algorithm score matrices (seeds x columns) and per-cell metric summaries of one suite."""

    suite: Suite
    columns: list  # [(task id, horizon)]
    algorithms: list  # display names, reference first
    user: list  # display names of the user's algorithms
    values: dict  # display -> {(task id, horizon): np.ndarray of the metric over seeds}
    scores: dict  # display -> {(task id, horizon): np.ndarray of normalised scores over seeds}
    estimated: dict  # (display, column) -> bool
    missing: list  # (display, column, seeds found, seeds expected)


def collect(suite: Suite, sources, tasks=None, user=(), names=None) -> Table:
    """Group records of ``suite`` by (algorithm, task, horizon). ``sources``: a list of
    ``(records, labels)``, where ``labels`` maps the record labels to take to their display names
    (:func:`suite_jobs` gives them); display names must differ between sources. Records of another
    suite, of other labels, or of cells outside the suite are ignored; a cell given twice in one
    source counts once (the first). ``names``: what to call each source in errors (e.g. its
    file; default ``sources[i]``): a record whose fields cannot be scored (a string or a negative
    number where a distance goes, a seed that is not an integer, ...) is a one-line ``ValueError``."""
    from ar_agents.evaluation.sweep import cell_key

    selected = suite.select(tasks)
    by_spec = {}
    for t in selected:
        for h in t.horizons:
            by_spec[(t.task, json.dumps(t.task_args, sort_keys=True), h, t.n_samples, t.eval_samples)] = t
    values: dict = {}
    scores: dict = {}
    estimated: dict = {}
    seen = set()
    order = []
    tagged = []
    if isinstance(sources, (str, bytes, dict)) or not hasattr(sources, "__iter__"):
        raise ValueError(f"sources must be a list of (records, labels) pairs, got {type(sources).__name__}")
    for i, source in enumerate(sources):
        if not (isinstance(source, (tuple, list)) and len(source) == 2 and isinstance(source[1], dict)):
            raise ValueError(f"sources[{i}] must be a (records, labels) pair, labels a dict of record label: display name")
        records, labels = source
        order += list(labels.values())
        name = names[i] if names is not None and i < len(names) else f"sources[{i}]"
        tagged += [(i, labels, _check_record(rec, name)) for rec in records]
    from ar_agents.evaluation.report import _policy_class
    from ar_agents.evaluation.sweep import WELL_SPECIFIED_BELOW

    accepted = []
    best: dict = {}  # (column, class) -> (the smallest best in class recorded there, its record)
    for i, labels, rec in tagged:
        if rec.get("suite") != suite.name or rec.get("algorithm") not in labels:
            continue
        key = (i, cell_key(rec))
        if key in seen:
            continue
        seen.add(key)
        h = (rec.get("sweep_arg") or {}).get(_horizon_arg(rec["task"]), rec["horizon"])
        spec = (rec["task"], json.dumps(rec.get("task_kwargs") or {}, sort_keys=True), h, rec["n_samples"],
                rec.get("eval_samples"))
        t = by_spec.get(spec)
        if t is None or not isinstance(rec.get("seed"), int) or not 0 <= rec["seed"] < t.seeds:
            continue
        col = (t.id, h)
        accepted.append((labels[rec["algorithm"]], col, t, rec))
        b = rec.get("best_in_class_hellinger2")
        bkey = (col, _policy_class(rec))
        if t.metric == "approx_factor" and b is not None and (bkey not in best or b < best[bkey][0]):
            best[bkey] = (b, rec)
    for display, col, t, rec in accepted:
        v = metric_value(rec, t.metric)
        est = _estimated(rec, t.metric)
        if t.metric == "approx_factor":
            # C against the smallest best in class recorded for this column and class, so that every
            # learner of a class (reference or yours) is divided by the same member
            b, brec = best.get((col, _policy_class(rec)), (None, rec))
            ok = v is not None and b is not None and b > WELL_SPECIFIED_BELOW and rec.get("hellinger2") is not None
            v = rec["hellinger2"] / b if ok else None
            est = est or not brec.get("best_in_class_exact", True)
        s = normalised_score(v, t.metric)
        if v is None or s is None:
            raise ValueError(f"{rec['algorithm']} on {t.id} H={col[1]} seed={rec['seed']} has no {t.metric} "
                             f"({rec.get('approx_factor_note') or 'not recorded'}); the suite cannot score it")
        values.setdefault(display, {}).setdefault(col, {})[rec["seed"]] = v
        scores.setdefault(display, {}).setdefault(col, {})[rec["seed"]] = s
        estimated[(display, col)] = estimated.get((display, col), False) or est
    columns = [c for t in selected for c in t.columns]
    expected = {c: t.seeds for t in selected for c in t.columns}
    order = list(dict.fromkeys(order))
    algorithms = [a for a in order if a in values]
    missing = []
    out_values, out_scores = {}, {}
    for a in algorithms:
        out_values[a], out_scores[a] = {}, {}
        for c in columns:
            got = values[a].get(c, {})
            if got and len(got) < expected[c]:
                missing.append((a, c, len(got), expected[c]))
            if got:
                seeds = sorted(got)
                out_values[a][c] = np.array([values[a][c][s] for s in seeds], dtype=float)
                out_scores[a][c] = np.array([scores[a][c][s] for s in seeds], dtype=float)
    return Table(suite, columns, algorithms, [u for u in user if u in algorithms], out_values, out_scores, estimated, missing)


def _check_record(rec, source: str) -> dict:
    """A record as :func:`collect` reads it, or a one-line ``ValueError`` naming the field: the
    fields a results file requires, objects where objects go, an integer seed, and the numbers
    scores are made of finite and >= 0 (or null), so that a tampered file cannot be scored."""
    from ar_agents.evaluation.sweep import REQUIRED_FIELDS

    if not isinstance(rec, dict):
        raise ValueError(f"{source}: a record must be a dict, got {type(rec).__name__}")
    where = f"{source}: the record of {rec.get('algorithm')!r} on {rec.get('task')!r} seed={rec.get('seed')!r}"
    missing = [f for f in REQUIRED_FIELDS if f not in rec]
    if missing:
        raise ValueError(f"{where} lacks fields {missing}")
    for name in ("task", "algorithm"):
        if not isinstance(rec[name], str):
            raise ValueError(f"{where}: {name} must be a string, got {rec[name]!r}")
    for name in ("task_args", "task_kwargs", "sweep_arg", "diagnostics"):
        if rec.get(name) is not None and not isinstance(rec[name], dict):
            raise ValueError(f"{where}: {name} must be an object, got {rec[name]!r}")
    for name in ("seed", "n_samples", "horizon"):
        if isinstance(rec[name], bool) or not isinstance(rec[name], int):
            raise ValueError(f"{where}: {name} must be an integer, got {rec[name]!r}")
    numbers = {k: rec.get(k) for k in ("hellinger2", "best_in_class_hellinger2", "approx_factor")}
    numbers["diagnostics.exact_match"] = (rec.get("diagnostics") or {}).get("exact_match")
    for name, v in numbers.items():
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{where}: {name} must be a finite number >= 0 or null, got {v!r}")
        if name == "diagnostics.exact_match" and v > 1:
            raise ValueError(f"{where}: {name} is a rate, at most 1, got {v!r}")
    return rec


def _horizon_arg(task_name: str) -> str:
    from ar_envs.tasks import get_task_class

    return get_task_class(task_name).horizon_arg


# --------------------------------------------------------------------------------------------
# the comparison: per-task tables, aggregates, the figure
# --------------------------------------------------------------------------------------------

METRIC_TEXT = {
    "approx_factor": "C(H), lower is better (1 = the best member of the class)",
    "exact_match": "exact match of greedy decoding, higher is better",
    "hellinger2": "D_H^2, lower is better",
}
SCORE_TEXT = {"approx_factor": "1/C", "exact_match": "exact match", "hellinger2": "1 - D_H^2"}


def _check_table(table) -> None:
    if not isinstance(table, Table):
        raise ValueError(f"table must be a Table made by collect(), got {type(table).__name__}")


def _check_aggs(aggs) -> None:
    if not isinstance(aggs, dict):
        raise ValueError(f"aggs must be the dict aggregates() returns, got {type(aggs).__name__}")


def _seed_interval(values: np.ndarray, reps: int, seed: int) -> tuple[float, float, float]:
    """The mean over seeds and its 95% percentile-bootstrap interval over seeds."""
    from ar_agents.evaluation import aggregate

    e = aggregate.stratified_bootstrap_ci(values.reshape(-1, 1), "mean", reps=reps, seed=seed)
    return float(e.point), float(e.low), float(e.high)


def _num(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 0.01:
        return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"
    return f"{x:.1e}"


def group_scores(table: Table, group: str) -> tuple[list, dict, dict]:
    """``(columns, scores, coverage)`` of one group: the group's (task, horizon) columns, each
    algorithm's score matrix (seeds x the columns it has), and which columns those are. An
    algorithm that lacks some columns (e.g. rho, which refuses classes above 3 parameters) is
    aggregated over its own columns, and the table says so."""
    cols = [c for c in table.columns if table.suite.task(c[0]).group == group]
    scores, coverage = {}, {}
    for a in table.algorithms:
        have = [c for c in cols if c in table.scores[a]]
        if not have:
            continue
        runs = min(len(table.scores[a][c]) for c in have)
        scores[a] = np.stack([table.scores[a][c][:runs] for c in have], axis=1)
        coverage[a] = have
    return cols, scores, coverage


def aggregates(table: Table, reps: int = 2000, seed: int = 0) -> dict:
    """Per group: IQM, mean and median of the normalised scores with stratified-bootstrap 95%
    intervals, and (with user algorithms) each one's probability of improvement over every
    reference algorithm, on the columns both have."""
    _check_table(table)
    from ar_agents.evaluation import aggregate

    out = {}
    for group in table.suite.groups:
        cols, scores, coverage = group_scores(table, group)
        if not scores:
            continue
        rows = {}
        for a, s in scores.items():
            rows[a] = {"columns": len(coverage[a]), "of": len(cols), "runs": s.shape[0]}
            for name in ("iqm", "mean", "median"):
                e = aggregate.stratified_bootstrap_ci(s, name, reps=reps, seed=seed)
                rows[a][name] = (float(e.point), float(e.low), float(e.high))
        poi = {}
        for u in table.user:
            if u not in scores:
                continue
            for b in scores:
                if b == u or b in table.user:
                    continue
                common = [c for c in coverage[b] if c in coverage[u]]
                if not common:
                    continue
                x = np.stack([table.scores[u][c] for c in common], axis=1)
                y = np.stack([table.scores[b][c] for c in common], axis=1)
                e = aggregate.probability_of_improvement_ci(x, y, reps=reps, seed=seed)
                poi[(u, b)] = (float(e.point), float(e.low), float(e.high), len(common))
        out[group] = {"columns": cols, "rows": rows, "poi": poi, "scores": scores}
    return out


def format_comparison(table: Table, aggs: dict, reps: int = 2000, seed: int = 0) -> str:
    """The per-task tables (one block per task: algorithms x horizons, mean over seeds
    [95% bootstrap interval over seeds], ``~`` on estimated numbers) and the aggregates."""
    _check_table(table)
    _check_aggs(aggs)
    lines = [f"benchmark {table.suite.name} ({table.suite.path})"]
    if table.user:
        lines.append(f"yours (marked >): {', '.join(table.user)}; the others are the shipped reference results")
    lines.append("each cell: mean over seeds [95% percentile-bootstrap interval over seeds]; ~ marks estimated numbers")
    for task in table.suite.tasks:
        cols = [c for c in table.columns if c[0] == task.id]
        if not cols:
            continue
        algs = [a for a in table.algorithms if any(c in table.values[a] for c in cols)]
        if not algs:
            continue
        from ar_envs.tasks import get_task_class

        harg = get_task_class(task.task).horizon_arg
        args = "".join(f" {k}={_num(v) if isinstance(v, float) else v}" for k, v in task.task_args.items())
        cls = "log-linear class" if task.policy is None else (
            task.policy + ("(" + ",".join(f"{k}={v}" for k, v in task.policy_args.items()) + ")" if task.policy_args else ""))
        lines.append("")
        lines.append(f"## {task.id}: {task.task}{args} | {METRIC_TEXT[task.metric]} | {cls}; "
                     f"{task.seeds} seeds x {task.n_samples} demonstrations")
        if task.note:
            lines.append(f"   ({task.note})")
        header = ["algorithm"] + [f"{harg}={h}" for _, h in cols]
        body = []
        for a in algs:
            row = [("> " if a in table.user else "  ") + a]
            for c in cols:
                v = table.values[a].get(c)
                if v is None:
                    row.append("-")
                    continue
                m, lo, hi = _seed_interval(v, reps, seed)
                mark = "~" if table.estimated.get((a, c)) else ""
                row.append(f"{mark}{_num(m)} [{_num(lo)}, {_num(hi)}]" + ("" if len(v) == task.seeds else f" ({len(v)}/{task.seeds} seeds)"))
            body.append(row)
        widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
        for r in [header] + body:
            lines.append("  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip())
    for group, agg in aggs.items():
        metrics = sorted({table.suite.task(c[0]).metric for c in agg["columns"]})
        score = " / ".join(SCORE_TEXT[m] for m in metrics)
        lines.append("")
        lines.append(f"## aggregate over the {group} tasks ({len(agg['columns'])} (task, horizon) columns; normalised "
                     f"score {score}, 1 is best; stratified bootstrap over seeds, {reps} resamples, 95%)")
        desc = table.suite.groups.get(group)
        if desc:
            lines.append(f"   ({desc})")
        has_poi = bool(agg["poi"])
        header = ["algorithm", "IQM", "mean", "median", "columns"]
        users = [u for u in table.user if u in agg["rows"]]
        if has_poi:
            header += [f"P({u} > it)" for u in users]
        body = []
        for a, r in agg["rows"].items():
            row = [("> " if a in table.user else "  ") + a]
            for name in ("iqm", "mean", "median"):
                p, lo, hi = r[name]
                row.append(f"{p:.3f} [{lo:.3f}, {hi:.3f}]")
            row.append(f"{r['columns']}/{r['of']}")
            for u in users if has_poi else []:
                got = agg["poi"].get((u, a))
                row.append("" if got is None else f"{got[0]:.2f} [{got[1]:.2f}, {got[2]:.2f}]" + (
                    "" if got[3] == len(agg["columns"]) else f" on {got[3]}"))
            body.append(row)
        widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
        for r in [header] + body:
            lines.append("  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip())
    if table.missing:
        lines.append("")
        for a, c, got, want in table.missing:
            lines.append(f"note: {a} on {c[0]} H={c[1]} has {got} of {want} seeds (an unfinished run: rerun to resume)")
    return "\n".join(lines)


def plot_comparison(table: Table, aggs: dict, path: str, reps: int = 2000, seed: int = 0) -> list[str]:
    """One figure per group of tasks (``<path stem>-<group>.png``): per (task, horizon) bars of the
    normalised score with 95% intervals over seeds (no bar where an algorithm was not run), each
    algorithm's aggregate IQM and mean with their stratified-bootstrap intervals, and the
    performance profiles (the fraction of scores above tau) with their bands."""
    from ar_agents.evaluation import aggregate

    _check_table(table)
    _check_aggs(aggs)
    stem, ext = os.path.splitext(os.fspath(path))
    written = []
    for group, agg in aggs.items():
        cols = agg["columns"]
        per_task, metrics = {}, {}
        for a, row in agg["rows"].items():
            points, cis = [], []
            for c in cols:
                s = table.scores[a].get(c)
                if s is None:
                    points.append(np.nan)
                    cis.append((np.nan, np.nan))
                else:
                    m, lo, hi = _seed_interval(s, reps, seed)
                    points.append(m)
                    cis.append((lo, hi))
            per_task[a] = ([f"{c[0]} {c[1]}" for c in cols], np.array(points), np.array(cis))
            metrics[a] = {k: dict(zip(("point", "low", "high"), row[k])) for k in ("iqm", "mean")}
        metric = " / ".join(sorted({SCORE_TEXT[table.suite.task(c[0]).metric] for c in cols}))
        # the performance profile: the fraction of (run, column) scores above tau, each algorithm
        # over its own columns, with stratified-bootstrap bands
        top = max(1.0, max(float(np.max(x)) for x in agg["scores"].values()))
        taus = np.linspace(0.0, top, 41)
        profiles = {a: aggregate.performance_profile_ci(agg["scores"][a], taus, reps=reps, seed=seed) for a in per_task}
        out = f"{stem}-{group}{ext or '.png'}"
        written.append(aggregate.plot_benchmark(
            per_task, {"algorithms": list(per_task), "metrics": metrics}, out, profiles=profiles, taus=taus,
            title=f"{table.suite.name}, {group} tasks: {metric} per (task, horizon), 95% intervals over seeds",
            ylabel=f"normalised score ({metric})"))
    return written


def reference_path(suite: Suite) -> Path:
    """The shipped reference results of a shipped suite (``suites/<name>-reference.jsonl``)."""
    return SUITES_DIR / f"{suite.name}-reference.jsonl"


def reference_records(suite: Suite, path: str | os.PathLike | None = None) -> list[dict]:
    """The reference results of ``suite``: the records of this suite in the shipped file (none
    when the suite ships without one), or in ``path``, a file named for the purpose, which must
    exist and hold records of this suite (else a one-line ``ValueError`` saying which suites it
    holds)."""
    from ar_agents.evaluation.sweep import ResultsFile

    named = path is not None
    path = reference_path(suite) if path is None else Path(path)
    if not os.path.exists(path):
        if named:
            raise ValueError(f"{path}: no such file")
        return []
    records = ResultsFile(path).records()
    mine = [r for r in records if r.get("suite") == suite.name]
    if named and not mine:
        held = sorted({str(r.get("suite")) for r in records})
        raise ValueError(f"{path} holds no records of suite {suite.name} "
                         f"(it holds {'those of suite(s) ' + ', '.join(held) if held else 'no records'})")
    return mine
