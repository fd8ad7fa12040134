"""The Ray backend (issue 10 items 3 and 5): cells as Ray tasks give the local backend's numbers,
a killed worker loses no finished cell and duplicates none, a rerun resumes, and without Ray
installed ``--backend ray`` is one line saying how to install it.

One local Ray (2 CPUs) is started for the module; run_cells uses it as it is. The CLI's own
start of a local Ray is tested (slow) in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ALGOS = '''
import os, signal
from ar_agents.algorithms import get_algorithm

FLAGS = {flags!r}

class DiesOnce:
    """seed 1 kills its own worker process (SIGKILL) the first time it runs: Ray runs it again."""
    def fit(self, task, demos, seed):
        marker = os.path.join(FLAGS, f"died-{{task.horizon}}-{{seed}}")
        if seed == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return get_algorithm("bc").fit(task, demos, seed)

class Chatty:
    def fit(self, task, demos, seed):
        print("a line from a worker")
        return get_algorithm("bc").fit(task, demos, seed)

class DiesWhileSwitched:
    """seed 1 kills its worker every time while the file 'switch' exists."""
    def fit(self, task, demos, seed):
        if seed == 1 and os.path.exists(os.path.join(FLAGS, "switch")):
            with open(os.path.join(FLAGS, "attempts"), "a") as fh:
                fh.write("x")
            os.kill(os.getpid(), signal.SIGKILL)
        return get_algorithm("bc").fit(task, demos, seed)
'''


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    ray = pytest.importorskip("ray")
    mods = tmp_path_factory.mktemp("mods")
    flags = tmp_path_factory.mktemp("flags")
    (mods / "mortal_algos.py").write_text(textwrap.dedent(ALGOS.format(flags=str(flags))))
    sys.path.insert(0, str(mods))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(mods)] + ([old] if old else []))  # the workers import it
    os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")  # as run_cells does (see init_ray)
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning")
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    yield flags
    ray.shutdown()
    sys.path.remove(str(mods))


def test_a_ray_run_leaves_this_process_print_alone(ray_local, capsys):
    import builtins

    from ar_agents.evaluation.sweep import sweep

    before = builtins.print
    sweep("two-branch", [3], ["mortal_algos:Chatty"], seeds=1, n_samples=50, eval_samples=200, progress=False,
          backend="ray")
    assert builtins.print is before
    out, deadline = "", time.monotonic() + 20
    while "a line from a worker" not in out and time.monotonic() < deadline:  # forwarded a moment later
        time.sleep(0.2)
        out += capsys.readouterr().out
    assert "a line from a worker" in out  # the workers' output is shown here
    assert builtins.print is before


def _strip(recs):
    """Wall times (the cell's, the fit's, the neural search's) are not results."""
    out = []
    for r in recs:
        r = {k: v for k, v in r.items() if k != "wall_s"}
        r["fit_log"] = {k: v for k, v in r["fit_log"].items() if k not in ("wall_s", "train_s", "tokens_per_s")}
        if r.get("best_in_class_search"):
            r["best_in_class_search"] = {k: v for k, v in r["best_in_class_search"].items() if k != "wall_s"}
        out.append(r)
    return out


def test_ray_cells_give_the_local_numbers(ray_local, tmp_path, small_neural_best):
    from ar_agents.algorithms import BC
    from ar_agents.evaluation.sweep import ResultsFile, sweep

    grid = dict(task_args={"eps": 0.05}, seeds=2, n_samples=100, eval_samples=500, progress=False)
    neural = BC(policy="linear", epochs=2)
    neural.name = "bc[linear]"
    algs = ["bc", "dagger", neural]  # log-linear, interactive, neural (its best in class searched)
    local = sweep("two-branch", [4], algs, out=tmp_path / "local.jsonl", **grid)
    events = []
    grid["progress"] = events.append
    on_ray = sweep("two-branch", [4], algs, out=tmp_path / "ray.jsonl", backend="ray", **grid)
    assert len(local) == len(on_ray) == 3 * 2
    # the neural cells used the driver's (small) best-in-class budget, not the workers' defaults
    assert all(r["best_in_class_search"]["steps"] == 20 for r in on_ray if r["best_in_class_search"])
    assert _strip(on_ray) == _strip(local)
    assert sorted(_strip(ResultsFile(tmp_path / "ray.jsonl").records()), key=json.dumps) == sorted(_strip(on_ray), key=json.dumps)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("done") == 6 and "failed" not in kinds
    # the workers' inner progress reached the driver (each cell's first epoch report passes the throttle)
    assert {e.stage for e in events if e.kind == "inner" and e.cell.algorithm == "bc[linear]"} >= {"epoch"}
    for i, e in enumerate(events):  # never an inner event of a finished cell
        assert e.kind != "inner" or not any(d.kind == "done" and d.cell == e.cell for d in events[:i])


def test_the_benchmark_on_ray_gives_the_local_numbers(ray_local, tmp_path):
    """A tiny suite end to end on the local backend and on Ray: the same records, wall times and
    provenance aside, and the same comparison table."""
    from ar_agents.evaluation import benchmark as bm

    suite_file = tmp_path / "suite.json"
    suite_file.write_text(json.dumps({
        "format": "ar-envs-suite", "name": "tiny-ray-v1",
        "tasks": [{"id": "tb", "task": "two-branch", "task_args": {"eps": 0.05}, "horizons": [2, 4], "n_samples": 100,
                   "eval_samples": 500, "seeds": 2, "metric": "approx_factor", "algorithms": ["bc", "hellinger-bc"]}]}))
    suite = bm.load_suite(str(suite_file))
    local = bm.run_benchmark(suite, out=tmp_path / "local.jsonl", progress=False)
    on_ray = bm.run_benchmark(suite, out=tmp_path / "ray.jsonl", progress=False, backend="ray")
    assert len(local) == len(on_ray) == 8
    key = lambda r: (r["horizon"], r["algorithm"], r["seed"])  # noqa: E731
    strip = lambda recs: sorted(({k: v for k, v in r.items() if k != "provenance"} for r in _strip(recs)), key=key)  # noqa: E731
    assert strip(on_ray) == strip(local)
    _, labels = bm.suite_jobs(suite)
    tables = [bm.format_comparison(t, bm.aggregates(t, reps=200), reps=200)
              for t in (bm.collect(suite, [(recs, labels)]) for recs in (local, on_ray))]
    assert tables[0] == tables[1]


def _keys(path):
    from ar_agents.evaluation.sweep import ResultsFile, cell_key

    return [cell_key(r) for r in ResultsFile(path).records()]


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_no_cell_is_lost_or_duplicated(ray_local, tmp_path):
    from ar_agents.evaluation.sweep import sweep

    out = tmp_path / "r.jsonl"
    recs = sweep("two-branch", [3, 4], ["mortal_algos:DiesOnce"], seeds=3, n_samples=100, eval_samples=500,
                 out=out, progress=False, backend="ray")
    assert sorted(os.listdir(ray_local)) >= ["died-3-1", "died-4-1"]  # two workers were killed ...
    keys = _keys(out)
    assert len(recs) == len(keys) == len(set(keys)) == 2 * 3  # ... and every cell is there, once
    assert sorted((r["horizon"], r["seed"]) for r in recs) == [(h, s) for h in (3, 4) for s in range(3)]


@pytest.mark.slow
def test_a_cell_whose_worker_always_dies_is_reported_and_a_rerun_resumes(ray_local, tmp_path, capsys):
    from ar_agents.evaluation.sweep import RAY_MAX_RETRIES, CellLostError, sweep

    (ray_local / "switch").write_text("")
    out = tmp_path / "r.jsonl"
    grid = dict(seeds=3, n_samples=100, eval_samples=500, out=out, backend="ray")
    with pytest.raises(CellLostError, match=r"mortal_algos:DiesWhileSwitched on two-branch H=3 seed=1: its Ray task failed 3 times"):
        sweep("two-branch", [3], ["mortal_algos:DiesWhileSwitched"], progress=False, **grid)
    assert (ray_local / "attempts").read_text() == "x" * (RAY_MAX_RETRIES + 1)
    first = out.read_text()
    assert sorted(r_seed for r_seed in (json.loads(l)["seed"] for l in first.splitlines()[1:])) == [0, 2]
    (ray_local / "switch").unlink()
    events = []
    recs = sweep("two-branch", [3], ["mortal_algos:DiesWhileSwitched"], progress=events.append, **grid)
    assert [e.cell.seed for e in events if e.kind == "done"] == [1]  # only the missing cell ran
    assert out.read_text().startswith(first)  # the saved cells untouched
    keys = _keys(out)
    assert len(recs) == len(keys) == len(set(keys)) == 3


@pytest.mark.slow
def test_the_cli_runs_on_ray_and_reports_a_lost_cell_in_one_line(ray_local, tmp_path, capsys):
    from ar_agents.cli import main

    (ray_local / "switch").write_text("")
    try:
        argv = ["sweep", "--task", "two-branch", "--horizons", "3", "--algorithms", "mortal_algos:DiesWhileSwitched",
                "--seeds", "2", "--samples", "50", "--eval-samples", "200", "--backend", "ray", "--out", str(tmp_path / "r.jsonl")]
        capsys.readouterr()
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert [l for l in err.splitlines() if l.startswith("ar-envs sweep: error:")] == [
            l for l in err.splitlines() if "its Ray task failed 3 times" in l and l.startswith("ar-envs")]
        assert "[1/2] two-branch H=3 mortal_algos:DiesWhileSwitched seed=0: D_H^2=" in err  # not a TTY: plain lines
        assert "1 of 2 cells failed; the 1 finished are in" in err
    finally:
        (ray_local / "switch").unlink()


def test_without_ray_the_backend_is_a_one_line_error_before_any_work(tmp_path, monkeypatch, capsys):
    from ar_agents.cli import main
    from ar_agents.evaluation import sweep as sweep_mod

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    monkeypatch.setattr(sweep_mod, "run_cell", lambda *a, **k: pytest.fail("a cell was computed before the error"))
    argv = ["sweep", "--task", "two-branch", "--horizons", "3", "--algorithms", "bc", "--seeds", "1",
            "--samples", "50", "--backend", "ray", "--out", str(tmp_path / "r.jsonl")]
    assert main(argv) == 2
    assert capsys.readouterr().err == ("ar-envs sweep: error: the Ray backend needs Ray, which is not installed: "
                                       "pip install 'ar-envs[ray]'\n")
    assert not (tmp_path / "r.jsonl").exists()  # refused before the results file was made


@pytest.mark.slow
def test_the_default_path_never_imports_ray(tmp_path):
    code = textwrap.dedent(f'''
        import sys
        from ar_agents.cli import main
        assert main(["sweep", "--task", "two-branch", "--horizons", "3", "--algorithms", "bc", "--seeds", "1",
                     "--samples", "50", "--eval-samples", "100", "--out", {str(tmp_path / "r.jsonl")!r}]) == 0
        assert "ray" not in sys.modules
    ''')
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr


def test_bad_backend_arguments_are_refused():
    from ar_agents.evaluation.sweep import run_cells, sweep

    with pytest.raises(ValueError, match=r"backend must be one of \['local', 'ray'\], got 'dask'"):
        sweep("two-branch", [3], ["bc"], backend="dask")
    with pytest.raises(ValueError, match="address .* needs backend 'ray'"):
        run_cells([], address="auto")


@pytest.mark.slow
def test_the_cli_starts_a_local_ray_and_writes_what_the_local_backend_writes(tmp_path):
    pytest.importorskip("ray")
    exe = os.path.join(os.path.dirname(sys.executable), "ar-envs")
    base = ["sweep", "--task", "mixture", "--horizons", "3,4", "--algorithms", "bc,rho", "--seeds", "2",
            "--samples", "100", "--eval-samples", "300"]
    for name, extra in (("local", []), ("ray", ["--backend", "ray", "--workers", "2"])):
        res = subprocess.run([exe, *base, *extra, "--out", str(tmp_path / f"{name}.jsonl")], capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0, res.stderr
    from ar_agents.evaluation.sweep import ResultsFile

    local, ray_recs = (sorted(_strip(ResultsFile(tmp_path / f"{n}.jsonl").records()), key=json.dumps)
                       for n in ("local", "ray"))
    assert len(local) == 8 and local == ray_recs
