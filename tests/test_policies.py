"""Neural policy classes (linear / MLP window, GPT transformer): the token-stream contract.

Causality, teacher-forced scoring against step-by-step prediction, teacherless decoding,
``predict`` on raw environment observations, save / load, seeding and argument checks.
"""

import json

import numpy as np
import pytest
import torch

from ar_agents.policies import GPTConfig, GPTPolicy, TokenPolicy, WindowPolicy, make_policy, stream_spec
from ar_envs.env import SequenceEnv, SequenceVectorEnv
from ar_envs.tasks import LinearAR, PathStar, TwoBranch

SMALL = {
    "linear": {"window": 4, "embed_dim": 8},
    "mlp": {"window": 4, "embed_dim": 8, "hidden": 16},
    "transformer": {"n_layer": 2, "n_head": 2, "n_embd": 16},
}
TASKS = {
    "two-branch": lambda: TwoBranch(horizon=5, eps=0.1),
    "linear-ar": lambda: LinearAR(horizon=5, vocab_size=3, num_contexts=4),
    "path-star": lambda: PathStar(degree=3, path_length=4, num_nodes=20),
}
KINDS = list(SMALL)
CASES = [(kind, name) for kind in KINDS for name in TASKS]


def build(kind, task, seed=0, **extra):
    return make_policy(kind, task, seed=seed, **{**SMALL[kind], **extra})


@pytest.fixture(params=CASES, ids=[f"{k}-{t}" for k, t in CASES])
def case(request):
    kind, name = request.param
    task = TASKS[name]()
    return task, build(kind, task)


def random_sequences(task, n, seed):
    rng = np.random.default_rng(seed)
    contexts = task.sample_contexts(n, rng)
    return contexts, rng.integers(0, task.vocab_size, size=(n, task.horizon))


# ------------------------------------------------------------------ the stream is causal
def test_changing_a_later_token_never_changes_earlier_logits(case):
    task, policy = case
    rng = np.random.default_rng(1)
    T = task.context_length + task.horizon
    ids = torch.as_tensor(rng.integers(0, policy.input_vocab_size, size=(3, T)))
    with torch.no_grad():
        base = policy(ids)
        for j in range(T):
            changed = ids.clone()
            changed[:, j] = (changed[:, j] + 1 + torch.as_tensor(rng.integers(0, policy.input_vocab_size - 1, 3))) % policy.input_vocab_size
            out = policy(changed)
            assert torch.allclose(out[:, :j], base[:, :j], rtol=0, atol=1e-6), f"position < {j} saw token {j}"
            assert not torch.allclose(out[:, j], base[:, j], rtol=0, atol=1e-6), f"position {j} ignores its own token"


def test_logits_from_a_start_position_are_the_tail_of_all_logits(case):
    task, policy = case
    rng = np.random.default_rng(2)
    T = task.context_length + task.horizon
    ids = torch.as_tensor(rng.integers(0, policy.input_vocab_size, size=(4, T)))
    with torch.no_grad():
        full = policy(ids)
        assert full.shape == (4, T, task.vocab_size)
        for start in (0, 1, task.context_length, T - 1, T):
            part = policy(ids, start=start)
            assert part.shape == (4, T - start, task.vocab_size)
            assert torch.allclose(part, full[:, start:], rtol=0, atol=1e-6)
    for bad in (-1, T + 1, 1.5, True):
        with pytest.raises(ValueError, match="start must be an integer in"):
            policy(ids, start=bad)


# ------------------------------------------------------------------ one-pass scoring = step-by-step prediction
def test_sequence_log_prob_is_the_chain_rule_of_next_token_probs(case):
    task, policy = case
    contexts, seqs = random_sequences(task, 16, seed=2)
    rows = np.arange(len(seqs))
    chain = sum(np.log(policy.next_token_probs(contexts, seqs[:, :h])[rows, seqs[:, h]]) for h in range(task.horizon))
    np.testing.assert_allclose(policy.sequence_log_prob(contexts, seqs), chain, rtol=0, atol=1e-6)


def test_teacher_forced_probs_are_next_token_probs_after_the_true_prefix(case):
    task, policy = case
    contexts, seqs = random_sequences(task, 16, seed=3)
    tf = policy.teacher_forced_probs(contexts, seqs)
    assert tf.shape == (16, task.horizon, task.vocab_size)
    for h in range(task.horizon):
        np.testing.assert_allclose(tf[:, h], policy.next_token_probs(contexts, seqs[:, :h]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(tf.sum(axis=-1), 1.0, atol=1e-12)


# ------------------------------------------------------------------ teacherless decoding
def test_teacherless_decode_is_the_argmax_of_one_pass_over_dummies(case):
    task, policy = case
    contexts = task.sample_contexts(16, np.random.default_rng(4))
    n, L, H = len(contexts), task.context_length, task.horizon
    ids = np.concatenate(
        [np.full((n, 1), policy.bos), contexts.reshape(n, L), np.full((n, H - 1), policy.dummy)], axis=1
    )
    with torch.no_grad():
        expected = policy(torch.as_tensor(ids))[:, L:].argmax(dim=-1).numpy()
    np.testing.assert_array_equal(policy.teacherless_decode(contexts), expected)


@pytest.mark.parametrize("kind", KINDS)
def test_teacherless_decode_differs_from_greedy_decoding(kind):
    task = TASKS["path-star"]()
    policy = build(kind, task)
    contexts = task.sample_contexts(64, np.random.default_rng(5))
    teacherless, greedy = policy.teacherless_decode(contexts), policy.greedy(contexts)
    np.testing.assert_array_equal(teacherless[:, 0], greedy[:, 0])  # the same input before the first answer token
    assert np.any(teacherless != greedy)  # later positions see DUMMY instead of the model's own tokens


# ------------------------------------------------------------------ predict on raw observations
def test_predict_on_single_env_observations(case):
    task, policy = case
    L = task.context_length
    env = SequenceEnv(task)
    rng = np.random.default_rng(6)
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        for t in range(task.horizon):
            action, state = policy.predict(obs, deterministic=True)
            assert state is None and np.ndim(action) == 0
            expected = policy.next_token_probs(obs[None, :L], obs[None, L : L + t]).argmax(axis=1)[0]
            assert int(action) == expected, (episode, t)
            obs, *_ = env.step(int(rng.integers(0, task.vocab_size)))  # off the policy's path too


def test_predict_on_vector_env_observations(case):
    task, policy = case
    L = task.context_length
    env = SequenceVectorEnv(task, num_envs=5)
    obs, _ = env.reset(seed=7)
    rng = np.random.default_rng(7)
    for t in range(task.horizon):
        actions, _ = policy.predict(obs, deterministic=True)
        assert actions.shape == (5,)
        expected = policy.next_token_probs(obs[:, :L], obs[:, L : L + t]).argmax(axis=1)
        np.testing.assert_array_equal(actions, expected)
        sampled, _ = policy.predict(obs, deterministic=False)
        assert sampled.shape == (5,) and sampled.min() >= 0 and sampled.max() < task.vocab_size
        obs, *_ = env.step(rng.integers(0, task.vocab_size, size=5))


# ------------------------------------------------------------------ save / load
def test_save_load_round_trip_gives_identical_outputs(case, tmp_path):
    task, policy = case
    path = tmp_path / "policy.pt"
    policy.save(path)
    loaded = TokenPolicy.load(path)
    assert type(loaded) is type(policy) and loaded.config == policy.config and loaded.spec == policy.spec
    contexts, seqs = random_sequences(task, 8, seed=8)
    np.testing.assert_array_equal(loaded.sequence_log_prob(contexts, seqs), policy.sequence_log_prob(contexts, seqs))
    np.testing.assert_array_equal(loaded.greedy(contexts), policy.greedy(contexts))


def test_load_refuses_corrupt_and_foreign_files(tmp_path):
    task = TASKS["path-star"]()
    policy = build("transformer", task)
    good = tmp_path / "good.pt"
    policy.save(good)
    payload = torch.load(good, weights_only=True)

    def write(name, data):
        p = tmp_path / name
        p.write_bytes(data)
        return p

    bad = [
        write("garbage.pt", b"not a torch file at all"),
        write("truncated.pt", good.read_bytes()[: good.stat().st_size // 2]),
        write("policy.json", json.dumps({"format": "ar-envs-policy"}).encode()),
    ]
    for name, obj in {
        "foreign.pt": {"weights": torch.zeros(3)},
        "tensor.pt": torch.zeros(3),
        "no_state.pt": {k: v for k, v in payload.items() if k != "state_dict"},
        "not_a_policy_class.pt": {**payload, "class": "collections:OrderedDict"},
        "unknown_class.pt": {**payload, "class": "no_such_module:Policy"},
        "wrong_shapes.pt": {**payload, "config": {**payload["config"], "n_embd": 32}},
        "bad_config.pt": {**payload, "config": {**payload["config"], "no_such_arg": 1}},
    }.items():
        torch.save(obj, tmp_path / name)
        bad.append(tmp_path / name)
    for path in bad:
        with pytest.raises(ValueError, match="policy"):
            TokenPolicy.load(path)
    assert isinstance(TokenPolicy.load(good), GPTPolicy)


# ------------------------------------------------------------------ seeding
@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_initial_weights(kind):
    task = TASKS["path-star"]()
    state = torch.get_rng_state()
    a, b, c = build(kind, task, seed=3), build(kind, task, seed=3), build(kind, task, seed=4)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


# ------------------------------------------------------------------ arguments
@pytest.mark.parametrize(
    "kind, kwargs, name",
    [
        ("transformer", {"n_layer": 0}, "n_layer"),
        ("transformer", {"n_head": 0}, "n_head"),
        ("transformer", {"n_embd": 0}, "n_embd"),
        ("transformer", {"n_head": 3, "n_embd": 16}, "n_embd"),
        ("transformer", {"dropout": 1.0}, "dropout"),
        ("transformer", {"dropout": float("nan")}, "dropout"),
        ("transformer", {"bias": "yes"}, "bias"),
        ("transformer", {"max_len": 0}, "max_len"),
        ("transformer", {"max_len": 10}, "max_len"),  # path-star streams are L + H = 34 long
        ("transformer", {"n_layers": 2}, "n_layers"),
        ("linear", {"window": 0}, "window"),
        ("linear", {"hidden": 8}, "hidden"),
        ("mlp", {"hidden": 0}, "hidden"),
        ("mlp", {"layers": 0}, "layers"),
        ("mlp", {"embed_dim": -1}, "embed_dim"),
    ],
)
def test_bad_config_raises_value_error_naming_the_argument(kind, kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_policy(kind, TASKS["path-star"](), **kwargs)


def test_make_policy_rejects_unknown_kinds_seeds_and_tasks():
    task = TASKS["two-branch"]()
    with pytest.raises(ValueError, match=r"kind.*linear.*mlp.*transformer"):
        make_policy("rnn", task)
    with pytest.raises(ValueError, match="seed"):
        make_policy("linear", task, seed=-1)
    with pytest.raises(ValueError, match="task"):
        make_policy("linear", "two-branch")
    with pytest.raises(ValueError, match="n_head"):
        GPTConfig(n_head=0)


def test_make_policy_kinds_and_defaults():
    task = TASKS["linear-ar"]()
    assert isinstance(make_policy("linear", task), WindowPolicy) and make_policy("linear", task).hidden == 0
    assert make_policy("mlp", task).hidden == 128
    gpt = make_policy("transformer", task)
    assert isinstance(gpt, GPTPolicy)
    assert gpt.config["max_len"] == 1 + task.context_length + task.horizon
    assert gpt.spec == stream_spec(task)


def test_forward_rejects_bad_streams():
    task = TASKS["linear-ar"]()
    policy = build("transformer", task)
    with pytest.raises(ValueError, match="ids"):
        policy(torch.zeros((1, policy.config["max_len"] + 1), dtype=torch.long))
    with pytest.raises(ValueError, match="ids"):
        policy(torch.full((1, 3), policy.input_vocab_size, dtype=torch.long))


# ------------------------------------------------------------------ transformer details
def test_scoring_runs_in_eval_mode_and_restores_the_mode():
    task = TASKS["path-star"]()
    policy = build("transformer", task, dropout=0.5)
    contexts, seqs = random_sequences(task, 8, seed=9)
    policy.train()
    first = policy.sequence_log_prob(contexts, seqs)
    np.testing.assert_array_equal(policy.sequence_log_prob(contexts, seqs), first)  # no dropout noise
    assert policy.training
    policy.eval()
    np.testing.assert_array_equal(policy.sequence_log_prob(contexts, seqs), first)
    assert not policy.training


def test_flops_per_token_counts_parameters_and_attention():
    task = TASKS["path-star"]()
    policy = build("transformer", task)
    d, n_layer, V = 16, 2, task.vocab_size
    # per block: 2 LayerNorms (4d), qkv (3d^2 + 3d), out (d^2 + d), MLP (8d^2 + 5d); then ln_f and head
    non_embedding = n_layer * (12 * d * d + 13 * d) + 2 * d + d * V + V
    assert policy.num_parameters(embeddings=False) == non_embedding
    T = task.context_length + task.horizon
    assert policy.flops_per_token() == 6 * non_embedding + 12 * n_layer * d * T
    assert policy.flops_per_token(seq_len=10) == 6 * non_embedding + 12 * n_layer * d * 10
    with pytest.raises(ValueError, match="seq_len"):
        policy.flops_per_token(seq_len=0)
