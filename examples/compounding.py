"""Compounding errors: the sequence-level distance D_H^2 and C(H) against the horizon H.

    python examples/compounding.py                    # writes compounding.png (a few minutes on a CPU)
    python examples/compounding.py --quick --out /tmp/compounding.png

The compounding-error argument says a per-token error becomes a sequence error that grows with
the horizon. This script measures it instead of assuming it, on two tasks with a *stochastic*
expert (so the error is the squared Hellinger distance D_H^2 between the expert's and the
learner's laws over whole sequences, not an exact-match rate):

* ``HMMLanguage``: tokens of a random hidden Markov model (``--hmm-stickiness`` sets how long
  its states persist); the expert filters exactly.
* ``LinearAR``: an order-1 log-linear target with a hidden feature part (``--misspec``).

Learners, all trained on the same ``--samples`` expert demonstrations per seed:

* on the task's log-linear class (the bigram class for the HMM, the visible features for
  LinearAR): ``bc`` (maximum likelihood), ``smoothed-bc`` (log loss mixed with the uniform
  distribution), ``dagger`` (DAgger on the class: roll-ins labelled with the expert's
  next-token distributions, refit exactly) and, on LinearAR, ``rho`` (the sequence-level
  rho-estimator; the HMM's bigram class has 20 parameters, too many for a cover finer than the
  statistical error, and rho refuses it).
  Their best in class is computed (``ar_agents.evaluation.best_in_class``: exact for LinearAR by dynamic
  programming, on fresh Monte-Carlo samples for the HMM), so the sweep reports the approximation
  factor C(H) = D_H^2(learner) / min over the class of D_H^2.
* on a neural class, an MLP over a window as long as the longest stream
  (``ar_agents.policies.make_policy("mlp", ...)``): ``bc[mlp]`` (teacher-forced BC),
  ``dagger[mlp]`` (DAgger: roll-ins of the learner labelled with the expert's next-token
  distribution) and ``ppo-from-bc[mlp]`` (BC, then SB3's PPO on the task's reward: the fraction
  of tokens that agree with the expert's most likely token). Their best in class is an
  *estimate* (``ar_agents.evaluation.neural_best``: the same MLP trained on the sequence-level D_H^2 from
  restarts and the learner's fit), an upper bound on the class minimum, so their C(H) is a lower
  estimate and is marked ``~``.

Everything runs through the sweep harness (``ar_agents.evaluation.sweep.sweep``: exact metrics where the task
allows, Monte Carlo with 95% intervals otherwise) and its report (``ar_agents.evaluation.report``: the table
below is ``format_tables``; intervals are over seeds).

Every size is an option (``--help``); ``--quick`` is a tiny setting for tests (it shows
nothing). Same ``--seed``, same numbers (torch runs on ``--threads`` CPU threads, default 1).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from ar_agents.algorithms import BC, DAgger, PPOFromBC
from ar_agents.evaluation.report import band, best_by_class, class_label, format_tables, pyplot, save_png, summarise
from ar_agents.evaluation.sweep import parse_horizons, sweep

# the default run, and the tiny --quick one (any option given explicitly wins over both)
DEFAULTS = dict(horizons="2,4,8,16,32", seeds=3, samples=1000, eval_samples=10_000, epochs=10, dagger_rounds=3,
                ppo_timesteps=10_000, mlp_hidden=32)
QUICK = dict(horizons="2,4", seeds=1, samples=100, eval_samples=200, epochs=1, dagger_rounds=1,
             ppo_timesteps=64, mlp_hidden=8)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0, help="seed of the HMM and LinearAR instances (default 0); the sweep's seeds are 0..seeds-1")
    p.add_argument("--out", default="compounding.png", help="where to write the plot (default compounding.png)")
    p.add_argument("--quick", action="store_true", help="a tiny setting that runs in seconds (for tests)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: tiny models gain little from more)")
    p.add_argument("--horizons", help=f"comma-separated horizons H (default {DEFAULTS['horizons']})")
    p.add_argument("--seeds", type=int, help=f"seeds per (task, horizon, learner) (default {DEFAULTS['seeds']})")
    p.add_argument("--samples", type=int, help=f"expert demonstrations per seed (default {DEFAULTS['samples']})")
    p.add_argument("--eval-samples", type=int, help=f"expert samples of the Monte-Carlo metrics (default {DEFAULTS['eval_samples']})")
    p.add_argument("--epochs", type=int, help=f"epochs of neural BC, and of each DAgger round (default {DEFAULTS['epochs']})")
    p.add_argument("--dagger-rounds", type=int, help=f"DAgger rounds after the BC round (default {DEFAULTS['dagger_rounds']})")
    p.add_argument("--ppo-timesteps", type=int, help=f"PPO environment steps after BC (default {DEFAULTS['ppo_timesteps']})")
    p.add_argument("--mlp-hidden", type=int, help=f"hidden units of the MLP class (default {DEFAULTS['mlp_hidden']})")
    p.add_argument("--hmm-stickiness", type=float, default=0.8, help="HMMLanguage: weight of 'stay' in each transition row (default 0.8)")
    p.add_argument("--misspec", type=float, default=0.4, help="LinearAR: scale of the hidden feature part (default 0.4)")
    args = p.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    for name, value in base.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.horizons = parse_horizons(args.horizons)
    for name in ("seeds", "samples", "epochs", "dagger_rounds", "ppo_timesteps", "mlp_hidden", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {getattr(args, name)}")
    if args.eval_samples < 2:
        raise ValueError(f"--eval-samples must be an integer >= 2, got {args.eval_samples}")
    if args.seed < 0:
        raise ValueError(f"--seed must be an integer >= 0, got {args.seed}")
    if not args.out.lower().endswith(".png"):
        raise ValueError(f"--out must name a .png file, got {args.out!r}")
    return args


def neural_learners(args, window: int) -> list:
    """BC, DAgger and PPO-from-BC on the same MLP class, each labelled with it."""
    mlp = {"window": window, "embed_dim": 8, "hidden": args.mlp_hidden}
    learners = [
        BC(policy="mlp", policy_args=mlp, epochs=args.epochs),
        DAgger(policy="mlp", policy_args=mlp, rounds=args.dagger_rounds, epochs=args.epochs),
        PPOFromBC(policy="mlp", policy_args=mlp, bc_epochs=args.epochs, total_timesteps=args.ppo_timesteps,
                  eval_episodes=200),
    ]
    for learner in learners:
        learner.name = f"{learner.name}[mlp]"
    return learners


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    H_max = max(args.horizons)
    tasks = [  # (catalogue name, task arguments other than the horizon, context length, log-linear learners)
        ("hmm", {"num_states": 4, "vocab_size": 4, "stickiness": args.hmm_stickiness, "seed": args.seed}, 0,
         ["bc", "smoothed-bc", "dagger"]),
        ("linear-ar", {"vocab_size": 3, "misspec": args.misspec, "seed": args.seed}, 1,
         ["bc", "smoothed-bc", "dagger", "rho"]),
    ]
    grid = dict(seeds=args.seeds, n_samples=args.samples, eval_samples=args.eval_samples, progress=False)
    print(f"horizons {args.horizons}; {args.seeds} seed(s) x {args.samples} demonstrations; "
          f"log-linear: bc, smoothed-bc, dagger (+ rho on linear-ar); MLP (window {H_max + 1}): bc, dagger, ppo-from-bc", flush=True)
    start = time.perf_counter()
    records = []
    for name, task_args, context_length, loglinear in tasks:
        t0 = time.perf_counter()
        records += sweep(name, args.horizons, loglinear, task_args=task_args, **grid)
        records += sweep(name, args.horizons, neural_learners(args, context_length + H_max), task_args=task_args, **grid)
        print(f"  {name}: {time.perf_counter() - t0:.0f} s", flush=True)

    # ---------------------------------------------------------------- the table
    summary = summarise(records)
    print()
    print(format_tables(summary).rstrip())
    print(f"total {time.perf_counter() - start:.0f} s")

    # ---------------------------------------------------------------- the plot
    plt = pyplot()
    fig, axes = plt.subplots(2, len(summary), figsize=(5.2 * len(summary), 7.2), squeeze=False)
    for col, ((task, task_args), algorithms) in enumerate(summary.items()):
        for row, (metric, ylabel) in enumerate((("hellinger2", r"$D_H^2$ to the expert"),
                                                ("approx_factor", "C(H) (each learner's own class)"))):
            ax = axes[row, col]
            for k, (algorithm, by_h) in enumerate(algorithms.items()):
                hs, mean, lo, hi = band(by_h, metric)
                if not hs:
                    continue
                style = "-" if "[" not in algorithm else "--"  # log-linear solid, MLP dashed
                (line,) = ax.plot(hs, mean, style, marker="osxv^"[k % 5], ms=4, label=algorithm)
                ax.fill_between(hs, np.maximum(lo, mean * 1e-2), hi, color=line.get_color(), alpha=0.15, lw=0)
            if metric == "hellinger2":
                # each class's best (log-linear: solid; MLP: its estimate); a best of (numerically) zero
                # means the class is exact at that H: not drawn on a log scale
                for j, (cls, vals) in enumerate(best_by_class(algorithms).items()):
                    hs = [h for h in sorted(vals) if vals[h][0] > 1e-9]
                    ax.plot(hs, [vals[h][0] for h in hs], ["k:", "k-."][j % 2], lw=1.5, label=f"best in class: {class_label(cls, best_by_class(algorithms))}")
                ax.set_yscale("log")
                ax.set_title(f"{task} ({', '.join(f'{k}={v}' for k, v in task_args)})", fontsize=8)
            else:
                ax.axhline(1.0, color="gray", lw=1, ls=":")
                ax.set_yscale("log")  # the neural rows' C spans decades where the MLP nearly fits the expert
            ax.set_xscale("log", base=2)
            ax.set_xlabel("horizon H")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("error against the horizon: mean over seeds, 95% bands", fontsize=10)
    fig.tight_layout()
    save_png(fig, args.out, tight=False)  # atomic: never a half-written plot
    plt.close(fig)
    print(f"wrote {args.out}")
    return records


if __name__ == "__main__":
    try:
        main()
    except ValueError as exc:
        sys.exit(f"error: {exc}")
