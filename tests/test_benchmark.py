"""The benchmark: the suite file, cells, reference results, a user's algorithm next to them."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from ar_agents.evaluation import benchmark as bm
from ar_agents.evaluation.sweep import ResultsFile

TINY = {
    "format": "ar-envs-suite",
    "name": "tiny-v1",
    "description": "two small log-linear tasks",
    "groups": {"misspecified": "log-linear class, 1/C"},
    "tasks": [
        {"id": "tb", "group": "misspecified", "task": "two-branch", "task_args": {"eps": 0.05},
         "horizons": [2, 4], "n_samples": 200, "eval_samples": 1000, "seeds": 2, "metric": "approx_factor",
         "algorithms": ["bc", {"label": "hbc", "name": "hellinger-bc"}]},
        {"id": "rare", "group": "misspecified", "task": "rare-token", "task_args": {"delta": 0.05},
         "horizons": [1], "n_samples": 200, "eval_samples": 1000, "seeds": 2, "metric": "approx_factor",
         "algorithms": ["bc"]},
    ],
}


def write_suite(tmp_path, data=None, name="suite.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(TINY if data is None else data))
    return str(path)


def edited(**changes):
    data = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        if key.startswith("task_"):
            data["tasks"][0][key[5:]] = value
        else:
            data[key] = value
    return data


# ------------------------------------------------------------------------------- the suite file


def test_shipped_suite_validates_and_names_every_task_of_the_issue():
    suite = bm.load_suite("arb-v1")
    assert suite.name == "arb-v1"
    assert {t.task for t in suite.tasks} == {"two-branch", "rare-token", "linear-ar", "mixture", "hmm", "path-star",
                                             "multiplication", "parity"}
    for t in suite.tasks:
        assert t.metric in bm.METRICS and t.seeds >= 1 and t.horizons
        if t.metric == "approx_factor":
            assert t.policy is None  # the log-linear class, whose best in class is computed
        else:
            assert t.policy is not None
    # every shipped algorithm is run somewhere by the reference
    from ar_agents.algorithms.base import algorithm_names

    used = {a.name for t in suite.tasks for a in t.algorithms}
    assert used == set(algorithm_names())
    assert suite.cell_count() == sum(len(t.horizons) * t.seeds * len(t.algorithms) for t in suite.tasks)


@pytest.mark.parametrize("change, message", [
    (dict(format="other"), "not an ar-envs suite"),
    (dict(extra=1), "unknown field"),
    (dict(name="a b"), "\"name\""),
    (dict(tasks=[]), "non-empty list"),
    (dict(task_task="mymod:Task"), "catalogue"),  # a suite never imports
    (dict(task_task_args={"nope": 1}), "no argument nope"),
    (dict(task_task_args={"horizon": 3}), "horizons"),
    (dict(task_horizons=[2, 2]), "twice"),
    (dict(task_horizons=[0]), "horizons"),
    (dict(task_horizons=[True]), "horizons"),
    (dict(task_seeds=10**6), "seeds"),
    (dict(task_n_samples=10**12), "n_samples"),
    (dict(task_metric="reward"), "metric"),
    (dict(task_policy="gpt5"), "policy"),
    (dict(task_policy_args={"n_layer": 1}), "policy_args need a policy"),
    (dict(task_algorithms=["os:system"]), "shipped algorithms"),  # registry names only
    (dict(task_algorithms=["bc", "bc"]), "unique"),
    (dict(task_algorithms=[{"name": "bc", "args": {"nope": 1}}]), "takes no argument"),
    (dict(task_algorithms=[{"name": "bc", "args": {"max_iter": [1]}}]), "number, string"),
    (dict(task_id="a,b"), "id"),
])
def test_bad_suites_are_refused_naming_the_field(tmp_path, change, message):
    with pytest.raises(ValueError, match=message) as info:
        bm.load_suite(write_suite(tmp_path, edited(**change)))
    assert "\n" not in str(info.value)


def test_suite_file_errors(tmp_path):
    with pytest.raises(ValueError, match="neither a shipped suite"):
        bm.load_suite(str(tmp_path / "missing.json"))
    (tmp_path / "nan.json").write_text(json.dumps(TINY).replace('"eps": 0.05', '"eps": NaN'))
    with pytest.raises(ValueError, match="finite"):
        bm.load_suite(str(tmp_path / "nan.json"))
    (tmp_path / "big.json").write_bytes(b" " * (bm.MAX_SUITE_BYTES + 1))
    with pytest.raises(ValueError, match="at most"):
        bm.load_suite(str(tmp_path / "big.json"))
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="not a JSON suite"):
        bm.load_suite(str(tmp_path / "bin.json"))
    with pytest.raises(ValueError, match="--tasks"):
        bm.load_suite(write_suite(tmp_path)).select("tb,nope")


def test_exact_match_needs_a_deterministic_expert_and_approx_factor_a_class(tmp_path):
    data = edited(task_metric="exact_match")
    with pytest.raises(ValueError, match="deterministic expert"):
        bm.load_suite(write_suite(tmp_path, data))
    data = edited(task_task="path-star", task_task_args={"degree": 2}, task_horizons=[3])
    with pytest.raises(ValueError, match="no log-linear class"):
        bm.load_suite(write_suite(tmp_path, data))


# ------------------------------------------------------------------------------- cells and runs


def test_jobs_cover_the_suite_and_carry_its_name(tmp_path):
    suite = bm.load_suite(write_suite(tmp_path))
    jobs, labels = bm.suite_jobs(suite)
    assert len(jobs) == suite.cell_count() == 2 * 2 * 2 + 1 * 2 * 1
    assert {c.suite for c, _ in jobs} == {"tiny-v1"}
    assert set(labels.values()) == {"bc", "hbc"}
    user_jobs, user_labels = bm.suite_jobs(suite, ["smoothed-bc"])
    assert len(user_jobs) == suite.cell_count(n_algorithms=1) == 6


def test_run_scores_and_resumes(tmp_path):
    suite = bm.load_suite(write_suite(tmp_path))
    out = tmp_path / "ref.jsonl"
    recs = bm.run_benchmark(suite, out=out, progress=False)
    assert len(recs) == 10 and all(r["suite"] == "tiny-v1" for r in recs)
    assert all("provenance" in r and r["provenance"]["ar_envs_version"] for r in recs)
    before = out.read_bytes()
    again = bm.run_benchmark(suite, out=out, progress=False)  # nothing left to run
    assert out.read_bytes() == before
    assert sorted(json.dumps(r, sort_keys=True) for r in again) == sorted(json.dumps(r, sort_keys=True) for r in recs)
    # the table: C(H) per seed equals the records' approx_factor, the score is 1/C
    _, labels = bm.suite_jobs(suite)
    table = bm.collect(suite, [(recs, labels)])
    for r in recs:
        col = ("tb" if r["task"] == "two-branch" else "rare", r["horizon"])
        disp = labels[r["algorithm"]]
        assert table.values[disp][col][r["seed"]] == pytest.approx(r["approx_factor"])
        assert table.scores[disp][col][r["seed"]] == pytest.approx(1.0 / r["approx_factor"])
    assert table.columns == [("tb", 2), ("tb", 4), ("rare", 1)]
    assert not table.missing


def test_records_of_another_suite_or_configuration_are_not_pooled(tmp_path):
    suite = bm.load_suite(write_suite(tmp_path))
    recs = bm.run_benchmark(suite, tasks="rare", out=tmp_path / "r.jsonl", progress=False)
    _, labels = bm.suite_jobs(suite)
    other = [{**r, "suite": "other-v1"} for r in recs]
    more_samples = [{**r, "n_samples": 999} for r in recs]
    assert bm.collect(suite, [(other + more_samples, labels)]).algorithms == []
    table = bm.collect(suite, [(recs + recs, labels)])  # a record given twice counts once
    assert len(table.values["bc"][("rare", 1)]) == 2


def test_unfinished_runs_are_reported(tmp_path):
    suite = bm.load_suite(write_suite(tmp_path))
    recs = bm.run_benchmark(suite, tasks="rare", out=tmp_path / "r.jsonl", progress=False)
    _, labels = bm.suite_jobs(suite)
    table = bm.collect(suite, [(recs[:1], labels)], tasks="rare")
    assert table.missing == [("bc", ("rare", 1), 1, 2)]
    assert "1 of 2 seeds" in bm.format_comparison(table, bm.aggregates(table, reps=200), reps=200)


def test_normalised_scores():
    assert bm.normalised_score(4.0, "approx_factor") == 0.25
    assert bm.normalised_score(0.3, "exact_match") == 0.3
    assert bm.normalised_score(0.2, "hellinger2") == pytest.approx(0.8)
    assert bm.normalised_score(None, "approx_factor") is None


def test_a_user_algorithm_by_import_path_is_compared_with_the_reference(tmp_path, monkeypatch):
    (tmp_path / "my_alg_mod.py").write_text(
        "from ar_agents.algorithms import BC\n"
        "class Mine(BC):\n"
        "    '''BC with few L-BFGS iterations.'''\n"
        "    def __init__(self, max_iter=3):\n"
        "        super().__init__(max_iter=max_iter)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    suite = bm.load_suite(write_suite(tmp_path))
    ref = bm.run_benchmark(suite, out=tmp_path / "ref.jsonl", progress=False)
    mine = bm.run_benchmark(suite, ["my_alg_mod:Mine"], out=tmp_path / "mine.jsonl", progress=False)
    assert len(mine) == 6 and {r["algorithm"] for r in mine} == {"my_alg_mod:Mine"}
    _, ref_labels = bm.suite_jobs(suite)
    _, user_labels = bm.suite_jobs(suite, ["my_alg_mod:Mine"])
    table = bm.collect(suite, [(ref, ref_labels), (mine, user_labels)], user=["my_alg_mod:Mine"])
    aggs = bm.aggregates(table, reps=200)
    text = bm.format_comparison(table, aggs, reps=200)
    assert "> my_alg_mod:Mine" in text and "  bc " in text and "hbc" in text
    poi = aggs["misspecified"]["poi"]
    assert set(poi) == {("my_alg_mod:Mine", "bc"), ("my_alg_mod:Mine", "hbc")}
    assert poi[("my_alg_mod:Mine", "hbc")][3] == 2  # hbc runs on the two tb columns only
    (png,) = bm.plot_comparison(table, aggs, str(tmp_path / "fig.png"), reps=200)
    assert png == str(tmp_path / "fig-misspecified.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_every_learner_of_a_class_is_divided_by_the_same_best_member(tmp_path):
    """A user's run that found a better member of the class (its cell's best is smaller) moves
    the reference rows' C(H) too: all are divided by the smallest best recorded for the column."""
    suite = bm.load_suite(write_suite(tmp_path))
    ref = bm.run_benchmark(suite, tasks="rare", out=tmp_path / "r.jsonl", progress=False)
    b = ref[0]["best_in_class_hellinger2"]
    mine = [{**r, "algorithm": "mine", "best_in_class_hellinger2": b / 2, "hellinger2": r["hellinger2"] * 3} for r in ref]
    _, labels = bm.suite_jobs(suite, tasks="rare")
    table = bm.collect(suite, [(ref, labels), (mine, {"mine": "mine"})], tasks="rare", user=["mine"])
    col = ("rare", 1)
    for r in ref:
        assert table.values["bc"][col][r["seed"]] == pytest.approx(r["hellinger2"] / (b / 2))
        assert table.values["mine"][col][r["seed"]] == pytest.approx(3 * r["hellinger2"] / (b / 2))
    # another class (a neural kind) keeps its own best
    neural = [{**r, "algorithm": "nn", "best_in_class_hellinger2": b * 10, "best_in_class_method": "estimate: mlp",
               "fit_log": {"policy_class": "mlp"}, "best_in_class_search": {"config": {"hidden": 8}}} for r in ref]
    table = bm.collect(suite, [(ref, labels), (neural, {"nn": "nn"})], tasks="rare")
    for r in ref:
        assert table.values["nn"][col][r["seed"]] == pytest.approx(r["hellinger2"] / (b * 10))
        assert table.values["bc"][col][r["seed"]] == pytest.approx(r["approx_factor"])


def test_cli_reference_then_yours(tmp_path, capsys, monkeypatch):
    from ar_agents.cli import main

    suite = write_suite(tmp_path)
    ref = str(tmp_path / "ref.jsonl")
    assert main(["benchmark", "--suite", suite, "--tasks", "rare", "--reference", "--out", ref, "--quiet", "--reps", "200"]) == 0
    out = capsys.readouterr().out
    assert "## rare: rare-token" in out and "## aggregate over the misspecified tasks" in out
    assert os.path.exists(tmp_path / "tiny-v1-benchmark-misspecified.png")
    mine = str(tmp_path / "mine.jsonl")
    assert main(["benchmark", "--suite", suite, "--tasks", "rare", "--reference-results", ref, "--algorithm", "bc",
                 "--algo-arg", "max_iter=50", "--out", mine, "--quiet", "--reps", "200"]) == 0
    out = capsys.readouterr().out
    assert "> bc[max_iter=50]" in out and "\n  bc " in out and "P(bc[max_iter=50] > it)" in out
    # the shipped reference file is another suite's: nothing of it is pooled into tiny-v1
    assert main(["benchmark", "--suite", suite, "--tasks", "rare", "--quiet", "--reps", "200"]) == 0
    captured = capsys.readouterr()
    assert "no reference results of tiny-v1" in captured.err


@pytest.mark.parametrize("argv, message", [
    (["--reference", "--algorithm", "bc"], "without --algorithm"),
    (["--algo-arg", "max_iter=3"], "--algo-arg applies"),
    (["--tasks", "nope"], "no task 'nope'"),
    (["--reps", "5"], "reps"),
    (["--algorithm", "nope"], "must be a known name"),
    (["--algorithm", ","], "--algorithm must name"),
    (["--suite", "arb-v0"], "neither a shipped suite"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    from ar_agents.cli import main

    argv = ["benchmark", "--out", str(tmp_path / "x.jsonl"), "--quiet"] + (
        [] if "--suite" in argv else ["--suite", write_suite(tmp_path)]) + argv
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_the_bagged_bc_example_is_in_the_class_and_runs_on_the_benchmark(tmp_path, monkeypatch):
    import sys

    monkeypatch.syspath_prepend(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from examples.bagged_bc import BaggedBC
    from ar_agents.policies.loglinear import LogLinearPolicy

    suite = bm.load_suite(write_suite(tmp_path))
    recs = bm.run_benchmark(suite, ["examples.bagged_bc:BaggedBC"], tasks="rare", out=tmp_path / "b.jsonl", progress=False)
    assert len(recs) == 2 and all(r["fit_log"]["bags"] == 5 and r["approx_factor"] >= 1 - 1e-9 for r in recs)
    from ar_envs.data import generate
    from ar_envs.tasks import get_task_class

    task = get_task_class("rare-token")(horizon=1, delta=0.05)
    demos = generate(task, 50, seed=0)
    one = BaggedBC(bags=1).fit(task, demos, 3)
    assert isinstance(one, LogLinearPolicy)
    # one bag is BC on one bootstrap resample: the same draw, refitted by hand
    from ar_agents.algorithms import BC
    from ar_envs.data import Demonstrations

    i = np.random.default_rng(3).integers(0, 50, 50)
    ref = BC().fit(task, Demonstrations(demos.contexts[i], demos.sequences[i]), 3)
    np.testing.assert_allclose(one.theta, ref.theta)


def test_a_cells_key_before_it_runs_is_its_records_key():
    from ar_agents.evaluation.sweep import Cell, cell_key, run_cell

    for cell in (Cell("rare-token", (("delta", 0.05),), 1, "bc", 1, 50, 100),
                 Cell("rare-token", (("delta", 0.05),), 1, "bc", 0, 50, 100, suite="tiny-v1", best_in_class=False)):
        rec = run_cell(cell)
        assert cell.key() == cell_key(rec)
    assert Cell("rare-token", (), 1, "bc", 0, 50, 100).key() != Cell("rare-token", (), 1, "bc", 0, 50, 100, suite="s").key()
