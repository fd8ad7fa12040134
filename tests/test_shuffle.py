"""Row-wise random permutations (``ar_envs.mathutil.shuffle_rows`` / ``random_orders``): exact
uniformity against enumeration, the tie redraw, determinism, bad input."""

import itertools

import numpy as np
import pytest

from ar_envs.mathutil import random_orders, shuffle_rows
from uniformity import chi2_quantile as _chi2_quantile
from uniformity import uniform_stat as _uniform_stat


@pytest.mark.parametrize("m,k", [(4, 4), (5, 2), (6, 3), (2, 1)])
def test_orders_are_uniform_over_all_partial_permutations(m, k):
    support = list(itertools.permutations(range(m), k))  # m! / (m-k)! equally likely tuples
    rows = random_orders(np.random.default_rng(0), 200 * len(support), m, k)
    assert rows.dtype == np.uint32 and rows.shape == (200 * len(support), k)
    stat, counts = _uniform_stat(rows, support)
    assert counts.min() > 0 and stat < _chi2_quantile(len(support) - 1), (stat, counts)


def test_shuffle_carries_the_values_and_is_uniform():
    values = np.array([[7, 300, 1000], [5, 5, 9]])  # any values below 2^bits; repeats allowed
    rng = np.random.default_rng(1)
    out = np.concatenate([shuffle_rows(rng, values, 10) for _ in range(3000)])
    assert out.dtype == np.uint32 and out.shape == (6000, 3)
    first, second = out[0::2], out[1::2]
    assert np.array_equal(np.sort(first, axis=1), np.broadcast_to([7, 300, 1000], (3000, 3)))
    assert np.array_equal(np.sort(second, axis=1), np.broadcast_to([5, 5, 9], (3000, 3)))
    stat, counts = _uniform_stat(first, list(itertools.permutations([7, 300, 1000])))
    assert stat < _chi2_quantile(5), counts
    # the repeated value: 9 is equally likely at each of the three places
    stat, counts = _uniform_stat(second, sorted(set(itertools.permutations([5, 5, 9]))))
    assert stat < _chi2_quantile(2), counts


def test_wide_values_use_64_bit_keys():
    out = shuffle_rows(np.random.default_rng(2), np.array([[2**40, 3, 2**30]]), 41)
    assert out.dtype == np.uint64 and sorted(out[0].tolist()) == [3, 2**30, 2**40]
    big = random_orders(np.random.default_rng(3), 4, 5000, 6)  # m > 4096: 13 index bits
    assert big.dtype == np.uint64 and all(len(set(r)) == 6 and max(r) < 5000 for r in big.tolist())


class _TiesFirst:
    """A generator stand-in whose first draw is all zeros (every key of every row ties), then
    the draws of a real generator: the tie check must redraw every row."""

    def __init__(self, seed):
        self.real = np.random.default_rng(seed)
        self.calls = []
        outer = self

        class _Bits:
            def random_raw(self, size):
                outer.calls.append(size)
                if len(outer.calls) == 1:
                    return np.zeros(size, dtype=np.uint64)
                return outer.real.bit_generator.random_raw(size)

        self.bit_generator = _Bits()


def test_tied_rows_are_drawn_again():
    fake = _TiesFirst(5)
    out = random_orders(fake, 64, 10)
    assert len(fake.calls) == 2 and fake.calls[0] == fake.calls[1]  # all 64 rows redrawn at once
    assert all(sorted(r) == list(range(10)) for r in out.tolist())
    # the redraw is the real generator's first draw: the same rows as an untied run
    assert np.array_equal(out, random_orders(np.random.default_rng(5), 64, 10))
    # a tie in one row only: only that row is drawn again
    calls = []
    real = np.random.default_rng(6)

    class _OneTie:
        class bit_generator:  # noqa: N801 - mimics Generator.bit_generator
            @staticmethod
            def random_raw(size):
                calls.append(size)
                raw = real.bit_generator.random_raw(size)
                if len(calls) == 1:
                    raw[3] = raw[4] = 0  # keys 6-9 of row 0 (10 keys of 32 bits = 5 words a row) tie
                return raw

    out = random_orders(_OneTie, 8, 10)
    assert calls[1] == 5  # one row of 10 32-bit keys = 5 raw 64-bit words
    assert all(sorted(r) == list(range(10)) for r in out.tolist())


def test_same_seed_same_orders_and_edge_cases():
    a = random_orders(np.random.default_rng(9), 100, 50, 21)
    assert np.array_equal(a, random_orders(np.random.default_rng(9), 100, 50, 21))
    assert not np.array_equal(a, random_orders(np.random.default_rng(10), 100, 50, 21))
    assert all(len(set(r)) == 21 and max(r) < 50 for r in a.tolist())
    assert random_orders(np.random.default_rng(0), 0, 5).shape == (0, 5)
    assert random_orders(np.random.default_rng(0), 3, 1).tolist() == [[0], [0], [0]]
    assert random_orders(np.random.default_rng(0), 3, 5, 0).shape == (3, 0)


def test_bad_input_is_named():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="k must be in"):
        random_orders(rng, 2, 5, 6)
    with pytest.raises(ValueError, match="values must be a 2-d"):
        shuffle_rows(rng, np.arange(4), 3)
    with pytest.raises(ValueError, match="bits"):
        shuffle_rows(rng, np.zeros((2, 2), dtype=np.int64), 45)
    with pytest.raises(ValueError, match=r"values must be integers in \[0, 2\^3 - 1\]"):
        shuffle_rows(rng, np.array([[1, 8]]), 3)
    with pytest.raises(ValueError, match="values must be integers"):
        shuffle_rows(rng, np.array([[-1, 2]]), 3)
    with pytest.raises(ValueError, match="values must be integers"):
        shuffle_rows(rng, np.array([[0.5, 2.0]]), 3)


class _AlwaysTies:
    """A generator stand-in whose raw draws are all zeros (every key of every row ties in every
    round); ``permuted`` is a real generator's. The redraws must stop after MAX_REDRAWS rounds."""

    def __init__(self, seed):
        self.real = np.random.default_rng(seed)
        self.raw_calls = 0
        outer = self

        class _Bits:
            def random_raw(self, size):
                outer.raw_calls += 1
                return np.zeros(size, dtype=np.uint64)

        self.bit_generator = _Bits()

    def permuted(self, x, axis):
        return self.real.permuted(x, axis=axis)


def test_redraws_are_bounded_and_the_fallback_is_uniform():
    from ar_envs.mathutil import MAX_REDRAWS

    fake = _AlwaysTies(0)
    rows = random_orders(fake, 24 * 200, 4)  # every row still tied after the last redraw
    assert fake.raw_calls == 1 + MAX_REDRAWS
    assert rows.dtype == np.uint32
    stat, counts = _uniform_stat(rows, list(itertools.permutations(range(4))))
    assert counts.min() > 0 and stat < _chi2_quantile(23), (stat, counts)


def test_too_few_random_bits_use_an_exact_shuffle():
    # 44-bit values leave 20 random bits: 2000 keys a row would tie in almost every round (the
    # old redraw loop never ended). Every value is kept and each position is equally likely.
    m, n = 2000, 600
    values = (np.arange(m, dtype=np.uint64) << 22) | 7  # wide values, all distinct
    out = shuffle_rows(np.random.default_rng(4), np.broadcast_to(values, (n, m)), 44)
    assert out.dtype == np.uint64 and np.array_equal(np.sort(out, axis=1), np.broadcast_to(values, (n, m)))
    where = np.argmax(out == values[0], axis=1) * 20 // m  # the first value's position, in 20 bins
    counts = np.bincount(where, minlength=20)
    expected = n / 20
    assert ((counts - expected) ** 2 / expected).sum() < _chi2_quantile(19), counts
    # the same generator state gives the same orders
    again = shuffle_rows(np.random.default_rng(4), np.broadcast_to(values, (n, m)), 44)
    assert np.array_equal(out, again)
