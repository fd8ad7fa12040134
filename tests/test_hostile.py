"""Hostile arguments: every public constructor argument of every task in ``ar_envs.TASKS`` and of
the environment classes (``gymnasium.make`` and ``make_vec(..., "vector_entry_point")``) gets the
wrong type (str, bool, None, list), a negative, zero, huge, NaN and infinite value. Each must
be refused with a one-line ``ValueError`` / ``TypeError`` naming the argument, quickly and
without allocating more than a bound; the values an argument legitimately accepts are listed
per argument (``VALID``) and must construct, under the same bounds.

Also: the memory estimate is an upper bound of what construction and sampling allocate, the
budget follows ``AR_ENVS_MAX_BYTES``, and extreme accepted knobs keep every expert
distribution finite and normalised.
"""

import inspect
import math
import re
import time
import tracemalloc

import gymnasium as gym
import numpy as np
import pytest

import ar_envs
from ar_envs.core import DEFAULT_MAX_BYTES, memory_limit
from ar_envs.data import generate
from ar_envs.tasks import TASKS

HOSTILE = {
    "str": "1",
    "bool": True,
    "none": None,
    "list": [1],
    "negative": -1,
    "zero": 0,
    "huge_int": 10**12,
    "huge_float": 1e308,
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
}

# (task name, argument) -> the hostile values that argument legitimately accepts
VALID = {
    ("two-branch", "offset"): {"none", "huge_int", "huge_float"},  # None: the default log(1/(0.3 eps))
    ("mixture", "p"): {"zero"},
    ("mixture", "w"): {"zero"},
    ("linear-ar", "misspec"): {"zero"},  # realisable
    ("linear-ar", "norm_bound"): {"none", "huge_int", "huge_float"},  # None: unbounded class
    ("linear-ar", "seed"): {"zero", "huge_int", "huge_float"},
    ("linear-ar", "preset"): {"none"},  # None: the random Gaussian instance
    ("linear-ar", "eps"): {"none"},  # None without a preset
    ("parity", "subset_size"): {"none"},
    ("parity", "chunk_size"): {"none"},
    ("parity", "seed"): {"zero", "huge_int", "huge_float"},
    ("rare-token", "slope"): {"none"},  # None: 1 / delta
    ("hmm", "seed"): {"zero", "huge_int", "huge_float"},
    ("hmm", "stickiness"): {"zero"},
    ("hmm", "concentration"): {"huge_int"},  # at most 1e100
    # environment arguments
    ("env", "max_episode_steps"): {"none", "huge_int", "huge_float"},  # None / beyond H: no truncation
    ("env", "expert_probs"): {"bool"},
}

TIME_LIMIT = 2.0  # seconds per construction
PEAK_LIMIT = 64 * 2**20  # bytes traced (numpy registers its arrays with tracemalloc)


def _task_args(name):
    return [p for p in inspect.signature(TASKS[name].__init__).parameters if p != "self"]


def _env_id(name):
    return f"ar_envs/{TASKS[name].env_id}"


def _cases():
    for name in TASKS:
        for arg in _task_args(name):
            for label in HOSTILE:
                yield name, arg, label


def _bounded(build):
    """Run ``build()``: its exception (or None), asserting the time and traced-memory bounds."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        build()
        error = None
    except (ValueError, TypeError) as exc:
        error = exc
    finally:
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < TIME_LIMIT, f"took {elapsed:.2f}s"
    assert peak < PEAK_LIMIT, f"allocated {peak / 2**20:.0f} MiB"
    return error


def _check(error, arg, valid):
    if valid:
        assert error is None, f"{arg}: a valid value was refused: {error}"
        return
    assert error is not None, f"{arg} was accepted"
    msg = str(error)
    assert "\n" not in msg, msg
    assert f"{arg} must" in msg or f"{arg}=" in msg, msg


def _is_valid(key, label):
    return label in VALID.get(key, ())


@pytest.mark.parametrize("name,arg,label", list(_cases()))
def test_task_arguments(name, arg, label):
    _check(_bounded(lambda: TASKS[name](**{arg: HOSTILE[label]})), arg, _is_valid((name, arg), label))


# the environments build the task from the same keyword arguments: one hostile value of each
# kind per argument through gymnasium.make, and the vector entry point's own arguments
@pytest.mark.parametrize("name,arg,label", [c for c in _cases() if c[2] in ("str", "negative", "huge_int", "nan")])
def test_env_task_arguments(name, arg, label):
    valid = _is_valid((name, arg), label)
    _check(_bounded(lambda: gym.make(_env_id(name), **{arg: HOSTILE[label]})), arg, valid)
    vec = lambda: gym.make_vec(_env_id(name), num_envs=2, vectorization_mode="vector_entry_point",  # noqa: E731
                               **{arg: HOSTILE[label]})
    _check(_bounded(vec), arg, valid)


@pytest.mark.parametrize("name", list(TASKS))
@pytest.mark.parametrize("arg", ["num_envs", "max_episode_steps", "expert_probs"])
@pytest.mark.parametrize("label", list(HOSTILE))
def test_vector_env_arguments(name, arg, label):
    def build():
        env = gym.make_vec(_env_id(name), vectorization_mode="vector_entry_point", **{arg: HOSTILE[label]})
        env.close()

    _check(_bounded(build), arg, _is_valid(("env", arg), label))


@pytest.mark.parametrize("label", list(HOSTILE))
def test_single_env_expert_probs(label):
    _check(_bounded(lambda: gym.make("ar_envs/TwoBranch-v0", expert_probs=HOSTILE[label])), "expert_probs",
           _is_valid(("env", "expert_probs"), label))


@pytest.mark.parametrize("name", list(TASKS))
@pytest.mark.parametrize("label", list(HOSTILE))
def test_sample_counts(name, label):
    task = TASKS[name]()
    valid = label == "zero"  # zero episodes: empty arrays
    _check(_bounded(lambda: task.sample_expert(HOSTILE[label], 0)), "n", valid)
    if label != "zero":  # generate needs n >= 1
        _check(_bounded(lambda: generate(task, HOSTILE[label], seed=0)), "n", False)


def test_named_reproducers():
    """The issue's examples, each with its message."""
    cases = [
        (lambda: TASKS["linear-ar"](vocab_size=10**4), r"LinearAR: num_contexts=4, vocab_size=10000, feature_dim=3 needs ~\d+(\.\d+)? GiB for its feature tables"),
        (lambda: TASKS["linear-ar"](feature_dim=10**8), "feature_dim=100000000 needs"),
        (lambda: TASKS["parity"](n_bits=10**9), "n_bits=1000000000"),
        (lambda: TASKS["hmm"](num_states=10**5), "num_states=100000"),
        (lambda: TASKS["two-branch"](horizon=10**9), "horizon=1000000000"),
        (lambda: gym.make_vec("ar_envs/TwoBranch-v0", num_envs=10**9, vectorization_mode="vector_entry_point"),
         "num_envs=1000000000"),
        (lambda: TASKS["linear-ar"](scale=1e155, misspec=1e155), "float overflow"),
        (lambda: TASKS["two-branch"](offset=True), "offset must be a real number, got bool"),
        (lambda: TASKS["two-branch"](eps="0.5"), "eps must be a real number, got str"),
        (lambda: TASKS["hmm"](vocab_size=200).feature_map(), "vocab_size=200 needs .* bigram"),
    ]
    for build, pattern in cases:
        error = _bounded(build)
        assert error is not None and re.search(pattern, str(error)), (pattern, error)
        if "GiB" in str(error):
            assert "AR_ENVS_MAX_BYTES to raise it" in str(error)


@pytest.mark.parametrize("eps", [5e-324, 1e-323, 1e-300, 1 - 2**-53])
def test_two_branch_extreme_eps(eps):
    task = TASKS["two-branch"](eps=eps)
    assert math.isfinite(task.offset) and task.offset > 0
    assert abs(task.offset - (math.log(1 / 0.3) - math.log(eps))) <= 1e-12 * task.offset


def test_memory_limit_follows_the_environment(monkeypatch):
    monkeypatch.delenv("AR_ENVS_MAX_BYTES", raising=False)
    assert memory_limit() == DEFAULT_MAX_BYTES == 4 * 2**30
    TASKS["linear-ar"](vocab_size=100)  # about 3 MB of tables: under the default budget
    monkeypatch.setenv("AR_ENVS_MAX_BYTES", "1e6")
    with pytest.raises(ValueError, match=r"vocab_size=100, feature_dim=3 needs ~0\.00301 GiB .*limit 0\.000931 GiB; set AR_ENVS_MAX_BYTES"):
        TASKS["linear-ar"](vocab_size=100)
    monkeypatch.setenv("AR_ENVS_MAX_BYTES", "2500")  # the task (tables, one episode) fits, its env does not
    TASKS["linear-ar"](horizon=50)
    with pytest.raises(ValueError, match=r"num_envs=1 of LinearAR\(horizon=50, .* needs ~3\.\d+e-06 GiB"):
        gym.make_vec("ar_envs/LinearAR-v0", horizon=50, num_envs=1, vectorization_mode="vector_entry_point")
    for bad in ("abc", "-5", "0", "nan", "inf"):
        monkeypatch.setenv("AR_ENVS_MAX_BYTES", bad)
        with pytest.raises(ValueError, match="AR_ENVS_MAX_BYTES must be a positive number of bytes"):
            memory_limit()


@pytest.mark.parametrize("name,kwargs,n", [
    ("linear-ar", dict(vocab_size=60, feature_dim=20, num_contexts=3), 2000),
    ("hmm", dict(num_states=300, vocab_size=40, horizon=30), 3000),
    ("parity", dict(n_bits=3000, cot="short", chunk_size=1), 20),
    ("path-star", dict(degree=3, path_length=6, num_nodes=2**14, off_path="consistent"), 100),
    ("two-branch", dict(horizon=20000), 50),
])
def test_estimates_bound_what_is_allocated(name, kwargs, n, monkeypatch):
    """Construction, sampling ``n`` episodes and a vector env of ``n`` copies (reset and one
    step) allocate no more than the estimates the checks use: with the budget set to the
    estimate, everything is accepted and the traced peak stays under it."""
    import ar_envs.core as core

    estimates = []
    real = core.check_memory

    def record(owner, nbytes, what):
        estimates.append(nbytes)
        return real(owner, nbytes, what)

    for module in (core, ar_envs.env, ar_envs.data, *(inspect.getmodule(c) for c in TASKS.values())):
        if hasattr(module, "check_memory"):
            monkeypatch.setattr(module, "check_memory", record)
    tracemalloc.start()
    try:
        task = TASKS[name](**kwargs)
        tracemalloc.reset_peak()
        task.sample_expert(n, 0)
        sample_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        env = ar_envs.SequenceVectorEnv(task, num_envs=n)
        env.reset(seed=0)
        env.step(np.zeros(n, dtype=np.int64))
        env_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sample_peak <= task.sample_bytes(n), (sample_peak, task.sample_bytes(n))
    assert env_peak <= max(estimates), (env_peak, max(estimates))


# extreme accepted knobs: the expert's distributions stay finite and normalised
EXTREMES = [
    ("linear-ar", dict(scale=1e6, misspec=1e6)),
    ("linear-ar", dict(scale=1e-300, misspec=0)),
    ("two-branch", dict(eps=5e-324)),
    ("two-branch", dict(eps=1 - 2**-53, offset=1e308)),
    ("two-branch-linear", dict(eps=5e-324, norm_bound=1e6, kappa=1e6)),
    ("mixture", dict(p=0.0, q=1.0, w=0.5)),
    ("mixture", dict(p=0.0, q=1e-300, w=1.0)),
    ("hmm", dict(concentration=1e-300, stickiness=1 - 2**-53)),
    ("hmm", dict(concentration=1e100)),
]


@pytest.mark.parametrize("name,kwargs", EXTREMES)
def test_extreme_knobs_keep_expert_probs_finite(name, kwargs):
    task = TASKS[name](**kwargs)
    rng = np.random.default_rng(0)
    ctx, seq = task.sample_expert(200, rng)
    random_seq = rng.integers(0, task.vocab_size, size=seq.shape)  # off the expert's path too
    for s in (seq, random_seq):
        p = task.expert_step_probs(ctx, s)
        assert np.all(np.isfinite(p)) and p.min() >= 0, name
        np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-12)
    fm = task.feature_map()
    if fm is not None:  # the learner class at the corners of its grid: finite log-probabilities
        for corner in ((lo for lo, _ in fm.grid_ranges), (hi for _, hi in fm.grid_ranges)):
            lp = fm.log_probs(np.array(list(corner)))
            assert not np.any(np.isnan(lp)) and np.all(lp <= 0)
            np.testing.assert_allclose(np.exp(lp).sum(axis=-1), 1.0, atol=1e-12)


def test_step_probs_and_enumeration_are_bounded(monkeypatch):
    from ar_envs.metrics import all_sequences

    monkeypatch.setenv("AR_ENVS_MAX_BYTES", "1e6")
    for name in TASKS:
        task = TASKS[name]()
        ctx, seq = task.sample_expert(2, 0)
        assert task.expert_step_probs(ctx, seq).shape == seq.shape + (task.vocab_size,)  # small: fine
        big = np.repeat(seq, 1 + 10**6 // (8 * seq.shape[1] * task.vocab_size), axis=0)
        big_ctx = np.repeat(ctx[:1], len(big), axis=0)
        error = _bounded(lambda: task.expert_step_probs(big_ctx, big))
        assert re.search(f"{len(big)} sequences of {seq.shape[1]} tokens.*AR_ENVS_MAX_BYTES", str(error)), error
    assert all_sequences(2, 3).tolist()[-1] == [1, 1, 1]
    with pytest.raises(ValueError, match="vocab_size=2, horizon=20 needs"):
        all_sequences(2, 20)
    with pytest.raises(ValueError, match="too many to enumerate"):
        all_sequences(10**4, 10**9)
