"""The neural algorithms (BC on token policies, teacherless, DAgger, scheduled sampling), their
sweep / CLI integration and the ``imitation`` interop.

Realisable controls: LinearAR with ``num_contexts=1, misspec=0`` (the expert depends on the
previous token only, so a linear one-hot policy over a window of 2 stream tokens contains it),
and ``Successor`` below (deterministic: every token is the previous stream token plus one, so a
window of 1 suffices autoregressively and a window of ``H + 1`` teacherlessly).
"""

import json
import sys

import numpy as np
import pytest
import torch

from ar_agents.algorithms import (BC, BetaSchedule, DAgger, ScheduledSampling, Teacherless, TeacherlessPolicy,
                               dagger_with_env, get_algorithm)
from ar_agents.cli import build_algorithms, main
from ar_agents.integrations.interop import episode_observations, to_imitation_trajectories
from ar_agents.policies import GPTPolicy, LogLinearPolicy, WindowPolicy
from ar_agents.evaluation.sweep import sweep
from ar_agents.training import ExpertOracle, mixture_rollout
from ar_envs.core import Task, as_rng
from ar_envs.data import generate
from ar_envs.diagnostics import greedy_decode, reasoning_report
from ar_envs.env import SequenceEnv
from ar_envs.expert import ExpertPolicy
from ar_envs.metrics import all_sequences, sequence_metrics
from ar_envs.tasks import LinearAR, PathStar, TwoBranch

LINEAR2 = dict(policy="linear", policy_args=dict(window=2, one_hot=True))


class Successor(Task):
    """Context ``x`` in ``0..V-1``; ``a_1 = x + 1``, ``a_{h+1} = a_h + 1`` (mod ``V``). After any
    prefix the expert continues from its last token (the context when the prefix is empty)."""

    name = "successor"
    context_length = 1
    deterministic_expert = True

    def __init__(self, horizon=4, vocab_size=5):
        self.horizon, self.vocab_size, self.context_vocab_size = horizon, vocab_size, vocab_size

    def task_args(self):
        return {"horizon": self.horizon, "vocab_size": self.vocab_size}

    def sample_contexts(self, n, rng):
        return as_rng(rng).integers(0, self.vocab_size, size=(n, 1))

    def expert_probs(self, contexts, prefixes):
        prefixes = np.asarray(prefixes)
        last = np.asarray(contexts)[:, 0] if prefixes.shape[1] == 0 else prefixes[:, -1]
        return np.eye(self.vocab_size)[(last + 1) % self.vocab_size]

    def reward(self, contexts, sequences):
        ref = (np.asarray(contexts)[:, :1] + 1 + np.arange(self.horizon)) % self.vocab_size
        return np.all(np.asarray(sequences) == ref, axis=1).astype(float)

    def enumerate_contexts(self):
        return np.arange(self.vocab_size)[:, None], np.full(self.vocab_size, 1.0 / self.vocab_size)


def _h2(task, policy):
    est = sequence_metrics(task, policy)["hellinger2"]
    assert est.exact
    return est.value


def _weights(policy):
    module = policy.model if isinstance(policy, TeacherlessPolicy) else policy
    return {k: v.clone() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------------------------
# each algorithm learns a realisable task
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def linear_ar():
    task = LinearAR(horizon=5, num_contexts=1, misspec=0.0)
    return task, generate(task, 1500, seed=0)


def test_bc_neural_learns_the_realisable_linear_ar(linear_ar):
    task, demos = linear_ar
    alg = BC(**LINEAR2, epochs=25, lr=0.05, batch_size=128)
    policy = alg.fit(task, demos, seed=0)
    assert isinstance(policy, WindowPolicy)
    assert _h2(task, policy) < 0.02
    log = alg.log
    assert log["policy_class"] == "linear" and len(log["loss_curve"]) == 25 and log["expert_queries"] == 0
    assert log["loss_curve"][-1] < log["loss_curve"][0] and log["tokens_per_s"] > 0 and log["wall_s"] > 0


def test_bc_loss_is_teacher_forced_cross_entropy_on_the_answer(linear_ar):
    """The logged epoch loss of lr ~ 0 training equals the mean per-token log loss of the policy."""
    task, demos = linear_ar
    alg = BC(**LINEAR2, epochs=1, lr=1e-12, batch_size=len(demos))
    policy = alg.fit(task, demos, seed=0)
    per_token = -policy.sequence_log_prob(demos.contexts, demos.sequences).sum() / demos.sequences.size
    assert alg.log["loss_curve"][0] == pytest.approx(per_token, rel=1e-5)


def test_dagger_learns_the_realisable_linear_ar(linear_ar):
    task, demos = linear_ar
    alg = DAgger(**LINEAR2, rounds=2, rollouts=300, epochs=10, lr=0.05, batch_size=128)
    policy = alg.fit(task, demos, seed=0)
    assert _h2(task, policy) < 0.02
    assert alg.log["expert_queries"] == 2 * 300 * task.horizon
    assert [r["beta"] for r in alg.log["rounds"]] == [1.0, 0.5, 0.0]
    assert len(alg.log["loss_curve"]) == 3 * 10


def test_scheduled_sampling_learns_a_realisable_deterministic_task():
    task = Successor()
    demos = generate(task, 500, seed=0)
    alg = ScheduledSampling(policy="linear", policy_args=dict(window=1, one_hot=True), schedule="linear", epochs=15,
                            lr=0.3, batch_size=100)
    policy = alg.fit(task, demos, seed=0)
    assert alg.log["teacher_prob"][0] == 1.0 and alg.log["teacher_prob"][-1] == 0.0
    assert _h2(task, policy) < 0.02
    assert reasoning_report(task, policy, n=200)["exact_match"] == 1.0


def test_teacherless_learns_a_realisable_deterministic_task():
    task = Successor()
    demos = generate(task, 500, seed=0)
    alg = Teacherless(policy="linear", policy_args=dict(window=task.horizon + 1, one_hot=True), epochs=15, lr=0.3,
                      batch_size=100)
    policy = alg.fit(task, demos, seed=0)
    assert isinstance(policy, TeacherlessPolicy)
    assert _h2(task, policy) < 0.02
    assert reasoning_report(task, policy, n=200)["exact_match"] == 1.0


# --------------------------------------------------------------------------------------------
# teacherless decoding equals its definition
# --------------------------------------------------------------------------------------------


def test_teacherless_policy_is_the_product_of_the_parallel_position_laws():
    task = Successor(horizon=3, vocab_size=4)
    torch.manual_seed(0)
    model = WindowPolicy.for_task(task, window=3, hidden=8)
    policy = TeacherlessPolicy(model)
    ctx = task.sample_contexts(6, 1)
    with torch.no_grad():
        logits = model(model.teacherless_stream(ctx))[:, task.context_length :, :]  # one parallel pass
    q = torch.softmax(logits.double(), dim=-1).numpy()
    assert np.allclose(policy.position_probs(ctx), q)
    # greedy = the one-pass argmax = TokenPolicy.teacherless_decode = step-by-step decoding of next_token_probs
    assert np.array_equal(policy.greedy(ctx), q.argmax(-1))
    assert np.array_equal(policy.greedy(ctx), model.teacherless_decode(ctx))
    assert np.array_equal(greedy_decode(task, policy, ctx), q.argmax(-1))
    # log P(a | x) = sum_h log q_h(a_h | x), and it is a law: it sums to one over all V^H answers
    seqs = all_sequences(task.vocab_size, task.horizon)
    for c in ctx[:2]:
        cc = np.repeat(c[None], len(seqs), axis=0)
        lp = policy.sequence_log_prob(cc, seqs)
        expect = np.log(q[ctx[:, 0] == c[0]][0][np.arange(task.horizon), seqs]).sum(axis=1)
        assert np.allclose(lp, expect)
        assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-12)
    # the conditional after any prefix is the position's law (a product law ignores the prefix)
    for t in range(task.horizon):
        for prefix in (np.zeros((6, t), int), np.full((6, t), 3)):
            assert np.allclose(policy.next_token_probs(ctx, prefix), q[:, t])
    assert np.allclose(policy.teacher_forced_probs(ctx, np.zeros((6, 3), int)), q)
    s1, s2 = policy.sample(ctx, 7), policy.sample(ctx, 7)
    assert s1.shape == (6, 3) and np.array_equal(s1, s2)


def test_teacherless_policy_save_load_and_predict(tmp_path):
    task = Successor()
    torch.manual_seed(0)
    policy = TeacherlessPolicy(WindowPolicy.for_task(task, window=5, hidden=8))
    policy.save(tmp_path / "p.pt")
    back = TeacherlessPolicy.load(tmp_path / "p.pt")
    ctx = task.sample_contexts(4, 0)
    assert np.allclose(back.position_probs(ctx), policy.position_probs(ctx))
    obs = episode_observations(task, ctx, policy.greedy(ctx))  # (n, H + 1, L + H)
    for t in range(task.horizon):
        actions, _ = policy.predict(obs[:, t], deterministic=True)
        assert np.array_equal(actions, policy.greedy(ctx)[:, t])


# --------------------------------------------------------------------------------------------
# DAgger queries the expert only at prefixes it visited
# --------------------------------------------------------------------------------------------


class RecordingLinearAR(LinearAR):
    """Records every expert query (context, prefix) row."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = []

    def expert_probs(self, contexts, prefixes):
        self.calls.append((np.array(contexts), np.array(prefixes)))
        return super().expert_probs(contexts, prefixes)


def test_dagger_queries_the_expert_only_at_visited_prefixes():
    kw = dict(horizon=4, num_contexts=3, misspec=0.5)
    demos = generate(LinearAR(**kw), 60, seed=0)
    task = RecordingLinearAR(**kw)
    alg = DAgger(policy="linear", policy_args=dict(window=5, one_hot=True), rounds=2, rollouts=40, epochs=1)
    alg.fit(task, demos, seed=0)
    queried = sorted((int(c[0]),) + tuple(int(a) for a in p) for cs, ps in task.calls for c, p in zip(cs, ps))
    data = alg.dataset
    rolled = data["round"] > 0  # the demonstrations (round 0) are never relabelled
    visited = sorted((int(c[0]),) + tuple(int(a) for a in s[:t])
                     for c, s in zip(data["contexts"][rolled], data["sequences"][rolled]) for t in range(task.horizon))
    assert queried == visited  # the same multiset: each visited prefix once, nothing else
    assert alg.log["expert_queries"] == len(visited) == 2 * 40 * task.horizon
    # the labels are the expert's distributions at those prefixes
    for h in range(task.horizon):
        p = LinearAR(**kw).expert_probs(data["contexts"][rolled], data["sequences"][rolled][:, :h])
        assert np.allclose(data["labels"][rolled][:, h], p)


def test_mixture_rollout_beta_one_is_the_expert_and_beta_zero_the_policy():
    task = LinearAR(horizon=6, num_contexts=2, misspec=0.0)
    policy = WindowPolicy.for_task(task, window=2)
    ctx = task.sample_contexts(2000, 0)
    oracle = ExpertOracle(task)
    seq, labels = mixture_rollout(policy, oracle, ctx, 1.0, np.random.default_rng(0))
    assert oracle.queries == 2000 * 6
    assert np.all(np.isfinite(task.expert_log_prob(ctx, seq)))
    assert np.allclose(labels, task.expert_step_probs(ctx, seq))
    assert np.allclose(oracle.relabel(ctx, seq), labels)
    # beta = 0: first-token frequencies follow the policy, not the expert
    seq0, _ = mixture_rollout(policy, oracle, ctx, 0.0, np.random.default_rng(0))
    p_pol = policy.next_token_probs(ctx[:1], np.zeros((1, 0), int))[0, 1]
    assert (seq0[ctx[:, 0] == ctx[0, 0], 0] == 1).mean() == pytest.approx(p_pol, abs=0.06)


def test_beta_schedules():
    lin = BetaSchedule("linear", rampdown=15)
    assert [lin(r) for r in (0, 5, 15, 20)] == [1.0, pytest.approx(10 / 15), 0.0, 0.0]
    exp = BetaSchedule("exponential", rampdown=1, decay=0.5)
    assert [exp(r) for r in (0, 1, 3)] == [1.0, 0.5, 0.125]


def test_dagger_with_env_and_expert_policy_object():
    import gymnasium as gym

    import ar_envs  # noqa: F401 - registers the envs

    kw = dict(horizon=3, num_contexts=2, misspec=0.0)
    run = dict(policy="linear", policy_args=dict(window=4, one_hot=True), rounds=1, episodes=20, epochs=2, seed=3)
    env = gym.make("ar_envs/LinearAR-v0", **kw)
    policy, log = dagger_with_env(env, ExpertPolicy(env.unwrapped.task), **run)
    assert isinstance(policy, WindowPolicy)
    assert log["expert_queries"] == 2 * 20 * 3 and [r["beta"] for r in log["rounds"]] == [1.0, 0.0]
    # the label read from info["expert_probs"] is the same distribution: same data, same weights
    policy2, log2 = dagger_with_env("ar_envs/LinearAR-v0", None, env_kwargs=kw, **run)
    assert log2["loss_curve"] == log["loss_curve"]
    assert all(torch.equal(a, b) for a, b in zip(policy.state_dict().values(), policy2.state_dict().values()))
    with pytest.raises(ValueError, match="episodes"):
        dagger_with_env(env, None, policy="linear", episodes=0)
    with pytest.raises(ValueError, match="action_probs"):
        dagger_with_env(env, object(), policy="linear")
    with pytest.raises(ValueError, match="expert_probs=True"):  # no label: the env was made without it
        dagger_with_env(env, None, **run)


# --------------------------------------------------------------------------------------------
# determinism, defaults, bad arguments
# --------------------------------------------------------------------------------------------


ALGORITHMS = [
    lambda: BC(policy="mlp", policy_args=dict(hidden=8, window=3), epochs=2),
    lambda: DAgger(policy="mlp", policy_args=dict(hidden=8, window=3), rounds=1, rollouts=30, epochs=2),
    lambda: ScheduledSampling(policy="mlp", policy_args=dict(hidden=8, window=3), epochs=2, k=1.0),
    lambda: Teacherless(policy="mlp", policy_args=dict(hidden=8, window=3), epochs=2),
]


@pytest.mark.parametrize("make", ALGORITHMS, ids=["bc", "dagger", "scheduled-sampling", "teacherless"])
def test_same_seed_same_weights(make):
    task = LinearAR(horizon=3, num_contexts=2)
    demos = generate(task, 80, seed=0)
    a, b, c = (_weights(make().fit(task, demos, seed=s)) for s in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_bc_default_keeps_the_log_linear_class_and_trains_a_transformer_elsewhere():
    two = TwoBranch(horizon=5, eps=0.1)
    assert isinstance(BC().fit(two, generate(two, 100, seed=0)), LogLinearPolicy)
    star = PathStar(degree=2, path_length=3, num_nodes=6)
    alg = BC(policy_args=dict(n_layer=1, n_head=1, n_embd=8), epochs=1)
    assert isinstance(alg.fit(star, generate(star, 32, seed=0)), GPTPolicy)
    assert alg.log["policy_class"] == "transformer"
    for name in ("dagger", "teacherless", "scheduled-sampling"):
        assert type(get_algorithm(name)).__name__ in ("DAgger", "Teacherless", "ScheduledSampling")


@pytest.mark.parametrize("make,needle", [
    (lambda: BC(policy="cnn"), "policy must be one of"),
    (lambda: BC(policy="mlp", epochs=0), "epochs"),
    (lambda: Teacherless(lr=-1.0), "lr"),
    (lambda: ScheduledSampling(batch_size=0), "batch_size"),
    (lambda: Teacherless(policy_args=[1]), "policy_args"),
    (lambda: DAgger(rounds=-1), "rounds"),
    (lambda: DAgger(rollouts=0), "rollouts"),
    (lambda: DAgger(beta_schedule="cosine"), "beta_schedule"),
    (lambda: DAgger(beta_rampdown=0), "beta_rampdown"),
    (lambda: DAgger(beta_schedule="exponential", beta_decay=1.5), "beta_decay"),
    (lambda: ScheduledSampling(schedule="cosine"), "schedule"),
    (lambda: ScheduledSampling(k=0.5), "k must"),
    (lambda: ScheduledSampling(min_teacher_prob=2.0), "min_teacher_prob"),
    (lambda: ScheduledSampling(slope=-1.0), "slope"),
])
def test_bad_arguments_raise_value_error_naming_them(make, needle):
    with pytest.raises(ValueError, match=needle):
        make()


def test_bad_arguments_at_fit_time():
    two = TwoBranch(horizon=3)
    demos = generate(two, 20, seed=0)
    with pytest.raises(ValueError, match="epochs apply to neural policies"):
        BC(epochs=5).fit(two, demos)  # the log-linear path does not silently ignore them
    with pytest.raises(ValueError, match="nope"):
        BC(policy="mlp", policy_args={"nope": 1}).fit(two, demos)
    with pytest.raises(ValueError, match="seed"):
        BC(policy="mlp").fit(two, demos, seed=-1)


# --------------------------------------------------------------------------------------------
# sweep and command line
# --------------------------------------------------------------------------------------------


FAST = dict(seeds=1, n_samples=60, eval_samples=200, progress=False)


def test_neural_sweep_on_path_star_and_two_branch(tmp_path, small_neural_best):
    algs = build_algorithms("bc,teacherless,dagger,rho", "mlp", {"hidden": 8, "window": 4},
                            {"epochs": 1, "rounds": 1, "rollouts": 20})
    labels = [a if isinstance(a, str) else a.name for a in algs]
    assert labels == ["bc[mlp(hidden=8,window=4),epochs=1]", "teacherless[mlp(hidden=8,window=4),epochs=1]",
                      "dagger[mlp(hidden=8,window=4),epochs=1,rollouts=20,rounds=1]", "rho"]
    recs = sweep("two-branch", [3], algs, out=tmp_path / "tb.jsonl", **FAST)
    by = {r["algorithm"]: r for r in recs}
    for label, kind in zip(labels[:3], ["mlp", "mlp (teacherless decoding)", "mlp"]):
        r = by[label]  # the neural class's own best in class, estimated (exactly scored: H = 3 enumerates)
        assert r["best_in_class_method"].startswith(f"estimate: {kind} trained on sequence-level D_H^2 (exact")
        assert r["best_in_class_exact"] is False and r["best_in_class_search"]["value_exact"] is True
        assert 0 < r["best_in_class_hellinger2"] <= r["hellinger2"] + 1e-12  # the learner's fit is a candidate
        assert r["approx_factor"] == pytest.approx(r["hellinger2"] / r["best_in_class_hellinger2"])
        assert r["fit_log"]["policy_class"] == "mlp" and 0 <= r["hellinger2"] <= 2
    assert by["rho"]["best_in_class_method"] == "closed-form" and by["rho"]["fit_log"]["policy_class"] == "log-linear"
    star = sweep("path-star", [3], algs[:3], task_args=dict(degree=2, num_nodes=6), out=tmp_path / "ps.jsonl", **FAST)
    for r in star:  # no enumeration of path-star's graphs: Monte Carlo, re-scored with an interval
        assert "(monte-carlo m=500)" in r["best_in_class_method"] and r["approx_factor"] is not None
        lo, hi = r["best_in_class_ci95"]
        assert lo <= r["best_in_class_hellinger2"] <= hi
        assert r["diagnostics"] is not None and 0 <= r["diagnostics"]["exact_match"] <= 1


def test_cli_sweep_with_a_transformer_policy(tmp_path, capsys, small_neural_best):
    out = tmp_path / "r.jsonl"
    argv = ["sweep", "--task", "path-star", "--task-arg", "degree=2", "--task-arg", "num_nodes=6", "--horizons", "3",
            "--algorithms", "bc,scheduled-sampling", "--policy", "transformer", "--policy-arg", "n_layer=1",
            "--policy-arg", "n_embd=8", "--policy-arg", "n_head=2", "--algo-arg", "epochs=1", "--seeds", "1",
            "--samples", "40", "--eval-samples", "100", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()[1:]]
    assert [r["algorithm"] for r in recs] == ["bc[transformer(n_embd=8,n_head=2,n_layer=1),epochs=1]",
                                              "scheduled-sampling[transformer(n_embd=8,n_head=2,n_layer=1),epochs=1]"]
    assert all(r["fit_log"]["policy_class"] == "transformer" and r["approx_factor"] is not None for r in recs)
    assert all(r["best_in_class_method"].startswith("estimate: transformer") for r in recs)
    before = out.read_text()
    assert main(argv) == 0 and out.read_text() == before  # finished cells are not re-run
    capsys.readouterr()


@pytest.mark.parametrize("extra,needle", [
    (["--policy-arg", "n_layer=2"], "--policy-arg needs --policy"),
    (["--algo-arg", "epochs=2"], "epochs apply to neural policies"),
    (["--policy", "mlp", "--algo-arg", "nope=1"], "--algo-arg nope is not an argument"),
    (["--policy", "mlp", "--policy-arg", "nope=1"], "nope"),
])
def test_cli_bad_policy_and_algorithm_options(extra, needle, tmp_path, capsys):
    argv = ["sweep", "--task", "two-branch", "--horizons", "3", "--algorithms", "bc", "--seeds", "1", "--samples", "20",
            "--eval-samples", "50", "--out", str(tmp_path / "x.jsonl"), "--quiet"] + extra
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# the imitation library
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", [LinearAR(horizon=4, num_contexts=3), TwoBranch(horizon=3),
                                  PathStar(degree=2, path_length=3, num_nodes=6)], ids=lambda t: t.name)
def test_episode_observations_are_the_env_observations(task):
    env = SequenceEnv(task)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        ctx = obs[None, : task.context_length]
        actions = task.sample_expert(1, seed)[1][0] if task.name != "path-star" else task.reference(ctx)[0]
        seen = [obs]
        for a in actions:
            obs, *_ = env.step(int(a))
            seen.append(obs)
        made = episode_observations(task, ctx, actions[None])[0]
        assert made.dtype == obs.dtype and np.array_equal(made, np.stack(seen))


def test_to_imitation_trajectories_without_imitation_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "imitation", None)
    task = TwoBranch(horizon=3)
    with pytest.raises(ImportError, match="pip install --no-deps imitation"):
        to_imitation_trajectories(generate(task, 2, seed=0), task)


def test_to_imitation_trajectories():
    types = pytest.importorskip("imitation.data.types")
    task = PathStar(degree=2, path_length=3, num_nodes=6)
    demos = generate(task, 5, seed=0)
    trajs = to_imitation_trajectories(demos, task)
    assert len(trajs) == 5 and all(isinstance(t, types.Trajectory) for t in trajs)
    L, H = task.context_length, task.horizon
    for t, c, s in zip(trajs, demos.contexts, demos.sequences):
        assert t.obs.shape == (H + 1, L + H) and t.terminal and t.infos is None
        assert np.array_equal(t.acts, s) and np.array_equal(t.obs[-1], np.concatenate([c, s]))
    with_rew = to_imitation_trajectories(demos, task, rewards=True)
    assert all(isinstance(t, types.TrajectoryWithRew) and t.rews[-1] == 1.0 and t.rews[:-1].sum() == 0 for t in with_rew)


# --------------------------------------------------------------------------------------------
# slow: a transformer on path-star in reverse order (every step a lookup)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_transformer_bc_solves_reverse_path_star():
    task = PathStar(degree=2, path_length=3, num_nodes=8, order="reverse")
    demos = generate(task, 4000, seed=0)
    alg = BC(policy="transformer", policy_args=dict(n_layer=2, n_head=2, n_embd=32), epochs=30, lr=3e-3)
    policy = alg.fit(task, demos, seed=0)
    assert reasoning_report(task, policy, n=500, seed=1)["exact_match"] > 0.95
