"""The ``ar-envs`` command line: ``list``, ``sweep``, ``report``, ``demo``, ``bench``."""

from __future__ import annotations

import argparse
import math
import os
import sys

DEMO_HORIZONS = "2,5,10,20,50,100,200,500"
DEMO_ALGORITHMS = "bc,smoothed-bc,hellinger-bc,rho"


def _first_line(doc: str | None) -> str:
    for line in (doc or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def cmd_list(args) -> int:
    import gymnasium as gym

    import ar_envs
    from agents.algorithms.base import _registry

    print("tasks (ar-envs sweep --task NAME):")
    for name, cls in ar_envs.TASKS.items():
        print(f"  {name:<20} ar_envs/{cls.env_id:<24} {_first_line(cls.__doc__)}")
    print("\nenvironments (gymnasium.make / make_vec):")
    for env_id in sorted(k for k in gym.registry if k.startswith("ar_envs/")):
        print(f"  {env_id}")
    print("\nalgorithms (ar-envs sweep --algorithms a,b,...; or package.module:Name):")
    for name, cls in _registry().items():
        print(f"  {name:<20} {_first_line(cls.__doc__)}")
    return 0


def _run_sweep(args, task: str, task_args: dict, horizons, algorithms) -> list[dict]:
    from agents.sweep import sweep

    return sweep(
        task,
        horizons,
        algorithms,
        task_args=task_args,
        seeds=args.seeds,
        n_samples=args.samples,
        eval_samples=args.eval_samples,
        out=args.out,
        workers=args.workers,
        progress=not args.quiet,
    )


def cmd_sweep(args) -> int:
    from agents.sweep import parse_task_args

    task_args = parse_task_args(args.task_arg)
    _run_sweep(args, args.task, task_args, args.horizons, args.algorithms)
    print(f"results in {args.out}; next: ar-envs report {args.out}")
    return 0


def cmd_report(args) -> int:
    from agents.report import report

    if not os.path.exists(args.results):
        raise ValueError(f"results file {args.results!r} does not exist")
    text, written = report(args.results, args.plots)
    print(text)
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_demo(args) -> int:
    from agents.report import report

    eps = 0.01
    task_args = {"eps": eps, "offset": math.log(1.0 / (0.3 * eps))}
    print(
        "ar-envs demo: error amplification of next-token prediction on TwoBranch "
        f"(eps={eps}, offset c=log(1/(0.3 eps))={task_args['offset']:.3f}), H={DEMO_HORIZONS}, "
        f"{args.seeds} seeds x {args.samples} demonstrations, algorithms {DEMO_ALGORITHMS}",
        file=sys.stderr,
    )
    _run_sweep(args, "two-branch", task_args, DEMO_HORIZONS, DEMO_ALGORITHMS)
    text, written = report(args.out, args.plots)
    print(text)
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_bench(args) -> int:
    from agents.bench import main as bench_main

    return bench_main(args.bench_args) or 0


def _add_run_options(p, out_default: str, seeds: int, samples: int):
    p.add_argument("--seeds", type=int, default=seeds, help="number of seeds (0..N-1) per cell")
    p.add_argument("--samples", type=int, default=samples, help="expert demonstrations per cell")
    p.add_argument("--eval-samples", type=int, default=20_000, help="expert samples for Monte-Carlo metrics (when not exact)")
    p.add_argument("--out", default=out_default, help="results file (JSON lines; appended to, finished cells skipped)")
    p.add_argument("--workers", type=int, default=1, help="processes running cells in parallel")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ar-envs", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="tasks, environment ids and algorithms, one line each")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("sweep", help="run the horizon sweep, appending one JSON line per cell")
    p.add_argument("--task", required=True, help="task name (see `ar-envs list`) or package.module:Class")
    p.add_argument("--task-arg", action="append", default=[], metavar="NAME=VALUE", help="task argument (repeatable)")
    p.add_argument("--horizons", required=True, help="comma-separated horizons, e.g. 10,50,100")
    p.add_argument("--algorithms", required=True, help="comma-separated names or package.module:Name")
    _add_run_options(p, "results.jsonl", seeds=3, samples=1000)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="table and log-log plots of C(H) and D_H^2(H) from a results file")
    p.add_argument("results", help="a results file written by `ar-envs sweep`")
    p.add_argument("--plots", default=None, help="directory for the PNG plots (default: next to the results file)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="the two-branch sweep (eps=0.01, H=2..500, BC vs robust vs rho), table and plots")
    _add_run_options(p, "results/demo.jsonl", seeds=5, samples=1000)
    p.add_argument("--plots", default="results", help="directory for the PNG plots")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="environment speed against Gymnasium's CartPole-v1, as ratios measured in one run")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="options passed to the benchmark (see ar-envs bench -- --help)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "report" and args.plots is None:
        args.plots = os.path.dirname(os.path.abspath(args.results))
    try:
        return args.func(args)
    except ValueError as exc:  # bad input: one clear line, non-zero exit, no traceback
        print(f"ar-envs {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
