"""A user's algorithm on the benchmark: bagged behavior cloning in the task's log-linear class.

    ar-envs benchmark --algorithm examples.bagged_bc:BaggedBC \
        --tasks two-branch,rare-token,linear-ar,mixture,hmm
"""
import numpy as np

from ar_agents.algorithms import BC
from ar_agents.policies.loglinear import LogLinearPolicy
from ar_envs.data import Demonstrations


class BaggedBC:
    """BC fitted on bootstrap resamples of the demonstrations, the parameters averaged."""

    name = "bagged-bc"

    def __init__(self, bags: int = 5):
        self.bags = bags

    def fit(self, task, demos, seed):
        rng = np.random.default_rng(seed)
        thetas = []
        for _ in range(self.bags):
            i = rng.integers(0, len(demos), len(demos))
            thetas.append(BC().fit(task, Demonstrations(demos.contexts[i], demos.sequences[i]), seed).theta)
        self.log = {"bags": self.bags}
        return LogLinearPolicy(task, np.mean(thetas, axis=0))
