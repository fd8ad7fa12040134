"""Each example runs with --quick in a subprocess, prints its table and writes its PNG."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# (script, a line that only its table prints)
EXAMPLES = [
    ("path_star.py", "teacher-forced by position"),
    ("chain_of_thought.py", "answer exact"),
    ("compounding.py", "squared Hellinger distance D_H^2 to the expert"),
]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, os.path.join(ROOT, "examples", script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.parametrize("script,table_marker", EXAMPLES)
def test_example_quick_prints_its_table_and_writes_its_png(tmp_path, script, table_marker):
    out = tmp_path / "plots" / "example.png"  # a directory that does not exist yet
    res = _run(script, "--quick", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert table_marker in res.stdout
    assert "-" * 40 in res.stdout  # the table's rule
    assert f"wrote {out}" in res.stdout
    with open(out, "rb") as fh:
        assert fh.read(8) == PNG_MAGIC


def test_path_star_quick_same_seed_same_numbers(tmp_path):
    tables = []
    for name in ("a.png", "b.png"):
        res = _run("path_star.py", "--quick", "--seed", "3", "--out", str(tmp_path / name))
        assert res.returncode == 0, res.stderr
        # the table rows (method lines), without timings
        tables.append([line for line in res.stdout.splitlines() if " | " in line])
    assert tables[0] == tables[1] and len(tables[0]) == 4  # the header and one row per method


@pytest.mark.parametrize("script,args,name", [
    ("path_star.py", ["--num-nodes", "5"], "num_nodes"),
    ("path_star.py", ["--epochs", "0"], "--epochs"),
    ("chain_of_thought.py", ["--digits", "3"], "--digits"),
    ("compounding.py", ["--horizons", "0,4"], "--horizons"),
    ("compounding.py", ["--out", "plot.txt"], "--out"),
])
def test_example_bad_input_names_the_argument(script, args, name):
    res = _run(script, "--quick", *args)
    assert res.returncode != 0
    assert name in res.stderr
