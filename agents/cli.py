"""The ``ar-envs`` command line: ``list``, ``sweep``, ``report``, ``demo``, ``bench``."""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys

DEMO_HORIZONS = "2,5,10,20,50,100,200,500"
DEMO_ALGORITHMS = "bc,smoothed-bc,hellinger-bc,rho,dagger"
DEMO_BLOCKS = (4, 16)
DEMO_DELTA = 0.01
DEMO_RARE_HORIZONS = "1,2,5,10,20"
# ar_agents.policies.POLICY_KINDS, spelt out so that the parser does not import torch (a test checks they agree)
POLICY_KIND_CHOICES = ("linear", "mlp", "transformer", "hf:gpt2", "hf:llama", "hf:mamba")


def _first_line(doc: str | None) -> str:
    """The first line of a docstring, without its RST literal markup."""
    for line in (doc or "").strip().splitlines():
        if line.strip():
            return line.strip().replace("``", "")
    return ""


def cmd_list(args) -> int:
    import gymnasium as gym

    import ar_envs
    from ar_agents.algorithms.base import _registry

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
    from ar_agents.evaluation.sweep import sweep

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
        threads=args.threads,
        progress=not args.quiet,
        backend=getattr(args, "backend", "local"),
        address=getattr(args, "address", None),
    )


def _fmt(value) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def build_algorithms(names: str, policy: str | None = None, policy_args: dict | None = None,
                     algo_args: dict | None = None) -> list:
    """The ``--algorithms`` list, as instances built with ``--policy`` / ``--policy-arg`` /
    ``--algo-arg`` where those apply (an algorithm whose constructor takes ``policy``, resp. the
    named argument); the others stay names. An instance's label (the ``algorithm`` field of its
    records) lists what it was built with, e.g. ``bc[transformer(n_layer=2),epochs=5]``, so that
    cells with different options never count as the same finished cell."""
    import inspect
    import sys

    from ar_agents.algorithms.base import _registry, load_algorithm

    policy_args, algo_args = dict(policy_args or {}), dict(algo_args or {})
    names = [a.strip() for a in names.split(",") if a.strip()] if isinstance(names, str) else list(names)
    if policy_args and policy is None:
        raise ValueError("--policy-arg needs --policy (the policy class the arguments are for)")
    if policy is None and not algo_args:
        return names
    reg = _registry()
    out, used, took_policy = [], set(), []
    for name in names:
        cls = reg.get(name)
        if cls is None and ":" in name:
            cls = load_algorithm(name)  # refuses what is not an algorithm before using it
        if not isinstance(cls, type):
            if cls is None:
                raise ValueError(f"unknown algorithm {name!r}; choose one of {sorted(reg)} or give package.module:Name")
            out.append(name)  # a plain function: nothing to pass
            continue
        params = inspect.signature(cls.__init__).parameters
        accepted = set(params) - {"self"}
        kwargs = {k: v for k, v in algo_args.items() if k in accepted}
        for k, v in kwargs.items():
            _check_like_default(f"--algo-arg {k}", v, params[k].default)
        used |= set(kwargs)
        parts = []
        if policy is not None and "policy" in accepted:
            kwargs["policy"] = policy
            if policy_args:
                kwargs["policy_args"] = policy_args
            took_policy.append(name)
            inner = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(policy_args.items()))
            parts.append(f"{policy}({inner})" if inner else policy)
        elif policy is not None:
            print(f"note: --policy {policy} does not apply to {name} (it has no neural version)", file=sys.stderr)
        if not kwargs:
            out.append(name)
            continue
        parts += [f"{k}={_fmt(v)}" for k, v in sorted(kwargs.items()) if k not in ("policy", "policy_args")]
        try:
            alg = cls(**kwargs)
        except TypeError as exc:
            raise ValueError(f"algorithm {name!r} rejected {sorted(kwargs)}: {exc}") from None
        alg.name = f"{name}[{','.join(parts)}]"
        out.append(alg)
    unused = sorted(set(algo_args) - used)
    if unused:
        raise ValueError(f"--algo-arg {', '.join(unused)} is not an argument of any of the algorithms {names}")
    if policy is not None and not took_policy:
        raise ValueError(f"--policy applies to algorithms with a neural version; none of {names} has one")
    return out


def _check_like_default(name: str, value, default) -> None:
    """A value given on the command line must have its argument's default's type (an integer
    where the default is an integer, a number where it is a float, ...): ``max_iter=abc`` is
    refused here, not as a TypeError deep inside the first cell. Arguments without a typed
    default are left to the constructor."""
    if default is None or default is inspect.Parameter.empty or value is None:
        return
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(type(default))
    if kind is None:
        return
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}[type(default)](value)
    if not ok:
        raise ValueError(f"{name} must be {kind} (its default is {default!r}), got {value!r}")


def cmd_sweep(args) -> int:
    from ar_agents.evaluation.sweep import parse_name_values, parse_task_args

    task_args = parse_task_args(args.task_arg)
    algorithms = build_algorithms(args.algorithms, args.policy, parse_name_values(args.policy_arg, "--policy-arg"),
                                  parse_name_values(args.algo_arg, "--algo-arg"))
    _run_sweep(args, args.task, task_args, args.horizons, algorithms)
    print(f"results in {args.out}; next: ar-envs report {args.out}")
    return 0


def _print_report(results: str, plots: str | None) -> int:
    from ar_agents.evaluation.report import report

    text, written = report(results, plots)  # a missing or foreign file raises ValueError
    print(text)
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_report(args) -> int:
    _check_plots_dir(args.plots)
    return _print_report(args.results, args.plots)


def demo_algorithms() -> list:
    """The demo's learners: the per-token objectives, interaction, the rho-estimator and the
    block-Hellinger K-knob at two block lengths (names as in the records)."""
    from ar_agents.algorithms import BlockHellinger

    knobs = []
    for K in DEMO_BLOCKS:
        alg = BlockHellinger(block=K)
        alg.name = f"block-hellinger[K={K}]"
        knobs.append(alg)
    return DEMO_ALGORITHMS.split(",") + knobs


def _check_plots_dir(plots: str | None) -> None:
    """``--plots`` must be a directory we can write to (or one we can create): checked before
    any work, with a one-line error."""
    if plots is None:
        return
    if plots == "":
        raise ValueError("--plots must be a directory path, got ''")
    if os.path.exists(plots) and not os.path.isdir(plots):
        raise ValueError(f"--plots {plots} is not a directory")
    existing = plots
    while not os.path.exists(existing):  # the nearest existing ancestor must be writable
        existing = os.path.dirname(os.path.abspath(existing))
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--plots {plots}: cannot write there ({existing} is not a writable directory)")


def cmd_demo(args) -> int:
    eps = 0.01
    task_args = {"eps": eps, "offset": math.log(1.0 / (0.3 * eps))}
    print(
        "ar-envs demo: error amplification of next-token prediction on TwoBranch "
        f"(eps={eps}, offset c=log(1/(0.3 eps))={task_args['offset']:.3f}), H={DEMO_HORIZONS}, and log loss failing "
        f"on RareToken (delta={DEMO_DELTA}), H={DEMO_RARE_HORIZONS}; {args.seeds} seeds x {args.samples} demonstrations, "
        f"algorithms {DEMO_ALGORITHMS} and block-hellinger K={','.join(map(str, DEMO_BLOCKS))}",
        file=sys.stderr,
    )
    _check_plots_dir(args.plots)
    _run_sweep(args, "two-branch", task_args, DEMO_HORIZONS, demo_algorithms())
    _run_sweep(args, "rare-token", {"delta": DEMO_DELTA}, DEMO_RARE_HORIZONS, demo_algorithms())
    return _print_report(args.out, args.plots)


def _check_benchmark_plot(plot: str, suite, results: list) -> None:
    """``--plot``: a .png, .pdf or .svg path in a directory we can write to, whose figures
    (``<stem>-<group><ext>``) are none of the results files; checked before any cell runs."""
    stem, ext = os.path.splitext(plot)
    if ext.lower() not in ("", ".png", ".pdf", ".svg"):
        raise ValueError(f"--plot must end in .png, .pdf or .svg, got {plot!r}")
    try:
        _check_plots_dir(os.path.dirname(os.path.abspath(plot)))
    except ValueError as exc:
        raise ValueError(str(exc).replace("--plots", "--plot", 1)) from None
    taken = {os.path.realpath(r) for r in results if r}
    for group in suite.groups:
        figure = f"{stem}-{group}{ext or '.png'}"
        if os.path.realpath(figure) in taken:
            raise ValueError(f"--plot {plot!r} would overwrite the results file {figure} with a figure; choose another --plot")


def cmd_benchmark(args) -> int:
    from ar_agents.evaluation import benchmark as bm
    from ar_agents.evaluation.sweep import parse_name_values
    from ar_envs.core import check_int

    suite = bm.load_suite(args.suite)
    tasks = args.tasks
    selected = suite.select(tasks)
    if args.list:
        print(f"suite {suite.name} ({suite.path}): {suite.description}")
        for t in selected:
            algs = ", ".join(a.label for a in t.algorithms)
            print(f"  {t.id:<15} {t.task} {json.dumps(t.task_args, sort_keys=True)} horizons={list(t.horizons)} "
                  f"seeds={t.seeds} n={t.n_samples} metric={t.metric} policy={t.policy or 'log-linear'}: {algs}")
        print(f"  {suite.cell_count(tasks)} reference cells")
        return 0
    reps = check_int("--reps", args.reps, 100, 100_000)
    for flag in ("out", "plot", "reference_results"):
        if getattr(args, flag) == "":  # an empty path is a mistake, not the default
            raise ValueError(f"--{flag.replace('_', '-')} must be a file path, got ''")
    algs = [a.strip() for item in args.algorithm for a in item.split(",") if a.strip()]
    if args.algorithm and not algs:
        raise ValueError("--algorithm must name an algorithm (a registry name or package.module:Name)")
    if args.reference and args.reference_results is not None:
        raise ValueError("--reference makes reference results (in --out); --reference-results names ones to compare with")
    if args.reference and algs:
        raise ValueError("--reference runs the suite's own algorithms; give it without --algorithm")
    if args.algo_arg and not algs:
        raise ValueError("--algo-arg applies to the algorithms of --algorithm")
    algo_args = parse_name_values(args.algo_arg, "--algo-arg")
    run = dict(tasks=tasks, workers=args.workers, threads=args.threads, progress=not args.quiet,
               backend=args.backend, address=args.address)
    _, ref_labels = bm.suite_jobs(suite, None, tasks)
    if algs:  # bad algorithms and arguments fail before anything runs
        _, user_labels = bm.suite_jobs(suite, algs, tasks, algo_args)
    sources, user = [], []
    out = args.out
    if args.reference:
        out = out or os.path.join("results", f"{suite.name}-reference.jsonl")
    elif algs:
        out = out or os.path.join("results", f"{suite.name}-benchmark.jsonl")
    plot = args.plot or os.path.join(os.path.dirname(os.path.abspath(out)) if out else "results", f"{suite.name}-benchmark.png")
    _check_benchmark_plot(plot, suite, [out, args.reference_results])  # before anything runs
    if args.reference:
        ref = bm.run_benchmark(suite, None, out=out, **run)
    else:
        try:  # a file given by name must hold what it is for
            ref = bm.reference_records(suite, args.reference_results)
        except ValueError as exc:
            raise ValueError(f"--reference-results {exc}") from None
        if not ref:
            where = args.reference_results or bm.reference_path(suite)
            print(f"note: no reference results of {suite.name} in {where}; "
                  f"make them with: ar-envs benchmark --suite {args.suite} --reference", file=sys.stderr)
    sources.append((ref, ref_labels))
    if algs:
        shown = {ref_labels[r["algorithm"]] for r in ref if r.get("algorithm") in ref_labels}  # rows of the reference
        clash = set(user_labels.values()) & shown
        user_labels = {k: (f"{v} (yours)" if v in clash else v) for k, v in user_labels.items()}
        recs = bm.run_benchmark(suite, algs, algo_args=algo_args, out=out, **run)
        sources.append((recs, user_labels))
        user = list(dict.fromkeys(user_labels.values()))
    names = [f"--reference-results {args.reference_results or bm.reference_path(suite)}" if not args.reference
             else f"--out {out}", f"--out {out}"]
    table = bm.collect(suite, sources, tasks, user=user, names=names)
    aggs = bm.aggregates(table, reps=reps)
    text = bm.format_comparison(table, aggs, reps=reps)
    if not args.algorithm and not args.reference and ref:
        made = {json.dumps(r.get("provenance", {}), sort_keys=True) for r in ref}
        text += "\n\nreference results made by: " + "; ".join(sorted(made))
    print(text)
    if table.algorithms:
        print("\nplots: " + ", ".join(bm.plot_comparison(table, aggs, plot, reps=reps)))
    return 0


def cmd_bench(args) -> int:
    from ar_agents.evaluation.bench import run_args

    return run_args(args) or 0


def _add_run_options(p, out_default: str, seeds: int, samples: int):
    p.add_argument("--seeds", type=int, default=seeds, help="number of seeds (0..N-1) per cell")
    p.add_argument("--samples", type=int, default=samples, help="expert demonstrations per cell")
    p.add_argument("--eval-samples", type=int, default=20_000, help="expert samples for Monte-Carlo metrics (when not exact)")
    p.add_argument("--out", default=out_default, help="results file (JSON lines; appended to, finished cells skipped)")
    _add_engine_options(p)


def _add_engine_options(p):
    """Where and how cells run, and the progress shown: shared by sweep, demo and benchmark."""
    p.add_argument("--workers", type=int, default=None,
                   help="cells run in parallel (same numbers as one): local processes (default 1), or the CPUs x "
                        "--threads of a local Ray (default: all cores)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per cell, the same whatever --workers is (keep workers x threads <= CPUs)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where cells run: this machine's processes, or Ray tasks (pip install 'ar-envs[ray]'; "
                        "a local Ray, or the cluster at --address)")
    p.add_argument("--address", default=None,
                   help="an existing Ray cluster for --backend ray: 'auto' (the one `ray start --head` started "
                        "on this machine) or host:port; every node needs ar-envs installed")
    p.add_argument("--quiet", action="store_true",
                   help="hide the progress (shown otherwise: a bar on a terminal, elsewhere one line per finished cell)")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, ``(default: ...)``, unless its help already says it or there
    is none to show (``None``, ``False``, an empty list)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, []) or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ar-envs", description=__doc__.replace("``", ""), formatter_class=_HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", formatter_class=_HelpFormatter, help="tasks, environment ids and algorithms, one line each")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("sweep", formatter_class=_HelpFormatter, help="run the horizon sweep, appending one JSON line per cell")
    p.add_argument("--task", required=True, help="task name (see `ar-envs list`) or package.module:Class")
    p.add_argument("--task-arg", action="append", default=[], metavar="NAME=VALUE", help="task argument (repeatable)")
    p.add_argument("--horizons", required=True,
                   help="comma-separated horizons, e.g. 10,50,100: the values of the task's horizon argument "
                        "(horizon; path-star: path_length, multiplication: digits, parity: n_bits)")
    p.add_argument("--algorithms", required=True, help="comma-separated names or package.module:Name")
    p.add_argument("--policy", choices=POLICY_KIND_CHOICES, default=None,
                   help="neural policy class for the algorithms that train one (bc then trains it instead of the log-linear "
                        "class); hf:* are Hugging Face transformers models (pip install 'ar-envs[hf]')")
    p.add_argument("--policy-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="policy constructor argument, e.g. n_layer=2 (repeatable; needs --policy; hf:* also take "
                        "fields of the model's transformers config, e.g. state_size=8)")
    p.add_argument("--algo-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="algorithm constructor argument, e.g. epochs=5 (repeatable; given to each algorithm that takes it)")
    _add_run_options(p, "results.jsonl", seeds=3, samples=1000)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", formatter_class=_HelpFormatter, help="table and log-log plots of C(H) and D_H^2(H) from a results file")
    p.add_argument("results", help="a results file written by `ar-envs sweep`")
    p.add_argument("--plots", default=None, help="directory for the PNG plots (default: next to the results file)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", formatter_class=_HelpFormatter,
                       help="two-branch (eps=0.01, H=2..500) and rare-token (delta=0.01, H=1..20) sweeps: "
                            "BC vs robust vs dagger vs rho vs the block K-knob; table and plots")
    _add_run_options(p, "results/demo.jsonl", seeds=5, samples=1000)
    p.add_argument("--plots", default="results", help="directory for the PNG plots")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("benchmark", formatter_class=_HelpFormatter,
                       help="the fixed suite (arb-v1): your algorithm against the shipped reference results, per task and aggregated")
    p.add_argument("--suite", default="arb-v1", help="a shipped suite name or a suite .json file")
    p.add_argument("--algorithm", action="append", default=[], metavar="SPEC",
                   help="your algorithm: package.module:Name (or a shipped name); repeatable or comma-separated")
    p.add_argument("--algo-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="constructor argument of the --algorithm algorithms (repeatable)")
    p.add_argument("--tasks", default=None, help="comma-separated task ids of the suite (default: all; see --list)")
    p.add_argument("--reference", action="store_true",
                   help="run the suite's own algorithms (this is how the shipped reference results are made)")
    p.add_argument("--reference-results", default=None,
                   help="a results file of reference runs to compare with (default: the one shipped with the package)")
    p.add_argument("--out", default=None,
                   help="results file (default: results/<suite>-benchmark.jsonl; with --reference results/<suite>-reference.jsonl)")
    p.add_argument("--plot", default=None,
                   help="the figures' path: one figure per group of tasks, <stem>-<group>.png (default: "
                        "<suite>-benchmark.png next to --out, e.g. results/arb-v1-benchmark-misspecified.png)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples for the intervals")
    p.add_argument("--list", action="store_true", help="print the suite's tasks and cells, run nothing")
    _add_engine_options(p)
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("bench", formatter_class=_HelpFormatter, help="environment speed against Gymnasium's CartPole-v1, as ratios measured in one run")
    from ar_agents.evaluation.bench import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "report" and args.plots is None:
        args.plots = os.path.dirname(os.path.abspath(args.results))
    try:
        return args.func(args)
    except (ValueError, TypeError, ImportError) as exc:  # bad input or a missing extra: one clear line, no traceback
        print(f"ar-envs {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # a Ray cell whose worker died on every try: one line (the rest are saved)
        from ar_agents.evaluation.sweep import CellLostError

        if not isinstance(exc, CellLostError):
            raise
        print(f"ar-envs {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback through the worker pool
        saved = " (finished cells are in the results file: rerun the same command to resume)" if args.command in (
            "sweep", "demo", "benchmark") else ""
        print(f"\nar-envs {args.command}: interrupted{saved}", file=sys.stderr)
        return 130
    except OSError as exc:  # a file we could not read or write (the disk, permissions)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"ar-envs {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
