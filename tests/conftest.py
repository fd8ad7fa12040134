"""Test-session settings."""

import os
import tempfile

import pytest

# SB3's learn() makes a log folder under the system temp dir on every call; keep them together
os.environ.setdefault("SB3_LOGDIR", tempfile.mkdtemp(prefix="ar-envs-tests-sb3-"))


@pytest.fixture
def small_neural_best(monkeypatch):
    """A small budget for the sweep's estimated best in class of neural policies (tests that
    sweep a neural learner only check that it is there and consistent, not its quality)."""
    import ar_agents.evaluation.sweep as sw

    monkeypatch.setattr(sw, "NEURAL_BEST_OPTIONS", dict(restarts=1, steps=20, mc_samples=500))
    monkeypatch.setattr(sw, "_NEURAL_BEST_CACHE", {})
