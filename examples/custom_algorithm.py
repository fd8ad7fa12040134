"""A user-defined algorithm evaluated against ours: add-one smoothed counts per class state.

    ar-envs sweep --task two-branch --horizons 10,100,500 --seeds 3 \
        --algorithms bc,rho,examples.custom_algorithm:TabularBC --out custom.jsonl
"""
import numpy as np

from ar_agents.loglinear_fit import visit_counts


class TabularBC:
    """Next-token frequencies per (context, state), add-one smoothed: not restricted to the class."""

    name = "tabular-bc"

    def fit(self, task, demos, seed):
        fm = task.feature_map()  # the task's finite-state view of a prefix
        counts = visit_counts(fm, demos.contexts, demos.sequences) + 1.0
        self.log = {"states_seen": int((counts > 1).any(-1).sum())}
        return TabularPolicy(fm, counts / counts.sum(-1, keepdims=True))


class TabularPolicy:
    def __init__(self, feature_map, state_probs):
        self.feature_map, self.state_probs = feature_map, state_probs  # enables exact metrics

    def sequence_log_prob(self, contexts, sequences):
        c, s, a = self.feature_map.index(contexts, sequences)
        return np.log(self.state_probs[c[:, None], s, a]).sum(axis=1)
