"""The benchmark against hostile input: every bad suite, flag, results file or algorithm gives a
one-line error naming what is wrong, before anything runs where it can; nothing grows without bound."""

from __future__ import annotations

import json

import pytest

from ar_agents.cli import main
from ar_agents.evaluation import benchmark as bm

# one task, one horizon, one seed, one algorithm: a cell runs in well under a second
TINY = {
    "format": "ar-envs-suite",
    "name": "hostile-v1",
    "tasks": [
        {"id": "rare", "group": "misspecified", "task": "rare-token", "task_args": {"delta": 0.05},
         "horizons": [1], "n_samples": 50, "eval_samples": 50, "seeds": 2, "metric": "approx_factor",
         "algorithms": ["bc"]},
    ],
}


def write_suite(tmp_path, data=None, name="suite.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(TINY if data is None else data))
    return str(path)


def one_line_error(capsys, argv, code=2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("ar-envs benchmark: error: ")
    assert not any("Traceback" in line for line in err)
    return err[-1]


def test_deeply_nested_suite_json_is_a_one_line_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)  # 200 kB, well under the size limit
    with pytest.raises(ValueError, match="nested too deeply") as info:
        bm.load_suite(str(path))
    assert "\n" not in str(info.value)


def test_a_suite_of_too_many_cells_is_refused_before_building_anything(tmp_path):
    data = json.loads(json.dumps(TINY))
    # 1000 seeds x 200 horizons = 200000 cells of a few bytes of JSON each: refused by count
    data["tasks"][0].update(seeds=1000, horizons=list(range(1, 201)))
    with pytest.raises(ValueError, match=f"more than {bm.MAX_CELLS}"):
        bm.load_suite(write_suite(tmp_path, data))
    data["tasks"][0].update(seeds=10, horizons=[1, 2])  # 20 cells: fine
    assert bm.load_suite(write_suite(tmp_path, data)).cell_count() == 20


def test_a_bad_plot_path_fails_before_any_cell_runs(tmp_path, capsys):
    suite = write_suite(tmp_path)
    out = tmp_path / "mine.jsonl"
    base = ["benchmark", "--suite", suite, "--algorithm", "bc", "--out", str(out), "--quiet", "--reps", "100"]
    assert "--plot must end in .png" in one_line_error(capsys, base + ["--plot", str(tmp_path / "fig.txt")])
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "--plot" in one_line_error(capsys, base + ["--plot", str(blocker / "fig.png")])
    # a figure (<stem>-<group>.png) that would replace the results file
    out_named_like_figure = tmp_path / "f-misspecified.png"
    argv = ["benchmark", "--suite", suite, "--algorithm", "bc", "--out", str(out_named_like_figure), "--quiet",
            "--plot", str(tmp_path / "f.png")]
    assert "would overwrite the results file" in one_line_error(capsys, argv)
    assert not out.exists() and not out_named_like_figure.exists()  # nothing ran


def run_reference(tmp_path) -> tuple[str, str]:
    suite = write_suite(tmp_path)
    ref = str(tmp_path / "ref.jsonl")
    bm.run_benchmark(bm.load_suite(suite), out=ref, progress=False)
    return suite, ref


def test_a_named_reference_results_file_must_hold_the_suites_records(tmp_path, capsys):
    suite, ref = run_reference(tmp_path)
    base = ["benchmark", "--suite", suite, "--quiet", "--reps", "100", "--plot", str(tmp_path / "f.png")]
    assert "no such file" in one_line_error(capsys, base + ["--reference-results", str(tmp_path / "typo.jsonl")])
    other = dict(TINY, name="other-v1")
    msg = one_line_error(capsys, ["benchmark", "--suite", write_suite(tmp_path, other, "other.json"), "--quiet",
                                  "--reference-results", ref, "--plot", str(tmp_path / "g.png")])
    assert "holds no records of suite other-v1" in msg and "hostile-v1" in msg
    assert "--reference-results" in one_line_error(capsys, base + ["--reference", "--reference-results", ref])


@pytest.mark.parametrize("field, value, message", [
    ("hellinger2", "abc", "hellinger2 must be a finite number"),
    ("hellinger2", -1.0, "hellinger2 must be a finite number"),
    ("best_in_class_hellinger2", "x", "best_in_class_hellinger2 must be"),
    ("approx_factor", [1], "approx_factor must be"),
    ("seed", True, "seed must be an integer"),
    ("sweep_arg", "x", "sweep_arg must be an object"),
    ("task_kwargs", [1], "task_kwargs must be an object"),
    ("diagnostics", {"exact_match": 7}, "at most 1"),
])
def test_tampered_reference_results_are_refused_naming_the_file_and_field(tmp_path, capsys, field, value, message):
    suite, ref = run_reference(tmp_path)
    lines = open(ref).read().splitlines()
    rec = json.loads(lines[1])
    rec[field] = value
    (tmp_path / "tampered.jsonl").write_text("\n".join([lines[0], json.dumps(rec)] + lines[2:]) + "\n")
    msg = one_line_error(capsys, ["benchmark", "--suite", suite, "--quiet", "--reps", "100", "--plot",
                                  str(tmp_path / "f.png"), "--reference-results", str(tmp_path / "tampered.jsonl")])
    assert message in msg and "--reference-results" in msg and "tampered.jsonl" in msg


def test_collect_refuses_what_is_not_records(tmp_path):
    suite = bm.load_suite(write_suite(tmp_path))
    for sources, message in [(3, "list of"), ([([1], {"bc": "bc"})], "must be a dict"),
                             ([([], ["bc"])], "pair"), ([([{"algorithm": "bc"}], {"bc": "bc"})], "lacks fields")]:
        with pytest.raises(ValueError, match=message):
            bm.collect(suite, sources)
    assert bm.collect(suite, []).algorithms == []


def test_algo_args_an_algorithm_does_not_take_are_not_in_its_name(tmp_path, capsys):
    suite = bm.load_suite(write_suite(tmp_path))
    # bc takes max_iter, rho does not: rho's records are plain rho and its row must say so
    _, labels = bm.suite_jobs(suite, ["bc", "rho"], algo_args={"max_iter": 5})
    assert sorted(labels.values()) == ["bc[max_iter=5]", "rho"]
    # an argument no algorithm takes was silently dropped and still shown in every name
    with pytest.raises(ValueError, match="--algo-arg block is not an argument of any"):
        bm.suite_jobs(suite, ["bc", "rho"], algo_args={"block": 3})
    msg = one_line_error(capsys, ["benchmark", "--suite", write_suite(tmp_path), "--algorithm", "bc", "--algo-arg",
                                  "nope=1", "--out", str(tmp_path / "o.jsonl"), "--quiet"])
    assert "--algo-arg nope" in msg
    with pytest.raises(ValueError, match="algo_args must be a dict"):
        bm.suite_jobs(suite, ["bc"], algo_args=3)


def test_run_benchmark_takes_a_class_as_the_readme_shows(tmp_path, monkeypatch):
    (tmp_path / "hostile_mod.py").write_text(
        "from ar_agents.algorithms import BC\n"
        "class Mine(BC):\n"
        "    '''BC.'''\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import hostile_mod

    suite = bm.load_suite(write_suite(tmp_path))
    recs = bm.run_benchmark(suite, [hostile_mod.Mine], out=tmp_path / "mine.jsonl", progress=False)
    assert len(recs) == 2 and {r["algorithm"] for r in recs} == {"hostile_mod:Mine"}
    _, labels = bm.suite_jobs(suite, [hostile_mod.Mine])
    assert bm.collect(suite, [(recs, labels)]).algorithms == ["hostile_mod:Mine"]
    for bad in ([3], [hostile_mod.Mine()], "", 3):
        with pytest.raises(ValueError, match="algorithm"):
            bm.run_benchmark(suite, bad, out=tmp_path / "bad.jsonl", progress=False)
    assert not (tmp_path / "bad.jsonl").exists()


def test_ctrl_c_is_one_line_and_exit_code_130(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bm, "run_benchmark", interrupted)
    argv = ["benchmark", "--suite", write_suite(tmp_path), "--algorithm", "bc", "--out", str(tmp_path / "o.jsonl")]
    assert main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("ar-envs benchmark: interrupted (finished cells are in the results file: rerun the same "
                       "command to resume)")
    assert not any("Traceback" in line for line in err)


def test_the_table_functions_refuse_what_is_not_a_table(tmp_path):
    suite = bm.load_suite(write_suite(tmp_path))
    table = bm.collect(suite, [])
    for call in (lambda: bm.aggregates(3), lambda: bm.format_comparison({}, {}),
                 lambda: bm.plot_comparison(None, {}, str(tmp_path / "f.png"))):
        with pytest.raises(ValueError, match="table must be a Table"):
            call()
    with pytest.raises(ValueError, match="aggs must be"):
        bm.format_comparison(table, [])
    assert bm.aggregates(table) == {}  # an empty table is fine: nothing to aggregate


@pytest.mark.parametrize("flag", ["--out", "--plot", "--reference-results"])
def test_an_empty_path_is_an_error_not_the_default(tmp_path, capsys, flag):
    msg = one_line_error(capsys, ["benchmark", "--suite", write_suite(tmp_path), "--algorithm", "bc", "--quiet", flag, ""])
    assert f"{flag} must be a file path" in msg


def test_reps_errors_name_the_flag(tmp_path, capsys):
    assert "--reps must be an integer in [100, 100000]" in one_line_error(
        capsys, ["benchmark", "--suite", write_suite(tmp_path), "--reps", "-5"])


@pytest.mark.parametrize("where", ["task", "groups"])
def test_a_group_name_cannot_put_a_figure_outside_the_plot_folder(tmp_path, where):
    data = json.loads(json.dumps(TINY))
    evil = "x/../../escaped"
    if where == "task":
        data["tasks"][0]["group"] = evil
    else:
        data["groups"] = {evil: "a group"}
    with pytest.raises(ValueError, match="must be a name of letters") as info:
        bm.load_suite(write_suite(tmp_path, data))
    assert "\n" not in str(info.value)
    data = json.loads(json.dumps(TINY))
    data["description"] = {"not": "text"}
    with pytest.raises(ValueError, match="description"):
        bm.load_suite(write_suite(tmp_path, data))


def test_yours_marks_a_name_only_when_a_reference_row_has_it(tmp_path, capsys):
    suite = write_suite(tmp_path)
    argv = ["benchmark", "--suite", suite, "--algorithm", "bc", "--quiet", "--reps", "100", "--out",
            str(tmp_path / "mine.jsonl")]
    assert main(argv) == 0  # no reference results of this suite: no row to tell apart
    out = capsys.readouterr().out
    assert "> bc " in out and "(yours)" not in out
    _, ref = run_reference(tmp_path)
    assert main(argv + ["--reference-results", ref]) == 0  # the reference's bc is shown too
    out = capsys.readouterr().out
    assert "> bc (yours)" in out and "\n  bc " in out


def test_a_value_error_inside_a_users_fit_names_the_cell(tmp_path, monkeypatch):
    from ar_agents.evaluation.sweep import sweep

    (tmp_path / "bad_fit_mod.py").write_text(
        "class NaNFit:\n"
        "    def fit(self, task, demos, seed):\n"
        "        raise ValueError('theta must be finite')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"^bad_fit_mod:NaNFit on two-branch H=3 seed=0: theta must be finite$"):
        sweep("two-branch", [3], ["bad_fit_mod:NaNFit"], seeds=1, n_samples=20, eval_samples=100, progress=False)


def test_reference_records_from_python_refuse_a_named_file_that_is_missing_or_of_another_suite(tmp_path):
    suite, ref = run_reference(tmp_path)
    with pytest.raises(ValueError, match="no such file"):
        bm.reference_records(bm.load_suite(suite), tmp_path / "typo.jsonl")
    other = bm.load_suite(write_suite(tmp_path, dict(TINY, name="other-v1"), "other.json"))
    with pytest.raises(ValueError, match="holds no records of suite other-v1 .*hostile-v1"):
        bm.reference_records(other, ref)
    assert bm.reference_records(other) == []  # no shipped file for this suite: nothing, no error
