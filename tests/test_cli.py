"""The command line's errors: one line, non-zero exit, no traceback, and before any cell is
computed (issue 9 item 15)."""

import os

import pytest

from ar_agents.evaluation import sweep as sweep_mod
from ar_agents.cli import main

SWEEP = ["sweep", "--task", "two-branch", "--horizons", "3", "--algorithms", "bc", "--seeds", "1",
         "--samples", "50", "--quiet"]


@pytest.fixture
def no_cells(monkeypatch):
    """Fail the test if a cell is computed."""
    def refuse(*args, **kwargs):
        raise AssertionError("a cell was computed before the error")

    monkeypatch.setattr(sweep_mod, "run_cell", refuse)


def _one_line_error(capsys, argv, needle):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc != 0, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err
    return err


@pytest.mark.parametrize("extra,needle", [
    (["--task-arg", "bogus=1"], "task 'two-branch' has no argument bogus; its arguments are ['eps', 'offset']"),
    (["--algo-arg", "max_iter=abc"], "--algo-arg max_iter must be an integer (its default is 500), got 'abc'"),
    (["--task-arg", "eps=0.1", "--task-arg", "eps=0.2"], "--task-arg eps is given twice"),
    (["--horizons", "2,,3"], "--horizons must be a comma-separated list"),
    (["--horizons", "2,3,"], "--horizons must be a comma-separated list"),
    (["--out", ""], "the results file must be a file path, got ''"),
    (["--out", "{tmp}"], "is a directory"),
    (["--out", "{tmp}/afile/r.jsonl"], "afile is not a directory"),
    (["--threads", "0"], "threads must be"),
])
def test_sweep_errors_are_one_line_before_any_cell(tmp_path, capsys, no_cells, extra, needle):
    (tmp_path / "afile").write_text("x")
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    argv = SWEEP + ["--out", str(tmp_path / "r.jsonl")] + extra  # a later --out wins
    _one_line_error(capsys, argv, needle)
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_sweep_into_a_read_only_directory_is_one_line(tmp_path, capsys, no_cells):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        _one_line_error(capsys, SWEEP + ["--out", str(ro / "r.jsonl")], "cannot write the results file")
    finally:
        ro.chmod(0o700)


def _results(tmp_path):
    out = tmp_path / "r.jsonl"
    assert main(SWEEP + ["--out", str(out)]) == 0
    return out


def test_report_plots_into_a_file_is_one_line(tmp_path, capsys):
    out = _results(tmp_path)
    (tmp_path / "afile").write_text("x")
    capsys.readouterr()
    _one_line_error(capsys, ["report", str(out), "--plots", str(tmp_path / "afile")], "is not a directory")
    _one_line_error(capsys, ["report", str(out), "--plots", str(tmp_path / "afile" / "sub")], "cannot write there")
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_report_plots_into_a_read_only_directory_is_one_line(tmp_path, capsys):
    out = _results(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        capsys.readouterr()
        _one_line_error(capsys, ["report", str(out), "--plots", str(ro)], "cannot write there")
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("line,needle", [(b"5", "line 3"), (b"null", "line 3"), (b'"x"', "line 3"),
                                         (b"\xff\xfe", "line 3 is not UTF-8")])
def test_report_of_a_bad_line_is_one_line_naming_file_and_line(tmp_path, capsys, line, needle):
    out = _results(tmp_path)
    with open(out, "ab") as fh:
        fh.write(line + b"\n")
    capsys.readouterr()
    err = _one_line_error(capsys, ["report", str(out), "--plots", str(tmp_path)], needle)
    assert str(out) in err


def test_a_task_argument_none_stays_a_string_and_None_is_null():
    assert sweep_mod.parse_task_args(["cot=none", "norm_bound=None", "x=null"]) == {
        "cot": "none", "norm_bound": None, "x": None}


def test_report_of_a_directory_is_one_line(tmp_path, capsys):
    _one_line_error(capsys, ["report", str(tmp_path), "--plots", str(tmp_path)], "is a directory")


def test_a_symlinked_or_fifo_out_is_refused_in_one_line(tmp_path, capsys, no_cells):
    # (a FIFO stands for every non-regular file, /dev/null included, which a regression must not
    # get to replace on the machine running the tests)
    target = tmp_path / "empty"
    target.write_text("")
    (tmp_path / "link.jsonl").symlink_to(target)
    _one_line_error(capsys, SWEEP + ["--out", str(tmp_path / "link.jsonl")], "symbolic link")
    os.mkfifo(tmp_path / "fifo.jsonl")
    _one_line_error(capsys, SWEEP + ["--out", str(tmp_path / "fifo.jsonl")], "not a regular file")
    assert target.read_text() == "" and os.path.islink(tmp_path / "link.jsonl")
