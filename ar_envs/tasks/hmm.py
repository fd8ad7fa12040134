"""A hidden-Markov "language": the expert is the exact predictive distribution of a random HMM."""

from __future__ import annotations

import numpy as np

from ..core import FeatureMap, Task, as_rng, check_float, check_int, check_memory, sample_categorical


class HMMLanguage(Task):
    """Tokens emitted by a random hidden Markov model; the expert predicts by forward filtering.

    ## Description
    One context (``context_length = 0``). A hidden chain ``z_1 .. z_H`` on ``num_states`` states
    starts from ``pi`` and moves by the transition matrix ``A``; at each step the token
    ``a_h ~ B[z_h]`` is emitted from the emission matrix ``B`` (``vocab_size`` tokens). The HMM is
    drawn once from ``seed``:

    * ``pi ~ Dirichlet(1, ..., 1)`` (uniform on the simplex);
    * ``A[s] = (1 - stickiness) Dirichlet(concentration, ..., concentration) + stickiness e_s``:
      a random row mixed with "stay in ``s``";
    * ``B[s] ~ Dirichlet(concentration, ..., concentration)``.

    ``concentration`` below 1 makes rows peaked but not one-hot (the default 0.5 keeps every
    state distinguishable and every token possible); ``stickiness`` sets how long a state
    persists (expected stay ``>= 1 / (1 - stickiness)`` steps) and thus how far back the
    prefix carries information about the next token.

    ## Action Space
    ``Discrete(vocab_size)``.

    ## Observation Space
    ``MultiDiscrete([vocab_size + 1] * H)``: the tokens so far, padded with ``vocab_size``.
    The dtype is ``int16`` at the defaults (:func:`ar_envs.env.token_dtype`: wider for big vocabularies).

    ## Rewards
    At the last step, the fraction of tokens that equal the expert's most likely next token
    after the prefix before them (in [0, 1]; ties go to the smaller token id), the same
    convention as ``LinearAR-v0``. The expert itself does not score 1: the HMM is random.

    ## Expert
    The exact predictive ``P(a_{t+1} | a_1 .. a_t)`` of the HMM, by the normalised forward
    recursion: the belief ``b_1 = pi``; after token ``a``,
    ``b <- normalise(b * B[:, a]) A``; the prediction is ``b B``. Normalising at every step
    keeps it exact and finite for any prefix length (no underflow). Every prefix is possible
    unless it contains a token no state can emit; such a token (probability 0) is read as a
    missing observation (no update of the belief, the hidden chain still moves one step), so
    the expert is defined after every prefix. ``expert_log_prob`` is the
    forward algorithm (sum of the log normalisers, ``-inf`` for impossible sequences);
    ``sample_expert`` samples the hidden chain and emits (vectorised).

    ## Misspecification
    The predictive depends on the *whole* prefix through the belief state, so any learner
    that sees a finite window of previous tokens (Malach's linear / MLP window predictors,
    ``n``-gram models) is misspecified by construction: its best member predicts from the
    window only. ``stickiness`` (longer memory) and ``concentration`` of the emissions (more
    ambiguous tokens, so the belief needs more evidence) move the expert away from every
    finite-window class; ``num_states = 1`` (i.i.d. tokens) is realisable by any window.

    The canonical log-linear class (``feature_map``, used by the log-linear algorithms and the
    best in class) is the bigram model: one free logit per (previous token or start, token),
    i.e. the window-1 class. Wider windows are the neural window policies' ``window`` argument.

    ## Exact metrics
    ``enumerate_contexts`` is the single empty context, so ``ar_envs.metrics`` computes every
    metric by enumerating the ``vocab_size^H`` sequences while that is at most 2^20; Monte Carlo
    otherwise.

    ## Arguments
    * ``num_states`` (>= 1), ``vocab_size`` (V >= 2), ``horizon`` (H >= 1).
    * ``seed`` (>= 0): draws the HMM.
    * ``concentration`` (in (0, 1e100], default 0.5): Dirichlet parameter of the transition and
      emission rows.
    * ``stickiness`` in [0, 1) (default 0.5): weight of "stay" in each transition row.

    ## Version History
    * v0: initial release.
    """

    name = "hmm"
    env_id = "HMMLanguage-v0"
    context_length = 0
    context_vocab_size = 1

    def __init__(
        self,
        num_states: int = 4,
        vocab_size: int = 8,
        horizon: int = 16,
        seed: int = 0,
        concentration: float = 0.5,
        stickiness: float = 0.5,
    ):
        self.num_states = check_int("num_states", num_states, 1)
        self.vocab_size = check_int("vocab_size", vocab_size, 2)
        self.horizon = check_int("horizon", horizon, 1)
        self.seed = check_int("seed", seed, 0)
        self.concentration = check_float("concentration", concentration, 0.0, 1e100, low_open=True,
                                         reason="beyond it every Dirichlet row is uniform up to rounding")
        self.stickiness = check_float("stickiness", stickiness, 0.0, 1.0, high_open=True)
        S, V = self.num_states, self.vocab_size
        check_memory(f"HMMLanguage: num_states={S}, vocab_size={V}", 8 * (3 * S * S + 2 * S * V + S),
                     "its transition (num_states x num_states) and emission (num_states x vocab_size) matrices")
        self.check_episode_size(f"horizon={self.horizon}, num_states={S}, vocab_size={V}")
        rng = np.random.default_rng(self.seed)
        self.initial = rng.dirichlet(np.ones(S))
        rows = rng.dirichlet(np.full(S, self.concentration), size=S)
        self.transition = (1.0 - self.stickiness) * rows + self.stickiness * np.eye(S)
        self.emission = rng.dirichlet(np.full(V, self.concentration), size=S)
        for name, m in (("initial", self.initial), ("transition", self.transition), ("emission", self.emission)):
            if not (np.all(np.isfinite(m)) and np.allclose(m.sum(axis=-1), 1.0, rtol=0, atol=1e-9)):
                raise ValueError(f"concentration={self.concentration} gives a non-finite {name} draw")

    def task_args(self) -> dict:
        return {
            "num_states": self.num_states,
            "vocab_size": self.vocab_size,
            "horizon": self.horizon,
            "seed": self.seed,
            "concentration": self.concentration,
            "stickiness": self.stickiness,
        }

    # ------------------------------------------------------------------ checks
    def sample_bytes(self, n: int) -> int:
        """:meth:`Task.sample_bytes` plus the sampler's and the filter's ``(n, num_states)`` rows."""
        return super().sample_bytes(n) + 8 * n * 6 * self.num_states

    # ------------------------------------------------------------------ forward filtering
    def _forward(self, tokens: np.ndarray):
        """Predictive distributions before every token and after the last, ``(n, T+1, V)``, and
        the log-probability of each token ``(n, T)``."""
        n, T = tokens.shape
        check_memory(f"HMMLanguage: {n} sequences of {T} tokens, vocab_size={self.vocab_size}",
                     8 * n * ((T + 1) * self.vocab_size + T + 4 * self.num_states), "the forward filter's predictions")
        belief = np.broadcast_to(self.initial, (n, self.num_states)).copy()
        preds = np.empty((n, T + 1, self.vocab_size))
        logp = np.empty((n, T))
        for t in range(T + 1):
            preds[:, t] = belief @ self.emission
            if t == T:
                break
            w = belief * self.emission[:, tokens[:, t]].T
            z = w.sum(axis=1)
            ok = z > 0
            with np.errstate(divide="ignore"):
                logp[:, t] = np.log(z)
            post = np.where(ok[:, None], w / np.where(ok, z, 1.0)[:, None], belief)
            belief = post @ self.transition
            belief /= belief.sum(axis=1, keepdims=True)
        preds /= preds.sum(axis=-1, keepdims=True)
        return preds, logp

    def expert_probs(self, contexts, prefixes):
        pre = self.check_tokens("prefixes", prefixes, max_len=self.horizon - 1)
        return self._forward(pre)[0][:, -1]

    def expert_step_probs(self, contexts, sequences):
        seq = self.check_tokens("sequences", sequences, max_len=self.horizon)
        return self._forward(seq)[0][:, :-1]

    def expert_log_prob(self, contexts, sequences):
        seq = self.check_tokens("sequences", sequences, exact_len=self.horizon)
        return self._forward(seq)[1].sum(axis=1)

    def sample_expert(self, n, rng=None):
        rng = as_rng(rng)
        n = self.check_sample_size(n)
        seq = np.empty((n, self.horizon), dtype=np.int64)
        z = sample_categorical(np.broadcast_to(self.initial, (n, self.num_states)), rng)
        for h in range(self.horizon):
            if h:
                z = sample_categorical(self.transition[z], rng)
            seq[:, h] = sample_categorical(self.emission[z], rng)
        return np.zeros((n, 0), dtype=np.int64), seq

    # ------------------------------------------------------------------ scoring
    def feature_map(self) -> FeatureMap:
        """The bigram class: next-token logits indexed by the previous token (or the start)."""
        if getattr(self, "_fm", None) is None:
            V = self.vocab_size
            S = V + 1  # previous token, or the start state V
            check_memory(f"HMMLanguage: vocab_size={V}", 8 * S * V * S * V,
                         "the bigram class's one-hot features (vocab_size + 1, vocab_size, (vocab_size + 1) * vocab_size)")
            feats = np.zeros((1, S, V, S * V))
            for s in range(S):
                for a in range(V):
                    feats[0, s, a, s * V + a] = 1.0
            self._fm = FeatureMap(
                features=feats,
                offset=np.zeros((1, S, V)),
                transitions=np.tile(np.arange(V), (S, 1)),
                initial_state=V,
                context_index=lambda ctx: np.zeros(len(ctx), dtype=np.int64),
                param_names=[f"logit[{'start' if s == V else s}->{a}]" for s in range(S) for a in range(V)],
                grid_ranges=[(-4.0, 4.0)] * (S * V),
                description="bigram (window-1) model: one logit per (previous token, token)",
            )
        return self._fm

    def reward(self, contexts, sequences):
        seq = self.check_tokens("sequences", sequences, exact_len=self.horizon)
        greedy = self._forward(seq)[0][:, :-1].argmax(axis=-1)
        return (greedy == seq).mean(axis=1)
