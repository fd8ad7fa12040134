"""SB3 integration: the TokenPolicy adapter (ar_agents.integrations.sb3_policy), the SB3 VecEnv over the native
batched env (ar_agents.integrations.sb3_vec_env), action masks and MaskablePPO, and the "ppo" / "ppo-from-bc"
algorithms (ar_agents.algorithms.ppo)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO as SB3PPO
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecCheckNan, VecEnvWrapper, VecMonitor

import ar_envs
from ar_agents.algorithms.bc import BC
from ar_agents.algorithms.ppo import PPO, PPOFromBC, evaluation_set, mean_reward
from ar_agents.policies import make_policy
from ar_agents.policies.base import stream_spec
from ar_agents.integrations.sb3 import ExpertSB3Policy
from ar_agents.integrations.sb3_policy import TokenActorCriticPolicy, load_token_policy
from ar_agents.integrations.sb3_vec_env import SequenceVecEnv
from ar_envs.data import generate
from ar_envs.expert import ExpertPolicy
from ar_envs.tasks import Multiplication, Parity, PathStar, TwoBranch

SMALL = {
    "linear": dict(window=4, embed_dim=8),
    "mlp": dict(window=4, embed_dim=8, hidden=16),
    "transformer": dict(n_layer=1, n_head=2, n_embd=16),
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead on shared cores
    yield
    torch.set_num_threads(threads)


def _tasks():
    return [TwoBranch(horizon=3, eps=0.3), PathStar(degree=3, path_length=4, num_nodes=20),
            Multiplication(digits=1, cot="full"), Parity(n_bits=3, cot="running")]


def _ppo(task, venv, kind="mlp", seed=0, **kwargs):
    return SB3PPO(TokenActorCriticPolicy, venv, n_steps=16, batch_size=32, n_epochs=2, seed=seed, device="cpu",
                  policy_kwargs=dict(task=task, policy_kind=kind, policy_args=SMALL[kind]), **kwargs)


def _actor_probs(model, obs) -> np.ndarray:
    with torch.no_grad():
        return model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0]).distribution.probs.numpy()


# --------------------------------------------------------------------------------------------
# the VecEnv
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", _tasks(), ids=lambda t: type(t).__name__)
def test_vec_env_with_one_copy_equals_dummy_vec_env_step_for_step(task):
    ours = SequenceVecEnv(task, n_envs=1)
    ref = DummyVecEnv([lambda: ar_envs.SequenceEnv(task)])
    ours.seed(5)
    ref.seed(5)
    assert np.array_equal(ours.reset(), ref.reset())
    rng = np.random.default_rng(0)
    for _ in range(5 * task.horizon + 2):  # several episodes, off the expert's path too
        assert ours.reset_infos[0].keys() == ref.reset_infos[0].keys()
        assert ours.reset_infos[0]["expert_action"] == ref.reset_infos[0]["expert_action"]
        actions = rng.integers(0, task.vocab_size, size=1)
        (o1, r1, d1, i1), (o2, r2, d2, i2) = ours.step(actions), ref.step(actions)
        assert np.array_equal(o1, o2) and np.array_equal(d1, d2)
        assert np.array_equal(r1, r2) and r1.dtype == r2.dtype == np.float32
        assert i1[0].keys() == i2[0].keys()
        for key in i1[0]:
            assert np.array_equal(i1[0][key], i2[0][key]), key


def test_vec_env_law_equals_dummy_vec_env_with_many_copies():
    # uniformly random tokens on TwoBranch(H=3): reward 1 iff a_1 = 1 or all zeros, p = 1/2 + 1/8
    task, n, episodes_per_copy = TwoBranch(horizon=3, eps=0.3), 16, 25
    p = 0.625
    for venv in (SequenceVecEnv(task, n_envs=n), DummyVecEnv([(lambda: ar_envs.SequenceEnv(task)) for _ in range(n)])):
        venv.seed(3)
        venv.reset()
        rng = np.random.default_rng(1)
        rewards = []
        for _ in range(episodes_per_copy * task.horizon):
            _, r, d, _ = venv.step(rng.integers(0, 2, size=n))
            rewards.extend(r[d])
        rewards = np.array(rewards)
        assert len(rewards) == n * episodes_per_copy
        assert abs(rewards.mean() - p) <= 4.5 * math.sqrt(p * (1 - p) / len(rewards))


@pytest.mark.parametrize("task", _tasks(), ids=lambda t: type(t).__name__)
def test_expert_gets_reward_one_in_both_vec_envs(task):
    n = 4
    for venv in (SequenceVecEnv(task, n_envs=n), DummyVecEnv([(lambda: ar_envs.SequenceEnv(task)) for _ in range(n)])):
        venv = VecCheckNan(venv, raise_exception=True)
        venv.seed(0)
        obs = venv.reset()
        expert = ExpertSB3Policy(task, seed=0)
        ends = 0
        for step in range(3 * task.horizon):
            obs, rewards, dones, infos = venv.step(expert.predict(obs, deterministic=True)[0])
            assert dones.all() == ((step + 1) % task.horizon == 0) and dones.all() == dones.any()
            if dones.any():
                ends += 1
                assert np.all(rewards == 1.0)
                for info in infos:
                    assert venv.observation_space.contains(info["terminal_observation"])
                    assert not info["TimeLimit.truncated"]
                    assert (info["terminal_observation"][task.context_length :] != task.vocab_size).all()
            else:
                assert np.all(rewards == 0.0)
            for row in obs:
                assert venv.observation_space.contains(row)
        assert ends == 3


def test_vec_env_seeding_truncation_and_attributes():
    task = PathStar(degree=2, path_length=3, num_nodes=8)
    a, b = SequenceVecEnv(task, n_envs=3), SequenceVecEnv(task, n_envs=3)
    assert a.seed(7) == [7, 8, 9]
    b.seed(7)
    assert np.array_equal(a.reset(), b.reset())
    # get_attr / set_attr / env_method / has_attr / env_is_wrapped
    assert a.get_attr("task") == [task] * 3 and a.get_attr("render_mode", indices=1) == [None]
    assert a.has_attr("action_masks") and not a.has_attr("no_such_attribute")
    a.set_attr("some_flag", 3)
    assert a.env.some_flag == 3
    with pytest.raises(ValueError, match="indices"):
        a.set_attr("some_flag", 4, indices=[0])
    with pytest.raises(ValueError, match="indices"):
        a.get_attr("task", indices=[5])
    masks = a.env_method("action_masks", indices=[2, 0])
    assert len(masks) == 2 and np.array_equal(masks[0], a.action_masks()[2])
    assert a.env_is_wrapped(VecMonitor) == [False] * 3
    # truncation: TimeLimit.truncated in the info, the reset happens in the same step
    t = SequenceVecEnv(task, n_envs=2, max_episode_steps=2)
    t.seed(0)
    t.reset()
    t.step(np.zeros(2, dtype=np.int64))
    obs, _, dones, infos = t.step(np.zeros(2, dtype=np.int64))
    assert dones.all() and all(i["TimeLimit.truncated"] for i in infos)
    assert (obs[:, task.context_length :] == task.vocab_size).all()  # new episodes
    # bad input
    with pytest.raises(ValueError, match="task"):
        SequenceVecEnv("path-star")
    with pytest.raises(ValueError, match="num_envs"):
        SequenceVecEnv(task, n_envs=0)
    with pytest.raises(ValueError, match="actions"):
        a.step(np.zeros(2, dtype=np.int64))


def test_render_ansi():
    task = TwoBranch(horizon=3, eps=0.3)
    venv = SequenceVecEnv(task, n_envs=2, render_mode="ansi")
    venv.reset()
    venv.step(np.array([1, 0]))
    assert venv.render() == "1\n0"
    with pytest.raises(ValueError, match="mode"):
        venv.render("rgb_array")


# --------------------------------------------------------------------------------------------
# action masks
# --------------------------------------------------------------------------------------------

MASKED_TASKS = [
    PathStar(degree=3, path_length=4, num_nodes=20),
    PathStar(degree=3, path_length=4, num_nodes=20, order="reverse", off_path="consistent"),
    PathStar(degree=2, path_length=5, num_nodes=12, off_path="consistent"),
    Multiplication(digits=2, cot="full"),
    Multiplication(digits=2, cot="full", off_path="reference"),
    Multiplication(digits=1, cot="none"),
    Parity(n_bits=4, cot="short"),
    TwoBranch(horizon=4, eps=0.2),
]


@pytest.mark.parametrize("task", MASKED_TASKS, ids=lambda t: t.describe())
def test_the_expert_action_is_always_allowed(task):
    # on and off the expert's path: half the tokens are the expert's, half uniformly random
    n = 64
    venv = ar_envs.SequenceVectorEnv(task, num_envs=n, expert_probs=True)
    obs, info = venv.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(3 * (task.horizon + 1)):
        masks = venv.action_masks()
        assert masks.shape == (n, task.vocab_size) and masks.dtype == bool
        if info["_expert_action"].all():
            assert masks[np.arange(n), info["expert_action"]].all()
            assert np.all(masks | (info["expert_probs"] == 0))  # the whole support of the expert
            actions = np.where(rng.random(n) < 0.5, info["expert_action"], rng.integers(0, task.vocab_size, n))
        else:
            assert masks.all()  # the autoreset step ignores its actions
            actions = np.zeros(n, dtype=np.int64)
        obs, _, _, _, info = venv.step(actions)


def test_masks_per_task():
    ps = PathStar(degree=3, path_length=4, num_nodes=20)
    ctx, seq = ps.sample_expert(5, 0)
    m = ps.action_mask(ctx, seq[:, :2])
    assert (m.sum(axis=1) == 3 * 3 + 1).all()  # the d(l-1)+1 nodes of each graph
    assert not m[:, ps.num_nodes :].any()
    for i in range(5):
        assert set(np.flatnonzero(m[i])) == set(ctx[i][ctx[i] < ps.num_nodes])
    mult = Multiplication(digits=2, cot="full")
    ctx, seq = mult.sample_expert(3, 0)
    for t in range(mult.horizon):
        m = mult.action_mask(ctx, seq[:, :t])
        if seq[0, t] == 12:  # ';' at separator positions, and nothing else
            assert m[:, 12].all() and m.sum() == 3
        else:
            assert m[:, :10].all() and not m[:, 10:].any()
    assert TwoBranch(horizon=3).action_mask(np.zeros((2, 0)), np.zeros((2, 1))).all()
    with pytest.raises(ValueError, match="prefixes"):
        mult.action_mask(ctx, np.zeros((3, mult.horizon), dtype=np.int64))
    with pytest.raises(ValueError, match="contexts"):
        ps.action_mask(np.zeros((2, 3), dtype=np.int64), np.zeros((2, 0), dtype=np.int64))


def test_single_env_masks_equal_the_vector_env_rows():
    task = PathStar(degree=2, path_length=4, num_nodes=10)
    env, venv = ar_envs.SequenceEnv(task), ar_envs.SequenceVectorEnv(task, num_envs=1)
    env.reset(seed=4)
    venv.reset(seed=4)
    check_env(ar_envs.SequenceEnv(task))  # SB3's checker still passes with action_masks present
    for t in range(task.horizon):
        assert np.array_equal(env.action_masks(), venv.action_masks()[0])
        a = int(np.flatnonzero(env.action_masks())[t])
        env.step(a)
        venv.step(np.array([a]))
    assert env.action_masks().all()  # the episode is over


def test_maskable_ppo_never_picks_a_masked_token():
    MaskablePPO = pytest.importorskip("sb3_contrib").MaskablePPO  # the test extra installs it

    from ar_agents.integrations.sb3_policy import MaskableTokenActorCriticPolicy

    class CheckMasks(VecEnvWrapper):
        """Fails the step if an action is outside the current mask."""

        def __init__(self, venv):
            super().__init__(venv)
            self.checked = 0

        def reset(self):
            return self.venv.reset()

        def step_async(self, actions):
            masks = self.venv.action_masks()
            assert masks[np.arange(len(actions)), actions].all(), "a masked token was picked"
            self.checked += len(actions)
            self.venv.step_async(actions)

        def step_wait(self):
            return self.venv.step_wait()

    task = PathStar(degree=2, path_length=3, num_nodes=12)
    for policy, kwargs in ((MaskableTokenActorCriticPolicy, dict(task=task, policy_kind="transformer",
                                                                  policy_args=SMALL["transformer"])),
                           ("MlpPolicy", dict(net_arch=[32]))):
        venv = CheckMasks(SequenceVecEnv(task, n_envs=4))
        model = MaskablePPO(policy, venv, n_steps=32, batch_size=64, n_epochs=2, seed=0, device="cpu",
                            policy_kwargs=kwargs)
        model.learn(total_timesteps=256)
        assert venv.checked >= 256
    # the learned TokenPolicy's masked probabilities: zero on every token outside the graph
    venv = SequenceVecEnv(task, n_envs=4)
    obs = venv.reset()
    dist = model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0], action_masks=venv.action_masks())
    assert np.all(dist.distribution.probs.detach().numpy()[~venv.action_masks()] == 0)


# --------------------------------------------------------------------------------------------
# the policy adapter
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "mlp", "transformer"])
def test_adapter_round_trips_through_learn_save_and_load(kind, tmp_path):
    task = PathStar(degree=2, path_length=3, num_nodes=8)
    venv = SequenceVecEnv(task, n_envs=4)
    model = _ppo(task, venv, kind=kind)
    model.learn(total_timesteps=128)
    obs = venv.reset()
    # the SB3 actor's probabilities are the TokenPolicy's next-token probabilities
    L = task.context_length
    lengths = [(o[L:] != task.vocab_size).sum() for o in obs]
    assert lengths == [0] * 4
    expected = model.policy.token_policy.next_token_probs(obs[:, :L], obs[:, L:L])
    assert np.allclose(_actor_probs(model, obs), expected, atol=1e-6)
    model.save(tmp_path / "model.zip")
    loaded = SB3PPO.load(tmp_path / "model.zip", device="cpu")
    assert isinstance(loaded.policy, TokenActorCriticPolicy)
    for _ in range(task.horizon):
        assert np.array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
        assert np.allclose(_actor_probs(loaded, obs), _actor_probs(model, obs))
        obs, *_ = venv.step(model.predict(obs, deterministic=True)[0])
    # the policy alone (BaseModel.save / load) and the TokenPolicy's own file
    model.policy.save(tmp_path / "policy.pt")
    alone = TokenActorCriticPolicy.load(tmp_path / "policy.pt", device="cpu")
    assert np.allclose(alone.predict_values(alone.obs_to_tensor(obs)[0]).detach().numpy(),
                       model.policy.predict_values(model.policy.obs_to_tensor(obs)[0]).detach().numpy())
    model.policy.token_policy.save(tmp_path / "token.pt")
    token = type(model.policy.token_policy).load(tmp_path / "token.pt")
    assert np.array_equal(token.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_adapter_feeds_token_ids_not_one_hot():
    task = Multiplication(digits=1, cot="full")
    venv = SequenceVecEnv(task, n_envs=2)
    model = _ppo(task, venv, kind="transformer")
    obs = venv.reset()
    ids, pos = model.policy.extract_features(torch.as_tensor(obs, dtype=torch.float32))
    assert ids.dtype == torch.long and ids.shape == obs.shape and (pos == task.context_length).all()
    assert np.array_equal(ids[:, 1:].numpy(), obs[:, :-1])  # [BOS] + observation[:-1]
    assert not hasattr(model.policy, "mlp_extractor") and not hasattr(model.policy, "action_net")
    token, critic = model.policy.token_policy, model.policy.critic
    assert type(critic) is type(token) and critic.head.out_features == 1 and token.head.out_features == task.vocab_size
    names = {name.split(".")[0] for name, _ in model.policy.named_parameters()}
    assert names == {"token_policy", "critic"}


def test_load_token_policy_makes_the_actor_equal_a_trained_policy():
    task = PathStar(degree=2, path_length=3, num_nodes=8)
    trained = make_policy("transformer", task, seed=11, **SMALL["transformer"])
    venv = SequenceVecEnv(task, n_envs=4)
    model = _ppo(task, venv, kind="transformer")
    obs = venv.reset()
    ctx = obs[:, : task.context_length]
    assert not np.allclose(_actor_probs(model, obs), trained.next_token_probs(ctx, ctx[:, :0]))
    load_token_policy(model.policy, trained)
    for _ in range(task.horizon):  # every step of an episode, on and off the expert's path
        t = (obs[0, task.context_length :] != task.vocab_size).sum()
        expected = trained.next_token_probs(ctx, obs[:, task.context_length : task.context_length + t])
        assert np.allclose(_actor_probs(model, obs), expected, atol=1e-6)
        obs, *_ = venv.step(model.predict(obs)[0])
    with pytest.raises(ValueError, match="token_policy must match"):
        load_token_policy(model.policy, make_policy("transformer", task, n_layer=2, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match="sb3_policy"):
        load_token_policy(trained, trained)


def test_adapter_bad_arguments():
    task = TwoBranch(horizon=3, eps=0.3)
    venv = SequenceVecEnv(task, n_envs=2)
    with pytest.raises(ValueError, match="task="):
        SB3PPO(TokenActorCriticPolicy, venv, policy_kwargs=dict(policy_kind="mlp"))
    with pytest.raises(ValueError, match="policy_kind"):
        SB3PPO(TokenActorCriticPolicy, venv, policy_kwargs=dict(task=task, policy_kind="cnn"))
    with pytest.raises(ValueError, match="observation_space"):
        SB3PPO(TokenActorCriticPolicy, venv, policy_kwargs=dict(task=TwoBranch(horizon=4)))
    with pytest.raises(ValueError, match="critic_args"):
        SB3PPO(TokenActorCriticPolicy, venv, policy_kwargs=dict(task=task, policy_kind="mlp", critic_args=dict(n_head=2)))
    with pytest.raises(ValueError, match="spec"):
        SB3PPO(TokenActorCriticPolicy, venv, policy_kwargs=dict(spec={"vocab_size": 2}))
    # spec= is the same as task=
    model = SB3PPO(TokenActorCriticPolicy, venv, seed=0, policy_kwargs=dict(spec=stream_spec(task), policy_kind="linear"))
    assert model.policy.token_policy.spec == stream_spec(task)


def test_adapter_works_on_dummy_vec_env_over_the_gymnasium_env():
    task = Parity(n_bits=2, subset_size=2)
    venv = VecMonitor(DummyVecEnv([(lambda: ar_envs.SequenceEnv(task)) for _ in range(2)]))
    model = _ppo(task, venv, kind="linear")
    model.learn(total_timesteps=64)
    assert len(model.ep_info_buffer) > 0 and all(ep["l"] == task.horizon for ep in model.ep_info_buffer)


# --------------------------------------------------------------------------------------------
# the algorithms
# --------------------------------------------------------------------------------------------


def test_ppo_from_scratch_learns_two_branch():
    task = TwoBranch(horizon=3, eps=0.3)
    alg = PPO(total_timesteps=2048, n_envs=8, n_steps=32, batch_size=64, learning_rate=1e-3, policy="mlp",
              policy_args=SMALL["mlp"], eval_episodes=500)
    policy = alg.fit(task, generate(task, 10, seed=0), seed=0)
    log = alg.log
    assert log["total_timesteps"] >= 2048 and log["ppo_s"] > 0 and log["policy_class"] == "mlp"
    assert log["reward_before"] < 0.8  # a random start leaks a 1 after a_1 = 0 often
    assert log["reward_after"] >= 0.95 and log["greedy_reward_after"] == 1.0
    ctx, rng = evaluation_set(task, 0, 500)
    assert mean_reward(task, policy, ctx, rng) >= 0.95  # the returned policy is the trained one


def test_ppo_same_seed_same_weights():
    task = Parity(n_bits=2, subset_size=2)
    demos = generate(task, 10, seed=0)

    def weights(seed):
        alg = PPO(total_timesteps=256, n_envs=4, n_steps=16, batch_size=32, policy="transformer",
                  policy_args=SMALL["transformer"], eval_episodes=50)
        return alg.fit(task, demos, seed=seed).state_dict(), alg.log

    (a, log_a), (b, log_b), (c, _) = weights(0), weights(0), weights(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert log_a["reward_after"] == log_b["reward_after"]
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_ppo_from_bc_starts_at_the_bc_policy():
    task = PathStar(degree=2, path_length=3, num_nodes=8)
    demos = generate(task, 200, seed=0)
    bc_args = dict(bc_epochs=3, bc_lr=3e-3, bc_batch_size=32)
    alg = PPOFromBC(total_timesteps=128, n_envs=4, n_steps=16, batch_size=32, policy="transformer",
                    policy_args=SMALL["transformer"], eval_episodes=200, **bc_args)
    policy = alg.fit(task, demos, seed=3)
    bc = BC(policy="transformer", policy_args=SMALL["transformer"], epochs=3, lr=3e-3, batch_size=32)
    bc_policy = bc.fit(task, demos, seed=3)
    ctx, rng = evaluation_set(task, 3, 200)
    assert alg.log["reward_before"] == mean_reward(task, bc_policy, ctx, rng)
    assert alg.log["bc"]["loss_curve"] == bc.log["loss_curve"]
    assert 0 <= alg.log["reward_after"] <= 1 and policy is not bc_policy
    # the SB3 actor built for fine-tuning starts with the BC policy's probabilities
    venv = SequenceVecEnv(task, n_envs=4)
    model = _ppo(task, venv, kind="transformer")
    load_token_policy(model.policy, bc_policy)
    obs = venv.reset()
    ctx = obs[:, : task.context_length]
    assert np.allclose(_actor_probs(model, obs), bc_policy.next_token_probs(ctx, ctx[:, :0]), atol=1e-6)


def test_ppo_fine_tunes_a_given_token_policy():
    task = TwoBranch(horizon=3, eps=0.3)
    start = make_policy("linear", task, seed=0, **SMALL["linear"])
    alg = PPO(total_timesteps=64, n_envs=2, n_steps=16, batch_size=32, policy=start, eval_episodes=100)
    torch.set_num_threads(2)
    out = alg.fit(task, generate(task, 5, seed=0), seed=0)
    assert torch.get_num_threads() == 2  # fit runs on torch_threads=1 and restores the setting
    ctx, rng = evaluation_set(task, 0, 100)
    assert alg.log["reward_before"] == mean_reward(task, start, ctx, rng)
    assert out is not start and type(out) is type(start)


def test_ppo_bad_arguments_name_the_argument():
    for kwargs, name in [(dict(total_timesteps=0), "total_timesteps"), (dict(n_envs=0), "n_envs"),
                         (dict(learning_rate=-1.0), "learning_rate"), (dict(policy="cnn"), "policy"),
                         (dict(gamma=1.5), "gamma"), (dict(n_steps=1, n_envs=1), "n_steps"),
                         (dict(critic_args=[1]), "critic_args"), (dict(batch_size=1), "batch_size"),
                         (dict(torch_threads=0), "torch_threads")]:
        with pytest.raises(ValueError, match=name):
            PPO(**kwargs)
    with pytest.raises(ValueError, match="bc_epochs|epochs"):
        PPOFromBC(bc_epochs=0)
    with pytest.raises(ValueError, match="policy"):
        PPOFromBC(policy=make_policy("linear", TwoBranch(horizon=3)))
    with pytest.raises(ValueError, match="seed"):
        PPO(total_timesteps=8).fit(TwoBranch(horizon=3), None, seed=-1)


def test_expert_policy_object_still_matches_the_vec_env_info():
    # the ExpertPolicy reads SequenceVecEnv observations like SequenceEnv's
    task = PathStar(degree=2, path_length=4, num_nodes=10)
    venv = SequenceVecEnv(task, n_envs=3)
    venv.seed(0)
    obs = venv.reset()
    expert = ExpertPolicy(task)
    assert np.array_equal(expert.predict(obs, deterministic=True)[0], [i["expert_action"] for i in venv.reset_infos])


def test_both_algorithms_are_registered():
    from ar_agents.algorithms import algorithm_names, get_algorithm

    assert {"ppo", "ppo-from-bc"} <= set(algorithm_names())
    assert isinstance(get_algorithm("ppo"), PPO) and isinstance(get_algorithm("ppo-from-bc"), PPOFromBC)
