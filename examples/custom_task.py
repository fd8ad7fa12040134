"""A task of your own, complete: bits from a two-state Markov chain ("sticky bits").

``docs/custom_task.md`` walks through this file. Running it checks the task, registers it as a
Gymnasium environment and plays one episode with the expert::

    python3 examples/custom_task.py

The sweep takes it by import path (run from the repository root, so ``examples`` is importable)::

    ar-envs sweep --task examples.custom_task:StickyBits --task-arg stay0=0.9 --task-arg stay1=0.6 \
        --horizons 4,16 --algorithms bc,rho --seeds 2 --out results/sticky.jsonl
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ar_envs import FeatureMap, Task
from ar_envs.core import check_float, check_int, check_task
from ar_envs.env import make_env_classes


class StickyBits(Task):
    """Bits that repeat the previous bit with a probability that depends on that bit.

    Expert: the first bit is a fair coin; after a ``0`` the next bit is ``0`` with probability
    ``stay0``, after a ``1`` it is ``1`` with probability ``stay1``. It depends only on the last
    bit, so it is defined after *any* prefix.

    Learner class (misspecified unless ``stay0 == stay1``): one parameter, the logit of
    repeating the last bit, shared by both bits; the first bit is a fair coin.

    Reward: the fraction of the H tokens equal to the expert's most likely next token (ties:
    token 0).
    """

    # required attributes: the name the CLI prints, the id the environment is registered under
    # (without namespace), and the sizes (vocab_size and horizon are set in __init__)
    name = "sticky-bits"
    env_id = "StickyBits-v0"
    vocab_size = 2
    context_length = 0  # no prompt: every sequence starts from scratch
    context_vocab_size = 1
    horizon_arg = "horizon"  # the constructor argument `--horizons` sets (the default)

    def __init__(self, horizon: int = 10, stay0: float = 0.9, stay1: float = 0.6):
        # validate every argument: a one-line ValueError naming it
        self.horizon = check_int("horizon", horizon, 1, 10_000)
        self.stay0 = check_float("stay0", stay0, 0.0, 1.0, low_open=True, high_open=True)
        self.stay1 = check_float("stay1", stay1, 0.0, 1.0, low_open=True, high_open=True)
        # the expert's next-token distribution per state: start, after a 0, after a 1
        self._table = np.array([[0.5, 0.5], [self.stay0, 1 - self.stay0], [1 - self.stay1, self.stay1]])
        self._fm = None  # the feature map, made once (see feature_map)

    def task_args(self) -> dict:
        # EVERY constructor argument: results, datasets and environment specs are keyed by it,
        # and type(task)(**task.task_args()) must rebuild the task
        return {"horizon": self.horizon, "stay0": self.stay0, "stay1": self.stay1}

    # ------------------------------------------------------------------ the expert
    def _states(self, prefixes: np.ndarray) -> np.ndarray:
        """0 before the first bit, else 1 + the last bit (the feature map's state, below)."""
        if prefixes.shape[1] == 0:
            return np.zeros(len(prefixes), dtype=np.int64)
        return 1 + prefixes[:, -1]

    def expert_probs(self, contexts, prefixes) -> np.ndarray:
        """``(n, V)``: the expert's next-token distribution after equal-length ``prefixes``."""
        prefixes = self.check_tokens("prefixes", prefixes, len(contexts), max_len=self.horizon - 1)
        return self._table[self._states(prefixes)]

    def reward(self, contexts, sequences) -> np.ndarray:
        """``(n,)`` in [0, 1]: the fraction of tokens equal to the expert's most likely token."""
        seq = self.check_tokens("sequences", sequences, len(contexts), exact_len=self.horizon)
        greedy = self._table.argmax(axis=1)  # per state; argmax takes token 0 on the tie at the start
        states = np.concatenate([np.zeros((len(seq), 1), dtype=np.int64), 1 + seq[:, :-1]], axis=1)
        return (seq == greedy[states]).mean(axis=1)

    # ------------------------------------------------------------------ optional: the class for C(H)
    def feature_map(self) -> FeatureMap:
        """The learner class: ``pi_theta(a | s) ∝ exp(theta * 1[a repeats the last bit])``.
        The same object on every call: the exact metrics recognise the class's policies by it."""
        if self._fm is not None:
            return self._fm
        features = np.zeros((1, 3, 2, 1))  # (contexts C, states S, tokens V, parameters d)
        features[0, 1, 0, 0] = 1.0  # after a 0, emitting 0 repeats
        features[0, 2, 1, 0] = 1.0  # after a 1, emitting 1 repeats
        self._fm = FeatureMap(
            features=features,
            offset=np.zeros((1, 3, 2)),
            transitions=np.array([[1, 2], [1, 2], [1, 2]]),  # next state = 1 + the bit emitted
            initial_state=0,
            context_index=lambda contexts: np.zeros(len(contexts), dtype=np.int64),  # one context
            param_names=["repeat_logit"],
            grid_ranges=[(-6.0, 6.0)],
            description="one shared logit of repeating the last bit",
        )
        return self._fm

    def expert_state_probs(self) -> np.ndarray:
        """Optional: the expert is Markov in the feature map's state, so D_H^2 to any member of
        the class is an exact dynamic programme for every H (``(C, S, V)``)."""
        return self._table[None]


# ---------------------------------------------------------------------- the environment
# module-level names, so that string entry points (and pickle, and subprocess vector envs) find them
StickyBitsEnv, StickyBitsVectorEnv = make_env_classes(StickyBits)

ENV_ID = "custom/StickyBits-v0"
if ENV_ID not in gym.registry:  # importing twice must not register twice
    gym.register(ENV_ID, entry_point="examples.custom_task:StickyBitsEnv",
                 vector_entry_point="examples.custom_task:StickyBitsVectorEnv")


def main() -> None:
    from gymnasium.utils.env_checker import check_env

    # raises a one-line error if something is off; non-default arguments, so that an argument
    # missing from task_args() shows (the task rebuilt from it would differ)
    task = check_task(StickyBits(horizon=8, stay0=0.8, stay1=0.3))
    print(f"check_task: {task!r} ok")
    env = gym.make(ENV_ID, horizon=8)
    check_env(env.unwrapped)
    print(f"gymnasium check_env: {ENV_ID} ok")
    obs, info = env.reset(seed=0)
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(info["expert_action"])
        done = terminated or truncated
    print(f"one expert episode: {task.render_tokens(obs[:0], obs)}, reward {reward:.3f}")


if __name__ == "__main__":
    main()
