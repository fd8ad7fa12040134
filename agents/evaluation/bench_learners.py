"""``python -m ar_agents.evaluation.bench_learners``: what the sequence-level learners cost, measured in one run.

(a) **The rho-estimator's cover.** One sweep cell each (``n`` demonstrations, horizon ``H``) on
    ``two-branch-linear`` and ``linear-ar``: the wall time of ``rho`` (lattice + per-token fits +
    refinement rounds until the spacing is below a quarter of the statistical error), the
    candidates it needed, and whether the target resolution was reached; BC's time on the same
    data in the same run for scale. Target: a cell under 60 s on a 2-core machine.

(b) **The K-knob** (``block-hellinger``, our interpolation between per-token and sequence-level
    estimation) on two-branch at a fixed ``H``: for each block length K, the exact C(H) (mean
    over seeds), the distinct (state, block) groups the loss sums over, and the fit's wall time.
    C falls with K; the cost follows the number of distinct blocks (up to ``2^K`` per state).

Times are medians over ``--repeats`` interleaved runs (one of each per repeat).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

TARGET_RHO_SECONDS = 60.0


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def rho_rows(n: int, horizon: int, repeats: int) -> list[dict]:
    from ar_envs.data import generate
    from ar_envs.tasks import LinearAR, TwoBranchLinear

    from ar_agents.algorithms import BC, RhoEstimator

    rows = []
    for task in (TwoBranchLinear(horizon=horizon), LinearAR(horizon=horizon, misspec=1.0)):
        demos = generate(task, n, seed=0)
        t_rho, t_bc, alg = [], [], None
        for _ in range(repeats):
            alg = RhoEstimator()
            _, dt = _timed(lambda: alg.fit(task, demos, 0))
            t_rho.append(dt)
            _, dt = _timed(lambda: BC().fit(task, demos, 0))
            t_bc.append(dt)
        rows.append({"task": task.describe(), "rho_s": statistics.median(t_rho), "bc_s": statistics.median(t_bc),
                     "candidates": alg.log["candidates"], "rounds": alg.log["rounds"],
                     "reached": alg.log["resolution_reached"]})
    return rows


def knob_rows(horizon: int, n: int, seeds: int, blocks, repeats: int) -> list[dict]:
    from ar_envs.data import generate
    from ar_envs.metrics import sequence_metrics
    from ar_envs.tasks import TwoBranch

    from ar_agents.algorithms import BlockHellinger

    task = TwoBranch(horizon=horizon, eps=0.01)
    best = task.best_in_class()["hellinger2"]
    data = [generate(task, n, seed=s) for s in range(seeds)]
    rows = []
    for K in blocks:
        times, C, groups = [], [], []
        for s, demos in enumerate(data):
            per = []
            for _ in range(repeats):
                alg = BlockHellinger(block=K)
                pol, dt = _timed(lambda: alg.fit(task, demos, s))
                per.append(dt)
            times.append(statistics.median(per))
            C.append(sequence_metrics(task, pol)["hellinger2"].value / best)
            groups.append(alg.log["groups"])
        rows.append({"K": K, "C": float(np.mean(C)), "C_sd": float(np.std(C)), "groups": float(np.mean(groups)),
                     "fit_s": float(np.mean(times))})
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--samples", type=int, default=1000, help="demonstrations per cell (default 1000)")
    parser.add_argument("--rho-horizon", type=int, default=200, help="(a) horizon of the rho cells (default 200)")
    parser.add_argument("--knob-horizon", type=int, default=100, help="(b) two-branch horizon for the K-knob (default 100)")
    parser.add_argument("--blocks", default="1,2,3,4,5,6,7,8", help="(b) block lengths K (default 1..8)")
    parser.add_argument("--seeds", type=int, default=3, help="(b) seeds per K (default 3)")
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats, medians (default 1)")
    return parser


def run_args(args) -> int:
    from ar_envs.core import check_int

    # every flag is checked before any work
    n = check_int("--samples", args.samples, 1)
    repeats = check_int("--repeats", args.repeats, 1)
    rho_h = check_int("--rho-horizon", args.rho_horizon, 1)
    H = check_int("--knob-horizon", args.knob_horizon, 1)
    seeds = check_int("--seeds", args.seeds, 1)
    try:
        blocks = [int(b) for b in str(args.blocks).split(",")]
    except ValueError:
        raise ValueError(f"--blocks must be a comma-separated list of integers >= 1, got {args.blocks!r}") from None
    if not blocks or min(blocks) < 1 or max(blocks) > H or len(set(blocks)) < len(blocks):
        raise ValueError(f"--blocks must be distinct integers in [1, --knob-horizon = {H}], got {args.blocks!r}")
    print(f"bench_learners: {repeats} repeat(s), medians; n = {n} demonstrations per cell")
    print(f"(a) rho-estimator cells at H = {rho_h} (target: under {TARGET_RHO_SECONDS:.0f} s)")
    for row in rho_rows(n, rho_h, repeats):
        verdict = "ok" if row["rho_s"] < TARGET_RHO_SECONDS else "ABOVE"
        print(f"    {row['task']:<72} rho {row['rho_s']:6.1f} s ({row['candidates']} candidates, {row['rounds']} rounds, "
              f"resolution {'reached' if row['reached'] else 'NOT reached'}; {verdict}); bc {row['bc_s']:.2f} s")
    print(f"(b) block-hellinger K-knob on two-branch H = {H} (eps = 0.01), {seeds} seed(s): exact C(H), mean [sd]")
    print(f"    {'K':>3}  {'C(H)':>14}  {'groups':>8}  {'fit s':>7}")
    for row in knob_rows(H, n, seeds, blocks, repeats):
        print(f"    {row['K']:>3}  {row['C']:7.2f} [{row['C_sd']:4.2f}]  {row['groups']:8.0f}  {row['fit_s']:7.2f}")
    return 0


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="python -m ar_agents.evaluation.bench_learners", description=__doc__.split("\n")[0]))
    try:
        return run_args(parser.parse_args(argv))
    except ValueError as exc:
        print(f"bench_learners: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
