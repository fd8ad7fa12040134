"""The README's code and numbers are the ones the commands produce."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme():
    with open(os.path.join(ROOT, "README.md")) as fh:
        return fh.read()


def test_readme_shows_the_custom_algorithm_file_verbatim_and_it_is_short():
    with open(os.path.join(ROOT, "examples", "custom_algorithm.py")) as fh:
        code = fh.read().rstrip()
    assert code in _readme()
    assert len(code.splitlines()) < 30


@pytest.mark.slow
def test_readme_demo_table_is_what_make_demo_prints(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "ar-envs")
    res = subprocess.run([exe, "demo", "--quiet", "--out", str(tmp_path / "d.jsonl"), "--plots", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    table = "\n".join(l for l in res.stdout.splitlines() if not l.startswith("wrote ")).rstrip()
    block = re.search(r"```\n\$ make demo\n(.*?)\n```", _readme(), re.S).group(1)
    assert table == block
