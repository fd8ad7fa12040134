"""Issue 9 item 26: the distribution installs ``ar_envs`` and ``ar_agents``, never a top-level
``agents`` (the import name of the OpenAI Agents SDK), so both can be installed side by side."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_installed_package_is_ar_agents_and_agents_is_left_free(tmp_path):
    code = ("import importlib.util, ar_agents, ar_envs; from ar_agents.evaluation.sweep import sweep; "
            "from ar_agents.algorithms import get_algorithm; "
            "print(os.path.realpath(ar_agents.__file__)); print(importlib.util.find_spec('agents'))")
    res = subprocess.run([sys.executable, "-c", "import os; " + code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert res.returncode == 0, res.stderr
    where, spec = res.stdout.split()[-2:]
    assert where == os.path.realpath(os.path.join(ROOT, "agents", "__init__.py"))  # the repository's folder
    assert spec == "None"  # nothing of ours answers to "import agents" outside the checkout


def test_the_project_declares_only_its_two_import_packages():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        cfg = tomllib.load(fh)["tool"]["setuptools"]
    tops = {p.split(".")[0] for p in cfg["packages"]}
    assert tops == {"ar_envs", "ar_agents"} and cfg["package-dir"] == {"ar_agents": "agents"}
    assert not any(p == "agents" or p.startswith("agents.") for p in cfg["packages"])
