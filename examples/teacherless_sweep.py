"""When does teacherless training learn path-star? A sweep with intervals over seeds.

    python examples/teacherless_sweep.py                 # the README's sweep (about 22 min of CPU)
    python examples/teacherless_sweep.py --quick         # a tiny sweep for tests (seconds; shows nothing)
    python examples/teacherless_sweep.py --only l4,l4-4layer --seeds 5 --workers 2

Bachmann & Nagarajan (2024) report that teacherless training (the answer replaced by dummy
tokens in the input, every answer token predicted at once) escapes the "Clever Hans" failure of
teacher forcing in some settings. ``examples/path_star.py`` trains both on G(2, 5) with 20 node
ids and teacherless learns nothing there (exact match 0.000). This script asks where it does
learn: each *setting* (graph size, model size, learning rate, budget) trains, for each seed,

* ``tf``: behavior cloning with teacher forcing on the forward answer (``ar_agents.algorithms.BC``);
* ``tl``: teacherless training (``ar_agents.algorithms.Teacherless``), decoded in one parallel pass;

on the same training graphs and the same initial weights (same seed), and scores both on the same
``--eval-samples`` fresh graphs: ``exact`` (the greedy answer is the path) and ``first`` (answer
position 2, the arm choice). Per setting and method it prints the mean over seeds with a 95%
Student-t interval over seeds (the seed is the unit of replication: each seed draws new training
graphs, new weights and a new minibatch order), clipped to [0, 1], and the per-seed values.
``verdict``: ``TL > TF`` when teacherless's interval lies entirely above teacher forcing's,
``TF > TL`` for the reverse, ``overlap`` otherwise.

The settings (``SETTINGS``) vary one thing at a time around G(2, 3) with 10 node ids and our
2-layer GPT of width 64 (Adam 3e-3, about 1000 steps of 64 graphs): the path length (it sets how
many lookups the first decision needs: position 2 is ``l - 2`` parent lookups back from the
goal), the learning rate, the budget (fewer and more steps) and, on G(2, 4), the depth. ``--only`` picks some of them by name. Every training
run uses 1 torch thread; ``--workers`` runs that many training runs at once (processes).
Same ``--seeds``, same numbers, whatever ``--workers``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

# name -> setting. Base: G(2, 3), N = 10, GPT 2 x 64 (4 heads), Adam 3e-3, 4000 graphs x 16 epochs, batch 64
BASE = dict(degree=2, path_length=3, num_nodes=10, n_layer=2, n_embd=64, n_head=4, lr=3e-3, train_samples=4000,
            epochs=16, batch_size=64)
SETTINGS = {
    "l3": {},
    "l3-lr1e-3": dict(lr=1e-3),
    "l3-short": dict(epochs=6),
    "l4": dict(path_length=4),
    "l4-4layer": dict(path_length=4, n_layer=4),
    "l3-long": dict(train_samples=12_000, epochs=12),
}
QUICK_BASE = dict(degree=2, path_length=3, num_nodes=6, n_layer=1, n_embd=16, n_head=2, lr=1e-3, train_samples=64,
                  epochs=1, batch_size=32)
QUICK_SETTINGS = {"quick-l3": {}, "quick-l4": dict(path_length=4, num_nodes=8)}
METHODS = ("tf", "tl")


def t95(df: int) -> float:
    """Two-sided 95% Student-t quantile with ``df`` degrees of freedom (``inf`` for ``df < 1``)."""
    from ar_agents.evaluation.report import t95 as table

    return table(df)


def seed_interval(values) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean over seeds and its 95% Student-t interval, clipped to [0, 1]
    (one value: the interval is [0, 1], nothing is known about the spread)."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, 0.0, 1.0
    half = t95(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def verdict(tf: tuple[float, float, float], tl: tuple[float, float, float]) -> str:
    """``TL > TF`` / ``TF > TL`` when one 95% interval lies entirely above the other, else ``overlap``."""
    if tl[1] > tf[2]:
        return "TL > TF"
    if tf[1] > tl[2]:
        return "TF > TL"
    return "overlap"


def run_one(job: tuple) -> dict:
    """Train one method on one setting and seed; its scores on fresh graphs (1 torch thread)."""
    name, setting, method, seed, eval_samples = job
    import torch

    from ar_agents.algorithms import BC, Teacherless
    from ar_envs.data import generate
    from ar_envs.diagnostics import reasoning_report
    from ar_envs.tasks import PathStar

    torch.set_num_threads(1)
    s = setting
    task = PathStar(degree=s["degree"], path_length=s["path_length"], num_nodes=s["num_nodes"])
    model = {"n_layer": s["n_layer"], "n_embd": s["n_embd"], "n_head": s["n_head"]}
    training = {"epochs": s["epochs"], "lr": s["lr"], "batch_size": s["batch_size"]}
    algorithm = (BC if method == "tf" else Teacherless)(policy="transformer", policy_args=model, **training)
    start = time.process_time()
    demos = generate(task, s["train_samples"], seed=seed)
    policy = algorithm.fit(task, demos, seed=seed)
    report = reasoning_report(task, policy, n=eval_samples, seed=10_000 + seed)  # fresh graphs, same for tf and tl
    return {"setting": name, "method": method, "seed": seed, "exact": report["exact_match"],
            "first": report["first_decision_accuracy"], "valid_arm": report["valid_arm_rate"],
            "final_loss": algorithm.log["final_loss"], "cpu_s": time.process_time() - start}


def describe(s: dict) -> str:
    steps = math.ceil(s["train_samples"] / s["batch_size"]) * s["epochs"]
    return (f"G({s['degree']},{s['path_length']}) N={s['num_nodes']}, GPT {s['n_layer']}x{s['n_embd']}, "
            f"lr {s['lr']:g}, {s['train_samples']} graphs x {s['epochs']} ep = {steps} steps")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="two tiny settings, 2 seeds (for tests)")
    p.add_argument("--only", help="comma-separated setting names (default: all); see SETTINGS in the script")
    p.add_argument("--seeds", type=int, help="seeds per setting and method, 0..seeds-1 (default 3; --quick 2)")
    p.add_argument("--eval-samples", type=int, help="fresh graphs scored per run (default 500; --quick 50)")
    p.add_argument("--workers", type=int, default=1, help="training runs at once, one process each (default 1)")
    args = p.parse_args(argv)
    settings = {k: {**QUICK_BASE, **v} for k, v in QUICK_SETTINGS.items()} if args.quick else \
        {k: {**BASE, **v} for k, v in SETTINGS.items()}
    if args.only is not None:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in settings]
        if unknown or not names:
            raise ValueError(f"--only must name settings among {', '.join(settings)}, got {args.only!r}")
        settings = {n: settings[n] for n in names}
    args.settings = settings
    if args.seeds is None:
        args.seeds = 2 if args.quick else 3
    if args.eval_samples is None:
        args.eval_samples = 50 if args.quick else 500
    for name in ("seeds", "eval_samples", "workers"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {getattr(args, name)}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    jobs = [(name, s, m, seed, args.eval_samples) for name, s in args.settings.items() for seed in range(args.seeds)
            for m in METHODS]
    print(f"teacherless sweep: {len(args.settings)} setting(s) x {args.seeds} seed(s) x tf/tl, "
          f"{args.eval_samples} fresh graphs each, {args.workers} worker(s), 1 torch thread each", flush=True)
    start = time.perf_counter()
    runs = []
    if args.workers == 1:
        results = map(run_one, jobs)
    else:
        pool = ProcessPoolExecutor(max_workers=args.workers)
        results = pool.map(run_one, jobs)
    for job, r in zip(jobs, results):
        runs.append(r)
        print(f"  {r['setting']:<8} seed {r['seed']} {r['method']}: exact {r['exact']:.3f}, first {r['first']:.3f}, "
              f"loss {r['final_loss']:.3f}, {r['cpu_s']:.0f} s CPU", flush=True)
    if args.workers > 1:
        pool.shutdown()

    # ---------------------------------------------------------------- the table
    print()
    print("exact match (greedy answer = path) and first decision (position 2) on fresh graphs: "
          "mean over seeds [95% t-interval over seeds]; per-seed exact in ( )")
    header = f"{'setting':<8} | {'graph, model, budget':<58} | {'TF exact':<19} | {'TL exact':<19} | " \
             f"{'TF first':>8} | {'TL first':>8} | {'verdict':<7}"
    print(header)
    print("-" * len(header))
    summary = {}
    for name, s in args.settings.items():
        mine = {m: [r for r in runs if r["setting"] == name and r["method"] == m] for m in METHODS}
        ex = {m: seed_interval([r["exact"] for r in mine[m]]) for m in METHODS}
        first = {m: float(np.mean([r["first"] for r in mine[m]])) for m in METHODS}
        cell = {m: f"{ex[m][0]:.2f} [{ex[m][1]:.2f}, {ex[m][2]:.2f}]" for m in METHODS}
        v = verdict(ex["tf"], ex["tl"])
        summary[name] = {"exact": ex, "first": first, "verdict": v,
                         "per_seed": {m: [r["exact"] for r in mine[m]] for m in METHODS}}
        print(f"{name:<8} | {describe(s):<58} | {cell['tf']:<19} | {cell['tl']:<19} | {first['tf']:8.2f} | "
              f"{first['tl']:8.2f} | {v}")
        print(f"{'':<8} | {'':<58} | {'(' + ' '.join(f'{e:.2f}' for e in summary[name]['per_seed']['tf']) + ')':<19} | "
              f"{'(' + ' '.join(f'{e:.2f}' for e in summary[name]['per_seed']['tl']) + ')':<19} |")
    cpu = sum(r["cpu_s"] for r in runs)
    print(f"total {cpu:.0f} s CPU in the training runs, {time.perf_counter() - start:.0f} s wall")
    return summary


if __name__ == "__main__":
    try:
        main()
    except ValueError as exc:
        sys.exit(f"error: {exc}")
