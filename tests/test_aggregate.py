"""The robust aggregates (IQM, mean, median, optimality gap, probability of improvement,
performance profiles) against hand-computed values, and the stratified bootstrap against the
exact bootstrap distribution from enumerating every resample."""

import itertools
import math

import numpy as np
import pytest

from ar_agents.evaluation import aggregate as A


# ---------------------------------------------------------------- point statistics by hand


def test_iqm_of_eight_numbers_drops_two_from_each_end():
    x = [0.0, 10.0, 1.0, 2.0, 3.0, 100.0, 4.0, -50.0]  # sorted: -50 0 | 1 2 3 4 | 10 100
    assert A.iqm(np.array(x).reshape(8, 1)) == pytest.approx(2.5, abs=1e-15)
    assert A.iqm(np.array(x).reshape(2, 4)) == pytest.approx(2.5, abs=1e-15)  # over runs x tasks


@pytest.mark.parametrize("values, expected", [
    # n=10: floor(2.5)=2 cut from each end -> the middle six 2..7
    (list(range(10)), (2 + 3 + 4 + 5 + 6 + 7) / 6),
    # n=7: floor(1.75)=1 -> the middle five of 0 1 2 3 4 5 60
    ([60, 0, 1, 2, 3, 4, 5], (1 + 2 + 3 + 4 + 5) / 5),
    # n=3: floor(0.75)=0 -> the plain mean
    ([1, 2, 30], 11.0),
    # n=5: floor(1.25)=1 -> the middle three
    ([-9, 1, 2, 3, 99], 2.0),
    ([7.0], 7.0),
])
def test_iqm_trim_rule_when_n_is_not_divisible_by_four(values, expected):
    assert A.iqm(np.array(values, dtype=float)[:, None]) == pytest.approx(expected, abs=1e-12)


def test_mean_median_optimality_gap_by_hand():
    x = np.array([[0.2, 1.5, 0.0],
                  [0.4, 0.5, 0.3]])
    # task means 0.3, 1.0, 0.15
    assert A.mean(x) == pytest.approx((0.3 + 1.0 + 0.15) / 3)
    assert A.median(x) == pytest.approx(0.3)  # median of the task means, not of the six runs (0.35)
    # min(x, 1) = 0.2 1 0 0.4 0.5 0.3 -> mean 2.4 / 6 = 0.4
    assert A.optimality_gap(x) == pytest.approx(0.6)
    # gamma = 0.45: min = 0.2 .45 0 .4 .45 .3 -> 1.8/6 = 0.3
    assert A.optimality_gap(x, gamma=0.45) == pytest.approx(0.15)


def test_probability_of_improvement_by_hand_with_ties():
    # task 0: [1,2,3] vs [2,2,2]: 1 loses 3 times, 2 ties 3 times (1.5), 3 wins 3 times -> 4.5/9
    # task 1: [3,3,1] vs [2,1,1]: each 3 wins 3 times (6), 1 ties twice (1) -> 7/9
    x = np.array([[1, 3], [2, 3], [3, 1]], dtype=float)
    y = np.array([[2, 2], [2, 1], [2, 1]], dtype=float)
    assert A.probability_of_improvement(x, y) == pytest.approx((4.5 / 9 + 7 / 9) / 2)
    assert A.probability_of_improvement(x, y) + A.probability_of_improvement(y, x) == pytest.approx(1.0)
    assert A.probability_of_improvement(x, x) == 0.5


def test_probability_of_improvement_with_different_run_counts():
    x = np.array([[0.5], [1.0]])            # 2 runs
    y = np.array([[0.0], [0.5], [2.0]])     # 3 runs
    # 0.5: beats 0.0, ties 0.5, loses 2.0 -> 1.5; 1.0: beats 0.0 and 0.5 -> 2; total 3.5 / 6
    assert A.probability_of_improvement(x, y) == pytest.approx(3.5 / 6)


def test_performance_profile_on_a_tiny_array():
    x = np.array([[0.1, 0.5],
                  [0.9, 0.5]])
    taus = [0.0, 0.5, 0.95]
    # strictly greater: >0 all four; >0.5 only 0.9; >0.95 none
    np.testing.assert_allclose(A.performance_profile(x, taus), [1.0, 0.25, 0.0])
    # task means 0.5, 0.5
    np.testing.assert_allclose(A.performance_profile(x, taus, kind="task_means"), [1.0, 0.0, 0.0])


def test_point_estimates_equal_rliable_on_a_fixed_case():
    """Reference values printed by rliable 1.2.0 (``metrics.aggregate_iqm``, ``aggregate_mean``,
    ``aggregate_median``, ``aggregate_optimality_gap`` with gamma 1 and 0.7,
    ``probability_of_improvement``) in a separate environment with pandas < 3, on these arrays."""
    x = np.array([[0.12, 0.95, 0.40], [0.33, 0.80, 0.40], [0.71, 1.10, 0.05], [0.50, 0.64, 0.90], [0.28, 0.77, 0.61]])
    y = np.array([[0.30, 0.80, 0.40], [0.05, 0.99, 0.20], [0.71, 0.64, 0.55]])
    ref = {"x": (0.5733333333333333, 0.5706666666666667, 0.472, 0.43600000000000005, 0.19799999999999995),
           "y": (0.52, 0.5155555555555555, 0.38333333333333336, 0.48444444444444446, 0.22888888888888892)}
    for name, a in (("x", x), ("y", y)):
        got = (A.iqm(a), A.mean(a), A.median(a), A.optimality_gap(a), A.optimality_gap(a, gamma=0.7))
        assert got == pytest.approx(ref[name], rel=1e-14, abs=1e-15)
    assert A.probability_of_improvement(x, y) == pytest.approx(0.5666666666666668, rel=1e-14)
    assert A.probability_of_improvement(y, x) == pytest.approx(0.43333333333333335, rel=1e-14)


# ---------------------------------------------------------------- the bootstrap


def test_one_run_per_task_gives_zero_width_intervals():
    x = np.array([[0.3, 0.9, 0.1, 0.6]])
    for stat in A.METRICS:
        e = A.stratified_bootstrap_ci(x, stat, reps=200, seed=1)
        assert e.low == e.point == e.high
    e = A.probability_of_improvement_ci(x, x[:, ::-1], reps=200)
    assert e.low == e.point == e.high == pytest.approx((0 + 1 + 0 + 1) / 4)


def test_constant_column_gives_a_degenerate_interval():
    x = np.full((5, 1), 0.7)
    for stat in A.METRICS:
        e = A.stratified_bootstrap_ci(x, stat, reps=300, seed=3)
        assert e.low == pytest.approx(e.high, abs=1e-15) and e.low == pytest.approx(e.point, abs=1e-15)
    e = A.stratified_bootstrap_ci(np.full((4, 3), 0.2), "iqm", reps=100)
    assert (e.point, e.low, e.high) == pytest.approx((0.2, 0.2, 0.2))


def _exact_bootstrap(x, stat):
    """Every stratified resample of ``x`` (R, T), each equally likely: R**R per column."""
    r, t = x.shape
    per_col = list(itertools.product(range(r), repeat=r))
    values = []
    for choice in itertools.product(per_col, repeat=t):
        sample = np.stack([x[list(idx), j] for j, idx in enumerate(choice)], axis=1)
        values.append(stat(sample))
    return np.array(values)


@pytest.mark.parametrize("name, fn", [("mean", A.mean), ("iqm", A.iqm), ("median", A.median),
                                      ("optimality_gap", A.optimality_gap)])
def test_bootstrap_distribution_matches_enumeration_of_all_resamples(name, fn):
    x = np.array([[0.0, 0.9],
                  [0.4, 1.3]])  # 2 runs x 2 tasks: 4 resamples per column, 16 in all
    exact = _exact_bootstrap(x, fn)
    reps = 20000
    dist = A.bootstrap_distribution(x, name, reps=reps, seed=5)
    assert dist.shape == (reps,)
    # the bootstrap mean against the exact expectation, within 5 Monte-Carlo standard errors
    se = exact.std() / math.sqrt(reps)
    assert abs(dist.mean() - exact.mean()) <= 5 * se + 1e-12
    # every value reached is a possible one, with its exact probability (binomial tolerance)
    support, counts = np.unique(np.round(exact, 12), return_counts=True)
    got = np.round(dist, 12)
    assert set(np.unique(got)) <= set(support)
    for v, c in zip(support, counts):
        p = c / len(exact)
        freq = np.mean(got == v)
        assert abs(freq - p) <= 5 * math.sqrt(p * (1 - p) / reps)


def test_poi_bootstrap_matches_enumeration_of_independent_resamples():
    x = np.array([[0.0, 1.0], [1.0, 0.0]])
    y = np.array([[0.5, 0.5], [0.5, 1.0]])
    # enumerate: each column of x and of y resampled independently (4 x 4 per task, 256 in all)
    per_col = list(itertools.product(range(2), repeat=2))
    exact = []
    for cx in itertools.product(per_col, repeat=2):
        for cy in itertools.product(per_col, repeat=2):
            xs = np.stack([x[list(i), j] for j, i in enumerate(cx)], axis=1)
            ys = np.stack([y[list(i), j] for j, i in enumerate(cy)], axis=1)
            exact.append(A.probability_of_improvement(xs, ys))
    exact = np.array(exact)
    reps = 20000
    e = A.probability_of_improvement_ci(x, y, reps=reps, seed=2)
    dist = A._poi_distribution(x, y, reps, A._rng(2))
    assert abs(dist.mean() - exact.mean()) <= 5 * exact.std() / math.sqrt(reps)
    # the percentile interval lies within the exact distribution's 1% and 99% quantiles
    assert np.quantile(exact, 0.0) <= e.low <= np.quantile(exact, 0.05)
    assert np.quantile(exact, 0.95) <= e.high <= np.quantile(exact, 1.0)


def test_resampling_stays_within_each_column_and_columns_are_independent():
    # runs 0 and 1 are perfectly correlated across the two tasks; a bootstrap that resampled whole
    # rows would keep that (correlation 1), the stratified one draws each column on its own
    x = np.array([[0.0, 100.0],
                  [1.0, 101.0]])
    dist = A.bootstrap_distribution(x, lambda s: s.mean(axis=-2), reps=5000, seed=0, batched=True)
    assert dist.shape == (5000, 2)
    assert dist[:, 0].min() >= 0 and dist[:, 0].max() <= 1
    assert dist[:, 1].min() >= 100 and dist[:, 1].max() <= 101
    assert abs(np.corrcoef(dist[:, 0], dist[:, 1])[0, 1]) < 0.06  # sd of r ~ 1/sqrt(5000) = 0.014


def test_percentile_interval_is_the_quantiles_of_the_distribution():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(6, 4))
    e = A.stratified_bootstrap_ci(x, "mean", reps=500, alpha=0.1, seed=9)
    dist = A.bootstrap_distribution(x, "mean", reps=500, seed=9)
    assert (e.low, e.high) == (np.percentile(dist, 5), np.percentile(dist, 95))
    assert e.point == A.mean(x)


def test_bootstrap_in_chunks_covers_every_replicate(monkeypatch):
    x = np.arange(12.0).reshape(4, 3)
    monkeypatch.setattr(A, "_CHUNK_BYTES", 24 * 12 * 3)  # 3 replicates per chunk, 7 = 3 + 3 + 1
    dist = A.bootstrap_distribution(x, "mean", reps=7, seed=0)
    assert dist.shape == (7,) and np.isfinite(dist).all()


def test_same_seed_same_numbers_and_streams_per_algorithm():
    rng = np.random.default_rng(1)
    d = {"a": rng.uniform(size=(5, 3)), "b": rng.uniform(size=(4, 3))}
    t1 = A.aggregate_table(d, reps=300, seed=7)
    t2 = A.aggregate_table(d, reps=300, seed=7)
    assert t1 == t2
    t3 = A.aggregate_table(d, reps=300, seed=8)
    assert t3["metrics"]["a"]["iqm"] != t1["metrics"]["a"]["iqm"]
    # adding an algorithm leaves the others' intervals unchanged
    t4 = A.aggregate_table({**d, "c": rng.uniform(size=(3, 3))}, reps=300, seed=7)
    assert t4["metrics"]["a"] == t1["metrics"]["a"]
    assert [p for p in t4["poi"] if p["algorithm"] == "a" and p["baseline"] == "b"] == \
           [p for p in t1["poi"] if p["algorithm"] == "a" and p["baseline"] == "b"]
    e1 = A.stratified_bootstrap_ci(d["a"], "iqm", reps=300, seed=7)
    assert e1 == A.stratified_bootstrap_ci(d["a"], "iqm", reps=300, seed=7)


def test_dict_input_and_callable_statistics():
    rng = np.random.default_rng(2)
    d = {"a": rng.uniform(size=(5, 3)), "b": rng.uniform(size=(6, 3))}
    out = A.stratified_bootstrap_ci(d, "median", reps=200)
    assert set(out) == {"a", "b"} and out["b"].point == A.median(d["b"])
    # an unbatched callable and the same statistic batched give identical numbers
    plain = A.stratified_bootstrap_ci(d["a"], lambda s: s.max(), reps=100, seed=4)
    batched = A.stratified_bootstrap_ci(d["a"], lambda s: s.max(axis=(-2, -1)), reps=100, seed=4, batched=True)
    assert plain == batched and plain.point == d["a"].max()


def test_performance_profile_bands():
    x = np.array([[0.1, 0.5], [0.9, 0.5], [0.3, 0.7]])
    taus = np.array([0.0, 0.4, 1.0])
    e = A.performance_profile_ci(x, taus, reps=300)
    np.testing.assert_allclose(e.point, [1.0, 4 / 6, 0.0])
    assert e.low.shape == e.high.shape == (3,)
    assert (e.low <= e.point + 1e-12).all() and (e.point <= e.high + 1e-12).all()
    assert e.low[0] == e.high[0] == 1.0 and e.low[2] == e.high[2] == 0.0  # no resample can change these


# ---------------------------------------------------------------- the table


def test_aggregate_table_points_and_pairs():
    rng = np.random.default_rng(3)
    d = {"ours": rng.uniform(0.3, 1.0, size=(5, 4)), "bc": rng.uniform(0.0, 0.7, size=(3, 4)),
         "dagger": rng.uniform(size=(5, 4))}
    t = A.aggregate_table(d, baseline_names=["bc"], reps=200, seed=0)
    assert t["algorithms"] == ["ours", "bc", "dagger"] and t["n_tasks"] == 4
    assert t["metrics"]["bc"]["n_runs"] == 3
    for alg, x in d.items():
        m = t["metrics"][alg]
        assert m["iqm"]["point"] == A.iqm(x)
        assert m["mean"]["point"] == A.mean(x)
        assert m["median"]["point"] == A.median(x)
        assert m["optimality_gap"]["point"] == A.optimality_gap(x)
        for k in A.METRICS:
            assert m[k]["low"] <= m[k]["high"]
    assert [(p["algorithm"], p["baseline"]) for p in t["poi"]] == [("ours", "bc"), ("dagger", "bc")]
    assert t["poi"][0]["point"] == A.probability_of_improvement(d["ours"], d["bc"])
    every = A.aggregate_table(d, reps=50)
    assert len(every["poi"]) == 6
    assert A.aggregate_table(d, baseline_names=(), reps=50)["poi"] == []
    text = A.format_aggregate_table(t)
    assert "95%" in text and "ours" in text and "over  bc" in text
    assert f"{t['metrics']['ours']['iqm']['point']:.3f}" in text


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("call, match", [
    (lambda: A.aggregate_table({"a": np.ones((2, 2)), "ppo": np.array([[1, np.nan], [0, 0]])}), r"scores\['ppo'\].*run 0, task 1"),
    (lambda: A.aggregate_table({"a": np.ones((2, 2)), "b": np.ones((2, 3))}), r"scores\['b'\] has 3 tasks"),
    (lambda: A.aggregate_table({}), "non-empty dict"),
    (lambda: A.aggregate_table({"a": np.ones((2, 2))}, baseline_names=["zz"]), "baseline_names"),
    (lambda: A.iqm(np.ones(4)), "2-D"),
    (lambda: A.iqm(np.ones((0, 3))), "at least one run"),
    (lambda: A.iqm([[1.0, np.inf]]), "non-finite"),
    (lambda: A.stratified_bootstrap_ci(np.ones((2, 2)), reps=0), "reps"),
    (lambda: A.stratified_bootstrap_ci(np.ones((2, 2)), reps=10**9), "reps"),
    (lambda: A.stratified_bootstrap_ci(np.ones((2, 2)), reps=2.5), "reps"),
    (lambda: A.stratified_bootstrap_ci(np.ones((2, 2)), alpha=1.0), "alpha"),
    (lambda: A.stratified_bootstrap_ci(np.ones((2, 2)), seed=-1), "seed"),
    (lambda: A.stratified_bootstrap_ci(np.ones((2, 2)), "iqr"), "statistic"),
    (lambda: A.probability_of_improvement(np.ones((2, 2)), np.ones((2, 3))), "same task columns"),
    (lambda: A.performance_profile(np.ones((2, 2)), [[0.1]]), "taus"),
    (lambda: A.performance_profile(np.ones((2, 2)), [0.1], kind="mean"), "kind"),
    (lambda: A.optimality_gap(np.ones((2, 2)), gamma=float("nan")), "gamma"),
])
def test_bad_inputs_raise_one_line_value_errors(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- the figure


def _inputs(n_alg=3, n_task=4):
    rng = np.random.default_rng(0)
    scores = {f"alg{i}": rng.uniform(size=(3, n_task)) for i in range(n_alg)}
    labels = [f"t{j}" for j in range(n_task)]
    return scores, A.per_task_means(scores, labels, reps=100), A.aggregate_table(scores, reps=100)


def test_per_task_means_format():
    scores, per_task, _ = _inputs()
    labels, point, ci = per_task["alg1"]
    assert labels == ["t0", "t1", "t2", "t3"]
    np.testing.assert_array_equal(point, scores["alg1"].mean(axis=0))
    assert ci.shape == (4, 2) and (ci[:, 0] <= ci[:, 1]).all()
    # a mean of resampled runs lies within the column's range (up to rounding of the mean)
    assert (ci[:, 0] >= scores["alg1"].min(axis=0) - 1e-12).all() and (ci[:, 1] <= scores["alg1"].max(axis=0) + 1e-12).all()


def test_plot_benchmark_writes_a_png_and_refuses_mismatched_inputs(tmp_path):
    scores, per_task, agg = _inputs()
    taus = np.linspace(0, 1, 5)
    prof = A.performance_profile_ci(scores, taus, reps=50)
    out = A.plot_benchmark(per_task, agg, tmp_path / "fig.png", profiles=prof, taus=taus, dpi=50)
    with open(out, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]  # no temporary file left behind
    A.plot_benchmark(per_task, agg, tmp_path / "fig.png", layout="tall", metrics=("optimality_gap",), dpi=50)
    with open(out, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"

    bad = dict(per_task)
    labels, point, ci = bad["alg1"]
    bad["alg1"] = (labels[::-1], point, ci)
    with pytest.raises(ValueError, match="task labels"):
        A.plot_benchmark(bad, agg, tmp_path / "bad.png")
    bad["alg1"] = (labels, point[:3], ci)
    with pytest.raises(ValueError, match="point must have shape"):
        A.plot_benchmark(bad, agg, tmp_path / "bad.png")
    _, _, agg2 = _inputs(n_alg=2)
    with pytest.raises(ValueError, match="aggregates has algorithms"):
        A.plot_benchmark(per_task, agg2, tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"\.png"):
        A.plot_benchmark(per_task, agg, tmp_path / "fig.jpg")
    with pytest.raises(ValueError, match="taus"):
        A.plot_benchmark(per_task, agg, tmp_path / "bad.png", profiles=prof)
    with pytest.raises(ValueError, match="tuple"):
        A.plot_benchmark({**per_task, "alg0": point}, agg, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="lower bound above"):
        A.plot_benchmark({**per_task, "alg0": (labels, point, ci[:, ::-1] + [0, -1])}, agg, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="layout"):
        A.plot_benchmark(per_task, agg, tmp_path / "bad.png", layout="square")
    with pytest.raises(ValueError, match="metrics"):
        A.plot_benchmark(per_task, agg, tmp_path / "bad.png", metrics=("iqr",))
    with pytest.raises(ValueError, match="aggregate_table"):
        A.plot_benchmark(per_task, {"iqm": 1}, tmp_path / "bad.png")
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]
