"""DAgger (Ross, Gordon & Bagnell 2011): beta-mixture roll-in, expert relabelling, aggregation.

Round 0 is behavior cloning on the demonstrations. Each later round ``r`` rolls in from fresh
contexts with the mixture that executes the expert's action with probability ``beta_r`` (else the
current policy's), labels every visited prefix with the expert's next-token distribution
(``task.expert_probs``: the expert is defined after any prefix), adds the labelled roll-outs to
everything gathered so far and retrains the policy on the aggregate, starting from the previous
round's weights.

The loss is the cross-entropy against the expert's *distribution* at each prefix (soft labels;
for a deterministic expert, the usual one-hot labels; demonstrations count as one-hot labels of
the demonstrated token). Beta schedules, as in the ``imitation`` library (beta = probability of
executing the expert's action, round ``r = 0, 1, ..``): ``"linear"``
``beta_r = min(1, max(0, (R - r) / R))`` with ``R = beta_rampdown`` (default: ``rounds``, so the
last round is the policy's own roll-out) and ``"exponential"`` ``beta_r = p^r`` with
``p = beta_decay``.

:func:`dagger_with_env` runs the same loop through a Gymnasium environment and an expert policy
object (:class:`ar_envs.expert.ExpertPolicy`), the route for code that only has an env.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ar_envs.core import check_choice, check_float, check_int
from ar_envs.data import check_demonstrations

from ar_agents.evaluation.progress import report
from ar_agents.loglinear_fit import fit_cross_entropy, state_label_sums, visit_counts
from ar_agents.policies.loglinear import LogLinearPolicy
from ar_agents.training import (DEFAULT_POLICY, ExpertOracle, build_policy, check_policy_spec, check_training_args, finish_log,
                        mix_actions, mixture_rollout, new_log, one_hot, seed_everything, train)
from ar_agents.algorithms.base import Algorithm, fits_loglinear_class

BETA_SCHEDULES = ("linear", "exponential")


class BetaSchedule:
    """``r -> beta_r`` (a plain object, so algorithms holding one can be pickled to worker processes)."""

    def __init__(self, kind: str, rampdown: int, decay: float = 0.5):
        self.kind = check_choice("beta_schedule", kind, BETA_SCHEDULES)
        self.rampdown = check_int("beta_rampdown", rampdown, 1)
        self.decay = check_float("beta_decay", decay, 0.0, 1.0, high_open=True)

    def __call__(self, r: int) -> float:
        """``"linear"``: ``min(1, max(0, (R - r) / R))`` with ``R = rampdown``; ``"exponential"``:
        ``decay ** r``. Both give ``beta_0 = 1`` (round 0 is the expert's)."""
        if self.kind == "linear":
            return min(1.0, max(0.0, (self.rampdown - r) / self.rampdown))
        return self.decay**r


def run_dagger(policy, data, collect, beta, *, rounds, epochs, lr, batch_size, rng, log, queries):
    """The DAgger loop shared by :class:`DAgger` and :func:`dagger_with_env`.

    ``data``: the round-0 arrays ``(contexts (n, L), sequences (n, H), labels (n, H, V))``;
    ``collect(beta) -> same arrays`` for one round of labelled roll-outs; ``beta(r)``;
    ``queries()`` the expert queries so far. Returns the aggregated arrays and each row's round.
    """

    def loss(batch, epoch):
        contexts, sequences, labels = batch
        log_probs = F.log_softmax(policy.answer_logits(contexts, sequences), dim=-1)  # (n, H, V), one pass
        return -(torch.as_tensor(labels) * log_probs).sum(dim=-1).mean()  # cross-entropy against the expert

    H = policy.horizon
    rows_round = np.zeros(len(data[0]), dtype=np.int64)
    log["rounds"] = []
    for r in range(rounds + 1):
        report("round", r + 1, rounds + 1)
        if r > 0:  # roll in with the mixture, label the visited prefixes, aggregate
            fresh = collect(beta(r))
            data = tuple(np.concatenate([old, new]) for old, new in zip(data, fresh))
            rows_round = np.concatenate([rows_round, np.full(len(fresh[0]), r)])
        train(policy, loss, data, epochs=epochs, lr=lr, batch_size=batch_size, rng=rng, log=log, tokens_per_row=H)
        log["rounds"].append({"round": r, "beta": beta(r), "rows": len(data[0]), "expert_queries": queries(),
                              "loss": log["loss_curve"][-1]})
    log["expert_queries"] = queries()
    return data, rows_round


class DAgger(Algorithm):
    """DAgger: beta-mixture roll-in, expert relabelling after any prefix, aggregation, retraining.

    Round 0 trains on the demonstrations; each of ``rounds`` later rounds adds ``rollouts`` roll-outs.

    Round ``r`` rolls in with the mixture that executes the expert's action with probability
    ``beta_r`` (schedules ``"linear"`` ``min(1, max(0, (R - r) / R))``, ``R = beta_rampdown``
    default ``rounds``; ``"exponential"`` ``beta_decay ** r``), queries the expert exactly once
    at every visited prefix, and retrains (warm start) for ``epochs`` on all data so far with
    the cross-entropy against the expert's distributions. ``rollouts`` defaults to the number
    of demonstrations. ``policy`` / ``policy_args`` / ``lr`` / ``batch_size`` as for BC.
    After ``fit``, ``self.dataset`` holds the aggregate (``contexts``, ``sequences``,
    ``labels``, ``round`` of each row).

    On a task with a log-linear class and no ``policy`` given, DAgger runs on that class (so its
    C(H) is exact, side by side with BC's): the same roll-ins and labels, and each round refits
    the cross-entropy against all labels so far by L-BFGS on weighted visit counts
    (``epochs`` / ``lr`` / ``batch_size`` then do not apply).
    """

    name = "dagger"

    def __init__(self, policy=None, policy_args: dict | None = None, rounds: int = 4, rollouts: int | None = None,
                 beta_schedule: str = "linear", beta_rampdown: int | None = None, beta_decay: float = 0.5,
                 epochs: int = 10, lr: float = 1e-3, batch_size: int = 64):
        super().__init__()
        check_policy_spec(policy, policy_args)
        self.policy, self.policy_args = policy, policy_args
        self.rounds = check_int("rounds", rounds, 0)
        self.rollouts = None if rollouts is None else check_int("rollouts", rollouts, 1)
        self.beta_rampdown = max(self.rounds, 1) if beta_rampdown is None else beta_rampdown
        self.beta = BetaSchedule(beta_schedule, self.beta_rampdown, beta_decay)
        self.beta_schedule, self.beta_decay = beta_schedule, beta_decay
        self.epochs, self.lr, self.batch_size = check_training_args(epochs, lr, batch_size)

    def fit(self, task, demos, seed: int = 0):
        check_demonstrations(task, demos)
        if fits_loglinear_class(self, task):
            return self._fit_loglinear(task, demos, seed)
        rng = seed_everything(seed)
        policy = build_policy(self.policy or DEFAULT_POLICY, task, self.policy_args, seed=seed)
        self.log = new_log(policy)
        oracle = ExpertOracle(task)
        m = self.rollouts or len(demos)

        def collect(beta):
            contexts = task.sample_contexts(m, rng)
            sequences, labels = mixture_rollout(policy, oracle, contexts, beta, rng)
            return contexts, sequences, labels.astype(np.float32)

        demos_data = (demos.contexts, demos.sequences, one_hot(demos.sequences, task.vocab_size))
        data, rows_round = run_dagger(policy, demos_data, collect, self.beta, rounds=self.rounds, epochs=self.epochs,
                                      lr=self.lr, batch_size=self.batch_size, rng=rng, log=self.log,
                                      queries=lambda: oracle.queries)
        self.dataset = {"contexts": data[0], "sequences": data[1], "labels": data[2], "round": rows_round}
        finish_log(self.log, rollouts_per_round=m, beta_schedule=self.beta_schedule, epochs=self.epochs, lr=self.lr,
                   batch_size=self.batch_size)
        return policy

    def _fit_loglinear(self, task, demos, seed):
        """DAgger on the task's log-linear class: the same roll-in, labels and aggregation; each
        round refits the cross-entropy against the aggregate's labels exactly (L-BFGS on the
        weighted sufficient statistics ``W[c, s, a]``, warm start), instead of Adam epochs."""
        fm = task.feature_map()
        rng = np.random.default_rng(check_int("seed", seed, 0))
        oracle = ExpertOracle(task)
        m = self.rollouts or len(demos)
        report("round", 1, self.rounds + 1)
        W = visit_counts(fm, demos.contexts, demos.sequences)  # round 0: demonstrated tokens, one-hot labels
        rows = len(demos)
        theta, loss = fit_cross_entropy(fm, W, rows)
        self.log = {"policy_class": "log-linear", "rounds": [{"round": 0, "beta": self.beta(0), "rows": rows,
                                                               "expert_queries": 0, "loss": loss}]}
        for r in range(1, self.rounds + 1):
            report("round", r + 1, self.rounds + 1)
            policy = LogLinearPolicy(task, theta, fm)
            contexts = task.sample_contexts(m, rng)
            sequences, labels = mixture_rollout(policy, oracle, contexts, self.beta(r), rng)
            W = W + state_label_sums(fm, contexts, sequences, labels)  # aggregate
            rows += m
            theta, loss = fit_cross_entropy(fm, W, rows, theta0=theta)
            self.log["rounds"].append({"round": r, "beta": self.beta(r), "rows": rows,
                                       "expert_queries": oracle.queries, "loss": loss})
        self.log.update(expert_queries=oracle.queries, rollouts_per_round=m, beta_schedule=self.beta_schedule,
                        loss=loss, theta=theta.tolist())
        return LogLinearPolicy(task, theta, fm)


def dagger_with_env(env, expert_policy=None, policy=DEFAULT_POLICY, *, policy_args: dict | None = None,
                    env_kwargs: dict | None = None, rounds: int = 3, episodes: int = 100,
                    beta_schedule: str = "linear", beta_rampdown: int | None = None, beta_decay: float = 0.5,
                    epochs: int = 10, lr: float = 1e-3, batch_size: int = 64, seed: int = 0):
    """DAgger through a Gymnasium environment and an expert policy object. Returns ``(policy, log)``.

    ``env``: an environment id (``"ar_envs/PathStar-v0"``, made with ``env_kwargs``, and with
    ``expert_probs=True`` unless ``env_kwargs`` says otherwise) or a single (non-vector) env
    with this package's observations: the context, then the tokens so far padded with ``V``.
    ``expert_policy``: an object with ``action_probs(obs) -> (1, V)``
    (:class:`ar_envs.expert.ExpertPolicy`); ``None`` reads the label from
    ``info["expert_probs"]`` (an env made with ``expert_probs=True``). ``policy``: a kind name
    (needs ``env.unwrapped.task``) or a ``TokenPolicy`` to start from (copied).

    Round 0 plays ``episodes`` episodes with ``beta_0 = 1`` (the expert's own roll-outs); round
    ``r`` plays ``episodes`` episodes with the beta-mixture, reading the expert's distribution
    at every step as the label; then the aggregate is retrained as in :class:`DAgger`.
    """
    import gymnasium as gym

    from ar_agents.policies.base import TokenPolicy

    check_policy_spec(policy, policy_args)
    rounds = check_int("rounds", rounds, 0)
    episodes = check_int("episodes", episodes, 1)
    beta = BetaSchedule(beta_schedule, max(rounds, 1) if beta_rampdown is None else beta_rampdown, beta_decay)
    epochs, lr, batch_size = check_training_args(epochs, lr, batch_size)
    if isinstance(env, str):
        env = gym.make(env, **{"expert_probs": True, **(env_kwargs or {})})
    elif env_kwargs:
        raise ValueError("env_kwargs apply only when env is an environment id")
    if not isinstance(env, gym.Env):
        raise ValueError(f"env must be a gymnasium.Env or an environment id, got {type(env).__name__}")
    if expert_policy is not None and not callable(getattr(expert_policy, "action_probs", None)):
        raise ValueError("expert_policy must have action_probs(obs) (e.g. ar_envs.expert.ExpertPolicy), or be None")
    rng = seed_everything(seed)
    task = getattr(env.unwrapped, "task", None)
    if task is None and not isinstance(policy, TokenPolicy):
        raise ValueError("policy given by name needs env.unwrapped.task to size it; pass a TokenPolicy instead")
    else:
        model = build_policy(policy, task, policy_args, seed=seed)
    L, H, V = model.context_length, model.horizon, model.vocab_size
    if tuple(env.observation_space.shape) != (L + H,):
        raise ValueError(f"env observations must have shape ({L + H},) for this policy, got {env.observation_space.shape}")
    log = new_log(model)
    count = [0]
    first_reset = [True]

    def expert_label(obs, info):
        count[0] += 1
        if expert_policy is not None:
            return np.asarray(expert_policy.action_probs(obs), dtype=np.float64).reshape(V)
        if "expert_probs" not in info:
            raise ValueError("the env's info has no 'expert_probs': make the env with expert_probs=True, or pass expert_policy")
        return np.asarray(info["expert_probs"], dtype=np.float64).reshape(V)

    def collect(beta_r):
        contexts = np.zeros((episodes, L), dtype=np.int64)
        sequences = np.zeros((episodes, H), dtype=np.int64)
        labels = np.zeros((episodes, H, V), dtype=np.float32)
        for i in range(episodes):
            obs, info = env.reset(seed=seed if first_reset[0] else None)
            first_reset[0] = False
            for h in range(H):
                labels[i, h] = expert_label(obs, info)
                own = model.next_token_probs(obs[None, :L], obs[None, L : L + h])
                action = int(mix_actions(labels[i, h][None].astype(np.float64), own, beta_r, rng)[0])
                obs, _, terminated, truncated, info = env.step(action)
                if (terminated or truncated) != (h == H - 1):
                    raise ValueError(f"the env's episodes must last exactly H = {H} steps")
            contexts[i], sequences[i] = obs[:L], obs[L:]
        return contexts, sequences, labels

    data, _ = run_dagger(model, collect(beta(0)), collect, beta, rounds=rounds, epochs=epochs, lr=lr,
                         batch_size=batch_size, rng=rng, log=log, queries=lambda: count[0])
    finish_log(log, episodes_per_round=episodes, beta_schedule=beta_schedule, epochs=epochs, lr=lr,
               batch_size=batch_size)
    return model, log

