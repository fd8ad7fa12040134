"""Hostile files and hostile plug-ins (issue 9, items 1, 2, 3, 13, 14).

* A file never names code to run: a policy file's class comes from an allow-list, never from an
  import; an import path given as an algorithm must be an algorithm before anything uses it.
* Policy files carry a checksum; non-finite weights are refused on save and on load.
* A demonstrations file is checked against its metadata before anything is decompressed.
* A policy's outputs are validated before they are scored (normalised, finite, <= 0).
* Constructor arguments of the log-linear algorithms are validated; an unconverged L-BFGS fit
  says so in its log.
"""

import io
import sys

import numpy as np
import pytest
import torch

from ar_agents.algorithms import (BC, PPO, DAgger, HellingerBC, ScheduledSampling, SmoothedBC, Teacherless,
                               TeacherlessPolicy, get_algorithm)
from ar_agents.cli import main
from ar_agents.policies import GPTPolicy, TokenPolicy, WindowPolicy, make_policy, stream_spec
from ar_envs.metrics import all_sequences
from ar_envs.tasks import TwoBranch


def tiny_policy(task=None):
    task = task or TwoBranch(horizon=3, eps=0.1)
    return task, make_policy("linear", task, seed=0, window=2, embed_dim=4)


def rewrite(path, **fields):
    """Replace fields of a saved policy file (its checksum is left as it was)."""
    payload = torch.load(path, weights_only=True)
    payload.update(fields)
    torch.save(payload, path)
    return payload


class MyPolicy(WindowPolicy):
    """A user's own policy class: loadable only when the loader is given it."""


# --------------------------------------------------------------------------------------------
# 1. no code runs from a file
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pwnmod:X", "this:s"])
@pytest.mark.parametrize("loader", [TokenPolicy.load, TeacherlessPolicy.load])
def test_a_policy_file_never_imports_the_module_it_names(tmp_path, monkeypatch, capsys, name, loader):
    marker = tmp_path / "imported.txt"
    (tmp_path / "pwnmod.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass X:\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # importable, were the loader to try
    for mod in ("pwnmod", "this"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    _, policy = tiny_policy()
    path = tmp_path / "p.pt"
    policy.save(path)
    rewrite(path, **{"class": name})
    with pytest.raises(ValueError) as refused:
        loader(path)
    assert not marker.exists()
    assert "pwnmod" not in sys.modules and "this" not in sys.modules
    assert "Beautiful is better" not in capsys.readouterr().out
    assert refused.match(r"not one this loader may build \(allowed: .*WindowPolicy")


def test_own_policy_classes_load_only_when_given(tmp_path):
    task = TwoBranch(horizon=3, eps=0.1)
    torch.manual_seed(0)
    mine = MyPolicy(stream_spec(task), window=2, embed_dim=4)
    path = tmp_path / "mine.pt"
    mine.save(path)
    with pytest.raises(ValueError, match="MyPolicy.*allowed"):
        TokenPolicy.load(path)
    ctx, seq = np.zeros((4, 0), dtype=np.int64), np.array([[0, 0, 0], [0, 1, 0], [1, 1, 1], [0, 0, 1]])
    for loaded in (TokenPolicy.load(path, classes=[MyPolicy]), TokenPolicy.load(path, classes=MyPolicy),
                   MyPolicy.load(path)):
        assert type(loaded) is MyPolicy
        np.testing.assert_array_equal(loaded.sequence_log_prob(ctx, seq), mine.sequence_log_prob(ctx, seq))
    with pytest.raises(ValueError, match="allowed"):  # a GPTPolicy loader never returns a window policy
        GPTPolicy.load(path, classes=[MyPolicy])
    with pytest.raises(ValueError, match="classes must"):
        TokenPolicy.load(path, classes=[int])


@pytest.mark.parametrize("spec", ["builtins:print", "os:getcwd", "collections:OrderedDict", "json:dumps", "builtins:int"])
def test_import_paths_that_are_not_algorithms_are_refused_before_use(spec, tmp_path, capsys):
    with pytest.raises(ValueError, match="is not an algorithm: needs a class with fit"):
        get_algorithm(spec)
    out = tmp_path / "r.jsonl"
    assert main(["sweep", "--task", "two-branch", "--horizons", "2", "--algorithms", spec, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is not an algorithm" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    # with --algo-arg the CLI builds instances itself: the same check comes first
    assert main(["sweep", "--task", "two-branch", "--horizons", "2", "--algorithms", spec, "--algo-arg", "max_iter=3",
                 "--out", str(out)]) == 2
    assert "is not an algorithm" in capsys.readouterr().err


def test_an_algorithm_class_is_checked_before_it_is_built(tmp_path, monkeypatch):
    marker = tmp_path / "built.txt"
    (tmp_path / "useralgs.py").write_text(
        f"class NoSeed:\n    def __init__(self):\n        open({str(marker)!r}, 'w').close()\n"
        "    def fit(self, task, demos):\n        return None\n\n"
        "def two_args(task, demos):\n    return None\n\n"
        "def good(task, demos, seed):\n    return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "useralgs", raising=False)
    for spec in ("useralgs:NoSeed", "useralgs:two_args"):
        with pytest.raises(ValueError, match="does not take \\(task, demos, seed\\)"):
            get_algorithm(spec)
    assert not marker.exists()
    assert get_algorithm("useralgs:good").name == "useralgs:good"


# --------------------------------------------------------------------------------------------
# 2. policy files: checksum, finite weights
# --------------------------------------------------------------------------------------------


def flip_weight_byte(path, dst):
    """Copy ``path`` to ``dst`` with one byte of the first weight tensor flipped (zip CRCs untouched)."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("/data/0"))
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    data[info.header_offset + 30 + name_len + extra_len + 1] ^= 0x01
    dst.write_bytes(bytes(data))
    return dst


def test_one_flipped_weight_byte_is_refused(tmp_path):
    _, policy = tiny_policy()
    good = tmp_path / "good.pt"
    policy.save(good)
    bad = flip_weight_byte(good, tmp_path / "bad.pt")
    assert bad.read_bytes() != good.read_bytes()
    with pytest.raises(ValueError, match="checksum mismatch"):
        TokenPolicy.load(bad)
    # a changed config or weight tensor saved again by torch (a valid archive) is refused too
    payload = torch.load(good, weights_only=True)
    state = dict(payload["state_dict"])
    name = sorted(state)[0]
    state[name] = state[name] + 1e-3
    for fields in ({"state_dict": state}, {"config": {**payload["config"], "window": 3}}, {"sha256": "0" * 64}):
        changed = tmp_path / "changed.pt"
        policy.save(changed)
        rewrite(changed, **fields)
        with pytest.raises(ValueError, match="checksum mismatch"):
            TokenPolicy.load(changed)
    payload.pop("sha256")
    torch.save(payload, tmp_path / "no_sum.pt")
    with pytest.raises(ValueError, match="'sha256' missing"):
        TokenPolicy.load(tmp_path / "no_sum.pt")
    assert isinstance(TokenPolicy.load(good), WindowPolicy)


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_on_save_and_on_load(tmp_path, bad_value):
    from ar_agents.policies.base import policy_checksum

    _, policy = tiny_policy()
    path = tmp_path / "p.pt"
    policy.save(path)
    with torch.no_grad():
        policy.head.weight[0, 0] = bad_value
    with pytest.raises(ValueError, match=r"cannot save WindowPolicy: weight 'head.weight' holds non-finite values"):
        policy.save(path)
    assert isinstance(TokenPolicy.load(path), WindowPolicy)  # the earlier file is untouched
    # a file holding NaN weights under a correct checksum (as another writer could make it)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = {**payload["state_dict"], "head.weight": policy.head.weight.detach().clone()}
    payload["sha256"] = policy_checksum(payload)
    torch.save(payload, path)
    with pytest.raises(ValueError, match="weight 'head.weight' holds non-finite values"):
        TokenPolicy.load(path)


def test_policy_file_with_compressed_entries_or_an_oversized_config_is_refused_unread(tmp_path):
    import resource
    import struct
    import zipfile

    from ar_agents.policies.base import policy_checksum

    _, policy = tiny_policy()
    good = tmp_path / "good.pt"
    policy.save(good)
    packed = tmp_path / "packed.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(packed, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    with pytest.raises(ValueError, match="is compressed"):
        TokenPolicy.load(packed)
    # a stored entry whose zip directory claims 2 GiB (a reader would allocate that much first)
    data = bytearray(good.read_bytes())
    at = data.find(b"PK\x01\x02")  # the first central-directory record
    data[at + 20 : at + 28] = struct.pack("<II", 2**31, 2**31)  # its compressed and uncompressed sizes
    claims = tmp_path / "claims.pt"
    claims.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"declares 2147483648 bytes in a \d+-byte file"):
        TokenPolicy.load(claims)
    # a config that would build a 10^6 x 10^6 embedding (4 TB): refused before anything is built
    payload = torch.load(good, weights_only=True)
    payload["config"] = {**payload["config"], "embed_dim": 10**6, "window": 10**6}
    payload["sha256"] = policy_checksum(payload)
    huge = tmp_path / "huge.pt"
    torch.save(payload, huge)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="other weights than the file holds"):
        TokenPolicy.load(huge)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: under 100 MB
    (tmp_path / "garbage.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a zip archive"):
        TokenPolicy.load(tmp_path / "garbage.pt")
    with pytest.raises(FileNotFoundError):
        TokenPolicy.load(tmp_path / "missing.pt")


# --------------------------------------------------------------------------------------------
# 3. a small .npz never unpacks into a large allocation
# --------------------------------------------------------------------------------------------

BOMB_ROWS = 2**23  # x 8 columns of uint8: 64 MiB of zeros, about 64 KB deflated


def write_bomb(path, *, meta_rows: int, header_rows: int, data_rows: int, entry: str = "sequences",
               deflate: bool = True):
    """A demonstrations-shaped .npz whose ``entry`` is zeros (deflated unless ``deflate=False``):
    its metadata declares ``(meta_rows, 8)``, its .npy header ``(header_rows, 8)``, and it holds
    ``data_rows`` rows."""
    import json
    import zipfile

    from ar_envs.data import FORMAT_NAME

    arrays = {"contexts": {"dtype": "|u1", "shape": [meta_rows, 0]}, "sequences": {"dtype": "|u1", "shape": [meta_rows, 8]}}
    meta = {"format": FORMAT_NAME, "version": 1, "task_name": "two-branch", "task_args": {}, "seed": 0,
            "n": meta_rows, "arrays": arrays, "sha256": "0" * 64}
    meta_bytes = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as zf:
        def member(name, rows, shape_tail, data_rows_):
            with zf.open(name + ".npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False,
                                                          "shape": (rows, *shape_tail)})
                left = data_rows_ * int(np.prod(shape_tail))
                chunk = bytes(1 << 20)
                while left > 0:
                    fh.write(chunk[: min(left, len(chunk))])
                    left -= len(chunk)

        if entry == "metadata":
            with zf.open("metadata.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False,
                                                          "shape": (len(meta_bytes) + data_rows * 8,)})
                fh.write(meta_bytes)
                for _ in range(data_rows * 8 // (1 << 20)):
                    fh.write(b" " * (1 << 20))  # JSON allows trailing blanks
        else:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.frombuffer(meta_bytes, dtype=np.uint8))
            zf.writestr("metadata.npy", buf.getvalue())
        member("contexts", meta_rows, (0,), 0)
        member("sequences", header_rows, (8,), data_rows)
    return path


@pytest.mark.parametrize("case, match", [
    ("header_disagrees", r"array 'sequences' is \|u1 \[8388608, 8\], metadata says"),
    ("size_disagrees", r"entry 'sequences' holds 1728 bytes, its header declares 928"),
    ("consistent_but_huge", r"compressed entry 'sequences' would expand from \d+ to 67108992 bytes \(more than 100x"),
    ("huge_metadata", r"compressed entry 'metadata' would expand"),
])
def test_a_small_npz_is_refused_before_it_is_decompressed(tmp_path, case, match):
    import os
    import tracemalloc

    from ar_envs.data import load_demonstrations

    rows = {"header_disagrees": dict(meta_rows=100, header_rows=BOMB_ROWS, data_rows=0, deflate=False),
            "size_disagrees": dict(meta_rows=100, header_rows=100, data_rows=200, deflate=False),
            "consistent_but_huge": dict(meta_rows=BOMB_ROWS, header_rows=BOMB_ROWS, data_rows=BOMB_ROWS),
            "huge_metadata": dict(meta_rows=100, header_rows=100, data_rows=100, entry="metadata")}[case]
    if case == "huge_metadata":
        rows["data_rows"] = BOMB_ROWS
    path = write_bomb(tmp_path / "bomb.npz", **rows)
    assert os.path.getsize(path) < 1_000_000  # a small file ...
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as refused:
            load_demonstrations(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"refusing the file took {peak} bytes"  # ... refused without unpacking 64 MiB
    assert refused.match(match)


# --------------------------------------------------------------------------------------------
# 13. a policy's outputs are validated before they are scored
# --------------------------------------------------------------------------------------------

POLICY_MODULE = '''
import numpy as np
from ar_agents.algorithms import BC


class Tempered:
    """BC's law raised to the power 1/2 and never renormalised: every log-probability <= 0,
    but the probabilities of a context sum to more than 1."""

    def __init__(self, inner):
        self.inner = inner

    def sequence_log_prob(self, contexts, sequences):
        return 0.5 * self.inner.sequence_log_prob(contexts, sequences)

    def sample(self, contexts, rng=None):
        return self.inner.sample(contexts, rng)


class Returns:
    """A policy whose sequence_log_prob returns a fixed value (or maker(n))."""

    def __init__(self, value):
        self.value = value

    def sequence_log_prob(self, contexts, sequences):
        return self.value(len(sequences)) if callable(self.value) else np.full(len(sequences), self.value)


def tempered_bc(task, demos, seed):
    return Tempered(BC().fit(task, demos, seed))


def plus_inf(task, demos, seed):
    return Returns(np.inf)
'''


@pytest.fixture
def user_policies(tmp_path, monkeypatch):
    """The module ``user_policies`` (a user's algorithms and policies) importable from ``tmp_path``."""
    import importlib

    (tmp_path / "user_policies.py").write_text(POLICY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "user_policies", raising=False)
    return importlib.import_module("user_policies")


def test_an_unnormalised_policy_is_refused_with_its_class_named(user_policies):
    from ar_envs.data import generate
    from ar_envs.metrics import sequence_metrics

    task = TwoBranch(horizon=5, eps=0.1)  # 2^5 sequences: the enumeration path
    bc = BC().fit(task, generate(task, 300, seed=0), 0)
    mass = float(np.exp(0.5 * bc.sequence_log_prob(np.zeros((32, 0), np.int64), all_sequences(2, 5))).sum())
    assert mass > 1.5  # the reproducer is far from a law; its C(H) used to be recorded as a number
    with pytest.raises(ValueError, match=rf"Tempered.sequence_log_prob is not a probability law: its probabilities "
                                         rf"sum to {mass:.6f}\d* over the 2\^5 sequences of context #0"):
        sequence_metrics(task, user_policies.Tempered(bc))
    # the same law renormalised is scored (and agrees with BC itself when it is BC)
    assert sequence_metrics(task, bc)["hellinger2"].value >= 0


@pytest.mark.parametrize("horizon", [5, 40], ids=["enumeration", "monte-carlo"])
@pytest.mark.parametrize("value, match", [
    (np.inf, r"returned inf for sequence \[.*\]: log-probabilities must be <= 0 \(within 1e-06\) or -inf, never NaN"),
    (np.nan, r"returned nan for sequence"),
    (0.5, r"returned 0.5 for sequence"),
    (lambda n: np.zeros(n + 1), r"returned shape \(\d+,\) for \d+ sequences"),
    (lambda n: np.zeros((n, 1)), r"returned shape \(\d+, 1\) for \d+ sequences"),
    (lambda n: np.zeros(n, dtype=complex), r"returned complex numbers"),
    (lambda n: np.array(["a"] * n), r"returned <U1 values"),
], ids=["+inf", "nan", "positive", "too-long", "2-d", "complex", "strings"])
def test_broken_log_probabilities_are_refused_on_every_path(user_policies, horizon, value, match):
    from ar_envs.metrics import sequence_metrics

    task = TwoBranch(horizon=horizon, eps=0.1)
    with pytest.raises(ValueError, match="Returns.sequence_log_prob " + match):
        sequence_metrics(task, user_policies.Returns(value), n_samples=500, rng=0)


def test_monte_carlo_path_refuses_a_grossly_unnormalised_policy_and_keeps_laws(user_policies):
    from ar_envs.metrics import check_affinity_sample, sequence_metrics

    task = TwoBranch(horizon=40, eps=0.1)  # 2^40 sequences: Monte Carlo
    with pytest.raises(ValueError, match=r"Returns.sequence_log_prob is not a probability law: over 2000 expert "
                                         r"samples the mean of sqrt\(P/P\*\) is .* > 23.3"):
        sequence_metrics(task, user_policies.Returns(0.0), n_samples=2000, rng=0)
    # the threshold is Cantelli's: a law (here the expert itself, sqrt(P/P*) = 1) always passes,
    # and so does a sample mean just under 1 + sqrt((1 - 1e-6) / (1e-6 n))
    check_affinity_sample(object(), np.ones(2000))
    check_affinity_sample(object(), np.full(2000, 1 + np.sqrt((1 - 1e-6) / (1e-6 * 2000)) - 1e-9))
    with pytest.raises(ValueError):
        check_affinity_sample(object(), np.full(2000, 1 + np.sqrt((1 - 1e-6) / (1e-6 * 2000)) + 1e-9))


def test_bad_state_tables_and_samples_are_refused(user_policies):
    from ar_envs.data import generate
    from ar_envs.metrics import sequence_metrics

    task = TwoBranch(horizon=5, eps=0.1)
    bc = BC().fit(task, generate(task, 300, seed=0), 0)

    class Table:
        feature_map = task.feature_map()

        def __init__(self, table):
            self.state_probs = table

        def sequence_log_prob(self, contexts, sequences):
            return bc.sequence_log_prob(contexts, sequences)

    good = np.asarray(bc.state_probs)
    for table, match in [(good * 1.5, r"Table.state_probs is not normalised: row \(context, state\) \(0, \d+\) sums to 1.5"),
                         (np.where(good > 0.5, np.nan, good), "negative or non-finite"),
                         (good[..., :1], "has shape")]:
        with pytest.raises(ValueError, match=match):
            sequence_metrics(task, Table(table))
    assert sequence_metrics(task, Table(good))["hellinger2"].value == pytest.approx(
        sequence_metrics(task, bc)["hellinger2"].value, abs=1e-12)

    class BadSampler(user_policies.Tempered):
        def sequence_log_prob(self, contexts, sequences):
            return self.inner.sequence_log_prob(contexts, sequences)

        def sample(self, contexts, rng=None):
            return np.full((len(contexts), 40), 7)

    long_task = TwoBranch(horizon=40, eps=0.1)
    long_bc = BC().fit(long_task, generate(long_task, 300, seed=0), 0)
    with pytest.raises(ValueError, match=r"BadSampler.sample returned bad sequences must hold tokens in \[0, 1\]"):
        sequence_metrics(long_task, BadSampler(long_bc), n_samples=500, rng=0)


@pytest.mark.parametrize("algorithm, match", [("user_policies:tempered_bc", "Tempered.sequence_log_prob is not a probability law"),
                                              ("user_policies:plus_inf", "Returns.sequence_log_prob returned inf")])
def test_the_sweep_fails_the_cell_instead_of_recording_nonsense(user_policies, tmp_path, capsys, algorithm, match):
    from ar_agents.evaluation.sweep import ResultsFile, sweep

    out = tmp_path / "r.jsonl"
    with pytest.raises(ValueError, match=rf"{algorithm} on two-branch H=5 seed=0: {match}"):
        sweep("two-branch", [5], ["bc", algorithm], seeds=1, n_samples=300, eval_samples=2000, out=out, progress=True)
    assert [r["algorithm"] for r in ResultsFile(out).records()] == ["bc"]  # only the good cell
    # the CLI: one line, exit 2, no traceback (the progress line never sees a null)
    out2 = tmp_path / "r2.jsonl"
    argv = ["sweep", "--task", "two-branch", "--horizons", "5", "--algorithms", algorithm, "--seeds", "1",
            "--samples", "300", "--eval-samples", "2000", "--out", str(out2)]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------
# 14. numeric constructor arguments are validated; an unconverged fit says so
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [BC, SmoothedBC, HellingerBC], ids=["bc", "smoothed-bc", "hellinger-bc"])
@pytest.mark.parametrize("value", [0, -1, 2.5, "abc", True, None, float("nan")])
def test_max_iter_must_be_a_positive_integer(cls, value):
    with pytest.raises(ValueError, match=r"max_iter must be an integer >= 1, got"):
        cls(max_iter=value)


@pytest.mark.parametrize("cls, kwargs, match", [
    (SmoothedBC, {"gamma": 1.0}, r"gamma must be a finite number in \[0.0, 1.0\)"),
    (SmoothedBC, {"gamma": float("nan")}, "gamma must be a finite number"),
    (SmoothedBC, {"gamma": "x"}, "gamma must be a real number"),
    (DAgger, {"rounds": -1}, "rounds must be an integer >= 0"),
    (DAgger, {"beta_rampdown": 0}, "beta_rampdown must be an integer >= 1"),
    (Teacherless, {"epochs": 0}, "epochs must be an integer >= 1"),
    (ScheduledSampling, {"k": 0.5}, "k must be a finite number"),
    (PPO, {"gamma": 1.5}, "gamma must be a finite number"),
])
def test_other_numeric_constructor_arguments_are_validated(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_max_iter_zero_on_the_command_line_is_refused_before_any_cell(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    argv = ["sweep", "--task", "two-branch", "--horizons", "4", "--algorithms", "bc", "--algo-arg", "max_iter=0",
            "--seeds", "1", "--samples", "200", "--eval-samples", "500", "--out", str(out)]
    assert main(argv) == 2
    assert "max_iter must be an integer >= 1, got 0" in capsys.readouterr().err
    assert not out.exists()


def test_an_unconverged_fit_says_so_and_a_converged_one_too(tmp_path):
    import warnings

    from ar_agents.evaluation.sweep import sweep
    from ar_envs.data import generate

    task = TwoBranch(horizon=8, eps=0.1)
    demos = generate(task, 300, seed=0)
    with pytest.warns(RuntimeWarning, match=r"bc: L-BFGS stopped after 1 iterations \(max_iter=1\) without converging"):
        short = BC(max_iter=1)
        short.fit(task, demos, 0)
    assert short.log["converged"] is False and short.log["iterations"] == 1 and short.log["grad_max"] > 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        full = BC()
        full.fit(task, demos, 0)
    assert full.log["converged"] is True and 1 <= full.log["iterations"] < 500
    # at the MLE the gradient vanishes: the recorded grad_max is tiny, far below the 1-step fit's
    assert full.log["grad_max"] < 1e-5 and full.log["grad_max"] < 1e-3 * short.log["grad_max"]
    # the sweep's record carries it
    with pytest.warns(RuntimeWarning):
        recs = sweep("two-branch", [8], [BC(max_iter=1)], seeds=1, n_samples=300, eval_samples=500, progress=False)
    assert recs[0]["fit_log"]["converged"] is False
