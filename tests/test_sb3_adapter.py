"""The expert as an SB3 BasePolicy (ar_agents.integrations.sb3.ExpertSB3Policy)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import DummyVecEnv

import ar_envs
from ar_agents.integrations.sb3 import ExpertSB3Policy
from ar_envs import ExpertPolicy
from ar_envs.tasks import PathStar, TwoBranch


def test_is_an_sb3_base_policy_with_the_env_spaces():
    task = TwoBranch(horizon=5, eps=0.2)
    policy = ExpertSB3Policy(task)
    env = ar_envs.SequenceEnv(task)
    assert isinstance(policy, BasePolicy)
    assert policy.observation_space == env.observation_space
    assert policy.action_space == env.action_space
    assert len(list(policy.parameters())) == 0
    with pytest.raises(ValueError, match="task"):
        ExpertSB3Policy("two-branch")


@pytest.mark.parametrize("deterministic", [True, False])
def test_evaluate_policy_two_branch_reward_one(deterministic):
    env = Monitor(gym.make("ar_envs/TwoBranch-v0", horizon=8, eps=0.3))
    policy = ExpertSB3Policy(env.unwrapped.task, seed=0)
    mean, std = evaluate_policy(policy, env, n_eval_episodes=40, deterministic=deterministic)
    assert mean == 1.0 and std == 0.0


def test_evaluate_policy_path_star_vectorised():
    kwargs = dict(degree=3, path_length=4, num_nodes=20)
    venv = DummyVecEnv([lambda: Monitor(gym.make("ar_envs/PathStar-v0", **kwargs))] * 4)
    venv.seed(0)
    rewards, lengths = evaluate_policy(ExpertSB3Policy(PathStar(**kwargs)), venv, n_eval_episodes=20, return_episode_rewards=True)
    assert rewards == [1.0] * 20 and lengths == [4] * 20


def test_predict_equals_expert_argmax_on_batches_and_single_observations():
    task = ar_envs.make_task("linear-ar", horizon=4, vocab_size=4)
    venv = gym.make_vec("ar_envs/LinearAR-v0", num_envs=32, vectorization_mode="vector_entry_point", expert_probs=True,
                        **task.task_args())
    policy, expert = ExpertSB3Policy(task), ExpertPolicy(task)
    obs, info = venv.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(task.horizon):
        actions, state = policy.predict(obs, deterministic=True)
        assert state is None and actions.shape == (32,)
        assert np.array_equal(actions, expert.predict(obs, deterministic=True)[0])
        assert np.array_equal(actions, info["expert_probs"].argmax(axis=1))
        one, _ = policy.predict(obs[3], deterministic=True)
        assert one.shape == () and one == actions[3]
        obs, _, _, _, info = venv.step(rng.integers(0, 4, size=32))  # off the expert's path too


def test_sampled_actions_follow_the_expert_distribution():
    eps, n = 0.3, 4000
    task = TwoBranch(horizon=3, eps=eps)
    obs = np.full((n, 3), 2, dtype=np.int64)  # the empty prefix: a_1 ~ Bern(eps)
    actions, _ = ExpertSB3Policy(task, seed=0).predict(obs, deterministic=False)
    assert abs(actions.mean() - eps) <= 4 * math.sqrt(eps * (1 - eps) / n)
    # the same seed, the same draws
    again, _ = ExpertSB3Policy(task, seed=0).predict(obs, deterministic=False)
    assert np.array_equal(actions, again)
    # after a_1 = 0 the expert emits 0 whatever the mode
    obs[:, 0] = 0
    assert not ExpertSB3Policy(task, seed=1).predict(obs)[0].any()


def test_save_and_load(tmp_path):
    task = TwoBranch(horizon=4, eps=0.1)
    policy = ExpertSB3Policy(task, seed=3)
    policy.save(tmp_path / "expert.pt")
    loaded = ExpertSB3Policy.load(tmp_path / "expert.pt")
    assert loaded.task.task_args() == task.task_args() and loaded.seed == 3
    obs = np.array([[1, 2, 2, 2], [0, 2, 2, 2]])
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], [0, 0])
