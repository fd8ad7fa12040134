"""``ar-envs bench``: environment speed as ratios to Gymnasium's ``CartPole-v1``, measured in one run.

Absolute steps/second depend on the machine; the ratio to CartPole measured in the same process,
interleaved round by round, mostly does not. Each round measures every rate once, in the same
order; the table shows the median over rounds of each rate and the ratio of the medians.

Measurements (steps/second, one step of one copy counts as one step):

* vector: our native ``SequenceVectorEnv`` on TwoBranch (horizon 50) with ``--num-envs`` copies
  vs ``gym.make_vec("CartPole-v1", vectorization_mode="vector_entry_point")`` with as many.
* single: one ``gym.make("ar_envs/TwoBranch-v0")`` vs one ``gym.make("CartPole-v1")`` (random
  actions from a pre-generated array, reset on termination or truncation).
* if the PathStar task exists: the vector env on PathStar (degree 5, path length 5, 50 nodes)
  vs the same CartPole vector rate, the same with ``expert_probs=True`` (the info then carries
  the expert's ``(n, V)`` float64 distribution at every step; no target), and expert
  demonstrations through ``task.sample_expert`` in tokens/second (prompt + answer tokens).

Run ``python -m ar_agents.evaluation.bench --help`` for the options.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import gymnasium as gym
import numpy as np

import ar_envs

TARGET = 0.5  # our env / CartPole, for the TwoBranch vector and single envs
PATH_STAR = {"degree": 5, "path_length": 5, "num_nodes": 50}


def _vector_rate(env, actions: np.ndarray, seconds: float) -> float:
    """Steps per second of a Gymnasium vector env (copies x steps / wall time)."""
    env.reset(seed=0)
    n = env.num_envs
    k, start = 0, time.perf_counter()
    while True:
        env.step(actions[k % len(actions)])
        k += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return k * n / elapsed


def _single_rate(env, actions: list[int], seconds: float) -> float:
    """Steps per second of a single env; the clock is read every 64 steps."""
    env.reset(seed=0)
    k, start = 0, time.perf_counter()
    while True:
        for i in range(64):
            _, _, terminated, truncated, _ = env.step(actions[(k + i) % len(actions)])
            if terminated or truncated:
                env.reset()
        k += 64
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return k / elapsed


def _demo_rate(task, batch: int, seconds: float) -> float:
    """Expert demonstration tokens per second through ``task.sample_expert`` (prompt + answer)."""
    rng = np.random.default_rng(0)
    tokens, start = 0, time.perf_counter()
    while True:
        ctx, seq = task.sample_expert(batch, rng)
        tokens += ctx.size + seq.size
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return tokens / elapsed


def run(rounds: int = 5, seconds: float = 1.0, num_envs: int = 4096, seed: int = 0) -> dict[str, list[float]]:
    """All rates, one list per measurement (one entry per round)."""
    rng = np.random.default_rng(seed)
    make_vec = dict(num_envs=num_envs, vectorization_mode="vector_entry_point")
    benches = {}
    ours_vec = gym.make_vec("ar_envs/TwoBranch-v0", horizon=50, **make_vec)
    cart_vec = gym.make_vec("CartPole-v1", **make_vec)
    binary = rng.integers(0, 2, size=(64, num_envs))
    benches["vector/ours"] = lambda s: _vector_rate(ours_vec, binary, s)
    benches["vector/cartpole"] = lambda s: _vector_rate(cart_vec, binary, s)
    ours_one = gym.make("ar_envs/TwoBranch-v0", horizon=50)
    cart_one = gym.make("CartPole-v1")
    single_actions = rng.integers(0, 2, size=10_000).tolist()
    benches["single/ours"] = lambda s: _single_rate(ours_one, single_actions, s)
    benches["single/cartpole"] = lambda s: _single_rate(cart_one, single_actions, s)
    envs = [ours_vec, cart_vec, ours_one, cart_one]
    if "path-star" in ar_envs.TASKS:
        ps_vec = gym.make_vec("ar_envs/PathStar-v0", **PATH_STAR, **make_vec)
        ps_actions = rng.integers(0, ps_vec.single_action_space.n, size=(64, num_envs))
        ps_task = ar_envs.make_task("path-star", **PATH_STAR)
        ps_probs = gym.make_vec("ar_envs/PathStar-v0", **PATH_STAR, **make_vec, expert_probs=True)
        benches["pathstar/ours"] = lambda s: _vector_rate(ps_vec, ps_actions, s)
        benches["pathstar/probs"] = lambda s: _vector_rate(ps_probs, ps_actions, s)
        benches["pathstar/demos"] = lambda s: _demo_rate(ps_task, num_envs, s)
        envs += [ps_vec, ps_probs]
    try:
        for bench in benches.values():  # warm-up: imports, first allocations, caches
            bench(min(seconds, 0.05))
        rates: dict[str, list[float]] = {name: [] for name in benches}
        for _ in range(rounds):  # interleaved, so slow phases of a shared machine hit every rate
            for name, bench in benches.items():
                rates[name].append(bench(seconds))
        return rates
    finally:
        for env in envs:
            env.close()


def table(rates: dict[str, list[float]], num_envs: int) -> str:
    med = {name: statistics.median(values) for name, values in rates.items()}
    rows = [("measurement", "ours", "CartPole-v1", "ratio", "target")]

    def ratio_row(label: str, ours: str, cart: str, target: bool) -> None:
        r = med[ours] / med[cart]
        verdict = (f">= {TARGET} " + ("ok" if r >= TARGET else "BELOW")) if target else "-"
        rows.append((label, f"{med[ours]:.3g}", f"{med[cart]:.3g}", f"{r:.2f}", verdict))

    ratio_row(f"vector env, {num_envs} copies: TwoBranch H=50 (steps/s)", "vector/ours", "vector/cartpole", True)
    ratio_row("single env: TwoBranch H=50 (steps/s)", "single/ours", "single/cartpole", True)
    if "pathstar/ours" in med:
        ratio_row(f"vector env, {num_envs} copies: PathStar d=5 l=5 N=50 (steps/s)", "pathstar/ours", "vector/cartpole", True)
        ratio_row("  the same with expert_probs=True", "pathstar/probs", "vector/cartpole", False)
        demos = med["pathstar/demos"]
        rows.append(("expert demos: PathStar sample_expert (prompt+answer tokens/s)", f"{demos:.3g}", "-", "-",
                     ">= 1e6 " + ("ok" if demos >= 1e6 else "BELOW")))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The bench's options, for a parser of its own or the ``ar-envs bench`` sub-command."""
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the table shows medians (default 5)")
    parser.add_argument("--seconds", type=float, default=1.0, help="wall time of each measurement in each round (default 1.0)")
    parser.add_argument("--num-envs", type=int, default=4096, help="copies in the vector envs (default 4096)")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` naming the first option out of range."""
    if args.rounds < 1:
        raise ValueError(f"--rounds must be an integer >= 1, got {args.rounds}")
    if not (args.seconds > 0 and np.isfinite(args.seconds)):
        raise ValueError(f"--seconds must be a positive number, got {args.seconds}")
    if args.num_envs < 1:
        raise ValueError(f"--num-envs must be an integer >= 1, got {args.num_envs}")


def run_args(args: argparse.Namespace) -> int:
    """Check the parsed options, run the bench and print the table."""
    check_args(args)
    print(
        f"ar-envs bench: {args.rounds} interleaved round(s) x {args.seconds:g} s per measurement; "
        f"medians; {os.cpu_count()} CPUs, numpy {np.__version__}, gymnasium {gym.__version__}",
        flush=True,
    )
    rates = run(args.rounds, args.seconds, args.num_envs)
    print(table(rates, args.num_envs))
    print("ratio = ours / CartPole-v1 (same process, same rounds); one vector step of n copies counts n steps")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(
        argparse.ArgumentParser(
            prog="ar-envs bench",
            description="Steps/second of ar_envs environments as ratios to Gymnasium's CartPole-v1, "
            "interleaved rounds in one run (medians).",
        )
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `ar-envs bench -- --rounds 3` passes the separator along
        argv = argv[1:]
    args = parser.parse_args(argv)
    try:
        check_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    return run_args(args)


if __name__ == "__main__":
    sys.exit(main())
