"""Test-session settings."""

import os
import tempfile

# SB3's learn() makes a log folder under the system temp dir on every call; keep them together
os.environ.setdefault("SB3_LOGDIR", tempfile.mkdtemp(prefix="ar-envs-tests-sb3-"))
