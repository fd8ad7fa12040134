"""The results file and the sweep driver: nothing lost, nothing mixed (issue 9, items 4-9 and 16)."""

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from ar_agents.evaluation import sweep as sweep_mod
from ar_agents.evaluation.report import report
from ar_agents.evaluation.sweep import ResultsFile, ResultsFileError, cell_key, sweep

FAST = dict(seeds=2, n_samples=300, eval_samples=2000, progress=False)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lines(path):
    return path.read_bytes().split(b"\n")


# ---------------------------------------------------------------- item 4: never replace what is not ours


def test_a_fifo_is_refused_and_left_a_fifo(tmp_path):
    fifo = tmp_path / "r.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(ResultsFileError, match="not a regular file"):
        sweep("mixture", [4], ["bc"], out=fifo, **FAST)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_symlink_is_refused_and_neither_it_nor_its_target_changes(tmp_path):
    target = tmp_path / "empty"
    target.write_bytes(b"")
    link = tmp_path / "r.jsonl"
    link.symlink_to(target)
    with pytest.raises(ResultsFileError, match="symbolic link"):
        sweep("mixture", [4], ["bc"], out=link, **FAST)
    assert os.path.islink(link) and target.read_bytes() == b""
    # a symlink to a finished results file: readable (report), never written through
    real = tmp_path / "real.jsonl"
    sweep("mixture", [4], ["bc"], out=real, **FAST)
    before = real.read_bytes()
    os.unlink(link)
    link.symlink_to(real)
    assert len(ResultsFile(link).records()) == 2
    with pytest.raises(ResultsFileError, match="symbolic link"):
        sweep("mixture", [4, 8], ["bc"], out=link, **FAST)
    assert real.read_bytes() == before


def test_an_existing_empty_regular_file_gets_the_header_in_place(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_bytes(b"")
    inode = os.stat(out).st_ino
    sweep("mixture", [4], ["bc"], out=out, **FAST)
    assert os.stat(out).st_ino == inode  # written in place, not replaced
    assert json.loads(_lines(out)[0])["format"] == "ar-envs-results" and len(ResultsFile(out).records()) == 2


# ---------------------------------------------------------------- item 5: a full disk is an error


def test_short_writes_still_write_the_whole_line(tmp_path, monkeypatch):
    out = tmp_path / "r.jsonl"
    recs = sweep("mixture", [4], ["bc"], out=tmp_path / "ref.jsonl", **FAST)
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))  # 7 bytes per call
    with ResultsFile(out) as results:
        for rec in recs:
            results.append(rec)
    monkeypatch.undo()
    assert ResultsFile(out).records() == recs


def test_a_full_disk_is_a_clear_error_and_leaves_the_file_as_it_was(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.jsonl"
    sweep("mixture", [4], ["bc"], out=out, **FAST)
    before = out.read_bytes()
    real_write = os.write

    def full(fd, data):  # part of the line fits, then the disk is full
        if len(data) > 20:
            return real_write(fd, bytes(data[:20]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(ResultsFileError, match="No space left on device.*as it was before this record"):
        sweep("mixture", [4, 8], ["bc"], out=out, **FAST)
    monkeypatch.undo()
    assert out.read_bytes() == before
    capsys.readouterr()
    sweep("mixture", [4, 8], ["bc"], out=out, **FAST)  # resumes cleanly: nothing to drop, nothing lost
    assert "dropping" not in capsys.readouterr().err and len(ResultsFile(out).records()) == 4


def test_a_write_that_makes_no_progress_is_an_error_not_a_loop(tmp_path, monkeypatch):
    from ar_envs.fileio import write_all

    monkeypatch.setattr(os, "write", lambda fd, data: 0)
    with open(tmp_path / "x", "wb") as fh, pytest.raises(OSError) as info:
        write_all(fh.fileno(), b"abc")
    assert info.value.errno == errno.ENOSPC


def test_the_cli_exits_nonzero_with_one_line_on_a_full_disk(tmp_path, monkeypatch, capsys):
    from ar_agents.cli import main

    out = tmp_path / "r.jsonl"
    real_write = os.write

    def full(fd, data):
        if bytes(data[:8]) == b'{"task":':
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    rc = main(["sweep", "--task", "mixture", "--horizons", "4", "--algorithms", "bc", "--seeds", "1",
               "--samples", "100", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "No space left on device" in err and "Traceback" not in err
    assert ResultsFile(out).records() == []


# ---------------------------------------------------------------- item 6: a header without its newline


def test_a_header_without_its_newline_is_completed_not_cut(tmp_path):
    out = tmp_path / "r.jsonl"
    header = json.dumps({"format": "ar-envs-results", "version": 1, "ar_envs_version": "x"})
    out.write_text(header)  # no trailing newline
    recs = sweep("mixture", [4], ["bc"], out=out, **FAST)
    lines = _lines(out)
    assert lines[0].decode() == header and len(ResultsFile(out).records()) == 2 == len(recs)
    again = sweep("mixture", [4], ["bc"], out=out, **FAST)  # and it stays readable: resumed, not refused
    assert len(again) == 2 and len(ResultsFile(out).records()) == 2


# ---------------------------------------------------------------- item 7: one writer, one record per cell


def test_a_second_sweep_on_a_locked_file_is_refused(tmp_path):
    out = tmp_path / "r.jsonl"
    with ResultsFile(out):  # another sweep holds the file
        with pytest.raises(ResultsFileError, match="another sweep is writing to"):
            sweep("mixture", [4], ["bc"], out=out, **FAST)
    assert ResultsFile(out).records() == []
    assert len(sweep("mixture", [4], ["bc"], out=out, **FAST)) == 2  # released on close


def test_a_second_sweep_process_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "r.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from ar_agents.evaluation.sweep import ResultsFile
            with ResultsFile({str(out)!r}):
                print("locked", flush=True)
                time.sleep(30)
        """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ResultsFileError, match="another sweep"):
            sweep("mixture", [4], ["bc"], out=out, **FAST)
    finally:
        holder.kill()
        holder.wait()


def test_repeated_horizons_give_one_record_per_cell(tmp_path):
    out = tmp_path / "r.jsonl"
    recs = sweep("mixture", [4, 4], ["bc", "bc"], out=out, **FAST)
    assert len(recs) == 2 and len(ResultsFile(out).records()) == 2
    assert len({cell_key(r) for r in recs}) == 2


def test_report_counts_a_duplicated_record_once_and_says_so(tmp_path):
    out = tmp_path / "r.jsonl"
    sweep("mixture", [4, 8], ["bc"], out=out, **FAST)
    clean, _ = report(str(out))
    text = out.read_text()
    out.write_text(text + text.splitlines()[1] + "\n")  # a second copy of the first record
    dup, _ = report(str(out))
    assert "duplicate" in dup.splitlines()[0] and "line 6" in dup.splitlines()[0]
    assert dup.split("\n", 2)[2] == clean  # the same table: a duplicate is not a seed


# ---------------------------------------------------------------- item 8: the key holds every argument


def test_another_n_samples_or_eval_samples_is_a_new_cell_never_pooled(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    sweep("mixture", [4], ["bc"], out=out, **FAST)
    more = sweep("mixture", [4], ["bc"], out=out, **{**FAST, "n_samples": 100})
    assert [r["n_samples"] for r in more] == [100, 100] and len(ResultsFile(out).records()) == 4
    sweep("mixture", [4], ["bc"], out=out, **{**FAST, "eval_samples": 500})
    assert len(ResultsFile(out).records()) == 6
    text, _ = report(str(out))
    # three tables of 2 seeds each, never one of 6 "seeds"
    assert text.count("task mixture") == 3
    for spec in ("n_samples=300, eval_samples=2000", "n_samples=100, eval_samples=2000", "n_samples=300, eval_samples=500"):
        assert spec in text


def test_a_task_without_task_args_is_refused_and_the_best_in_class_cache_keys_the_cell_arguments(tmp_path, monkeypatch):
    (tmp_path / "bare_tasks.py").write_text(textwrap.dedent('''
        from ar_envs.core import Task
        from ar_envs.tasks import MixtureTeacher

        class BareMixture(MixtureTeacher):
            """A user task that keeps the base class's task_args()."""
            name = "bare-mixture"
            def __init__(self, horizon=10):
                super().__init__(horizon=horizon, p=0.2, q=0.8, w=0.3)
            task_args = Task.task_args
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    from ar_envs.tasks import MixtureTeacher

    out = tmp_path / "r.jsonl"
    with pytest.raises(ValueError, match="does not override task_args"):  # fails loudly, before any cell
        sweep("bare_tasks:BareMixture", [3, 12], ["bc"], out=out, **FAST)
    assert not out.exists() or len(ResultsFile(out).records()) == 0
    # and where task_args() says too little, the cache is still keyed by the cell's own arguments
    monkeypatch.setattr(sweep_mod, "_BEST_CACHE", {})
    values = {}
    for h in (3, 12):
        task = MixtureTeacher(horizon=h, p=0.2, q=0.8, w=0.3)
        monkeypatch.setattr(task, "task_args", lambda: {})
        values[h] = sweep_mod._best(task, None, {"horizon": h})["hellinger2"]
        assert values[h] == pytest.approx(MixtureTeacher(horizon=h, p=0.2, q=0.8, w=0.3).best_in_class()["hellinger2"],
                                          rel=1e-12)
    assert values[3] != pytest.approx(values[12])


def test_cell_key_differs_in_every_field_but_is_blind_to_field_order():
    rec = {"task": "mixture", "task_args": {"horizon": 4, "p": 0.2}, "task_kwargs": {}, "sweep_arg": {"horizon": 4},
           "algorithm": "bc", "seed": 0, "n_samples": 10, "eval_samples": 20}
    k = cell_key(rec)
    assert cell_key(dict(reversed(list(rec.items())))) == k
    for field, value in (("task", "hmm"), ("task_args", {"horizon": 4, "p": 0.3}), ("algorithm", "rho"), ("seed", 1),
                         ("n_samples", 11), ("eval_samples", 21), ("task_kwargs", {"q": 0.5})):
        assert cell_key({**rec, field: value}) != k, field
    # a task whose task_args() is empty: the arguments as given and the swept one tell cells apart
    bare = {**rec, "task_args": {}, "task_kwargs": {"w": 0.3}}
    assert len({cell_key({**bare, "sweep_arg": {"horizon": h}}) for h in (4, 5)}) == 2
    assert cell_key({**bare, "sweep_arg": {"horizon": 4}}) != cell_key({**bare, "task_kwargs": {"w": 0.4}, "sweep_arg": {"horizon": 4}})
    assert cell_key({**rec, "seed": 1}, seed=False) == cell_key(rec, seed=False)


# ---------------------------------------------------------------- item 9: workers die with the sweep


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _children(pid):
    out = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as fh:
            out |= {int(x) for x in fh.read().split()}
    return out


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_kill_9_of_a_parallel_sweep_takes_its_workers_and_resource_tracker_along(tmp_path):
    (tmp_path / "slow_algos.py").write_text(textwrap.dedent(f'''
        import os, time
        class Slow:
            def fit(self, task, demos, seed):
                open(os.path.join({str(tmp_path)!r}, f"worker-{{os.getpid()}}"), "w").close()
                time.sleep(120)
    '''))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT])}
    proc = subprocess.Popen([sys.executable, "-m", "ar_agents.cli", "sweep", "--task", "mixture", "--horizons", "3,4,5",
                             "--algorithms", "slow_algos:Slow", "--seeds", "1", "--samples", "10", "--workers", "2",
                             "--quiet", "--out", str(tmp_path / "r.jsonl")], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("worker-*"))) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, "the workers never started"
            time.sleep(0.2)
        workers = {int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")}
        children = _children(proc.pid)  # the workers and multiprocessing's resource tracker
        assert workers <= children and len(children) >= 3
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in children if _alive(p)]


# ---------------------------------------------------------------- item 16: same numbers with 1 or 2 workers


@pytest.mark.slow
def test_transformer_cells_are_identical_with_one_or_two_workers():
    from ar_agents.algorithms import BC

    grid = dict(task_args={"degree": 2, "num_nodes": 12}, seeds=1, n_samples=64, eval_samples=100, progress=False)
    algs = [BC(policy="transformer", policy_args={"n_layer": 1, "n_embd": 16, "n_head": 2}, epochs=2)]
    one = sweep("path-star", [3, 4], algs, workers=1, **grid)  # the defaults, as a user runs it
    two = sweep("path-star", [3, 4], algs, workers=2, **grid)
    def strip(recs):  # wall times (also the neural best-in-class search's) are not results
        out = [{k: v for k, v in r.items() if k not in ("wall_s", "fit_log")} for r in recs]
        for r in out:
            if r.get("best_in_class_search"):
                r["best_in_class_search"] = {k: v for k, v in r["best_in_class_search"].items() if k != "wall_s"}
        return out

    assert strip(one) == strip(two)
