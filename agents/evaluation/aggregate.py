"""Robust aggregates of normalised scores across tasks, with stratified bootstrap intervals.

The statistics are those recommended by Agarwal, Schwarzer, Castro, Courville & Bellemare,
"Deep Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS 2021 (the
``rliable`` library), written here from their definitions in pure numpy: ``rliable`` itself
does not import beside this package's pins (its dependency ``arch`` fails with pandas 3).

Input convention: ``scores`` maps an algorithm name to an array of shape ``(n_runs, n_tasks)``
of normalised scores, higher is better. Runs are seeds; tasks are the strata of the bootstrap
(the benchmark uses one column per (task, horizon) cell). Every algorithm must have the same
columns in the same order; the number of runs may differ between algorithms.

Point statistics (all follow Agarwal et al. 2021, section 4 and ``rliable``'s conventions):

* :func:`iqm` -- interquartile mean over all runs x tasks: sort the ``n = n_runs * n_tasks``
  scores, drop ``floor(n / 4)`` from each end and average the rest (``scipy.stats.trim_mean``
  with ``proportiontocut=0.25`` on the flattened array).
* :func:`mean` -- mean over tasks of the per-task mean over runs.
* :func:`median` -- median over tasks of the per-task mean over runs (not the median of all
  runs x tasks).
* :func:`optimality_gap` -- ``gamma - mean(min(score, gamma))`` over all runs x tasks.
* :func:`probability_of_improvement` -- ``P(X > Y)`` per task, the Mann-Whitney ``U`` of X over Y
  divided by ``n_x * n_y`` (ties count 1/2), averaged over tasks.
* :func:`performance_profile` -- for each threshold ``tau`` the fraction of runs x tasks with
  score ``> tau`` (``kind="runs"``), or of per-task mean scores ``> tau`` (``kind="task_means"``).

Intervals (:func:`stratified_bootstrap_ci`, :func:`probability_of_improvement_ci`,
:func:`performance_profile_ci`): the stratified bootstrap resamples runs with replacement
independently within each task (column); for the probability of improvement the runs of X
and of Y are resampled independently of each other. The interval is the percentile interval
of the bootstrap distribution (``rliable``'s default, with numpy's linear interpolation of
percentiles); no BCa or studentised variant is offered. Resampling is vectorised over
``(reps, n_runs, n_tasks)`` index arrays in chunks that keep each intermediate array below
about 64 MB. The random stream depends on the seed, the shapes and, for dict inputs, the
algorithm names only: the same seed gives the same numbers, and adding an algorithm to a dict
does not change the intervals of the others.

:func:`aggregate_table` gathers all of these for a dict of algorithms (plus a text rendering,
:func:`format_aggregate_table`), :func:`per_task_means` gives per-column means with intervals,
and :func:`plot_benchmark` draws one figure: per-task grouped bars with intervals and the
aggregate IQM / mean per algorithm (optionally a performance-profile panel).

Example::

    from ar_agents.evaluation import aggregate as agg
    scores = {"bc": bc_scores, "mine": my_scores}          # each (n_seeds, n_cells)
    table = agg.aggregate_table(scores, baseline_names=["bc"], reps=2000, seed=0)
    print(agg.format_aggregate_table(table))
    taus = np.linspace(0, 1, 21)
    agg.plot_benchmark(agg.per_task_means(scores, cell_labels), table, "benchmark.png",
                       profiles=agg.performance_profile_ci(scores, taus), taus=taus)
"""

from __future__ import annotations

import math
import numbers
import os
import zlib
from typing import Mapping, NamedTuple, Sequence

import numpy as np

__all__ = [
    "Estimate",
    "iqm",
    "mean",
    "median",
    "optimality_gap",
    "probability_of_improvement",
    "performance_profile",
    "bootstrap_distribution",
    "stratified_bootstrap_ci",
    "probability_of_improvement_ci",
    "performance_profile_ci",
    "per_task_means",
    "aggregate_table",
    "format_aggregate_table",
    "plot_benchmark",
    "MAX_REPS",
]

#: Largest number of bootstrap replicates accepted (beyond it the Monte-Carlo error of a 95%
#: percentile interval is far below any difference that matters; larger values are a mistake).
MAX_REPS = 1_000_000
# bytes allowed for the largest intermediate array of one chunk of replicates
_CHUNK_BYTES = 64 * 2**20

METRICS = ("iqm", "mean", "median", "optimality_gap")


class Estimate(NamedTuple):
    """A point estimate with its bootstrap interval; each field is a float, or an array of the
    same shape for vector statistics (a performance profile, per-task means)."""

    point: float | np.ndarray
    low: float | np.ndarray
    high: float | np.ndarray


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _check_array(x, name: str) -> np.ndarray:
    """``x`` as a 2-D float array of finite numbers with at least one run and one task."""
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers of shape (n_runs, n_tasks)") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D of shape (n_runs, n_tasks), got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least one run and one task, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        r, t = map(int, np.argwhere(bad)[0])
        raise ValueError(f"{name} has a non-finite score ({arr[r, t]}) at run {r}, task {t}; "
                         "every score must be a finite number")
    return arr


def _check_dict(scores, name: str = "scores") -> dict[str, np.ndarray]:
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError(f"{name} must be a non-empty dict of algorithm name -> (n_runs, n_tasks) array")
    out = {}
    n_tasks = None
    for alg, x in scores.items():
        if not isinstance(alg, str):
            raise ValueError(f"{name} keys must be algorithm names (str), got {alg!r}")
        arr = _check_array(x, f"{name}[{alg!r}]")
        if n_tasks is None:
            n_tasks, first = arr.shape[1], alg
        elif arr.shape[1] != n_tasks:
            raise ValueError(f"{name}[{alg!r}] has {arr.shape[1]} tasks but {name}[{first!r}] has "
                             f"{n_tasks}; every algorithm needs the same task columns")
        out[alg] = arr
    return out


def _check_reps(reps) -> int:
    if isinstance(reps, bool) or not isinstance(reps, numbers.Integral) or not 1 <= reps <= MAX_REPS:
        raise ValueError(f"reps must be an integer in [1, {MAX_REPS}], got {reps!r}")
    return int(reps)


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a number in (0, 1) (0.05 gives 95% intervals), got {alpha!r}")
    return float(alpha)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_gamma(gamma) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not math.isfinite(gamma):
        raise ValueError(f"gamma must be a finite number, got {gamma!r}")
    return float(gamma)


def _check_taus(taus) -> np.ndarray:
    try:
        t = np.asarray(taus, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("taus must be a 1-D sequence of finite thresholds") from None
    if t.ndim != 1 or t.size == 0 or not np.isfinite(t).all():
        raise ValueError(f"taus must be a non-empty 1-D sequence of finite thresholds, got shape {t.shape}")
    return t


def _check_kind(kind) -> str:
    if kind not in ("runs", "task_means"):
        raise ValueError(f"kind must be 'runs' or 'task_means', got {kind!r}")
    return kind


# --------------------------------------------------------------------------------------------
# batched statistics: x has shape (..., n_runs, n_tasks); the result has shape (...) or (..., k)
# --------------------------------------------------------------------------------------------


def _iqm_b(x: np.ndarray) -> np.ndarray:
    n = x.shape[-2] * x.shape[-1]
    flat = x.reshape(*x.shape[:-2], n)
    lo = n // 4  # int(0.25 * n), exact for integers
    hi = n - lo
    part = np.partition(flat, (lo, hi - 1), axis=-1)
    return part[..., lo:hi].mean(axis=-1)


def _mean_b(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=-2).mean(axis=-1)


def _median_b(x: np.ndarray) -> np.ndarray:
    return np.median(x.mean(axis=-2), axis=-1)


def _og_b(x: np.ndarray, gamma: float) -> np.ndarray:
    n = x.shape[-2] * x.shape[-1]
    return gamma - np.minimum(x, gamma).reshape(*x.shape[:-2], n).mean(axis=-1)


def _profile_b(x: np.ndarray, taus: np.ndarray, kind: str) -> np.ndarray:
    # one threshold at a time: memory stays that of one resample stack, however many taus
    if kind == "runs":
        vals = x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])
    else:
        vals = x.mean(axis=-2)
    return np.stack([(vals > tau).mean(axis=-1) for tau in taus], axis=-1)


def _task_means_b(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=-2)


def _all_metrics_b(x: np.ndarray, gamma: float) -> np.ndarray:
    return np.stack([_iqm_b(x), _mean_b(x), _median_b(x), _og_b(x, gamma)], axis=-1)


def _poi_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``x``: (..., m, T), ``y``: (..., n, T) -> (...,): mean over tasks of P(X > Y) + P(X = Y)/2."""
    xe = x[..., :, None, :]
    ye = y[..., None, :, :]
    wins = (xe > ye).sum(axis=(-3, -2)) + 0.5 * (xe == ye).sum(axis=(-3, -2))  # U per task
    return (wins / (x.shape[-2] * y.shape[-2])).mean(axis=-1)


_NAMED = {"iqm": _iqm_b, "mean": _mean_b, "median": _median_b}


# --------------------------------------------------------------------------------------------
# point statistics
# --------------------------------------------------------------------------------------------


def iqm(scores) -> float:
    """Interquartile mean over all runs x tasks (Agarwal et al. 2021, NeurIPS, sec. 4.2): with
    ``n = n_runs * n_tasks`` scores sorted, drop ``floor(n/4)`` from each end and average the
    rest -- ``scipy.stats.trim_mean(scores, 0.25, axis=None)``, as in ``rliable``. For ``n < 4``
    nothing is dropped (the plain mean)."""
    return float(_iqm_b(_check_array(scores, "scores")))


def mean(scores) -> float:
    """Mean over tasks of the per-task mean over runs (Agarwal et al. 2021)."""
    return float(_mean_b(_check_array(scores, "scores")))


def median(scores) -> float:
    """Median over tasks of the per-task mean over runs (Agarwal et al. 2021 and ``rliable``:
    the median of task means, not of all runs x tasks)."""
    return float(_median_b(_check_array(scores, "scores")))


def optimality_gap(scores, gamma: float = 1.0) -> float:
    """``gamma - mean(min(score, gamma))`` over all runs x tasks (Agarwal et al. 2021): how far
    the algorithm falls short of the target ``gamma`` (1 = the normalised optimum); scores above
    ``gamma`` earn nothing extra. Lower is better."""
    return float(_og_b(_check_array(scores, "scores"), _check_gamma(gamma)))


def _check_pair(x, y, names=("x", "y")) -> tuple[np.ndarray, np.ndarray]:
    xa = _check_array(x, names[0])
    ya = _check_array(y, names[1])
    if xa.shape[1] != ya.shape[1]:
        raise ValueError(f"{names[0]} has {xa.shape[1]} tasks and {names[1]} has {ya.shape[1]}; "
                         "both need the same task columns")
    return xa, ya


def probability_of_improvement(x, y) -> float:
    """Average probability of improvement of X over Y (Agarwal et al. 2021, sec. 4.3): for each
    task ``P(X > Y) = U / (n_x * n_y)`` with ``U`` the Mann-Whitney statistic of X's runs over
    Y's (a tie counts 1/2), averaged over tasks. ``x``: (n_x, T), ``y``: (n_y, T); the run
    counts may differ. 0.5 means no difference; symmetric: ``P(X>Y) + P(Y>X) = 1``."""
    xa, ya = _check_pair(x, y)
    return float(_poi_b(xa, ya))


def performance_profile(scores, taus, *, kind: str = "runs") -> np.ndarray:
    """Performance profile (Agarwal et al. 2021, sec. 4.1): for each ``tau`` in ``taus``, the
    fraction of runs x tasks with score ``> tau`` (``kind="runs"``, the run-score distribution)
    or the fraction of tasks whose mean score over runs is ``> tau`` (``kind="task_means"``)."""
    return _profile_b(_check_array(scores, "scores"), _check_taus(taus), _check_kind(kind))


# --------------------------------------------------------------------------------------------
# the stratified bootstrap
# --------------------------------------------------------------------------------------------


def _name_key(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def _rng(seed: int, *names: str) -> np.random.Generator:
    """The generator for ``seed`` (plain, without names) or for ``seed`` and these algorithm
    names (a stream of its own per name, so one algorithm's interval does not depend on which
    others are in the dict)."""
    if not names:
        return np.random.default_rng(seed)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(_name_key(n) for n in names)))


def _chunk_size(bytes_per_rep: int, reps: int) -> int:
    return int(max(1, min(reps, _CHUNK_BYTES // max(1, bytes_per_rep))))


def _resample(rng: np.random.Generator, x: np.ndarray, c: int) -> np.ndarray:
    """``c`` stratified resamples of ``x`` (R, T): shape (c, R, T); column ``t`` of each holds
    ``R`` runs drawn with replacement from column ``t`` of ``x``."""
    r, t = x.shape
    idx = rng.integers(0, r, size=(c, r, t))
    return x[idx, np.arange(t)]


def _resolve(statistic, gamma: float):
    """``(function, is_named)`` for a statistic name (a batched function) or a callable."""
    if isinstance(statistic, str):
        if statistic in _NAMED:
            return _NAMED[statistic], True
        if statistic == "optimality_gap":
            return (lambda x: _og_b(x, gamma)), True
        raise ValueError(f"statistic must be one of {', '.join(METRICS)} or a callable, got {statistic!r}")
    if callable(statistic):
        return statistic, False
    raise ValueError(f"statistic must be one of {', '.join(METRICS)} or a callable, got {statistic!r}")


def _distribution(x: np.ndarray, fn, batched: bool, reps: int, rng, out_factor: int = 1) -> np.ndarray:
    r, t = x.shape
    # the index array (8 bytes), the gathered resample (8) and a sorted/compared copy (8)
    chunk = _chunk_size(24 * r * t * out_factor, reps)
    parts = []
    done = 0
    while done < reps:
        c = min(chunk, reps - done)
        sample = _resample(rng, x, c)
        if batched:
            parts.append(np.asarray(fn(sample), dtype=float))
        else:
            parts.append(np.stack([np.asarray(fn(s), dtype=float) for s in sample]))
        done += c
    return np.concatenate(parts, axis=0)


def _interval(dist: np.ndarray, alpha: float):
    lo, hi = np.percentile(dist, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return lo, hi


def _as_out(a):
    a = np.asarray(a, dtype=float)
    return float(a) if a.ndim == 0 else a


def bootstrap_distribution(scores, statistic="iqm", *, reps: int = 2000, seed: int = 0,
                           gamma: float = 1.0, batched: bool = False) -> np.ndarray:
    """The stratified-bootstrap distribution of ``statistic`` on ``scores`` (n_runs, n_tasks):
    ``reps`` replicates, each computed on a resample that draws, independently within every task
    column, ``n_runs`` runs with replacement (Agarwal et al. 2021, sec. 3). Returns shape
    ``(reps,)`` (or ``(reps, k)`` for a vector statistic).

    ``statistic``: ``"iqm"``, ``"mean"``, ``"median"``, ``"optimality_gap"`` (with ``gamma``) or a
    callable taking one ``(n_runs, n_tasks)`` array and returning a number or 1-D array; with
    ``batched=True`` the callable instead receives a ``(c, n_runs, n_tasks)`` stack of resamples
    and returns ``(c,)`` or ``(c, k)``."""
    x = _check_array(scores, "scores")
    fn, named = _resolve(statistic, _check_gamma(gamma))
    return _distribution(x, fn, named or batched, _check_reps(reps), _rng(_check_seed(seed)))


def stratified_bootstrap_ci(scores, statistic="iqm", *, reps: int = 2000, alpha: float = 0.05,
                            seed: int = 0, gamma: float = 1.0, batched: bool = False):
    """Point estimate and stratified-bootstrap percentile interval of ``statistic`` (Agarwal et
    al. 2021, NeurIPS; ``rliable.library.get_interval_estimates`` with ``method="percentile"``).

    ``scores``: one ``(n_runs, n_tasks)`` array -> an :class:`Estimate`; or a dict of algorithm
    name -> array -> a dict of name -> :class:`Estimate` (each algorithm its own random stream,
    derived from ``seed`` and its name). The interval is ``[q(alpha/2), q(1 - alpha/2)]`` of the
    bootstrap distribution (:func:`bootstrap_distribution`, same ``statistic`` / ``batched``
    conventions). With one run per task every resample equals the data: a zero-width interval.
    """
    reps = _check_reps(reps)
    alpha = _check_alpha(alpha)
    seed = _check_seed(seed)
    fn, named = _resolve(statistic, _check_gamma(gamma))
    is_batched = named or batched

    def one(x, rng):
        point = np.asarray(fn(x[None]) if is_batched else fn(x), dtype=float)
        if is_batched:
            point = point[0]
        dist = _distribution(x, fn, is_batched, reps, rng)
        lo, hi = _interval(dist, alpha)
        return Estimate(_as_out(point), _as_out(lo), _as_out(hi))

    if isinstance(scores, Mapping):
        d = _check_dict(scores)
        return {alg: one(x, _rng(seed, alg)) for alg, x in d.items()}
    return one(_check_array(scores, "scores"), _rng(seed))


def _poi_distribution(x: np.ndarray, y: np.ndarray, reps: int, rng) -> np.ndarray:
    m, t = x.shape
    n = y.shape[0]
    # indices and gathers of both (16 bytes each) plus two (m, n, T) comparison arrays
    chunk = _chunk_size(16 * (m + n) * t + 2 * 8 * m * n * t, reps)
    parts = []
    done = 0
    while done < reps:
        c = min(chunk, reps - done)
        xs = _resample(rng, x, c)
        ys = _resample(rng, y, c)
        parts.append(_poi_b(xs, ys))
        done += c
    return np.concatenate(parts)


def probability_of_improvement_ci(x, y, *, reps: int = 2000, alpha: float = 0.05, seed: int = 0) -> Estimate:
    """:func:`probability_of_improvement` of X over Y with its stratified-bootstrap percentile
    interval: within each task the runs of X and the runs of Y are resampled with replacement
    independently of each other (``rliable``'s ``StratifiedIndependentBootstrap``)."""
    reps = _check_reps(reps)
    alpha = _check_alpha(alpha)
    seed = _check_seed(seed)
    xa, ya = _check_pair(x, y)
    return _poi_ci(xa, ya, reps, alpha, _rng(seed))


def _poi_ci(x: np.ndarray, y: np.ndarray, reps: int, alpha: float, rng) -> Estimate:
    lo, hi = _interval(_poi_distribution(x, y, reps, rng), alpha)
    return Estimate(float(_poi_b(x, y)), float(lo), float(hi))


def performance_profile_ci(scores, taus, *, kind: str = "runs", reps: int = 2000,
                           alpha: float = 0.05, seed: int = 0):
    """:func:`performance_profile` at ``taus`` with pointwise stratified-bootstrap percentile
    bands (Agarwal et al. 2021, Fig. 5 style). ``scores``: one array -> :class:`Estimate` of
    ``(len(taus),)`` arrays; a dict -> dict of name -> :class:`Estimate`."""
    t = _check_taus(taus)
    kind = _check_kind(kind)
    return stratified_bootstrap_ci(scores, lambda x: _profile_b(x, t, kind), reps=reps, alpha=alpha,
                                   seed=seed, batched=True)


def per_task_means(scores: Mapping, labels: Sequence[str] | None = None, *, reps: int = 2000,
                   alpha: float = 0.05, seed: int = 0) -> dict:
    """Per-task (column) mean over runs with a bootstrap percentile interval for each algorithm,
    in the format :func:`plot_benchmark` takes: ``{alg: (labels, point (T,), ci (T, 2))}``.
    ``labels`` default to ``"task 0"``, ``"task 1"``, ..."""
    d = _check_dict(scores)
    n_tasks = next(iter(d.values())).shape[1]
    if labels is None:
        labels = [f"task {i}" for i in range(n_tasks)]
    labels = [str(s) for s in labels]
    if len(labels) != n_tasks:
        raise ValueError(f"labels has {len(labels)} entries but the scores have {n_tasks} task columns")
    est = stratified_bootstrap_ci(d, _task_means_b, reps=reps, alpha=alpha, seed=seed, batched=True)
    return {alg: (list(labels), np.atleast_1d(e.point), np.stack([np.atleast_1d(e.low), np.atleast_1d(e.high)], axis=1))
            for alg, e in est.items()}


# --------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------


def _triple(point, lo, hi) -> dict:
    return {"point": float(point), "low": float(lo), "high": float(hi)}


def aggregate_table(scores: Mapping, baseline_names: Sequence[str] | None = None, *, reps: int = 2000,
                    alpha: float = 0.05, seed: int = 0, gamma: float = 1.0) -> dict:
    """IQM, mean, median and optimality gap of every algorithm, each with its stratified-bootstrap
    percentile interval, and the probability of improvement of every algorithm over every
    baseline with its interval (Agarwal et al. 2021, NeurIPS). The four metrics of one algorithm
    are computed on the same bootstrap resamples.

    ``baseline_names``: the algorithms to compare against (each must be a key of ``scores``);
    ``None`` compares every algorithm with every other one; ``()`` skips the comparisons.

    Returns a JSON-ready dict::

        {"method": "stratified bootstrap, percentile interval", "reps", "alpha", "seed", "gamma",
         "n_tasks", "algorithms": [names in the order given],
         "metrics": {alg: {"n_runs": int, "iqm": {"point", "low", "high"}, "mean": ...,
                           "median": ..., "optimality_gap": ...}},
         "poi": [{"algorithm", "baseline", "point", "low", "high"}, ...]}
    """
    d = _check_dict(scores)
    reps = _check_reps(reps)
    alpha = _check_alpha(alpha)
    seed = _check_seed(seed)
    gamma = _check_gamma(gamma)
    algs = list(d)
    if baseline_names is None:
        baselines = algs
    else:
        if isinstance(baseline_names, str):
            baseline_names = [baseline_names]
        baselines = list(baseline_names)
        unknown = [b for b in baselines if b not in d]
        if unknown:
            raise ValueError(f"baseline_names {unknown} are not keys of scores (known: {', '.join(algs)})")
    metrics = {}
    for alg, x in d.items():
        fn = lambda s: _all_metrics_b(s, gamma)  # noqa: E731
        point = fn(x[None])[0]
        dist = _distribution(x, fn, True, reps, _rng(seed, alg), out_factor=2)
        lo, hi = _interval(dist, alpha)
        row = {"n_runs": int(x.shape[0])}
        for i, name in enumerate(METRICS):
            row[name] = _triple(point[i], lo[i], hi[i])
        metrics[alg] = row
    poi = []
    for alg in algs:
        for base in baselines:
            if base == alg:
                continue
            e = _poi_ci(d[alg], d[base], reps, alpha, _rng(seed, alg, base))
            poi.append({"algorithm": alg, "baseline": base, **_triple(*e)})
    return {"method": "stratified bootstrap, percentile interval", "reps": reps, "alpha": alpha,
            "seed": seed, "gamma": gamma, "n_tasks": int(next(iter(d.values())).shape[1]),
            "algorithms": algs, "metrics": metrics, "poi": poi}


def _fmt(e: dict) -> str:
    return f"{e['point']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"


def format_aggregate_table(table: dict) -> str:
    """A plain-text rendering of :func:`aggregate_table`'s result: one line per algorithm with
    each metric as ``point [low, high]``, then one line per (algorithm, baseline) pair."""
    level = round(100 * (1 - table["alpha"]), 6)
    level = int(level) if float(level).is_integer() else level
    head = ["algorithm", "runs", "IQM", "mean", "median", "optimality gap"]
    rows = []
    for alg in table["algorithms"]:
        m = table["metrics"][alg]
        rows.append([alg, str(m["n_runs"])] + [_fmt(m[k]) for k in METRICS])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = [f"Aggregates over {table['n_tasks']} task columns ({level}% stratified-bootstrap percentile "
             f"intervals, {table['reps']} resamples, seed {table['seed']}; optimality gap at "
             f"gamma={table['gamma']:g}, lower is better)"]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    if table["poi"]:
        lines.append("")
        lines.append("Probability of improvement P(algorithm > baseline) (0.5 = no difference)")
        wa = max(len(p["algorithm"]) for p in table["poi"])
        wb = max(len(p["baseline"]) for p in table["poi"])
        for p in table["poi"]:
            lines.append(f"{p['algorithm'].ljust(wa)}  over  {p['baseline'].ljust(wb)}  {_fmt(p)}")
    return "\n".join(line.rstrip() for line in lines)


# --------------------------------------------------------------------------------------------
# the figure
# --------------------------------------------------------------------------------------------


def _check_per_task(per_task) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    if not isinstance(per_task, Mapping) or not per_task:
        raise ValueError("per_task must be a non-empty dict of algorithm -> (labels, point (T,), ci (T, 2))")
    algs = list(per_task)
    labels0 = None
    points, cis = [], []
    for alg in algs:
        entry = per_task[alg]
        if not isinstance(entry, (tuple, list)) or len(entry) != 3:
            raise ValueError(f"per_task[{alg!r}] must be a tuple (labels, point, ci)")
        labels, point, ci = entry
        labels = [str(s) for s in labels]
        point = np.asarray(point, dtype=float)
        ci = np.asarray(ci, dtype=float)
        if labels0 is None:
            labels0, first = labels, alg
        elif labels != labels0:
            raise ValueError(f"per_task[{alg!r}] has task labels {labels} but per_task[{first!r}] has "
                             f"{labels0}; every algorithm needs the same task columns in the same order")
        t = len(labels)
        if t == 0:
            raise ValueError(f"per_task[{alg!r}] has no task labels")
        if point.shape != (t,):
            raise ValueError(f"per_task[{alg!r}] point must have shape ({t},) to match its labels, got {point.shape}")
        if ci.shape != (t, 2):
            raise ValueError(f"per_task[{alg!r}] ci must have shape ({t}, 2), got {ci.shape}")
        # a column an algorithm was not run on is NaN in the point and both bounds (no bar)
        absent = np.isnan(point) & np.isnan(ci).all(axis=-1) if ci.shape == (t, 2) else np.zeros(t, bool)
        if not (np.isfinite(point[~absent]).all() and np.isfinite(ci[~absent]).all()):
            raise ValueError(f"per_task[{alg!r}] has a non-finite point or interval bound (a column without a run "
                             "is NaN in the point and both bounds)")
        if absent.all():
            raise ValueError(f"per_task[{alg!r}] has no column with a run")
        if (ci[~absent, 0] > ci[~absent, 1]).any():
            raise ValueError(f"per_task[{alg!r}] ci has a lower bound above its upper bound")
        points.append(point)
        cis.append(ci)
    return algs, labels0, np.stack(points), np.stack(cis)


def plot_benchmark(per_task: Mapping, aggregates: dict, path: str | os.PathLike, *,
                   metrics: Sequence[str] = ("iqm", "mean"), profiles: Mapping | None = None,
                   taus=None, title: str | None = None, ylabel: str = "normalised score",
                   layout: str = "auto", dpi: int = 120) -> str:
    """One figure a paper can use (the layout of Agarwal et al. 2021, NeurIPS, Figs. 1 and 9):
    left, per-task grouped bars (one group per task column, one bar per algorithm) with their
    interval as error bars; right, one panel per aggregate metric in ``metrics`` (from
    ``aggregates``, the result of :func:`aggregate_table`) with each algorithm's point and
    interval as a horizontal bar; optionally a performance-profile panel (``profiles``: dict of
    algorithm -> :class:`Estimate` of arrays from :func:`performance_profile_ci`, at ``taus``).
    ``layout``: ``"wide"`` (aggregates right of the bars), ``"tall"`` (aggregates in a row below
    the bars) or ``"auto"`` (wide up to 40 bars, tall beyond).

    ``per_task``: ``{alg: (labels, point (T,), ci (T, 2))}`` (e.g. :func:`per_task_means`; a
    column an algorithm was not run on is NaN in its point and both bounds, and gets no bar); the
    algorithms of ``per_task``, ``aggregates`` (and ``profiles``) must be the same. The file
    format follows the suffix of ``path`` (``.png``, ``.pdf``, ``.svg``); it is written to a
    temporary file in the same directory and moved into place (never half-written). Returns the
    path. Legible up to about 10 algorithms x 15 task columns."""
    algs, labels, points, cis = _check_per_task(per_task)
    if not isinstance(aggregates, Mapping) or "metrics" not in aggregates or "algorithms" not in aggregates:
        raise ValueError("aggregates must be the dict returned by aggregate_table")
    if set(aggregates["algorithms"]) != set(algs):
        raise ValueError(f"aggregates has algorithms {sorted(aggregates['algorithms'])} but per_task has "
                         f"{sorted(algs)}; they must be the same")
    metrics = list(metrics)
    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"metrics must be among {', '.join(METRICS)}, got {m!r}")
    if profiles is not None:
        if taus is None:
            raise ValueError("taus is required with profiles (the thresholds the profiles were computed at)")
        taus_a = _check_taus(taus)
        if not isinstance(profiles, Mapping) or set(profiles) != set(algs):
            raise ValueError("profiles must be a dict with the same algorithms as per_task")
        for alg in algs:
            e = profiles[alg]
            if len(e) != 3 or any(np.shape(v) != taus_a.shape for v in e):
                raise ValueError(f"profiles[{alg!r}] must be (point, low, high) arrays of shape {taus_a.shape}")
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lower().lstrip(".")
    if fmt not in ("png", "pdf", "svg"):
        raise ValueError(f"path must end in .png, .pdf or .svg, got {path!r}")

    if layout not in ("auto", "wide", "tall"):
        raise ValueError(f"layout must be 'auto', 'wide' or 'tall', got {layout!r}")
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ar_envs.fileio import atomic_path

    n_alg, n_task = points.shape
    if layout == "auto":
        layout = "wide" if n_alg * n_task <= 40 else "tall"
    cmap = colormaps["tab10" if n_alg <= 10 else "tab20"]
    colors = [cmap(i % cmap.N) for i in range(n_alg)]
    n_side = len(metrics) + (1 if profiles is not None else 0)
    bar_w_in = max(5.0, 0.11 * n_alg * n_task + 1.5)
    side_h = max(2.6, 0.28 * n_alg + 1.0)
    if layout == "wide":  # bars left, the aggregate panels to their right
        fig = Figure(figsize=(min(30.0, bar_w_in + 2.6 * n_side), max(4.2, side_h)), dpi=dpi, layout="constrained")
        gs = fig.add_gridspec(1, 1 + n_side, width_ratios=[bar_w_in] + [2.4] * n_side)
        bar_spec, side_specs = gs[0, 0], [gs[0, 1 + j] for j in range(n_side)]
    else:  # bars across the top, the aggregate panels in a row below
        fig_w = min(24.0, max(bar_w_in, 3.2 * n_side + 2.0))
        fig = Figure(figsize=(fig_w, 4.2 + side_h + 1.0), dpi=dpi, layout="constrained")
        gs = fig.add_gridspec(2, n_side, height_ratios=[4.2, side_h])
        bar_spec, side_specs = gs[0, :], [gs[1, j] for j in range(n_side)]
    FigureCanvasAgg(fig)

    ax = fig.add_subplot(bar_spec)
    group = 0.82
    w = group / n_alg
    xs = np.arange(n_task)
    for i, alg in enumerate(algs):
        pos = xs - group / 2 + (i + 0.5) * w
        err = np.abs(np.stack([points[i] - cis[i, :, 0], cis[i, :, 1] - points[i]]))
        ax.bar(pos, points[i], width=w, color=colors[i], label=alg, edgecolor="none")
        ax.errorbar(pos, points[i], yerr=err, fmt="none", ecolor="black", elinewidth=0.7, capsize=1.5 if n_alg <= 6 else 0)
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, rotation=40 if n_task > 4 else 0, ha="right" if n_task > 4 else "center", fontsize=8)
    ax.set_xlim(-0.6, n_task - 0.4)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title("per task (95% intervals)" if title is None else title, fontsize=10)
    # the legend across the top of the figure (inside the bars' axes it would steal their width)
    fig.legend(*ax.get_legend_handles_labels(), ncol=min(n_alg, 6), fontsize=7, frameon=False, loc="outside upper center")

    names = {"iqm": "IQM", "mean": "mean", "median": "median", "optimality_gap": "optimality gap"}
    ys = np.arange(n_alg)[::-1]
    for j, m in enumerate(metrics):
        a = fig.add_subplot(side_specs[j])
        for i, alg in enumerate(algs):
            e = aggregates["metrics"][alg][m]
            a.plot([e["low"], e["high"]], [ys[i], ys[i]], color=colors[i], linewidth=6, alpha=0.55,
                   solid_capstyle="butt")
            a.plot([e["point"]], [ys[i]], marker="|", color="black", markersize=11)
        a.set_yticks(ys)
        a.set_yticklabels(algs if j == 0 else [""] * n_alg, fontsize=8)
        a.set_ylim(-0.7, n_alg - 0.3)
        a.set_title(names[m] + (" (lower is better)" if m == "optimality_gap" else ""), fontsize=10)
        a.grid(axis="x", alpha=0.3)
        a.set_xlabel("score", fontsize=8)
        a.tick_params(axis="x", labelsize=8)
    if profiles is not None:
        a = fig.add_subplot(side_specs[-1])
        for i, alg in enumerate(algs):
            p, lo, hi = (np.asarray(v, dtype=float) for v in profiles[alg])
            a.plot(taus_a, p, color=colors[i], linewidth=1.3)
            a.fill_between(taus_a, lo, hi, color=colors[i], alpha=0.18, linewidth=0)
        a.set_xlabel("tau", fontsize=8)
        a.set_ylabel("fraction of runs with score > tau", fontsize=8)
        a.set_title("performance profile", fontsize=10)
        a.set_ylim(-0.02, 1.02)
        a.grid(alpha=0.3)
        a.tick_params(labelsize=8)

    with atomic_path(path, suffix="." + fmt) as tmp:
        fig.savefig(tmp, format=fmt, bbox_inches="tight", metadata={"Software": None} if fmt == "png" else None)
    return path
