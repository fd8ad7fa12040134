"""agents: learners for ar-envs tasks (policy classes, imitation algorithms, the horizon sweep).

``agents`` imports ``ar_envs``, never the reverse.
"""

from __future__ import annotations
