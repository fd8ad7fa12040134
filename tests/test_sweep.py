"""The sweep, its results file, the report and the command line."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ar_agents.cli import main
from ar_agents.evaluation.report import growth_exponent, report
from ar_agents.evaluation.sweep import REQUIRED_FIELDS, ResultsFile, ResultsFileError, parse_task_args, sweep

FAST = dict(seeds=2, n_samples=300, eval_samples=2000, progress=False)


def _strip(recs):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in recs]


def test_sweep_records_have_the_promised_fields_and_are_reproducible(tmp_path):
    out = tmp_path / "r.jsonl"
    recs = sweep("two-branch", [5, 50], "bc,rho", task_args={"eps": 0.05}, out=out, **FAST)
    assert len(recs) == 2 * 2 * 2
    for r in recs:
        assert set(REQUIRED_FIELDS) <= set(r)
        assert r["exact"] is True and r["ci95"] == {}
        assert r["task_args"]["eps"] == 0.05 and r["task_args"]["horizon"] == r["horizon"]
        assert r["approx_factor"] == pytest.approx(r["hellinger2"] / r["best_in_class_hellinger2"])
        assert r["best_in_class_method"] == "closed-form"
    lines = out.read_text().splitlines()
    assert json.loads(lines[0])["format"] == "ar-envs-results" and len(lines) == 9
    again = sweep("two-branch", [5, 50], "bc,rho", task_args={"eps": 0.05}, out=tmp_path / "other.jsonl", **FAST)
    assert _strip(again) == _strip(recs)  # same seed, same numbers


def test_rerun_skips_finished_cells_and_extends(tmp_path):
    out = tmp_path / "r.jsonl"
    first = sweep("mixture", [4], ["bc"], out=out, **FAST)
    before = out.read_text()
    again = sweep("mixture", [4], ["bc"], out=out, **FAST)
    assert out.read_text() == before and _strip(again) == _strip(first)
    more = sweep("mixture", [4, 8], ["bc"], out=out, **FAST)
    assert len(more) == 4 and len(out.read_text().splitlines()) == 1 + 4


def test_interrupted_last_line_is_dropped_and_rerun(tmp_path):
    out = tmp_path / "r.jsonl"
    sweep("mixture", [4], ["bc"], out=out, **FAST)
    text = out.read_text().splitlines(keepends=True)
    out.write_text("".join(text[:-1]) + text[-1][:25])  # a cell cut off mid-write
    recs = sweep("mixture", [4], ["bc"], out=out, **FAST)
    assert len(recs) == 2
    assert len(ResultsFile(out).records()) == 2 and out.read_text().endswith("\n")


def test_foreign_results_file_is_refused_and_untouched(tmp_path):
    out = tmp_path / "notes.jsonl"
    out.write_text('{"hello": "world"}\n')
    with pytest.raises(ResultsFileError, match="not an ar-envs results file"):
        sweep("mixture", [4], ["bc"], out=out, **FAST)
    assert out.read_text() == '{"hello": "world"}\n'
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ResultsFileError):
        ResultsFile(binary)
    assert binary.read_bytes() == b"\x89PNG\r\n\x1a\n"


def test_every_cell_runs_on_the_same_torch_threads_whatever_the_workers(tmp_path, monkeypatch):
    # torch splits its reductions by thread count: the same count in every cell, whatever
    # --workers is, gives the same numbers with 1 and 2 workers (issue 9 item 16)
    import torch

    (tmp_path / "thread_algos.py").write_text(textwrap.dedent('''
        import torch
        from ar_agents.algorithms import get_algorithm

        class CountThreads:
            def fit(self, task, demos, seed):
                self.log = {"threads_in_fit": torch.get_num_threads()}
                return get_algorithm("bc").fit(task, demos, seed)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    before = torch.get_num_threads()
    serial = sweep("two-branch", [4, 6], ["thread_algos:CountThreads"], workers=1, threads=2, **FAST)
    assert torch.get_num_threads() == before  # restored after the sweep
    parallel = sweep("two-branch", [4, 6], ["thread_algos:CountThreads"], workers=2, threads=2, **FAST)
    for recs in (serial, parallel):
        assert len(recs) == 4 and all(r["fit_log"]["threads_in_fit"] == 2 == r["torch_threads"] for r in recs)
    assert _strip(serial) == _strip(parallel)
    with pytest.raises(ValueError, match="threads"):
        sweep("two-branch", [4], ["bc"], threads=0, **FAST)


def test_monte_carlo_cells_carry_intervals(tmp_path):
    from ar_envs.tasks import LinearAR

    assert LinearAR(horizon=30).vocab_size ** 30 * 4 > 2**20
    recs = sweep("linear-ar", [30], ["bc"], **FAST)
    r = recs[0]
    assert r["exact"] is False and set(r["ci95"]) == {"tv"}  # Hellinger, KL, regret exact by DP
    lo, hi = r["ci95"]["tv"]
    assert lo <= r["tv"] <= hi


def test_user_algorithm_and_task_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_algos.py").write_text(textwrap.dedent('''
        import numpy as np
        from ar_agents.policies import LogLinearPolicy

        def fit_zero(task, demos, seed):
            return LogLinearPolicy(task, np.zeros(task.feature_map().dim))

        class Uniform:
            def fit(self, task, demos, seed):
                return self
            def sequence_log_prob(self, contexts, sequences):
                return np.full(len(sequences), -sequences.shape[1] * np.log(2.0))

        from ar_envs.tasks import MixtureTeacher
        class HalfMixture(MixtureTeacher):
            name = "half-mixture"
            def __init__(self, horizon=10):
                super().__init__(horizon=horizon, p=0.2, q=0.8, w=0.5)
            def task_args(self):  # every constructor argument (the sweep checks it rebuilds the task)
                return {"horizon": self.horizon}
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    recs = sweep("my_algos:HalfMixture", [6], ["my_algos:fit_zero", "my_algos:Uniform", "bc"], **FAST)
    by = {r["algorithm"]: r for r in recs}
    # theta = 0 and the uniform policy are the same law: Bern(1/2)^6, once via the closed form,
    # once via enumeration (the Uniform policy exposes only sequence_log_prob)
    assert by["my_algos:fit_zero"]["hellinger2"] == pytest.approx(by["my_algos:Uniform"]["hellinger2"], abs=1e-12)
    assert by["my_algos:Uniform"]["metric_methods"]["hellinger2"] == "enumeration"


def test_report_table_and_plots(tmp_path):
    out = tmp_path / "r.jsonl"
    sweep("two-branch", [5, 20, 80], ["bc", "rho"], out=out, **FAST)
    text, written = report(str(out), str(tmp_path / "plots"))
    assert "approximation factor C(H)" in text and "rho" in text and "growth exponent" in text
    assert len(written) == 2
    for p in written:
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_report_says_why_a_growth_exponent_is_missing(tmp_path):
    out = tmp_path / "r.jsonl"
    sweep("two-branch", [5, 20], ["bc", "rho"], out=out, **FAST)
    lines = out.read_text().splitlines()
    # a learner without C(H) (as a neural class gets: the task's best in class is not its own)
    edited = [lines[0]] + [
        json.dumps({**rec, "approx_factor": None}) if rec.get("algorithm") == "rho" else json.dumps(rec)
        for rec in map(json.loads, lines[1:])
    ]
    out.write_text("\n".join(edited) + "\n")
    text, _ = report(str(out))
    assert "bc                       n/a (C(H) at 2 horizon(s); needs 3)" in text
    assert "rho                      n/a (no C(H) at any horizon)" in text


def test_growth_exponent_recovers_a_power_law():
    h = np.array([10, 20, 50, 100, 200])
    b, lo, hi = growth_exponent(h, 3.0 * h**0.8)
    assert b == pytest.approx(0.8) and lo <= 0.8 <= hi


def test_parse_task_args():
    assert parse_task_args(["eps=0.01", "offset=5.81", "order=forward", "norm_bound=None"]) == {
        "eps": 0.01, "offset": 5.81, "order": "forward", "norm_bound": None}
    with pytest.raises(ValueError, match="name=value"):
        parse_task_args(["eps"])
    with pytest.raises(ValueError, match="--horizons"):
        parse_task_args(["horizon=3"])


@pytest.mark.parametrize("argv,needle", [
    (["sweep", "--task", "nope", "--horizons", "5", "--algorithms", "bc"], "unknown task 'nope'; choose one of"),
    (["sweep", "--task", "two-branch", "--horizons", "5", "--algorithms", "bc,nope"], "unknown algorithm 'nope'; choose one of"),
    (["sweep", "--task", "two-branch", "--horizons", "0,5", "--algorithms", "bc"], "--horizons"),
    (["sweep", "--task", "two-branch", "--task-arg", "eps=2", "--horizons", "5", "--algorithms", "bc"], "eps must be"),
    (["report", "does-not-exist.jsonl"], "does not exist"),
])
def test_cli_bad_input_exits_nonzero_with_the_choices(argv, needle, capsys, tmp_path):
    argv = [a if a != "results.jsonl" else str(tmp_path / a) for a in argv]
    assert main(argv + (["--out", str(tmp_path / "x.jsonl")] if argv[0] == "sweep" else [])) == 2
    err = capsys.readouterr().err
    assert needle in err
    if "choose one of" in needle:
        assert "two-branch" in err or "bc" in err
    assert not (tmp_path / "x.jsonl").exists()


def test_cli_list_and_sweep_and_report(tmp_path, capsys):
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    for name in ("two-branch", "two-branch-linear", "mixture", "linear-ar", "ar_envs/TwoBranch-v0", "bc", "rho"):
        assert name in listing
    out = tmp_path / "r.jsonl"
    argv = ["sweep", "--task", "two-branch", "--task-arg", "eps=0.05", "--horizons", "4,16,64", "--algorithms",
            "bc,hellinger-bc", "--seeds", "1", "--samples", "200", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert main(["report", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "hellinger-bc" in shown and os.path.exists(tmp_path / "r-approx_factor.png")  # named after the results file


def test_console_script_demo_runs_small(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "ar-envs")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the script runs this checkout's code
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    res = subprocess.run([exe, "demo", "--seeds", "1", "--samples", "200", "--quiet", "--out", str(tmp_path / "d.jsonl"),
                          "--plots", str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    assert "500 |" in res.stdout and "rho" in res.stdout and "task rare-token" in res.stdout
    assert "block-hellinger[K=16]" in res.stdout and "dagger" in res.stdout
    pngs = [p.name for p in tmp_path.iterdir() if p.suffix == ".png"]
    assert any("two-branch" in p and "approx_factor" in p for p in pngs), pngs
    assert any("rare-token" in p and "approx_factor" in p for p in pngs), pngs


def test_reasoning_task_sweep_varies_its_own_argument_and_reports_exact_match(tmp_path, small_neural_best):
    from ar_agents.algorithms import BC

    out = tmp_path / "ps.jsonl"
    recs = sweep("path-star", [3, 4], [BC(policy="mlp", epochs=1)], task_args={"degree": 2, "num_nodes": 12},
                 out=out, seeds=1, n_samples=50, eval_samples=100, progress=False)
    assert [r["horizon"] for r in recs] == [3, 4] and [r["sweep_arg"] for r in recs] == [{"path_length": 3}, {"path_length": 4}]
    for r in recs:
        assert r["approx_factor"] is not None and r["best_in_class_method"].startswith("estimate: mlp")
        d = r["diagnostics"]
        assert 0.0 <= d["exact_match"] <= d["valid_arm_rate"] + 1e-12 <= 1.0 + 1e-12
        assert len(d["teacher_forced_accuracy"]) == r["horizon"]
    text, written = report(str(out), str(tmp_path))
    assert "exact match of the greedy roll-out" in text and "approximation factor C(H) = D_H^2(learner)" in text
    assert "C(H): not available" not in text  # the neural class has its estimated best in class
    assert text.count("task path-star") == 1  # one table: path_length is the swept axis
    with pytest.raises(ValueError, match="path_length with --horizons"):
        sweep("path-star", [3], ["bc"], task_args={"path_length": 3}, **FAST)
