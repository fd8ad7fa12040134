"""The README and docs work for a newcomer as pasted: the environment is activated before the
first command that needs it, long blocks say how long they take, nothing writes into the tracked
docs/ figures or leaves untracked files outside results/, and no doc points to a file users do
not have."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_venv_is_activated_before_the_first_command_that_needs_it():
    activate = README.index("source .venv/bin/activate")
    first_cli = min(README.index(f"```bash\n{b}") for b in _blocks("bash") if re.search(r"^(ar-envs|python) ", b, re.M))
    assert activate < first_cli
    assert "python3-venv" in README and "1.6 GB" in README  # what a fresh Debian needs; the install's size


def test_no_command_writes_into_the_tracked_figures():
    for block in _blocks("bash") + _blocks("python"):
        assert not re.search(r"--(out|plots)\s+docs/", block), block
    written = re.findall(r"save_demonstrations\(\w+, \"([^\"]+)\"\)", README)
    assert written and all(path.startswith("results/") for path in written)
    if subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT, capture_output=True).returncode:
        pytest.skip("not a git checkout: .gitignore is not in force")
    for path in ("results/x.jsonl", "pathstar.npz", "results/pathstar.npz"):
        out = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert out.returncode == 0, path


def test_long_blocks_say_how_long_they_take():
    sweep = next(b for b in _blocks("bash") if "--task path-star" in b and "--policy transformer" in b)
    assert "minutes" in sweep
    ppo = next(b for b in _blocks("python") if "model.learn(" in b)
    assert re.search(r"model\.learn\([^)]*\).*minutes", ppo)


def test_docs_do_not_point_to_files_users_do_not_have():
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        assert "DESIGN.md" not in text and "shared/" not in text, doc.name
        for target in re.findall(r"\]\(((?!https?:)[^)#]+)\)", text):  # relative links resolve
            assert (doc.parent / target).exists(), (doc.name, target)
