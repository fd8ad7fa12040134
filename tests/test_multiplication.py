"""Multiplication: the expert computes a*b, its chain of thought parses back into the partial
products and running sums it claims, and off-path it continues from what was written."""

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ar_envs
from ar_envs.expert import ExpertPolicy
from ar_envs.metrics import sequence_metrics
from ar_envs.tasks.multiplication import EQUALS, SEMI, STAR, Multiplication

FAST = settings(max_examples=40, deadline=None)


def digit_list(x, width):
    return [(x // 10**i) % 10 for i in range(width)]


def parse_full(d, seq):
    """Read a cot="full" sequence by hand: the numbers written as P_j and S_j, the answer, and
    the (digit, carry) pairs. Non-digits in digit slots read as 0, like the documented grammar."""
    seq = [int(t) for t in seq]
    val = lambda t: t if t <= 9 else 0  # noqa: E731
    pos, P, S, P_pairs, S_pairs = 0, [], {}, [], {}
    for j in range(d):
        pairs = [(val(seq[pos + 2 * i]), val(seq[pos + 2 * i + 1])) for i in range(d)]
        assert seq[pos + 2 * d] == SEMI
        P_pairs.append(pairs)
        P.append(sum(dig * 10**i for i, (dig, _) in enumerate(pairs)) + pairs[-1][1] * 10**d)
        pos += 2 * d + 1
        if j >= 1:
            pairs = [(val(seq[pos + 2 * k]), val(seq[pos + 2 * k + 1])) for k in range(2 * d)]
            assert seq[pos + 4 * d] == SEMI
            S_pairs[j] = pairs
            S[j] = sum(dig * 10**k for k, (dig, _) in enumerate(pairs))
            pos += 4 * d + 1
    answer = sum(val(t) * 10**k for k, t in enumerate(seq[pos:]))
    assert len(seq) - pos == 2 * d
    return P, S, answer, P_pairs, S_pairs


def rollout(task, ctx, prefix):
    """Continue ``prefix`` with the expert (one context) to the full horizon."""
    seq = list(prefix)
    while len(seq) < task.horizon:
        p = task.expert_probs(ctx, np.array([seq], dtype=np.int64).reshape(1, -1))
        assert p.shape == (1, task.vocab_size) and np.isclose(p.sum(), 1.0) and p.max() == 1.0
        seq.append(int(p.argmax()))
    return seq


operands = st.integers(1, 6).flatmap(
    lambda d: st.tuples(st.just(d), st.integers(0, 10**d - 1), st.integers(0, 10**d - 1))
)


@FAST
@given(operands)
def test_no_cot_answer_is_the_product(dab):
    d, a, b = dab
    task = Multiplication(digits=d, cot="none")
    ctx = task.make_contexts([a], [b])
    seq = task.reference(ctx)[0]
    assert task.horizon == 2 * d
    assert sum(int(t) * 10**k for k, t in enumerate(seq)) == a * b
    assert rollout(task, ctx, []) == list(seq)
    assert task.reward(ctx, seq[None])[0] == 1.0
    assert task.expert_log_prob(ctx, seq[None])[0] == 0.0


@FAST
@given(operands)
def test_full_cot_parses_into_partial_products_and_sums(dab):
    d, a, b = dab
    task = Multiplication(digits=d, cot="full")
    assert task.horizon == 6 * d * d - 1
    ctx = task.make_contexts([a], [b])
    seq = task.reference(ctx)[0]
    assert rollout(task, ctx, []) == list(seq)
    P, S, answer, P_pairs, S_pairs = parse_full(d, seq)
    bd, ad = digit_list(b, d), digit_list(a, d)
    assert answer == a * b
    for j in range(d):
        assert P[j] == a * bd[j]
        carry = 0
        for i, (dig, c) in enumerate(P_pairs[j]):  # every written carry is the true carry
            assert dig + 10 * c == ad[i] * bd[j] + carry
            carry = c
    for j in range(1, d):
        assert S[j] == sum(a * bd[i] * 10**i for i in range(j + 1))
        prev = digit_list(P[0] if j == 1 else S[j - 1], 2 * d)
        part = [0] * j + digit_list(P[j], d + 1) + [0] * (d - 1 - j)
        carry = 0
        for k, (dig, c) in enumerate(S_pairs[j]):
            assert dig + 10 * c == prev[k] + part[k] + carry
            carry = c
    assert task.reward(ctx, seq[None])[0] == 1.0
    assert task.expert_log_prob(ctx, seq[None])[0] == 0.0
    np.testing.assert_array_equal(task.expert_next_tokens(ctx, seq[None])[0], seq)


def test_docstring_worked_example_is_what_the_expert_writes():
    task = Multiplication(digits=2, cot="full")
    ctx = task.make_contexts([47], [86])
    line = task.render_tokens(ctx[0], task.reference(ctx)[0])
    assert line == "47*86= 2(4) 8(2) ; 6(5) 7(3) ; 2(0) 4(1) 0(1) 4(0) ; 2404"
    assert line in Multiplication.__doc__
    assert task.render_tokens(ctx[0], task.reference(ctx)[0][:3]) == "47*86= 2(4) 8"
    none = Multiplication(digits=2, cot="none")
    assert none.render_tokens(ctx[0], none.reference(ctx)[0]) == "47*86=2404"


# ---------------------------------------------------------------------------- off the expert's path


corruptions = st.integers(2, 5).flatmap(
    lambda d: st.tuples(
        st.just(d),
        st.integers(0, 10**d - 1),
        st.integers(0, 10**d - 1),
        st.sampled_from(["P-digit", "P-carry", "S-digit", "S-carry"]),
        st.integers(0, d - 1),  # block j (S blocks use max(j, 1))
        st.integers(0, 2 * d - 1),  # pair (reduced modulo the block's width)
        st.sampled_from(list(range(10)) + [SEMI, STAR, EQUALS]),  # the written token
    )
)


def block_starts(d):
    pos, p_start, s_start = 0, {}, {}
    for j in range(d):
        p_start[j] = pos
        pos += 2 * d + 1
        if j >= 1:
            s_start[j] = pos
            pos += 4 * d + 1
    return p_start, s_start


@FAST
@given(corruptions)
def test_expert_continues_from_a_corrupted_prefix_as_documented(case):
    d, a, b, kind, j, pair, tok = case
    task = Multiplication(digits=d, cot="full")
    ctx = task.make_contexts([a], [b])
    ref = [int(t) for t in task.reference(ctx)[0]]
    p_start, s_start = block_starts(d)
    value = tok if tok <= 9 else 0
    if kind.startswith("P"):
        i = pair % d
        t = p_start[j] + 2 * i + (1 if kind == "P-carry" else 0)
    else:
        j = max(j, 1)
        i = pair % (2 * d)
        t = s_start[j] + 2 * i + (1 if kind == "S-carry" else 0)
    seq = rollout(task, ctx, ref[:t] + [tok])
    P, S, answer, _, _ = parse_full(d, seq)
    bd = digit_list(b, d)
    delta = (value - ref[t]) * 10 ** (i + (1 if kind.endswith("carry") else 0))
    mod = 10 ** (2 * d)
    true_P = [a * bd[m] for m in range(d)]
    if kind.startswith("P"):
        # the corrupted block continues with the written carry: its value moves by delta
        expect_P = list(true_P)
        expect_P[j] += delta
        assert P == expect_P
        assert answer == sum(p * 10**m for m, p in enumerate(P)) % mod
    else:
        assert P == true_P
        true_S = sum(true_P[m] * 10**m for m in range(j + 1))
        # a written digit does not feed its own pair's carry; a written carry feeds the next pair
        # (the carry out of the last pair is dropped, hence mod 10^(2d))
        assert S[j] == (true_S + delta) % mod
        assert answer == (S[j] + sum(true_P[m] * 10**m for m in range(j + 1, d))) % mod
    # every running sum after the corruption is a consistent continuation
    for m in range(1, d):
        if s_start[m] > t:
            prev = P[0] if m == 1 else S[m - 1]
            assert S[m] == (prev + P[m] * 10**m) % mod
    assert task.reward(ctx, np.array([seq]))[0] == float(answer == a * b)
    # teacher-forced expert actions agree with the roll-out after the corruption
    nxt = task.expert_next_tokens(ctx, np.array([seq]))[0]
    np.testing.assert_array_equal(nxt[t + 1 :], seq[t + 1 :])


def test_answer_copies_the_written_last_sum_and_reference_mode_ignores_the_prefix():
    task = Multiplication(digits=2, cot="full")
    ctx = task.make_contexts([47], [86])
    ref = [int(t) for t in task.reference(ctx)[0]]
    _, s_start = block_starts(2)
    t = s_start[1]  # the first digit of S_1 (2) written as 7
    seq = rollout(task, ctx, ref[:t] + [7])
    assert seq[-4:] == [7, 4, 0, 4]  # the answer copies the written 7
    assert task.reward(ctx, np.array([seq]))[0] == 0.0
    # an answer digit written wrongly: the rest of the answer still copies S_1
    seq = rollout(task, ctx, ref[:-4] + [9])
    assert seq[-4:] == [9, 4, 0, 4]
    ref_task = Multiplication(digits=2, cot="full", off_path="reference")
    seq = rollout(ref_task, ctx, ref[:t] + [7])
    assert seq[t + 1 :] == ref[t + 1 :]
    # cot="none": the true digit at each position, whatever was written
    none = Multiplication(digits=2, cot="none")
    assert rollout(none, ctx, [5]) == [5, 4, 0, 4]


# ---------------------------------------------------------------------------- roll-outs, metrics


@pytest.mark.parametrize("d,cot", [(1, "none"), (3, "none"), (1, "full"), (3, "full"), (6, "full")])
def test_expert_rollouts_get_reward_one(d, cot):
    task = Multiplication(digits=d, cot=cot)
    rng = np.random.default_rng(0)
    ctx = task.sample_contexts(64, rng)
    seq = ExpertPolicy(task, seed=0).sample(ctx)
    assert np.all(task.reward(ctx, seq) == 1.0)
    np.testing.assert_array_equal(seq, task.reference(ctx))
    m = task.extra_metrics(ctx, seq)
    assert m["answer_exact_match"] == 1.0 and m["per_digit_accuracy"] == 1.0
    assert all(m[f"digit_accuracy_{k}"] == 1.0 for k in range(2 * d))
    if cot == "full":
        assert m["cot_exact_match"] == 1.0
    c2, s2 = task.sample_expert(64, 0)
    assert np.all(task.reward(c2, s2) == 1.0)


def test_extra_metrics_count_wrong_digits():
    task = Multiplication(digits=2, cot="none")
    ctx = task.make_contexts([47, 12], [86, 10])  # 4042, 0120
    gen = np.array([[2, 4, 0, 4], [0, 2, 1, 9]])  # right; one digit (10^3) wrong
    m = task.extra_metrics(ctx, gen)
    assert m["answer_exact_match"] == 0.5
    assert m["per_digit_accuracy"] == 7 / 8
    assert [m[f"digit_accuracy_{k}"] for k in range(4)] == [1.0, 1.0, 1.0, 0.5]
    np.testing.assert_array_equal(task.reward(ctx, gen), [1.0, 0.0])


def test_env_rollout_with_expert_actions():
    env = gym.make("ar_envs/Multiplication-v0", digits=2, cot="full")
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        done, total = False, 0.0
        while not done:
            obs, r, term, trunc, info = env.step(info["expert_action"])
            total += r
            done = term or trunc
        assert total == 1.0
    venv = gym.make_vec("ar_envs/Multiplication-v0", num_envs=8, vectorization_mode="vector_entry_point", digits=2)
    obs, info = venv.reset(seed=1)
    for _ in range(4):
        obs, r, term, trunc, info_next = venv.step(info["expert_action"])
        info = info_next
    assert np.all(term) and np.all(r == 1.0)


def test_exact_metrics_by_enumeration_for_one_digit():
    task = Multiplication(digits=1, cot="none")
    ctx, probs = task.enumerate_contexts()
    assert ctx.shape == (100, 4) and np.isclose(probs.sum(), 1.0)
    out = sequence_metrics(task, ExpertPolicy(task), exact_only=True)
    assert all(out[k].exact for k in out)
    assert abs(out["hellinger2"].value) < 1e-12 and abs(out["regret"].value) < 1e-12
    assert Multiplication(digits=3).enumerate_contexts() is None


# ---------------------------------------------------------------------------- checks and errors


@pytest.mark.parametrize("kwargs", [{}, {"digits": 1, "cot": "full"}, {"digits": 3, "cot": "full", "off_path": "reference"}])
def test_env_checkers(kwargs):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("ar_envs/Multiplication-v0", **kwargs)
    check_env(env.unwrapped)
    sb3_check_env(env)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"digits": 0}, "digits"),
        ({"digits": 7}, "digits"),
        ({"digits": 2.5}, "digits"),
        ({"cot": "partial"}, "cot"),
        ({"off_path": "repair"}, "off_path"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Multiplication(**kwargs)
    if name == "digits":
        with pytest.raises(ValueError, match=r"\[1, 6\]"):
            Multiplication(**kwargs)


def test_bad_inputs():
    task = Multiplication(digits=2)
    ctx = task.make_contexts([47], [86])
    with pytest.raises(ValueError, match="contexts"):
        task.expert_probs(ctx[:, :-1], np.zeros((1, 0), dtype=np.int64))
    bad = ctx.copy()
    bad[0, 2] = 5  # no '*'
    with pytest.raises(ValueError, match="contexts"):
        task.expert_probs(bad, np.zeros((1, 0), dtype=np.int64))
    with pytest.raises(ValueError, match="prefixes"):
        task.expert_probs(ctx, np.array([[13]]))
    with pytest.raises(ValueError, match="prefixes"):
        task.expert_probs(ctx, np.zeros((1, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="sequences"):
        task.reward(ctx, np.zeros((1, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="a must"):
        task.make_contexts([100], [1])


def test_same_seed_same_numbers():
    task = ar_envs.make_task("multiplication", digits=3, cot="full")
    c1, s1 = task.sample_expert(20, 7)
    c2, s2 = task.sample_expert(20, 7)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(s1, s2)
    env = gym.make("ar_envs/Multiplication-v0", digits=3)
    o1, _ = env.reset(seed=3)
    o2, _ = env.reset(seed=3)
    np.testing.assert_array_equal(o1, o2)
    a, b = task.operands(c1)
    assert np.all((a >= 0) & (a < 1000) & (b >= 0) & (b < 1000))
