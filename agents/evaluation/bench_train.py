"""``python -m ar_agents.evaluation.bench_train``: training speed, as ratios measured in the same run.

Two measurements on a path-star dataset (``PathStar(degree, path_length, num_nodes)``, expert
demonstrations from ``ar_envs.data.generate``):

(a) **Transformer BC throughput and FLOP utilisation.** ``ar_agents.algorithms.BC`` with a GPT
    policy trains for ``--epochs`` passes (teacher forcing: one forward and backward pass per
    minibatch of whole sequences). Reported: training tokens per second (every position of the
    teacher-forced stream ``[BOS] + prompt + answer[:-1]``, ``L + H`` tokens per sequence, is
    computed; the answer tokens, ``H`` per sequence, are what BC's log counts) and the achieved
    FLOP rate, ``stream tokens/s x GPTPolicy.flops_per_token()`` (forward + backward, the usual
    ``6 N + 12 n_layer n_embd T`` estimate). It is compared with the FLOP rate of plain square
    float32 ``torch.matmul`` of size ``--matmul-size`` (default ``4 n_embd``, the width of the
    model's MLP) measured in the same run with the same threads: ``utilisation = model FLOP rate
    / matmul FLOP rate`` (target >= 25%).

(b) **Sequence BC against per-transition BC.** One epoch over the same demonstrations, the
    same policy class (``--policy``, default ``transformer`` with the package's default size):

    * ours: ``ar_agents.algorithms.BC``: minibatches of ``--batch-size`` whole sequences, all ``H``
      answer tokens scored in one teacher-forced pass;
    * per-transition, as transition-based imitation libraries train: every answer token is a
      transition (the environment observation, prompt + tokens so far padded, and the expert's
      action), shuffled into minibatches of ``--batch-size x H`` transitions (the same number of
      targets per Adam step as ours), loss ``-policy.evaluate_actions(obs, actions)``
      log-probability, through an SB3 ``ActorCriticPolicy`` holding the same class
      (:class:`ar_agents.integrations.sb3_policy.TokenActorCriticPolicy`; ``evaluate_actions`` also runs its
      critic, as it does in those libraries).

    Reported: seconds per epoch of each and the ratio per-transition / ours (target >= 10x).
    A reference row without a target: our BC with an MLP over the whole stream against SB3's
    stock ``ActorCriticPolicy`` (``MlpPolicy``'s 64-64 network on the one-hot observation).

(c) **Hugging Face architectures** (``--hf``, default all of ``hf:gpt2``, ``hf:llama``,
    ``hf:mamba`` when ``transformers`` is installed, ``ar-envs[hf]``): the BC run of (a) with the
    same ``n_layer`` / ``n_embd`` (/ ``n_head``) on a transformers model
    (:mod:`ar_agents.policies.hf`). Reported per class: stream tokens per second, its ratio to our
    GPT's (target for GPT-2 and Llama: >= 0.5), and for the attention models the FLOP rate and
    utilisation against the same matmul reference (each class's own FLOP count:
    ``HFPolicy.flops_per_token``; Llama's SwiGLU MLP has 1.5x GPT's MLP parameters). Mamba runs
    transformers' reference scan on a CPU (a Python loop over positions), so it trains on the
    first ``--mamba-samples`` sequences only; its tokens per second compare all the same.

Data preparation (generating demonstrations, building the transition arrays) is not timed. Each
timed quantity is the median of ``--repeats`` runs, interleaved (one of each per repeat), so a
slow phase of a shared machine hits every number.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

from ar_envs.data import episode_observations

TARGET_UTILISATION = 0.25
TARGET_SPEEDUP = 10.0
TARGET_HF_RATIO = 0.5  # HF GPT-2 / Llama BC throughput against our GPT's
HF_KINDS = ("hf:gpt2", "hf:llama", "hf:mamba")


# --------------------------------------------------------------------------------------------
# (a) transformer BC throughput and the matmul reference
# --------------------------------------------------------------------------------------------


def matmul_flops(size: int, seconds: float) -> float:
    """FLOP/s of ``torch.matmul`` on two square float32 ``size x size`` matrices (2 size^3 per product)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen)
    b = torch.randn(size, size, generator=gen)
    torch.matmul(a, b)  # warm-up
    k, start = 0, time.perf_counter()
    while True:
        torch.matmul(a, b)
        k += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2.0 * size**3 * k / elapsed


def bc_epoch(task, demos, policy: str, policy_args: dict, epochs: int, batch_size: int, lr: float, seed: int):
    """``(seconds of training, the BC log, the trained policy)`` of ``epochs`` BC epochs."""
    from ar_agents.algorithms import BC

    algorithm = BC(policy=policy, policy_args=policy_args, epochs=epochs, batch_size=batch_size, lr=lr)
    trained = algorithm.fit(task, demos, seed=seed)
    return algorithm.log["train_s"], algorithm.log, trained


# --------------------------------------------------------------------------------------------
# (b) the per-transition loop through SB3's ActorCriticPolicy
# --------------------------------------------------------------------------------------------


def transitions(task, demos) -> tuple[np.ndarray, np.ndarray]:
    """Every answer token as a transition: ``(observations (n H, L + H), expert actions (n H,))``.

    The observation before token ``h`` is the environment's: the prompt, the ``h`` tokens so far,
    then the padding id ``vocab_size``.
    """
    n, H = demos.sequences.shape
    obs = episode_observations(task, demos.contexts, demos.sequences)[:, :H]  # all but the terminal one
    return obs.reshape(n * H, -1), demos.sequences.reshape(n * H)


def make_sb3_policy(task, lr: float, seed: int, policy_kind: str | None = None, policy_args: dict | None = None):
    """An SB3 ``ActorCriticPolicy`` for ``task``'s env spaces: holding our ``policy_kind`` class
    (``TokenActorCriticPolicy``), or with ``policy_kind=None`` the stock one (``MlpPolicy``'s network)."""
    from gymnasium import spaces
    from stable_baselines3.common.policies import ActorCriticPolicy

    from ar_agents.integrations.sb3_policy import TokenActorCriticPolicy
    from ar_envs.env import observation_space

    torch.manual_seed(seed)
    obs_space, act_space = observation_space(task), spaces.Discrete(task.vocab_size)
    if policy_kind is None:
        return ActorCriticPolicy(obs_space, act_space, lr_schedule=lambda _: lr)
    return TokenActorCriticPolicy(obs_space, act_space, lambda _: lr, task=task, policy_kind=policy_kind,
                                  policy_args=policy_args)


def per_transition_epoch(policy, observations: np.ndarray, actions: np.ndarray, batch_size: int, seed: int) -> float:
    """Seconds of one epoch of per-transition BC: shuffled minibatches, ``-log pi(a | obs)``."""
    rng = np.random.default_rng(seed)
    policy.set_training_mode(True)
    start = time.perf_counter()
    order = rng.permutation(len(actions))
    for begin in range(0, len(order), batch_size):
        idx = order[begin : begin + batch_size]
        obs = torch.as_tensor(observations[idx])
        act = torch.as_tensor(actions[idx])
        _, log_prob, _ = policy.evaluate_actions(obs, act)
        loss = -log_prob.mean()
        policy.optimizer.zero_grad()
        loss.backward()
        policy.optimizer.step()
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--degree", type=int, default=5, help="path-star arms d (default 5)")
    parser.add_argument("--path-length", type=int, default=5, help="path-star answer length l (default 5)")
    parser.add_argument("--num-nodes", type=int, default=50, help="path-star node ids N (default 50)")
    parser.add_argument("--samples", type=int, default=4096, help="demonstrations in the dataset (default 4096)")
    parser.add_argument("--n-layer", type=int, default=2, help="(a) transformer blocks (default 2)")
    parser.add_argument("--n-embd", type=int, default=256, help="(a) transformer width (default 256)")
    parser.add_argument("--n-head", type=int, default=4, help="(a) attention heads (default 4)")
    parser.add_argument("--train-batch-size", type=int, default=256, help="(a) sequences per transformer step (default 256)")
    parser.add_argument("--matmul-size", type=int, default=None, help="(a) side of the reference matmuls (default 4 x n_embd)")
    parser.add_argument("--epochs", type=int, default=1, help="(a) transformer epochs per repeat (default 1)")
    parser.add_argument("--policy", default="transformer", choices=("linear", "mlp", "transformer"),
                        help="(b) the policy class of both BC loops, package default size (default transformer)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="(b) sequences per step for ours; per-transition steps take batch-size x H transitions (default 64)")
    parser.add_argument("--hf", default="auto",
                        help="(c) comma-separated Hugging Face classes to time at (a)'s size (hf:gpt2,hf:llama,hf:mamba); "
                             "'auto' (default): all three if transformers is installed; 'none': skip")
    parser.add_argument("--mamba-samples", type=int, default=32,
                        help="(c) sequences hf:mamba trains on per repeat (its CPU scan is slow; default 32)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate everywhere (default 1e-3)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; medians are shown (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own setting)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dataset and the weights (default 0)")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` naming the first option out of range."""
    for name in ("samples", "n_layer", "n_embd", "n_head", "train_batch_size", "epochs", "batch_size", "repeats",
                 "mamba_samples"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {getattr(args, name)}")
    if args.matmul_size is not None and args.matmul_size < 1:
        raise ValueError(f"--matmul-size must be an integer >= 1, got {args.matmul_size}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be an integer >= 1, got {args.threads}")
    if not (args.lr > 0 and np.isfinite(args.lr)):
        raise ValueError(f"--lr must be a positive number, got {args.lr}")
    if args.seed < 0:
        raise ValueError(f"--seed must be an integer >= 0, got {args.seed}")
    hf_kinds(args)


def hf_kinds(args: argparse.Namespace) -> list[str]:
    """The ``--hf`` classes to time (``ValueError`` for an unknown one; ``ImportError`` with the
    install command when one is asked for by name without ``transformers``)."""
    from ar_agents.policies.hf import require_transformers, transformers_available

    if args.hf == "auto":
        return list(HF_KINDS) if transformers_available() else []
    if args.hf in ("none", ""):
        return []
    kinds = [k.strip() for k in args.hf.split(",") if k.strip()]
    for k in kinds:
        if k not in HF_KINDS:
            raise ValueError(f"--hf must list classes of {list(HF_KINDS)} (or be 'auto' / 'none'), got {k!r}")
        require_transformers(k)
    return kinds


def hf_args(kind: str, gpt: dict) -> dict:
    """(a)'s GPT size as arguments of an hf class (Mamba has no heads)."""
    return {k: v for k, v in gpt.items() if not (kind == "hf:mamba" and k == "n_head")}


def run(args: argparse.Namespace) -> dict:
    """All measurements (lists over repeats) and the sizes they were taken at."""
    from ar_agents.policies import make_policy
    from ar_envs.data import generate
    from ar_envs.tasks import PathStar

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    task = PathStar(degree=args.degree, path_length=args.path_length, num_nodes=args.num_nodes)
    demos = generate(task, args.samples, seed=args.seed)
    L, H = task.context_length, task.horizon
    gpt = {"n_layer": args.n_layer, "n_embd": args.n_embd, "n_head": args.n_head}
    flops_per_token = make_policy("transformer", task, seed=args.seed, **gpt).flops_per_token()
    matmul_size = args.matmul_size or 4 * args.n_embd
    observations, actions = transitions(task, demos)
    hf = hf_kinds(args)
    hf_demos = {k: _head(demos, args.mamba_samples) if k == "hf:mamba" else demos for k in hf}

    out = {"task": task, "L": L, "H": H, "flops_per_token": flops_per_token, "matmul_size": matmul_size,
           "gpt": gpt, "transitions": len(actions),
           "gpt_s": [], "matmul_flops": [], "ours_s": [], "sb3_s": [], "ours_mlp_s": [], "sb3_mlp_s": [],
           "hf": {k: {"s": [], "sequences": len(hf_demos[k]),
                      "flops_per_token": make_policy(k, task, seed=args.seed, **hf_args(k, gpt)).flops_per_token()}
                  for k in hf}}
    # (b) the window classes get a window of the whole stream, L + H tokens (what SB3's network sees)
    whole = {"window": L + H}
    ours_args = {} if args.policy == "transformer" else whole
    steps = args.batch_size * H  # transitions per per-transition step: as many targets as ours
    # warm-up on a few batches: first allocations, thread pools, lazy imports
    few, k = _head(demos, 2 * max(args.batch_size, args.train_batch_size)), 2 * steps
    bc_epoch(task, few, "transformer", gpt, 1, args.train_batch_size, args.lr, args.seed)
    bc_epoch(task, few, args.policy, ours_args, 1, args.batch_size, args.lr, args.seed)
    bc_epoch(task, few, "mlp", whole, 1, args.batch_size, args.lr, args.seed)
    for kind, kind_args in ((args.policy, ours_args), (None, None)):
        per_transition_epoch(make_sb3_policy(task, args.lr, args.seed, kind, kind_args), observations[:k], actions[:k],
                             steps, args.seed)
    for k in hf:  # one minibatch (Mamba's reference scan is slow: at most --mamba-samples sequences)
        bc_epoch(task, _head(hf_demos[k], args.train_batch_size), k, hf_args(k, gpt), 1, args.train_batch_size, args.lr,
                 args.seed)
    matmul_flops(matmul_size, seconds=0.05)
    for r in range(args.repeats):  # interleaved: one of each per repeat
        seconds, _, _ = bc_epoch(task, demos, "transformer", gpt, args.epochs, args.train_batch_size, args.lr, args.seed)
        out["gpt_s"].append(seconds)
        for k in hf:
            out["hf"][k]["s"].append(bc_epoch(task, hf_demos[k], k, hf_args(k, gpt), args.epochs, args.train_batch_size,
                                              args.lr, args.seed)[0])
        out["matmul_flops"].append(matmul_flops(matmul_size, seconds=max(0.2, min(2.0, seconds / 4))))
        out["ours_s"].append(bc_epoch(task, demos, args.policy, ours_args, 1, args.batch_size, args.lr, args.seed)[0])
        policy = make_sb3_policy(task, args.lr, args.seed, args.policy, ours_args)
        out["sb3_s"].append(per_transition_epoch(policy, observations, actions, steps, args.seed + r))
        out["ours_mlp_s"].append(bc_epoch(task, demos, "mlp", whole, 1, args.batch_size, args.lr, args.seed)[0])
        policy = make_sb3_policy(task, args.lr, args.seed)
        out["sb3_mlp_s"].append(per_transition_epoch(policy, observations, actions, steps, args.seed + r))
    return out


def _head(demos, n: int):
    """The first ``n`` demonstrations (a small warm-up set)."""
    from ar_envs.data import Demonstrations

    n = min(n, len(demos))
    return Demonstrations(demos.contexts[:n], demos.sequences[:n], None, demos.task_name, demos.task_args, demos.seed)


def report(res: dict, args: argparse.Namespace) -> str:
    med = {k: statistics.median(res[k]) for k in ("gpt_s", "matmul_flops", "ours_s", "sb3_s", "ours_mlp_s", "sb3_mlp_s")}
    n, L, H = args.samples, res["L"], res["H"]
    stream_tokens = args.epochs * n * (L + H)
    tokens_per_s = stream_tokens / med["gpt_s"]
    model_flops = tokens_per_s * res["flops_per_token"]
    utilisation = model_flops / med["matmul_flops"]
    speedup = med["sb3_s"] / med["ours_s"]
    task = res["task"]
    lines = [
        f"(a) transformer BC on path-star G({task.degree},{task.path_length}) N={task.num_nodes}: {n} sequences of "
        f"L + H = {L + H} stream tokens, GPT {res['gpt']}, batch {args.train_batch_size}, {args.epochs} epoch(s)",
        f"    training throughput      {tokens_per_s:,.0f} stream tokens/s ({tokens_per_s * H / (L + H):,.0f} answer tokens/s)",
        f"    model FLOPs per token    {res['flops_per_token']:,} (6 N + 12 n_layer n_embd T, forward + backward)",
        f"    achieved FLOP rate       {model_flops / 1e9:.2f} GFLOP/s",
        f"    torch.matmul {res['matmul_size']}x{res['matmul_size']} float32  {med['matmul_flops'] / 1e9:.2f} GFLOP/s",
        f"    utilisation              {utilisation:.2f} of matmul (target >= {TARGET_UTILISATION:.2f}: "
        f"{'ok' if utilisation >= TARGET_UTILISATION else 'BELOW'})",
        f"(b) one BC epoch over the same {n} sequences = {res['transitions']} transitions, {args.policy} (package default size)",
        f"    {'ours: BC, ' + str(args.batch_size) + ' sequences per step':<58}{med['ours_s']:8.3f} s/epoch",
        f"    {'per-transition: SB3 ActorCriticPolicy, ' + str(args.batch_size * H) + ' transitions per step':<58}"
        f"{med['sb3_s']:8.3f} s/epoch",
        f"    ratio per-transition / ours  {speedup:.1f}x (target >= {TARGET_SPEEDUP:.0f}x: "
        f"{'ok' if speedup >= TARGET_SPEEDUP else 'BELOW'})",
        f"    reference: BC(mlp over the whole stream) {med['ours_mlp_s']:.3f} s/epoch; stock SB3 MlpPolicy network, "
        f"per-transition {med['sb3_mlp_s']:.3f} s/epoch; ratio {med['sb3_mlp_s'] / med['ours_mlp_s']:.2f}x",
    ]
    if res["hf"]:
        lines.append(f"(c) Hugging Face transformers classes, BC as in (a) at GPT's size {res['gpt']} (Mamba without n_head); "
                     f"ratio = tokens/s against our GPT's {tokens_per_s:,.0f}")
    for kind, r in res["hf"].items():
        rate = args.epochs * r["sequences"] * (L + H) / statistics.median(r["s"])
        ratio = rate / tokens_per_s
        line = f"    {kind:<9} {rate:>10,.0f} stream tokens/s  ratio {ratio:5.2f}"
        if kind == "hf:mamba":
            line += f" ({1 / ratio:.1f}x slower than our GPT; {r['sequences']} sequences, transformers' reference CPU scan)"
        else:
            flops = rate * r["flops_per_token"]
            line += (f" (target >= {TARGET_HF_RATIO}: {'ok' if ratio >= TARGET_HF_RATIO else 'BELOW'})  "
                     f"{flops / 1e9:.2f} GFLOP/s = {flops / med['matmul_flops']:.2f} of matmul "
                     f"({r['flops_per_token']:,} FLOPs/token)")
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(
        prog="python -m ar_agents.evaluation.bench_train",
        description="Training speed: transformer BC FLOP utilisation against torch.matmul, and sequence BC "
                    "against per-transition BC through SB3, measured in one run (medians of interleaved repeats)."))
    args = parser.parse_args(argv)
    try:
        check_args(args)
    except (ValueError, ImportError) as exc:
        parser.error(str(exc))
    res_threads = args.threads or torch.get_num_threads()
    print(f"bench_train: {args.repeats} interleaved repeat(s), medians; torch {torch.__version__}, "
          f"{res_threads} thread(s), {os.cpu_count()} CPUs", flush=True)
    res = run(args)
    print(report(res, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
