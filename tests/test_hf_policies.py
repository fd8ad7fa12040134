"""Hugging Face ``transformers`` policy classes (``hf:gpt2``, ``hf:llama``, ``hf:mamba``): the token-stream
contract, every learner that trains a token policy, the SB3 adapter, files, the sweep's best in
class, and the one-line error without the optional extra.

Tiny random-init configs; nothing is fetched from a hub (``HF_HUB_OFFLINE=1``). Tests that need
``transformers`` are skipped when it is not installed; the missing-extra test runs either way.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from ar_agents.policies import POLICY_KINDS, TokenPolicy, make_policy
from ar_agents.policies.hf import HF_POLICY_CLASSES, transformers_available
from ar_envs.data import generate
from ar_envs.env import SequenceEnv
from ar_envs.tasks import LinearAR, PathStar

needs_hf = pytest.mark.skipif(not transformers_available(), reason="transformers not installed (pip install 'ar-envs[hf]')")

TINY = {
    "hf:gpt2": {"n_layer": 1, "n_embd": 16, "n_head": 2},
    "hf:llama": {"n_layer": 1, "n_embd": 16, "n_head": 2},
    "hf:mamba": {"n_layer": 1, "n_embd": 16, "state_size": 4},
}
KINDS = list(TINY)


def build(kind, task, seed=0, **extra):
    return make_policy(kind, task, seed=seed, **{**TINY[kind], **extra})


def enum_task():
    """3 contexts x 3^3 answers: small enough to enumerate every sequence."""
    return LinearAR(horizon=3, vocab_size=3, num_contexts=3)


def star_task():
    """Context ids beyond the answer vocabulary's padding id, a long prompt."""
    return PathStar(degree=2, path_length=3, num_nodes=12)


def random_sequences(task, n, seed):
    rng = np.random.default_rng(seed)
    return task.sample_contexts(n, rng), rng.integers(0, task.vocab_size, size=(n, task.horizon))


# ------------------------------------------------------------------ the stream contract
@needs_hf
@pytest.mark.parametrize("kind", KINDS)
def test_sequence_log_prob_is_the_sum_of_step_by_step_log_probs(kind):
    for task in (enum_task(), star_task()):
        policy = build(kind, task)
        contexts, seqs = random_sequences(task, 6, seed=1)
        step = np.zeros(len(seqs))
        for h in range(task.horizon):  # one forward pass per prefix, nothing shared with teacher forcing
            probs = policy.next_token_probs(contexts, seqs[:, :h])
            assert probs.shape == (6, task.vocab_size)
            step += np.log(probs[np.arange(6), seqs[:, h]])
        np.testing.assert_allclose(policy.sequence_log_prob(contexts, seqs), step, rtol=0, atol=1e-5)  # float32 model


@needs_hf
@pytest.mark.parametrize("kind", KINDS)
def test_probabilities_sum_to_one_over_all_sequences(kind):
    task = enum_task()
    policy = build(kind, task, seed=2)
    V, H = task.vocab_size, task.horizon
    every = np.array(np.meshgrid(*[np.arange(V)] * H, indexing="ij")).reshape(H, -1).T  # all V^H answers
    for ctx in task.sample_contexts(3, np.random.default_rng(0)):
        lp = policy.sequence_log_prob(np.repeat(ctx[None], len(every), axis=0), every)
        assert np.all(np.isfinite(lp)) and np.all(lp < 0)
        assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-9)


@needs_hf
@pytest.mark.parametrize("kind", KINDS)
def test_causal_and_logits_from_start_are_the_tail(kind):
    task = star_task()
    policy = build(kind, task).eval()
    contexts, seqs = random_sequences(task, 4, seed=3)
    ids = policy.stream(contexts, seqs)
    with torch.no_grad():
        full = policy(ids)
        tail = policy(ids, start=task.context_length)
        changed = ids.clone()
        changed[:, -1] = (changed[:, -1] + 1) % task.vocab_size
        other = policy(changed)
        assert policy(ids, start=ids.shape[1]).shape == (4, 0, task.vocab_size)
    assert full.shape == (4, ids.shape[1], task.vocab_size)
    torch.testing.assert_close(tail, full[:, task.context_length:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(other[:, :-1], full[:, :-1], rtol=0, atol=0)  # a later token never changes earlier logits
    assert not torch.equal(other[:, -1], full[:, -1])


@needs_hf
@pytest.mark.parametrize("kind", KINDS)
def test_decoding_and_predict_on_raw_observations(kind):
    task = star_task()
    policy = build(kind, task, seed=4)
    contexts = task.sample_contexts(5, np.random.default_rng(5))
    greedy = policy.greedy(contexts)
    assert greedy.shape == (5, task.horizon) and greedy.min() >= 0 and greedy.max() < task.vocab_size
    for h in range(task.horizon):  # greedy = argmax after its own prefix
        np.testing.assert_array_equal(greedy[:, h], policy.next_token_probs(contexts, greedy[:, :h]).argmax(axis=1))
    sampled = policy.sample(contexts, rng=0)
    np.testing.assert_array_equal(sampled, policy.sample(contexts, rng=0))
    tl = policy.teacherless_decode(contexts)
    np.testing.assert_array_equal(tl, policy.teacherless_logits(contexts).argmax(-1).numpy())
    env = SequenceEnv(task)
    obs, _ = env.reset(seed=6)
    ctx = obs[: task.context_length][None]
    for h in range(task.horizon):  # environment observations: same argmax as the stream methods
        action, _ = policy.predict(obs, deterministic=True)
        prefix = obs[task.context_length : task.context_length + h][None]
        assert action == policy.next_token_probs(ctx, prefix).argmax()
        obs, *_ = env.step(int(action))


@needs_hf
@pytest.mark.parametrize("kind", ["hf:gpt2", "hf:llama"])
def test_dropout_is_off_by_default_and_on_when_asked(kind):
    task = star_task()
    ids = build(kind, task).stream(*random_sequences(task, 3, seed=7))
    policy = build(kind, task)
    with torch.no_grad():
        torch.testing.assert_close(policy.train()(ids), policy.eval()(ids), rtol=0, atol=0)
    noisy = build(kind, task, dropout=0.5).train()
    with torch.no_grad():
        assert not torch.equal(noisy(ids), noisy(ids))


# ------------------------------------------------------------------ config
@needs_hf
def test_common_names_and_pass_through_fields_reach_the_transformers_config():
    task = star_task()
    gpt2 = build("hf:gpt2", task, n_inner=24, activation_function="relu")
    c = gpt2.hf_model.config
    assert (c.n_layer, c.n_embd, c.n_head, c.n_inner, c.activation_function) == (1, 16, 2, 24, "relu")
    assert c.n_positions == 1 + task.context_length + task.horizon and c.vocab_size == gpt2.input_vocab_size
    assert (c.resid_pdrop, c.embd_pdrop, c.attn_pdrop) == (0.0, 0.0, 0.0)
    assert c.pad_token_id is None and c.eos_token_id is None and c.bos_token_id == gpt2.bos
    llama = build("hf:llama", task, num_key_value_heads=1)
    c = llama.hf_model.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads) == (1, 16, 2, 1)
    assert c.intermediate_size == 64  # 4 n_embd, not transformers' 11008
    assert llama.hf_model.model.embed_tokens.padding_idx is None  # no real id gets a frozen embedding
    mamba = build("hf:mamba", task, expand=3)
    c = mamba.hf_model.config
    assert (c.num_hidden_layers, c.hidden_size, c.state_size, c.intermediate_size) == (1, 16, 4, 48)
    assert mamba.config == {"n_layer": 1, "n_embd": 16, "dropout": 0.0, "max_len": 1 + task.context_length + task.horizon,
                            "expand": 3, "state_size": 4}


@needs_hf
@pytest.mark.parametrize(
    "kind, kwargs, name",
    [
        ("hf:gpt2", {"n_layer": 0}, "n_layer"),
        ("hf:gpt2", {"n_embd": 15}, "n_embd"),  # not a multiple of n_head=2
        ("hf:llama", {"dropout": 1.0}, "dropout"),
        ("hf:gpt2", {"max_len": 5}, "max_len"),
        ("hf:gpt2", {"no_such_field": 1}, "no_such_field"),
        ("hf:gpt2", {"hidden_size": 32}, "hidden_size"),  # use n_embd
        ("hf:llama", {"num_hidden_layers": 3}, "num_hidden_layers"),
        ("hf:llama", {"vocab_size": 99}, "vocab_size"),  # fixed by the stream
        ("hf:mamba", {"pad_token_id": 0}, "pad_token_id"),
        ("hf:mamba", {"n_head": 2}, "n_head"),
        ("hf:mamba", {"dropout": 0.1}, "dropout"),
        ("hf:mamba", {"expand": {"a": 1}}, "expand"),  # pass-through values must be plain
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kind, kwargs, name):
    with pytest.raises(ValueError, match=name):
        build(kind, star_task(), **kwargs)


# ------------------------------------------------------------------ seeding, files
@needs_hf
@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_weights(kind):
    task = star_task()
    state = torch.get_rng_state()
    a, b, c = build(kind, task, seed=3), build(kind, task, seed=3), build(kind, task, seed=4)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@needs_hf
@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_and_tampered_files_are_refused(kind, tmp_path):
    task = star_task()
    policy = build(kind, task, seed=5)
    path = tmp_path / "policy.pt"
    policy.save(path)
    loaded = TokenPolicy.load(path)
    assert type(loaded) is type(policy) and loaded.config == policy.config and loaded.spec == policy.spec
    contexts, seqs = random_sequences(task, 8, seed=8)
    np.testing.assert_array_equal(loaded.sequence_log_prob(contexts, seqs), policy.sequence_log_prob(contexts, seqs))
    payload = torch.load(path, weights_only=True)
    name = sorted(payload["state_dict"])[0]
    weights = {**payload["state_dict"], name: payload["state_dict"][name] + 1e-3}
    torch.save({**payload, "state_dict": weights}, tmp_path / "weights.pt")
    torch.save({**payload, "config": {**payload["config"], "n_embd": 32}}, tmp_path / "config.pt")
    for bad in ("weights.pt", "config.pt"):
        with pytest.raises(ValueError, match="checksum"):
            TokenPolicy.load(tmp_path / bad)


# ------------------------------------------------------------------ learners
@needs_hf
@pytest.mark.parametrize("kind", KINDS)
def test_bc_reduces_the_log_loss_of_the_demonstrations(kind):
    from ar_agents.algorithms import BC

    task = enum_task()
    demos = generate(task, 120, seed=0)
    before = build(kind, task, seed=0).sequence_log_prob(demos.contexts, demos.sequences).mean()
    bc = BC(policy=kind, policy_args=TINY[kind], epochs=8, lr=2e-2, batch_size=40)
    trained = bc.fit(task, demos, seed=0)
    after = trained.sequence_log_prob(demos.contexts, demos.sequences).mean()
    assert type(trained) is HF_POLICY_CLASSES[kind] and bc.log["policy_class"] == kind
    assert after > before + 1.0, (before, after)  # log-likelihood: starts near uniform, -3 log 3 = -3.3 nats
    again = BC(policy=kind, policy_args=TINY[kind], epochs=8, lr=2e-2, batch_size=40).fit(task, demos, seed=0)
    np.testing.assert_array_equal(again.sequence_log_prob(demos.contexts, demos.sequences),
                                  trained.sequence_log_prob(demos.contexts, demos.sequences))


@needs_hf
def test_teacherless_dagger_and_scheduled_sampling_train_hf_policies():
    from ar_agents.algorithms import DAgger, ScheduledSampling, Teacherless

    task = enum_task()
    demos = generate(task, 100, seed=1)
    kind = "hf:gpt2"
    for alg in (Teacherless(policy=kind, policy_args=TINY[kind], epochs=3),
                DAgger(policy=kind, policy_args=TINY["hf:gpt2"], rounds=2, epochs=2),
                ScheduledSampling(policy="hf:llama", policy_args=TINY["hf:llama"], epochs=2)):
        learner = alg.fit(task, demos, seed=0)
        model = getattr(learner, "model", learner)
        assert isinstance(model, tuple(HF_POLICY_CLASSES.values())), type(alg).__name__
        lp = learner.sequence_log_prob(demos.contexts[:10], demos.sequences[:10])
        assert np.all(np.isfinite(lp)) and np.all(lp < 0)


@needs_hf
@pytest.mark.parametrize("kind", KINDS)
def test_sb3_ppo_runs_on_hf_policies(kind):
    from ar_agents.algorithms.ppo import PPO

    task = enum_task()
    ppo = PPO(total_timesteps=16, n_envs=2, n_steps=8, batch_size=8, n_epochs=1, policy=kind, policy_args=TINY[kind],
              eval_episodes=10)
    learner = ppo.fit(task, None, seed=0)
    fresh = build(kind, task, seed=0)
    assert type(learner) is type(fresh) and learner.config == fresh.config
    contexts, seqs = random_sequences(task, 5, seed=9)
    lp = learner.sequence_log_prob(contexts, seqs)
    assert np.all(np.isfinite(lp)) and not np.allclose(lp, fresh.sequence_log_prob(contexts, seqs))  # it was updated


@needs_hf
def test_sb3_actor_probabilities_are_the_token_policy_s():
    from gymnasium import spaces

    from ar_agents.integrations.sb3_policy import TokenActorCriticPolicy, load_token_policy
    from ar_envs.env import observation_space

    task = star_task()
    sb3 = TokenActorCriticPolicy(observation_space(task), spaces.Discrete(task.vocab_size), lambda _: 1e-3, task=task,
                                 policy_kind="hf:llama", policy_args=TINY["hf:llama"])
    token = build("hf:llama", task, seed=11)
    load_token_policy(sb3, token)
    assert type(sb3.critic) is type(token) and sb3.critic.vocab_size == 1
    env = SequenceEnv(task)
    obs, _ = env.reset(seed=1)
    obs, *_ = env.step(0)
    with torch.no_grad():
        probs = sb3.get_distribution(torch.as_tensor(obs[None])).distribution.probs[0].numpy()
    want = token.next_token_probs(obs[None, : task.context_length], obs[None, task.context_length : task.context_length + 1])
    np.testing.assert_allclose(probs, want[0], rtol=1e-5, atol=1e-6)


@needs_hf
def test_sweep_cell_with_hf_bc_has_an_estimated_approx_factor(tmp_path, small_neural_best):
    from ar_agents.cli import build_algorithms
    from ar_agents.evaluation.sweep import sweep

    algs = build_algorithms("bc", "hf:gpt2", dict(TINY["hf:gpt2"]), {"epochs": 2})
    assert algs[0].name == "bc[hf:gpt2(n_embd=16,n_head=2,n_layer=1),epochs=2]"
    recs = sweep("linear-ar", [2], algs, task_args={"vocab_size": 3, "num_contexts": 3}, seeds=1, n_samples=100,
                 eval_samples=200, out=tmp_path / "r.jsonl", progress=False)
    (r,) = recs
    assert r["fit_log"]["policy_class"] == "hf:gpt2"
    assert r["best_in_class_method"].startswith("estimate: hf:gpt2")
    assert r["approx_factor"] is not None and r["approx_factor"] >= 1 - 1e-9
    assert r["approx_factor"] == pytest.approx(r["hellinger2"] / r["best_in_class_hellinger2"])


@needs_hf
def test_cli_sweep_takes_hf_policies(tmp_path, small_neural_best, capsys):
    from ar_agents.cli import main

    out = tmp_path / "r.jsonl"
    rc = main(["sweep", "--task", "linear-ar", "--task-arg", "vocab_size=3", "--task-arg", "num_contexts=3",
               "--horizons", "2", "--algorithms", "bc", "--policy", "hf:mamba", "--policy-arg", "n_layer=1",
               "--policy-arg", "n_embd=8", "--policy-arg", "state_size=2", "--algo-arg", "epochs=1",
               "--seeds", "1", "--samples", "50", "--eval-samples", "100", "--out", str(out), "--quiet"])
    assert rc == 0 and out.exists()
    rc = main(["sweep", "--task", "linear-ar", "--horizons", "2", "--algorithms", "bc", "--policy", "hf:mamba",
               "--policy-arg", "n_head=2", "--out", str(tmp_path / "bad.jsonl"), "--quiet"])
    assert rc == 2 and "n_head" in capsys.readouterr().err


# ------------------------------------------------------------------ without the extra
def test_without_transformers_the_error_says_how_to_install(monkeypatch, capsys):
    import ar_agents.policies.hf as hf
    from ar_agents.algorithms import BC
    from ar_agents.cli import main

    monkeypatch.setattr(hf, "transformers_available", lambda: False)
    for call in (lambda: make_policy("hf:gpt2", enum_task()), lambda: BC(policy="hf:llama"),
                 lambda: HF_POLICY_CLASSES["hf:mamba"].for_task(enum_task())):
        with pytest.raises(ImportError, match=r"pip install 'ar-envs\[hf\]'"):
            call()
    rc = main(["sweep", "--task", "linear-ar", "--horizons", "2", "--algorithms", "bc", "--policy", "hf:gpt2",
               "--out", "/nonexistent/never-written.jsonl", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install 'ar-envs[hf]'" in err and len(err.strip().splitlines()) == 1


def test_cli_choices_are_the_policy_kinds():
    from ar_agents.cli import POLICY_KIND_CHOICES

    assert POLICY_KIND_CHOICES == POLICY_KINDS


# ------------------------------------------------------------------ examples/path_star.py --policy
@needs_hf
def test_path_star_example_quick_on_hf_mamba(tmp_path):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "star.png"
    res = subprocess.run([sys.executable, os.path.join(root, "examples", "path_star.py"), "--quick", "--policy", "hf:mamba",
                          "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=root,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr
    assert "hf:mamba {'n_layer': 1, 'n_embd': 16}" in res.stdout  # no n_head: Mamba has none
    rows = [line for line in res.stdout.splitlines() if " | " in line]
    assert len(rows) == 4 and rows[1].startswith("forward (teacher forcing)") and rows[3].startswith("teacherless")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run([sys.executable, os.path.join(root, "examples", "path_star.py"), "--quick", "--policy", "hf:bert"],
                         capture_output=True, text=True, timeout=60, cwd=root)
    assert bad.returncode != 0 and "--policy" in bad.stderr


# ------------------------------------------------------------------ bench_train rows (c)
@needs_hf
def test_bench_train_times_the_hf_classes(capsys):
    import re

    from ar_agents.evaluation import bench_train

    tiny = ["--degree", "2", "--path-length", "3", "--num-nodes", "6", "--samples", "32", "--n-layer", "1",
            "--n-embd", "16", "--n-head", "2", "--train-batch-size", "16", "--batch-size", "16", "--repeats", "1",
            "--mamba-samples", "8"]
    assert bench_train.main([*tiny, "--hf", "hf:gpt2,hf:llama,hf:mamba"]) == 0
    out = capsys.readouterr().out
    for kind in ("hf:gpt2", "hf:llama"):
        row = re.search(rf"{kind}\s+[\d,]+ stream tokens/s  ratio\s+(\d+\.\d\d) \(target >= 0.5: (ok|BELOW)\)\s+"
                        rf"\d+\.\d\d GFLOP/s = (\d+\.\d\d) of matmul", out)
        assert row and float(row.group(1)) > 0, out
    assert re.search(r"hf:mamba\s+[\d,]+ stream tokens/s  ratio\s+\d+\.\d\d \(\d+\.\dx slower than our GPT; 8 sequences", out)
    for bad in (["--hf", "hf:bert"], ["--mamba-samples", "0"]):
        with pytest.raises(SystemExit):
            bench_train.main([*tiny, *bad])
