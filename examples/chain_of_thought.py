"""Chain of thought: multiplication and parity with and without CoT, linear vs MLP vs transformer.

    python examples/chain_of_thought.py               # writes chain_of_thought.png (a few minutes on a CPU)
    python examples/chain_of_thought.py --quick --out /tmp/chain_of_thought.png

Malach (2024): a next-token predictor trained on a chain of thought (CoT) can learn what it
cannot learn from the answer alone, because every CoT token is a simple function of a few
earlier ones. Each row of the table is behavior cloning (``ar_agents.algorithms.BC``,
teacher-forced cross-entropy) of one policy class on one task:

* ``Multiplication(digits, cot="none")``: the ``2 digits`` product digits alone;
  ``cot="full"``: partial products and running sums with every carry first (the grammar is in
  the task's docstring), so the horizon is ``6 digits^2 - 1`` tokens.
* ``Parity(n_bits, cot="none")``: the parity of a hidden subset of ``n_bits // 2`` bits in one
  token; ``cot="running"`` (or ``--parity-cot short``): the running parity first.

Policy classes (``ar_agents.policies.make_policy``): ``linear`` and ``mlp`` over a window of
embedded tokens as long as the whole stream (Malach's linear / MLP predictors), and a small GPT
(``transformer``). Training and test prompts are disjoint: all prompts are enumerated, shuffled
with ``--seed``, the first ``--train`` go to training and the last ``--test`` to the test set
(75% / 25% by default, as in Malach's multiplication experiment). Reported on the test prompts,
decoding greedily: ``answer exact`` (every answer digit right), ``answer digits`` (mean accuracy
per answer digit; for parity, the one answer bit), ``CoT exact`` (the whole chain of thought
right), and the teacher-forced token accuracy over the whole sequence (what the training loss
sees). Chance for parity is 0.5.

Every size is an option (``--help``); ``--quick`` is a tiny setting for tests (it shows
nothing). Same ``--seed``, same numbers (torch runs on ``--threads`` CPU threads, default 1).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from ar_agents.algorithms import BC
from ar_agents.evaluation.report import pyplot, save_png
from ar_envs.data import Demonstrations
from ar_envs.diagnostics import greedy_decode, teacher_forced_accuracy
from ar_envs.tasks import Multiplication, Parity

# the default run, and the tiny --quick one (any option given explicitly wins over both)
DEFAULTS = dict(digits=2, mult_train=7500, mult_test=2500, parity_bits=16, parity_train=3000, parity_test=2000,
                epochs=20, batch_size=64, lr=1e-3, mlp_hidden=128, n_layer=2, n_embd=64)
QUICK = dict(digits=1, mult_train=75, mult_test=25, parity_bits=6, parity_train=48, parity_test=16,
             epochs=2, batch_size=32, lr=1e-3, mlp_hidden=16, n_layer=1, n_embd=16)
CLASSES = ("linear", "mlp", "transformer")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the hidden parity subset and the weights (default 0)")
    p.add_argument("--out", default="chain_of_thought.png", help="where to write the plot (default chain_of_thought.png)")
    p.add_argument("--quick", action="store_true", help="a tiny setting that runs in seconds (for tests)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: tiny models gain little from more)")
    p.add_argument("--digits", type=int, help=f"digits per operand, 1 or 2 (default {DEFAULTS['digits']})")
    p.add_argument("--mult-train", type=int, help=f"training prompts for multiplication (default {DEFAULTS['mult_train']})")
    p.add_argument("--mult-test", type=int, help=f"test prompts for multiplication (default {DEFAULTS['mult_test']})")
    p.add_argument("--parity-bits", type=int, help=f"bits n of the parity task, 2..16 (default {DEFAULTS['parity_bits']})")
    p.add_argument("--parity-cot", default="running", choices=("running", "short"),
                   help="the parity chain of thought compared with none (default running)")
    p.add_argument("--parity-train", type=int, help=f"training prompts for parity (default {DEFAULTS['parity_train']})")
    p.add_argument("--parity-test", type=int, help=f"test prompts for parity (default {DEFAULTS['parity_test']})")
    p.add_argument("--epochs", type=int, help=f"passes over the training prompts (default {DEFAULTS['epochs']})")
    p.add_argument("--batch-size", type=int, help=f"sequences per Adam step (default {DEFAULTS['batch_size']})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default {DEFAULTS['lr']})")
    p.add_argument("--mlp-hidden", type=int, help=f"hidden units of the MLP class (default {DEFAULTS['mlp_hidden']})")
    p.add_argument("--n-layer", type=int, help=f"transformer blocks (default {DEFAULTS['n_layer']})")
    p.add_argument("--n-embd", type=int, help=f"transformer width (default {DEFAULTS['n_embd']})")
    args = p.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    for name, value in base.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("mult_train", "mult_test", "parity_train", "parity_test", "epochs", "batch_size", "mlp_hidden",
                 "n_layer", "n_embd", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {getattr(args, name)}")
    if args.digits not in (1, 2):
        raise ValueError(f"--digits must be 1 or 2 (all 10^(2 digits) prompts are enumerated), got {args.digits}")
    if not 2 <= args.parity_bits <= 16:
        raise ValueError(f"--parity-bits must be in [2, 16] (all 2^n prompts are enumerated), got {args.parity_bits}")
    for task, total in (("mult", 10 ** (2 * args.digits)), ("parity", 2**args.parity_bits)):
        train, test = getattr(args, f"{task}_train"), getattr(args, f"{task}_test")
        if train + test > total:
            raise ValueError(f"--{task}-train + --{task}-test must be at most the {total} distinct prompts, got {train} + {test}")
    if args.seed < 0:
        raise ValueError(f"--seed must be an integer >= 0, got {args.seed}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    if not args.out.lower().endswith(".png"):
        raise ValueError(f"--out must name a .png file, got {args.out!r}")
    return args


def split_prompts(task, n_train: int, n_test: int, seed: int):
    """Disjoint (train, test) prompts: all prompts of ``task``, shuffled, first ``n_train`` / last ``n_test``."""
    contexts, _ = task.enumerate_contexts()
    order = np.random.default_rng(seed).permutation(len(contexts))
    return contexts[order[:n_train]], contexts[order[len(contexts) - n_test :]]


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = [  # (task label, CoT label, task, train prompts, test prompts)
        ("multiplication", "none", Multiplication(digits=args.digits, cot="none"), args.mult_train, args.mult_test),
        ("multiplication", "full", Multiplication(digits=args.digits, cot="full"), args.mult_train, args.mult_test),
        ("parity", "none", Parity(n_bits=args.parity_bits, cot="none", seed=args.seed), args.parity_train, args.parity_test),
        ("parity", args.parity_cot, Parity(n_bits=args.parity_bits, cot=args.parity_cot, seed=args.seed),
         args.parity_train, args.parity_test),
    ]
    print(f"{args.digits}-digit multiplication ({args.mult_train} train / {args.mult_test} test prompts); "
          f"parity of {args.parity_bits // 2} hidden bits out of {args.parity_bits} ({args.parity_train} / {args.parity_test}); "
          f"BC, {args.epochs} epochs; seed {args.seed}", flush=True)
    start = time.perf_counter()
    rows = []
    for task_label, cot, task, n_train, n_test in settings:
        train, test = split_prompts(task, n_train, n_test, args.seed)
        # the expert's sequences for the training prompts (the expert is deterministic)
        demos = Demonstrations(train, task.reference(train), task_name=task.name, task_args=task.task_args(), seed=args.seed)
        window = task.context_length + task.horizon  # the linear / MLP classes see the whole stream
        classes = {
            "linear": {"window": window},
            "mlp": {"window": window, "hidden": args.mlp_hidden},
            "transformer": {"n_layer": args.n_layer, "n_embd": args.n_embd},
        }
        for kind in CLASSES:
            algorithm = BC(policy=kind, policy_args=classes[kind], epochs=args.epochs, lr=args.lr, batch_size=args.batch_size)
            policy = algorithm.fit(task, demos, seed=args.seed)
            generated = greedy_decode(task, policy, test)
            scores = task.extra_metrics(test, generated)
            answer_exact = scores.get("answer_exact_match", scores.get("answer_accuracy"))
            rows.append({
                "task": task_label, "cot": cot, "horizon": task.horizon, "class": kind,
                "answer_exact": answer_exact,
                "answer_digits": scores.get("per_digit_accuracy", answer_exact),
                "cot_exact": scores.get("cot_exact_match"),
                "teacher_forced": float(np.mean(teacher_forced_accuracy(task, policy, test, task.reference(test)))),
                "train_s": algorithm.log["train_s"],
            })
            print(f"  {task_label} cot={cot} {kind}: answer exact {answer_exact:.3f} "
                  f"({algorithm.log['train_s']:.0f} s, {algorithm.log['tokens_per_s']:.0f} tokens/s)", flush=True)

    # ---------------------------------------------------------------- the table
    print()
    print("test prompts (disjoint from training), greedy decoding; chance for parity = 0.5")
    header = (f"{'task':<14} | {'CoT':<7} | {'H':>3} | {'class':<11} | {'answer exact':>12} | {'answer digits':>13} | "
              f"{'CoT exact':>9} | {'teacher-forced tokens':>21} | {'train s':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        cot_exact = "-" if r["cot_exact"] is None else f"{r['cot_exact']:.3f}"
        print(f"{r['task']:<14} | {r['cot']:<7} | {r['horizon']:>3} | {r['class']:<11} | {r['answer_exact']:12.3f} | "
              f"{r['answer_digits']:13.3f} | {cot_exact:>9} | {r['teacher_forced']:21.3f} | {r['train_s']:7.0f}")
    print(f"total {time.perf_counter() - start:.0f} s")

    # ---------------------------------------------------------------- the plot
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.8), sharey=True)
    x = np.arange(len(CLASSES))
    for ax, task_label in zip(axes, ("multiplication", "parity")):
        cots = list(dict.fromkeys(r["cot"] for r in rows if r["task"] == task_label))
        for k, cot in enumerate(cots):
            vals = [next(r["answer_exact"] for r in rows if r["task"] == task_label and r["cot"] == cot and r["class"] == c)
                    for c in CLASSES]
            horizon = next(r["horizon"] for r in rows if r["task"] == task_label and r["cot"] == cot)
            bars = ax.bar(x + (k - 0.5) * 0.38, vals, width=0.36, label=f"CoT {cot} (H = {horizon})")
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        if task_label == "parity":
            ax.axhline(0.5, color="gray", lw=1, ls=":", label="chance")
        ax.set_xticks(x, CLASSES)
        ax.set_ylim(0, 1.1)
        ax.set_title(f"{args.digits}-digit multiplication" if task_label == "multiplication"
                     else f"parity of {args.parity_bits // 2} hidden bits of {args.parity_bits}", fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("answer exact match (test prompts)")
    fig.suptitle("behavior cloning with and without a chain of thought", fontsize=10)
    fig.tight_layout()
    save_png(fig, args.out, tight=False)  # atomic: never a half-written plot
    plt.close(fig)
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    try:
        main()
    except ValueError as exc:
        sys.exit(f"error: {exc}")
