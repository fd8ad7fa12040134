"""RL baselines: SB3's PPO on the environment's sequence reward, with our policy classes.

* ``"ppo"`` (:class:`PPO`): PPO from scratch (or from a given TokenPolicy's weights). The
  demonstrations are not used: the only signal is the task's reward at the end of each episode.
* ``"ppo-from-bc"`` (:class:`PPOFromBC`): behavior cloning on the demonstrations first
  (:class:`~ar_agents.algorithms.bc.BC` on the same policy class), then PPO fine-tuning from it.

The policy is one of ``ar_agents.policies``' TokenPolicy classes, trained by
``stable_baselines3.PPO`` through :class:`ar_agents.integrations.sb3_policy.TokenActorCriticPolicy` (actor: the
TokenPolicy's next-token logits; critic: a separate network of the same class with a 1-unit
head) on :class:`ar_agents.integrations.sb3_vec_env.SequenceVecEnv` (the native batched environment). The
returned policy is the trained TokenPolicy (``model.policy.token_policy``).

Discounting: ``gamma = 1`` by default, since the reward is the undiscounted sequence reward at
the last token of a fixed-length episode. ``PPO(seed=...)`` seeds SB3, which seeds torch,
Python's ``random`` and numpy's *global* generator (SB3's behaviour) and the environment:
the same seed gives the same weights.

The log: ``total_timesteps``, ``ppo_s`` (time in ``learn``), ``steps_per_s``, ``reward_before``
/ ``reward_after`` (mean task reward of ``eval_episodes`` episodes *sampled* from the policy,
the quantity PPO maximises, on the same contexts before and after PPO),
``greedy_reward_after`` (greedy decoding), ``wall_s``, and for ``ppo-from-bc`` the BC log.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ar_envs.core import check_float, check_int

from ar_agents.policies.base import TokenPolicy, stream_spec
from ar_agents.training import DEFAULT_POLICY, check_policy_spec, policy_kind
from ar_agents.algorithms.base import Algorithm
from ar_agents.algorithms.bc import BC
from ar_agents.evaluation.progress import listening, report


def evaluation_set(task, seed: int, n: int):
    """``(contexts (n, L), generator)`` of the before/after evaluation of a fit with ``seed``."""
    rng = np.random.default_rng([seed, 7_000_003])
    return task.sample_contexts(n, rng), rng


def mean_reward(task, policy, contexts, rng: np.random.Generator, greedy: bool = False) -> float:
    """Mean task reward of ``policy`` on ``contexts`` (sampled decoding, or greedy)."""
    sequences = policy.greedy(contexts) if greedy else policy.sample(contexts, rng)
    return float(np.mean(task.reward(contexts, sequences)))


class PPO(Algorithm):
    """SB3 PPO on the sequence reward, policy ``policy`` (a kind name or a TokenPolicy to start from).

    Args:
        total_timesteps: environment steps (tokens) PPO collects in all.
        n_envs: environment copies stepped in lockstep (one batch).
        learning_rate: Adam step size of PPO.
        n_steps: steps per copy between updates (a roll-out has ``n_steps * n_envs`` steps).
        batch_size: minibatch size of the PPO update.
        n_epochs: passes over each roll-out.
        gamma, gae_lambda: discount and GAE parameter.
        clip_range: PPO's ratio clipping.
        ent_coef: entropy bonus weight.
        policy: a kind of ``ar_agents.policies.POLICY_KINDS`` (``"transformer"``, ``"hf:llama"``, ...),
            or a TokenPolicy whose weights PPO starts from (then ``policy_args`` must be empty).
        policy_args: constructor arguments of the policy class (``ar_agents.policies.make_policy``).
        critic_args: arguments in which the critic differs from the actor (same class).
        eval_episodes: sampled episodes for ``reward_before`` / ``reward_after``.
        torch_threads: torch's intra-op threads during ``fit`` (restored afterwards); ``None``
            keeps torch's setting. Default 1: PPO runs one small forward pass per environment
            step, where extra threads only add synchronisation (on a loaded 2-core machine a
            2-thread fit measured about 25x slower than a 1-thread one).
    """

    name = "ppo"

    def __init__(self, total_timesteps: int = 20_000, n_envs: int = 8, learning_rate: float = 3e-4, n_steps: int = 64,
                 batch_size: int = 128, n_epochs: int = 4, gamma: float = 1.0, gae_lambda: float = 0.95,
                 clip_range: float = 0.2, ent_coef: float = 0.0, policy=None, policy_args: dict | None = None,
                 critic_args: dict | None = None, eval_episodes: int = 1000, torch_threads: int | None = 1):
        super().__init__()
        self.total_timesteps = check_int("total_timesteps", total_timesteps, 1)
        self.n_envs = check_int("n_envs", n_envs, 1)
        self.learning_rate = check_float("learning_rate", learning_rate, 0.0, low_open=True)
        self.n_steps = check_int("n_steps", n_steps, 1)
        if self.n_steps * self.n_envs < 2:
            raise ValueError(f"n_steps * n_envs must be >= 2 (PPO normalises advantages over a roll-out), got {self.n_steps} * {self.n_envs}")
        self.batch_size = check_int("batch_size", batch_size, 2)
        self.n_epochs = check_int("n_epochs", n_epochs, 1)
        self.gamma = check_float("gamma", gamma, 0.0, 1.0)
        self.gae_lambda = check_float("gae_lambda", gae_lambda, 0.0, 1.0)
        self.clip_range = check_float("clip_range", clip_range, 0.0, low_open=True)
        self.ent_coef = check_float("ent_coef", ent_coef, 0.0)
        check_policy_spec(policy, policy_args)
        if isinstance(policy, TokenPolicy) and policy_args:
            raise ValueError(f"policy_args must be empty when policy is a TokenPolicy instance, got {policy_args}")
        if critic_args is not None and not isinstance(critic_args, dict):
            raise ValueError(f"critic_args must be a dict of keyword arguments, got {critic_args!r}")
        self.policy = policy
        self.policy_args = policy_args
        self.critic_args = critic_args
        self.eval_episodes = check_int("eval_episodes", eval_episodes, 1)
        self.torch_threads = None if torch_threads is None else check_int("torch_threads", torch_threads, 1)

    # the starting weights of the actor: none (fresh), a given TokenPolicy's, or BC's (PPOFromBC)
    def initial_policy(self, task, demos, seed: int) -> TokenPolicy | None:
        return self.policy if isinstance(self.policy, TokenPolicy) else None

    def fit(self, task, demos, seed: int = 0):
        threads = torch.get_num_threads()
        if self.torch_threads is not None:
            torch.set_num_threads(self.torch_threads)
        try:
            return self._fit(task, demos, seed)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, task, demos, seed: int):
        from stable_baselines3 import PPO as SB3PPO

        from ar_agents.integrations.sb3_policy import TokenActorCriticPolicy, load_token_policy
        from ar_agents.integrations.sb3_vec_env import SequenceVecEnv

        seed = check_int("seed", seed, 0, 2**32 - 1)  # SB3 seeds numpy's legacy generator (< 2^32)
        start = time.perf_counter()
        self.log = {}
        init = self.initial_policy(task, demos, seed)
        if init is not None and init.spec != stream_spec(task):
            raise ValueError(f"policy was built for another stream ({init.spec}); this task needs {stream_spec(task)}")
        if init is not None:
            kind, args = type(init), init.config
        else:
            kind, args = self.policy or DEFAULT_POLICY, dict(self.policy_args or {})
        venv = SequenceVecEnv(task, n_envs=self.n_envs)
        model = SB3PPO(
            TokenActorCriticPolicy, venv, learning_rate=self.learning_rate, n_steps=self.n_steps,
            batch_size=self.batch_size, n_epochs=self.n_epochs, gamma=self.gamma, gae_lambda=self.gae_lambda,
            clip_range=self.clip_range, ent_coef=self.ent_coef, seed=seed, device="cpu", verbose=0,
            policy_kwargs=dict(task=task, policy_kind=kind, policy_args=args, critic_args=self.critic_args),
        )
        if init is not None:
            load_token_policy(model.policy, init)
        policy = model.policy.token_policy

        contexts, eval_rng = evaluation_set(task, seed, self.eval_episodes)
        before = mean_reward(task, policy, contexts, eval_rng)
        learn_start = time.perf_counter()
        model.learn(total_timesteps=self.total_timesteps, callback=_progress_callback(self.total_timesteps))
        ppo_s = time.perf_counter() - learn_start
        policy.eval()
        after = mean_reward(task, policy, contexts, eval_rng)
        greedy_after = mean_reward(task, policy, contexts, eval_rng, greedy=True)

        self.log.update({
            "policy_class": policy_kind(policy),
            "policy": policy.describe(),
            "total_timesteps": int(model.num_timesteps),
            "n_envs": self.n_envs,
            "learning_rate": self.learning_rate,
            "ppo_s": ppo_s,
            "steps_per_s": model.num_timesteps / ppo_s if ppo_s > 0 else None,
            "reward_before": before,
            "reward_after": after,
            "greedy_reward_after": greedy_after,
            "eval_episodes": self.eval_episodes,
            "wall_s": time.perf_counter() - start,
        })
        return policy


class PPOFromBC(PPO):
    """Behavior cloning on the demonstrations, then PPO fine-tuning from the BC policy.

    Takes :class:`PPO`'s arguments (``policy`` a kind name; default learning rate ``1e-4``,
    smaller than from scratch, so that fine-tuning does not wash out the BC start) and BC's:
    ``bc_epochs``, ``bc_lr``, ``bc_batch_size`` (teacher-forced cross-entropy, see
    :class:`~ar_agents.algorithms.bc.BC`). The SB3 actor starts with exactly the BC policy's
    next-token probabilities; ``log["bc"]`` is BC's log, ``reward_before`` the BC policy's reward.
    """

    name = "ppo-from-bc"

    def __init__(self, total_timesteps: int = 20_000, n_envs: int = 8, learning_rate: float = 1e-4, n_steps: int = 64,
                 batch_size: int = 128, n_epochs: int = 4, gamma: float = 1.0, gae_lambda: float = 0.95,
                 clip_range: float = 0.2, ent_coef: float = 0.0, policy=None, policy_args: dict | None = None,
                 critic_args: dict | None = None, eval_episodes: int = 1000, torch_threads: int | None = 1,
                 bc_epochs: int = 20, bc_lr: float = 1e-3, bc_batch_size: int = 64):
        super().__init__(total_timesteps=total_timesteps, n_envs=n_envs, learning_rate=learning_rate, n_steps=n_steps,
                         batch_size=batch_size, n_epochs=n_epochs, gamma=gamma, gae_lambda=gae_lambda,
                         clip_range=clip_range, ent_coef=ent_coef, policy=policy, policy_args=policy_args,
                         critic_args=critic_args, eval_episodes=eval_episodes, torch_threads=torch_threads)
        if isinstance(policy, TokenPolicy):
            raise ValueError("policy must be a kind name ('linear', 'mlp', 'transformer') or None for ppo-from-bc "
                             "(BC trains it first); to fine-tune a trained TokenPolicy use ppo with policy=<it>")
        self.bc = BC(policy=policy or DEFAULT_POLICY, policy_args=policy_args, epochs=bc_epochs, lr=bc_lr,
                     batch_size=bc_batch_size)

    def initial_policy(self, task, demos, seed: int) -> TokenPolicy:
        policy = self.bc.fit(task, demos, seed)
        self.log["bc"] = dict(self.bc.log)
        return policy


def _progress_callback(total: int):
    """An SB3 callback reporting ``("ppo step", timesteps so far, total)`` after each roll-out
    (``ar_agents.evaluation.progress``); ``None`` when nobody listens."""
    if not listening():
        return None
    from stable_baselines3.common.callbacks import BaseCallback

    class Report(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            report("ppo step", int(self.num_timesteps), total)

    return Report()
