"""Path-star graphs: generator invariants, expert on and off its path, training views, env checks."""

import itertools
import warnings

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ar_envs  # noqa: F401  (registers the environments)
from ar_envs.tasks import TASKS, PathStar
from uniformity import chi2_quantile as _chi2_quantile
from uniformity import uniform_stat


@st.composite
def graph_params(draw, large=False):
    d = draw(st.integers(2, 6))
    l = draw(st.integers(2, 6))
    extra = st.integers(0, 30)
    if large:  # also over 4096 ids: 64-bit sort keys, edges packed in more than 24 bits
        extra = st.one_of(extra, st.integers(4_000, 70_000))
    N = d * (l - 1) + 1 + draw(extra)
    return d, l, N, draw(st.integers(0, 2**32 - 1))


def parse(task, ctx):
    """Edges (u, v) (n, E), source (n,), goal (n,) read off the prompt by position."""
    E = task.num_edges
    return ctx[:, 0 : 3 * E : 3], ctx[:, 1 : 3 * E : 3], ctx[:, 3 * E], ctx[:, 3 * E + 1]


def true_edges(source, ctx_u, ctx_v):
    """Arms rebuilt from the edge list by walking from the source (independent of the task)."""
    edges = dict(zip(ctx_u.tolist(), ctx_v.tolist()))  # non-source nodes have one child
    starts = [v for u, v in zip(ctx_u.tolist(), ctx_v.tolist()) if u == source]
    arms = []
    for s in starts:
        arm = [s]
        while arm[-1] in edges:
            arm.append(edges[arm[-1]])
        arms.append(arm)
    return arms


# --------------------------------------------------------------------------------------------
# generator
# --------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(graph_params(large=True))
def test_generated_graphs_are_path_stars(params):
    d, l, N, seed = params
    task = PathStar(degree=d, path_length=l, num_nodes=N)
    ctx, seq = task.sample_expert(8, seed)
    E = d * (l - 1)
    assert ctx.shape == (8, 3 * d * (l - 1) + 3) == (8, task.context_length)
    assert seq.shape == (8, l) == (8, task.horizon)
    assert task.vocab_size == N + 4 and task.context_vocab_size == N + 4
    # separators and special tokens where the serialisation puts them
    assert np.all(ctx[:, 2 : 3 * E - 1 : 3] == N)  # '|'
    assert np.all(ctx[:, 3 * E - 1] == N + 2)  # '/'
    assert np.all(ctx[:, 3 * E + 2] == N + 1)  # '='
    u, v, source, goal = parse(task, ctx)
    for i in range(8):
        nodes = np.concatenate([u[i], v[i]])
        distinct = np.unique(nodes)
        assert len(distinct) == E + 1 and distinct.max() < N and distinct.min() >= 0
        assert len(np.unique(v[i])) == E  # every non-source node has one parent
        arms = true_edges(source[i], u[i], v[i])
        assert len(arms) == d and all(len(a) == l - 1 for a in arms)
        assert len({x for a in arms for x in a}) == d * (l - 1)  # disjoint arms
        # exactly one arm ends at the goal; the answer is source + that arm
        to_goal = [a for a in arms if goal[i] in a]
        assert len(to_goal) == 1 and to_goal[0][-1] == goal[i]
        assert seq[i].tolist() == [int(source[i])] + to_goal[0]
        # the edge list is a permutation of the true edges
        truth = {(int(source[i]), a[0]) for a in arms} | {(a[k], a[k + 1]) for a in arms for k in range(l - 2)}
        listed = list(zip(u[i].tolist(), v[i].tolist()))
        assert len(listed) == len(truth) and set(listed) == truth
    assert np.all(task.reward(ctx, seq) == 1.0)


def test_prompt_length_and_token_layout():
    task = PathStar(degree=5, path_length=5, num_nodes=50)
    assert task.context_length == 3 * 5 * 4 + 3 == 63
    assert task.horizon == 5
    assert task.token_names()[50:] == ["|", "=", "/", "$"]
    ctx, seq = task.sample_expert(1, 3)
    text = task.render_tokens(ctx[0], seq[0])
    assert text.count("|") == 19 and text.count("/") == 1 and text.count("=") == 1
    answer = text.split("=")[1]
    assert [int(x) for x in answer.split(",")] == seq[0].tolist()


def test_same_seed_same_contexts():
    task = PathStar(degree=3, path_length=4, num_nodes=20)
    a = task.sample_contexts(50, np.random.default_rng(7))
    b = task.sample_contexts(50, np.random.default_rng(7))
    c, s = task.sample_expert(50, 7)
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert not np.array_equal(a, task.sample_contexts(50, np.random.default_rng(8)))
    assert task.sample_expert(0, 1)[0].shape == (0, task.context_length)


@pytest.mark.parametrize("d,l", [(3, 4), (5, 5)])
def test_goal_arm_position_in_edge_list_is_uniform(d, l):
    task = PathStar(degree=d, path_length=l, num_nodes=50)
    n = 20_000
    ctx, seq = task.sample_expert(n, 123)
    u, v, source, _ = parse(task, ctx)
    E = task.num_edges
    # the first edge of the goal arm (source -> answer[1]): its index in the list
    first = np.argmax((u == source[:, None]) & (v == seq[:, 1:2]), axis=1)
    counts = np.bincount(first, minlength=E)
    stat = ((counts - n / E) ** 2 / (n / E)).sum()
    assert stat < _chi2_quantile(E - 1), (stat, counts)
    # and the goal arm's rank among the source's d out-edges (the order in which arms are listed)
    out_pos = np.cumsum(u == source[:, None], axis=1) - 1
    rank = out_pos[np.arange(n), first]
    counts = np.bincount(rank, minlength=d)
    stat = ((counts - n / d) ** 2 / (n / d)).sum()
    assert stat < _chi2_quantile(d - 1), (stat, counts)


@pytest.mark.parametrize("d,l,N", [(2, 2, 3), (2, 3, 5), (3, 2, 5)])
def test_every_prompt_is_equally_likely(d, l, N):
    """The law of the prompt is uniform over (id assignment, edge order, goal arm): enumerate
    every labelled star and edge order, and compare the generator's frequencies."""
    task = PathStar(degree=d, path_length=l, num_nodes=N)
    E = task.num_edges
    support = set()
    for ids in itertools.permutations(range(N), E + 1):
        source, arms = ids[0], [ids[1 + a * (l - 1) : 1 + (a + 1) * (l - 1)] for a in range(d)]
        edges = [(([source] + list(arm))[k], arm[k]) for arm in arms for k in range(l - 1)]
        for goal_arm in range(d):
            for order in itertools.permutations(range(E)):
                prompt = []
                for i in order:
                    prompt += [*edges[i], task.pipe]
                prompt[-1] = task.slash
                support.add(tuple(prompt + [source, arms[goal_arm][-1], task.equals]))
    support = sorted(support)
    ctx = task.sample_contexts(40 * len(support), np.random.default_rng(0))
    stat, counts = uniform_stat(ctx, support)
    assert counts.min() > 0 and stat < _chi2_quantile(len(support) - 1), (stat, len(support))


# --------------------------------------------------------------------------------------------
# expert
# --------------------------------------------------------------------------------------------


def rollout(task, ctx):
    seq = np.zeros((len(ctx), task.horizon), dtype=np.int64)
    for h in range(task.horizon):
        p = task.expert_probs(ctx, seq[:, :h])
        seq[:, h] = p.argmax(axis=1)
    return seq


@settings(max_examples=40, deadline=None)
@given(graph_params(), st.sampled_from(["forward", "reverse"]), st.sampled_from(["reference", "consistent"]))
def test_expert_rollout_is_the_answer(params, order, off_path):
    d, l, N, seed = params
    task = PathStar(degree=d, path_length=l, num_nodes=N, order=order, off_path=off_path)
    ctx, seq = task.sample_expert(16, seed)
    gen = rollout(task, ctx)
    assert np.array_equal(gen, seq)
    assert np.all(task.reward(ctx, gen) == 1.0)
    assert np.all(task.expert_log_prob(ctx, seq) == 0.0)
    if order == "reverse":
        fwd = PathStar(degree=d, path_length=l, num_nodes=N).sample_expert(16, seed)[1]
        assert np.array_equal(seq, fwd[:, ::-1])
    m = task.extra_metrics(ctx, gen)
    assert m == {"exact_match": 1.0, "first_decision_accuracy": 1.0, "valid_arm_rate": 1.0}


@settings(max_examples=40, deadline=None)
@given(graph_params(), st.sampled_from(["forward", "reverse"]), st.sampled_from(["reference", "consistent"]))
def test_expert_probs_after_random_prefixes(params, order, off_path):
    d, l, N, seed = params
    task = PathStar(degree=d, path_length=l, num_nodes=N, order=order, off_path=off_path)
    rng = np.random.default_rng(seed)
    ctx, seq = task.sample_expert(32, rng)
    for t in range(l):
        prefixes = rng.integers(0, task.vocab_size, size=(32, t))
        p = task.expert_probs(ctx, prefixes)
        assert p.shape == (32, task.vocab_size)
        assert np.allclose(p.sum(axis=1), 1.0) and np.all((p == 0) | (p == 1))
        nxt = p.argmax(axis=1)
        if off_path == "reference" or t == 0:
            assert np.array_equal(nxt, seq[:, t])
    # teacher-forced step probabilities agree with expert_probs prefix by prefix
    noisy = rng.integers(0, task.vocab_size, size=(32, l))
    step = task.expert_step_probs(ctx, noisy)
    for t in range(l):
        assert np.array_equal(step[:, t], task.expert_probs(ctx, noisy[:, :t]))


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_consistent_expert_continues_the_arm(order):
    d, l, N = 4, 6, 40
    cons = PathStar(degree=d, path_length=l, num_nodes=N, order=order, off_path="consistent")
    ref = PathStar(degree=d, path_length=l, num_nodes=N, order=order, off_path="reference")
    fwd = PathStar(degree=d, path_length=l, num_nodes=N)
    ctx, seq = cons.sample_expert(200, 5)
    u, v, source, goal = parse(cons, ctx)
    n = len(ctx)
    # a wrong arm for every graph: its first node is another child of the source
    right = fwd.reference(ctx)[:, 1]
    wrong = np.array([[x for x, s in zip(v[i], u[i]) if s == source[i] and x != right[i]][0] for i in range(n)])
    arms = [true_edges(source[i], u[i], v[i]) for i in range(n)]
    wrong_arm = np.array([[a for a in arms[i] if a[0] == wrong[i]][0] for i in range(n)])  # (n, l-1)
    if order == "forward":
        prefix = np.stack([source, wrong], axis=1)
        for t in range(2, l):
            nxt_c = cons.expert_probs(ctx, prefix).argmax(axis=1)
            nxt_r = ref.expert_probs(ctx, prefix).argmax(axis=1)
            assert np.array_equal(nxt_c, wrong_arm[:, t - 1])  # down the wrong arm
            assert np.array_equal(nxt_r, seq[:, t])  # back to the reference token
            prefix = np.concatenate([prefix, nxt_c[:, None]], axis=1)
        assert np.all(cons.reward(ctx, prefix) == 0.0)
        assert cons.extra_metrics(ctx, prefix)["valid_arm_rate"] == 1.0
        # after the source (d children) and after a separator: the reference token
        assert np.array_equal(cons.expert_probs(ctx, np.stack([source, source], 1)).argmax(1), seq[:, 2])
        assert np.array_equal(cons.expert_probs(ctx, np.stack([source, np.full(n, N)], 1)).argmax(1), seq[:, 2])
    else:
        # start from the wrong arm's end, walk back to the source
        prefix = wrong_arm[:, -1:]
        for t in range(1, l):
            nxt_c = cons.expert_probs(ctx, prefix).argmax(axis=1)
            nxt_r = ref.expert_probs(ctx, prefix).argmax(axis=1)
            expect = source if t == l - 1 else wrong_arm[:, l - 2 - t]
            assert np.array_equal(nxt_c, expect)
            assert np.array_equal(nxt_r, seq[:, t])
            prefix = np.concatenate([prefix, nxt_c[:, None]], axis=1)
        m = cons.extra_metrics(ctx, prefix)
        assert m["valid_arm_rate"] == 1.0 and m["exact_match"] == 0.0 and m["first_decision_accuracy"] == 0.0
        # after reaching the source too early: the reference token
        pre = np.stack([goal, source], axis=1)
        assert np.array_equal(cons.expert_probs(ctx, pre).argmax(1), seq[:, 2])


def test_extra_metrics_on_wrong_answers():
    task = PathStar(degree=3, path_length=4, num_nodes=20)
    ctx, seq = task.sample_expert(100, 2)
    bad = seq.copy()
    bad[:, 2] = seq[:, 3]  # skips a node: not a walk along an arm
    m = task.extra_metrics(ctx, bad)
    assert m == {"exact_match": 0.0, "first_decision_accuracy": 1.0, "valid_arm_rate": 0.0}
    assert np.all(task.reward(ctx, bad) == 0.0) and np.all(np.isneginf(task.expert_log_prob(ctx, bad)))


# --------------------------------------------------------------------------------------------
# training views
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_teacher_forcing_and_teacherless_views(order):
    d, l, N = 3, 5, 30
    task = PathStar(degree=d, path_length=l, num_nodes=N, order=order)
    ctx, seq = task.sample_expert(10, 0)
    P = task.context_length
    x, y, m = task.teacher_forcing_batch(ctx, seq)
    assert x.shape == y.shape == m.shape == (10, P + l - 1)
    assert np.array_equal(x[:, :P], ctx) and np.array_equal(x[:, P:], seq[:, :-1])
    assert np.array_equal(y[:, :P - 1], ctx[:, 1:]) and np.array_equal(y[:, P - 1 :], seq)
    assert m.dtype == bool and m.sum(axis=1).tolist() == [l] * 10
    assert np.array_equal(y[m].reshape(10, l), seq)  # the loss sees exactly the answer
    xt, yt, mt = task.teacherless_batch(ctx, seq)
    assert xt.shape == (10, P + l - 1)
    assert np.array_equal(xt[:, :P], ctx) and np.all(xt[:, P:] == N + 3)  # (l-1) x '$'
    assert np.array_equal(yt, y) and np.array_equal(mt, m)
    assert not np.isin(xt[:, P:], seq).any()  # no answer token leaks into the inputs
    with pytest.raises(ValueError, match="sequences"):
        task.teacher_forcing_batch(ctx, seq[:, :-1])


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"degree": 1}, "degree"),
        ({"degree": 2.5}, "degree"),
        ({"path_length": 1}, "path_length"),
        ({"degree": 5, "path_length": 5, "num_nodes": 20}, "num_nodes"),
        ({"degree": 2, "path_length": 3, "num_nodes": 4}, "num_nodes"),
        ({"num_nodes": "50"}, "num_nodes"),
        ({"num_nodes": 2**22 + 1}, r"num_nodes must be an integer in \[21, 4194304\]"),
        ({"degree": 2**21, "path_length": 3}, "at most 4194304 node ids"),
        ({"order": "backward"}, "order"),
        ({"off_path": "nearest"}, "off_path"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PathStar(**kwargs)


def test_minimum_num_nodes_is_accepted_and_named():
    task = PathStar(degree=5, path_length=5, num_nodes=21)  # d(l-1)+1: every id used
    ctx, seq = task.sample_expert(100, 0)
    u, v, source, _ = parse(task, ctx)
    assert all(sorted(set(u[i]) | set(v[i])) == list(range(21)) for i in range(100))
    with pytest.raises(ValueError, match="21"):
        PathStar(degree=5, path_length=5, num_nodes=20)


def test_bad_queries_raise():
    task = PathStar(degree=3, path_length=4, num_nodes=20)
    ctx, seq = task.sample_expert(4, 0)
    with pytest.raises(ValueError, match="prefixes"):
        task.expert_probs(ctx, seq)  # a complete answer has no next token
    with pytest.raises(ValueError, match="prefixes"):
        task.expert_probs(ctx, np.full((4, 1), task.vocab_size))
    with pytest.raises(ValueError, match="contexts"):
        task.expert_probs(ctx[:, :-1], seq[:, :1])
    broken = ctx.copy()
    broken[:, 2] = 0  # a node where '|' belongs
    with pytest.raises(ValueError, match="contexts"):
        task.reward(broken, seq)
    with pytest.raises(ValueError, match="n"):
        task.sample_expert(-1, 0)


# --------------------------------------------------------------------------------------------
# registration and environment checks
# --------------------------------------------------------------------------------------------


def test_registered_and_env_checkers_pass():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    assert TASKS["path-star"] is PathStar
    env = gym.make("ar_envs/PathStar-v0", degree=3, path_length=4, num_nodes=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)
    obs, info = env.reset(seed=3)
    task = env.unwrapped.task
    L = task.context_length
    assert obs.shape == (L + 4,) and np.all(obs[L:] == task.vocab_size)
    total = 0.0
    for _ in range(task.horizon):
        obs, r, term, trunc, info = env.step(info.get("expert_action", 0))
        total += r
    assert term and total == 1.0
    assert np.array_equal(obs[L:], task.reference(obs[None, :L])[0])


def test_vector_env_expert_gets_reward_one():
    venv = gym.make_vec("ar_envs/PathStar-v0", num_envs=64, vectorization_mode="vector_entry_point", degree=4, path_length=5, order="reverse")
    obs, info = venv.reset(seed=0)
    for _ in range(5):
        obs, r, term, trunc, info = venv.step(info["expert_action"])
    assert term.all() and np.all(r == 1.0)
    venv.close()


@pytest.mark.parametrize("order", ["forward", "reverse"])
@pytest.mark.parametrize("off_path", ["reference", "consistent"])
def test_planned_expert_and_reward_equal_the_plain_ones(order, off_path):
    """The environments' fast path (a plan per episode) computes exactly the plain methods."""
    task = PathStar(degree=3, path_length=4, num_nodes=15, order=order, off_path=off_path)
    ctx_plain = task.sample_contexts(64, np.random.default_rng(9))
    ctx, plan = task.sample_contexts_planned(64, np.random.default_rng(9))
    assert np.array_equal(ctx, ctx_plain)
    parsed = task.expert_plan(ctx)  # the same plan, read off the prompts
    assert np.array_equal(parsed[1], plan[1]) and (parsed[0] is None) == (plan[0] is None) == (off_path == "reference")
    assert plan[0] is None or np.array_equal(parsed[0], plan[0])
    rng = np.random.default_rng(1)
    for t in range(task.horizon):
        prefixes = rng.integers(0, task.vocab_size, size=(64, t))
        assert np.array_equal(task.expert_probs_planned(ctx, prefixes, plan), task.expert_probs(ctx, prefixes))
        nxt = task.expert_next_token_planned(ctx, prefixes, plan)
        assert np.array_equal(nxt, task.expert_next_token(ctx, prefixes))
        nxt[:] = -1  # a fresh array: the plan is untouched
        assert np.array_equal(task.expert_next_token_planned(ctx, prefixes, plan), task.expert_next_token(ctx, prefixes))
    seqs = np.concatenate([task.reference(ctx)[:32], rng.integers(0, task.num_nodes, size=(32, task.horizon))])
    assert np.array_equal(task.reward_planned(ctx, seqs, plan), task.reward(ctx, seqs))
    assert task.reward_planned(ctx, seqs, plan)[:32].all()
    # written into a caller's buffer (the environments' observations), in its dtype
    buf = np.full((64, task.context_length + 2), -7, dtype=np.int16)
    out, plan2 = task.sample_contexts_planned(64, np.random.default_rng(9), out=buf[:, : task.context_length])
    assert out.base is buf and np.array_equal(buf[:, : task.context_length], ctx_plain) and (buf[:, -2:] == -7).all()
    assert np.array_equal(plan2[1], plan[1])
    with pytest.raises(ValueError, match="out must be an integer array"):
        task.sample_contexts_planned(64, np.random.default_rng(9), out=np.zeros((64, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="out must be an integer array"):
        task.sample_contexts_planned(64, np.random.default_rng(9), out=np.zeros((64, task.context_length)))
    with pytest.raises(ValueError, match="out must be an integer array"):
        task.sample_contexts_planned(64, np.random.default_rng(9), out=np.zeros((64, task.context_length), dtype=bool))


def test_default_planned_sampler_writes_into_out():
    from ar_envs.tasks import Multiplication

    task = Multiplication(digits=2)
    buf = np.zeros((5, task.context_length), dtype=np.int16)
    out, _ = task.sample_contexts_planned(5, np.random.default_rng(3), out=buf)
    assert out is buf and np.array_equal(buf, task.sample_contexts(5, np.random.default_rng(3)))
    big = PathStar(num_nodes=300)  # tokens up to 303 do not fit in int8: refused, not wrapped around
    with pytest.raises(ValueError, match="holds context tokens up to 303"):
        big.sample_contexts_planned(2, np.random.default_rng(0), out=np.zeros((2, big.context_length), dtype=np.int8))


@pytest.mark.parametrize("kwargs", [dict(degree=2, path_length=4097, num_nodes=2**22),
                                    dict(degree=2**21, path_length=2, num_nodes=2**22)])
def test_largest_graphs_sample_without_hanging(kwargs):
    # 8,192 and 2^21 edges of 44 bits each: the edge shuffle used to redraw tied rows forever
    import time

    task = PathStar(**kwargs)
    t0 = time.perf_counter()
    ctx, ans = task.sample_expert(1, np.random.default_rng(0))
    assert time.perf_counter() - t0 < 20
    assert np.array_equal(task.reference(ctx), ans)  # a valid path-star prompt and its answer
