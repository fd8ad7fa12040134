"""Path-star graphs: teacher forcing learns the "Clever Hans" cheat; reverse order does not need to.

    python examples/path_star.py                      # writes path_star.png (a few minutes on a CPU)
    python examples/path_star.py --quick --out /tmp/path_star.png
    python examples/path_star.py --policy hf:gpt2     # the same table on Hugging Face's GPT-2 (ar-envs[hf])
    python examples/path_star.py --policy hf:mamba --train-samples 4000 --epochs 4 --batch-size 32 --eval-samples 1000
                                                      # Mamba: its CPU path is far slower, so a smaller budget

Bachmann & Nagarajan (2024) train a transformer on path-star graphs: a source node with
``degree`` arms of ``path_length - 1`` nodes each, the shuffled edge list and ``source goal`` as
the prompt, the path from the source to the goal as the answer. This script trains the same small
GPT three ways on the same kind of graphs and prints, for each, how it decodes:

* ``forward (teacher forcing)``: behavior cloning on the answer in its natural order
  (``ar_agents.algorithms.BC``). Under teacher forcing every answer token after the first arm node
  is "the child of the previous token", a lookup learned first; the arm choice itself (answer
  position 2) then gets little signal and is guessed.
* ``reverse (teacher forcing)``: the same, with the answer written goal first
  (``PathStar(order="reverse")``): every token is "the parent of the previous token".
* ``teacherless``: the model sees ``(path_length - 1)`` dummy tokens instead of the answer and
  predicts every answer token at once (``ar_agents.algorithms.Teacherless``).

The diagnostics come from ``ar_envs.diagnostics.reasoning_report`` on fresh graphs:
``exact`` (the greedy answer is the true path), ``first decision`` (answer position 2 right:
the arm choice in forward order), ``valid arm`` (the answer walks along one whole arm from the
source, right arm or not), and per answer position the accuracy given the *true* prefix
(teacher-forced) and given the model's own prefix (free-running). The Clever Hans signature:
teacher-forced accuracy near 1 after position 2, near ``1/degree`` at position 2, and an exact
match rate near the chance level ``1/degree``.

``--policy`` picks the architecture: ``transformer`` (our GPT, the default) or a Hugging Face
``transformers`` model, ``hf:gpt2``, ``hf:llama`` or ``hf:mamba`` (``pip install 'ar-envs[hf]'``;
``--n-layer`` / ``--n-embd`` / ``--n-head`` map onto its config, Mamba has no heads; see
``ar_agents.policies.hf``), so the Clever-Hans table can be compared across architectures.

Every size is an option (``--help``); ``--quick`` is a tiny setting for tests (it shows
nothing). Same ``--seed``, same numbers (torch runs on ``--threads`` CPU threads, default 1).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from ar_agents.algorithms import BC, Teacherless
from ar_agents.evaluation.report import pyplot, save_png
from ar_envs.data import generate
from ar_envs.diagnostics import reasoning_report
from ar_envs.tasks import PathStar

# the default run, and the tiny --quick one (any option given explicitly wins over both)
DEFAULTS = dict(degree=2, path_length=5, num_nodes=20, train_samples=10_000, epochs=20, batch_size=128, lr=1e-3,
                n_layer=2, n_embd=64, n_head=4, eval_samples=2000)
QUICK = dict(degree=2, path_length=4, num_nodes=12, train_samples=256, epochs=2, batch_size=64, lr=1e-3,
             n_layer=1, n_embd=16, n_head=2, eval_samples=100)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0, help="seed of the training graphs, the weights and the evaluation graphs (default 0)")
    p.add_argument("--out", default="path_star.png", help="where to write the plot (default path_star.png)")
    p.add_argument("--quick", action="store_true", help="a tiny setting that runs in seconds (for tests)")
    p.add_argument("--policy", default="transformer", choices=("transformer", "hf:gpt2", "hf:llama", "hf:mamba"),
                   help="the architecture: our GPT (default) or a Hugging Face transformers model (pip install 'ar-envs[hf]')")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: tiny models gain little from more)")
    p.add_argument("--degree", type=int, help=f"arms of the star, d (default {DEFAULTS['degree']})")
    p.add_argument("--path-length", type=int, help=f"nodes on the answer path, l (default {DEFAULTS['path_length']})")
    p.add_argument("--num-nodes", type=int, help=f"node ids N, at least d (l-1) + 1 (default {DEFAULTS['num_nodes']})")
    p.add_argument("--train-samples", type=int, help=f"training graphs (default {DEFAULTS['train_samples']})")
    p.add_argument("--epochs", type=int, help=f"passes over the training graphs (default {DEFAULTS['epochs']})")
    p.add_argument("--batch-size", type=int, help=f"graphs per Adam step (default {DEFAULTS['batch_size']})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default {DEFAULTS['lr']})")
    p.add_argument("--n-layer", type=int, help=f"transformer blocks (default {DEFAULTS['n_layer']})")
    p.add_argument("--n-embd", type=int, help=f"transformer width (default {DEFAULTS['n_embd']})")
    p.add_argument("--n-head", type=int, help=f"attention heads (default {DEFAULTS['n_head']}; not for hf:mamba)")
    p.add_argument("--eval-samples", type=int, help=f"fresh graphs for the diagnostics (default {DEFAULTS['eval_samples']})")
    args = p.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    for name, value in base.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("train_samples", "epochs", "batch_size", "eval_samples", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {getattr(args, name)}")
    if args.seed < 0:
        raise ValueError(f"--seed must be an integer >= 0, got {args.seed}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    if not args.out.lower().endswith(".png"):
        raise ValueError(f"--out must name a .png file, got {args.out!r}")
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    d, l = args.degree, args.path_length
    model = {"n_layer": args.n_layer, "n_embd": args.n_embd}
    if args.policy != "hf:mamba":  # a state-space model has no attention heads
        model["n_head"] = args.n_head
    training = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size}
    # (label, answer order, algorithm): the same model, three ways of training it
    methods = [
        ("forward (teacher forcing)", "forward", BC(policy=args.policy, policy_args=model, **training)),
        ("reverse (teacher forcing)", "reverse", BC(policy=args.policy, policy_args=model, **training)),
        ("teacherless", "forward", Teacherless(policy=args.policy, policy_args=model, **training)),
    ]
    print(f"path-star G(d={d}, l={l}), N={args.num_nodes} node ids; {args.train_samples} training graphs, "
          f"{args.epochs} epochs, {args.policy} {model}; seed {args.seed}", flush=True)
    start = time.perf_counter()
    rows = []
    for label, order, algorithm in methods:
        task = PathStar(degree=d, path_length=l, num_nodes=args.num_nodes, order=order)
        demos = generate(task, args.train_samples, seed=args.seed)
        policy = algorithm.fit(task, demos, seed=args.seed)
        report = reasoning_report(task, policy, n=args.eval_samples, seed=args.seed + 1)  # fresh graphs
        rows.append({"method": label, "order": order, "train_s": algorithm.log["train_s"],
                     "tokens_per_s": algorithm.log["tokens_per_s"], "final_loss": algorithm.log["final_loss"], **report})
        print(f"  trained {label}: {algorithm.log['train_s']:.0f} s, {algorithm.log['tokens_per_s']:.0f} answer tokens/s, "
              f"final loss {algorithm.log['final_loss']:.3f}", flush=True)

    # ---------------------------------------------------------------- the table
    print()
    print(f"exact-path accuracy against chance 1/d = {1 / d:.2f}; accuracy per answer position 1..{l} "
          f"(position 2 is the arm choice in forward order); {args.eval_samples} fresh graphs")
    w = max(len("teacher-forced by position"), 5 * l - 1)  # per-position columns: "0.50 1.00 ..."
    header = f"{'method':<26} | {'exact':>5} | {'1/d':>4} | {'first decision':>14} | {'valid arm':>9} | " \
             f"{'teacher-forced by position':<{w}} | {'free-running by position':<{w}}"
    print(header)
    print("-" * len(header))
    for r in rows:
        tf = " ".join(f"{a:.2f}" for a in r["teacher_forced_accuracy"])
        fr = " ".join(f"{a:.2f}" for a in r["free_running_accuracy"])
        print(f"{r['method']:<26} | {r['exact_match']:5.3f} | {1 / d:4.2f} | {r['first_decision_accuracy']:14.3f} | "
              f"{r['valid_arm_rate']:9.3f} | {tf:<{w}} | {fr}")
    print(f"total {time.perf_counter() - start:.0f} s")

    # ---------------------------------------------------------------- the plot
    plt = pyplot()
    positions = np.arange(1, l + 1)
    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.6), sharey=True)
    for ax, r in zip(axes, rows):
        ax.plot(positions, r["teacher_forced_accuracy"], "o-", label="teacher-forced (true prefix)")
        ax.plot(positions, r["free_running_accuracy"], "s--", label="free-running (own prefix)")
        ax.axhline(1 / d, color="gray", lw=1, ls=":", label=f"chance 1/d = {1 / d:.2f}")
        ax.set_title(f"{r['method']}\nexact path {r['exact_match']:.2f}, valid arm {r['valid_arm_rate']:.2f}", fontsize=9)
        ax.set_xlabel(f"answer position ({r['order']} order)")
        ax.set_xticks(positions)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"path-star G({d}, {l}), N = {args.num_nodes}: per-position accuracy of a {args.n_layer}-layer {args.policy}",
                 fontsize=10)
    fig.tight_layout()
    save_png(fig, args.out, tight=False)  # atomic: never a half-written plot
    plt.close(fig)
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    try:
        main()
    except (ValueError, ImportError) as exc:  # bad input, or an hf: policy without the extra
        sys.exit(f"error: {exc}")
