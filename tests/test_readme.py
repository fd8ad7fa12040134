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


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", _readme(), re.S)


def test_readme_quick_tour_runs(tmp_path, monkeypatch):
    tour = next(b for b in _python_blocks() if "gym.make(" in b and "ExpertPolicy" in b)
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(tour, "README quick tour", "exec"), scope)
    info = scope["info"]
    assert info["step"] == 1 and info["expert_probs"].shape == (2,) and info["expert_probs"].sum() == 1.0
    assert scope["obs"].dtype == "int16" and scope["venv"].num_envs == 4096


def test_readme_rendered_path_star_prompt_is_what_the_generator_makes():
    block = next(b for b in _python_blocks() if "render_tokens" in b)
    shown = re.search(r"render_tokens\(demos.contexts\[0\], demos.sequences\[0\]\)\)\s+# (\S+)", block).group(1)
    args = re.search(r"task = PathStar\((.*?)\)", block).group(1)
    seed = re.search(r"demos = generate\(task, (\d+), seed=(\d+)\)", block)
    from ar_envs.data import generate
    from ar_envs.tasks import PathStar

    task = eval(f"PathStar({args})", {"PathStar": PathStar})
    demos = generate(task, int(seed.group(1)), seed=int(seed.group(2)))
    assert task.render_tokens(demos.contexts[0], demos.sequences[0]) == shown


@pytest.mark.slow
def test_readme_demo_table_is_what_make_demo_prints(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "ar-envs")
    res = subprocess.run([exe, "demo", "--quiet", "--out", str(tmp_path / "d.jsonl"), "--plots", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    table = "\n".join(l for l in res.stdout.splitlines() if not l.startswith("wrote ")).rstrip()
    block = re.search(r"```\n\$ make demo\n(.*?)\n```", _readme(), re.S).group(1)
    assert table == block
