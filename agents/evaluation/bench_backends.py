"""``python -m ar_agents.evaluation.bench_backends``: the Ray backend's cell throughput against the
local process pool, measured in one run.

The same grid of short cells (default: two-branch, eps=0.05, H in 10,20,40,80, smoothed-bc and
dagger, 5 seeds: 40 cells of 0.1-0.5 s) runs through ``run_cells`` with ``--workers`` spawned
processes (``backend="local"``), and as Ray tasks on a local Ray started with ``--workers`` CPUs
(``backend="ray"``). Each timing covers everything a sweep pays once Ray is up: the pool's wall
time includes starting its processes (and their imports), Ray's the first import of the package
in its workers; Ray's own start-up (``ray.init``) is timed separately. Both backends run the grid
``--repeats`` times, interleaved (pool, Ray, pool, Ray, ...; the machine's other load hits both):
throughput ratio = pool time / Ray time, of the first runs (Ray's workers start cold, as in a
sweep) and of the best runs (target >= 0.8 for both).
The records of both are checked to be the same numbers (wall times aside).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

TARGET_RATIO = 0.8


def grid(task: str, task_args: dict, horizons, algorithms, seeds: int, n_samples: int, eval_samples: int) -> list:
    from ar_agents.evaluation.sweep import Cell

    return [(Cell(task, tuple(sorted(task_args.items())), h, a, s, n_samples, eval_samples), a)
            for h in horizons for a in algorithms for s in range(seeds)]


def _same_numbers(a: list[dict], b: list[dict]) -> bool:
    def key(r):
        return (r["horizon"], r["algorithm"], r["seed"])

    def strip(r):
        return {k: v for k, v in r.items() if k not in ("wall_s", "fit_log")}

    return [strip(r) for r in sorted(a, key=key)] == [strip(r) for r in sorted(b, key=key)]


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--workers", type=int, default=2, help="pool processes = Ray CPUs")
    parser.add_argument("--horizons", default="10,20,40,80", help="two-branch horizons")
    parser.add_argument("--algorithms", default="smoothed-bc,dagger")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per (horizon, algorithm)")
    parser.add_argument("--samples", type=int, default=1000, help="demonstrations per cell")
    parser.add_argument("--eval-samples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs of each backend (the best counts)")
    return parser


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="python -m ar_agents.evaluation.bench_backends",
                                                   description=__doc__.split("\n")[0]))
    args = parser.parse_args(argv)
    from ar_envs.core import check_int

    from ar_agents.evaluation.sweep import import_ray, init_ray, parse_horizons, run_cells

    try:
        workers = check_int("--workers", args.workers, 1)
        seeds = check_int("--seeds", args.seeds, 1)
        repeats = check_int("--repeats", args.repeats, 1)
        horizons = parse_horizons(args.horizons)
        algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
        jobs = grid("two-branch", {"eps": 0.05}, horizons, algorithms, seeds, args.samples, args.eval_samples)
        t0 = time.perf_counter()
        ray = import_ray()
        ours = not ray.is_initialized()  # started here: shut down here
        init_ray(workers=workers, threads=1)
    except (ValueError, ImportError) as exc:
        print(f"bench_backends: error: {exc}", file=sys.stderr)
        return 2
    ray_start = time.perf_counter() - t0
    pool_s, ray_s, same = [], [], True
    for _ in range(repeats):
        t = time.perf_counter()
        pool_recs = run_cells(jobs, workers=workers, threads=1, progress=False)
        pool_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        ray_recs = run_cells(jobs, workers=workers, threads=1, progress=False, backend="ray")
        ray_s.append(time.perf_counter() - t)
        same = same and _same_numbers(pool_recs, ray_recs)
    if ours:
        ray.shutdown()
    n = len(jobs)
    pool_best, ray_best = min(pool_s), min(ray_s)
    ratio = pool_best / ray_best
    print(f"backends: {n} cells (two-branch eps=0.05, H={','.join(map(str, horizons))}, {','.join(algorithms)}, "
          f"{seeds} seeds, n={args.samples}), {workers} workers / Ray CPUs, {os.cpu_count()} cores, best of {repeats}")
    print(f"  local pool   {pool_best:7.2f} s  {n / pool_best:6.2f} cells/s   (runs: {', '.join(f'{s:.2f}' for s in pool_s)} s)")
    print(f"  local Ray    {ray_best:7.2f} s  {n / ray_best:6.2f} cells/s   (runs: {', '.join(f'{s:.2f}' for s in ray_s)} s)")
    print(f"  Ray start-up {ray_start:7.2f} s  (ray.init, once per sweep process; not in the times above)")
    cold = pool_s[0] / ray_s[0]
    print(f"  throughput Ray / pool: first runs {cold:.2f} (Ray's workers importing the package), best runs {ratio:.2f} "
          f"(target >= {TARGET_RATIO}: {'ok' if min(cold, ratio) >= TARGET_RATIO else 'BELOW'}); "
          f"same numbers: {'yes' if same else 'NO'}")
    print(f"  a one-off sweep of these cells with Ray's start-up counted: Ray / pool = "
          f"{pool_s[0] / (ray_start + ray_s[0]):.2f} (start-up is paid once: it matters for short sweeps only)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
