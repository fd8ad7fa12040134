"""ar_agents: learners for ar-envs tasks, installed from the repository's ``agents/`` folder
under a distinctive import name (``agents`` is also the OpenAI Agents SDK's).

* ``ar_agents.policies``: the policy classes (log-linear over a task's feature map, window
  linear / MLP, GPT);
* ``ar_agents.algorithms``: the imitation algorithms, one per file, and the shared machinery
  ``ar_agents.training`` (neural) and ``ar_agents.loglinear_fit`` (log-linear);
* ``ar_agents.evaluation``: the sweep, the report, the best in class (log-linear and neural
  estimate) and the benchmarks;
* ``ar_agents.integrations``: Stable-Baselines3 policies and vector envs, ``imitation``.

``ar_agents`` imports ``ar_envs``, never the reverse.
"""

from __future__ import annotations
