"""Autoregressive log-linear target with a misspecification knob."""

from __future__ import annotations

import math

import numpy as np

from ..core import (MAX_LOGIT_SCALE, FeatureMap, Task, as_rng, check_choice, check_float, check_int, check_memory,
                    sample_categorical)

PRESETS = ("two-branch",)
TWO_BRANCH_KAPPA = 0.3
_SCALE_REASON = "the expert's logits, about scale * (1 + misspec), must stay far from float overflow"


class LinearAR(Task):
    """Autoregressive linear target: ``pi*(a | x, a_<h) ∝ exp(<theta*, phi> + misspec <w*, psi>)``.

    ## Description
    A context ``x`` is drawn uniformly from ``num_contexts`` values. Tokens come from an order-1
    autoregressive log-linear model: the features of the next token ``a`` depend on the context,
    the previous token (or a start marker) and ``a``. The features ``phi`` (``feature_dim``
    dimensions) and ``psi`` (``feature_dim`` hidden dimensions) are fixed Gaussian tables drawn
    from ``seed``, as are ``theta*`` and ``w*`` (``N(0, scale^2 / feature_dim)`` entries).

    ## Action Space
    ``Discrete(vocab_size)``.

    ## Observation Space
    ``MultiDiscrete([num_contexts] + [vocab_size + 1] * H)``: the context, then the tokens so far
    padded with ``vocab_size``.
    The dtype is ``int16`` at the defaults (:func:`ar_envs.env.token_dtype`: wider for big vocabularies).

    ## Rewards
    At the last step, the fraction of tokens that agree with the expert's most likely next token
    after the prefix before them (in [0, 1]).

    ## Expert
    The log-linear target itself, defined after any prefix (it depends on the last token only).

    ## Misspecification
    The learner class is log-linear over ``phi`` only (optionally with ``||theta|| <= norm_bound``);
    ``misspec`` scales the hidden part ``psi``: ``misspec = 0`` is realisable, larger values move
    the target away from the class (``eps_apx`` grows with it).

    ## Exact metrics
    Expert and learner are Markov in (context, previous token), so squared Hellinger, KL and the
    regret are computed exactly by dynamic programming for any horizon; TV by enumeration of the
    ``num_contexts * vocab_size^H`` sequences while that is at most 2^20, by Monte Carlo with a
    95% confidence interval otherwise.

    ## Preset ``two-branch``: a linear target on which next-token prediction amplifies error
    Random Gaussian instances are stationary chains: the best member's per-step misfit compounds,
    so its ``D_H^2`` saturates with ``H`` and no learner's C(H) can grow. ``preset="two-branch"``
    builds the Rohatgi et al. (2025) construction in this family instead (``V = 3``, one context,
    ``eps`` default 0.01, ``norm_bound`` B default 20; the other generator arguments are fixed):
    the first token is ``0`` with probability ``1 - eps``, else ``1`` or ``2``; after ``0`` the
    expert repeats ``0`` forever (the common branch); after ``1`` or ``2`` it flips fair coins
    between ``1`` and ``2`` forever (the rare branch). The learner has three parameters
    (``first_logit``, ``t``, ``u``) with ``||(t, u)|| <= B``: a leak from the common branch to
    each of ``1``, ``2`` has logit ``t``; on the rare branch, token ``0`` has logit ``t`` and the
    other rare token ``t + kappa u`` (kappa = 0.3). A fair coin on the rare branch needs
    ``t = -kappa u``, so ``|t| <= B kappa / sqrt(1 + kappa^2)`` (about 5.7): a leak of about
    ``2 e^-5.7 = 0.007`` per common-branch step, which log loss accepts (its ``D_H^2`` grows
    like ``0.007 H``), while the best member gives the rare branch up (``t = -B``: ``D_H^2``
    about ``eps`` for every ``H`` up to thousands). ``misspec`` does not apply to the preset.

    ## Arguments
    * ``horizon`` (H >= 1), ``vocab_size`` (V >= 2), ``num_contexts`` (>= 1),
      ``feature_dim`` (>= 1), ``misspec`` (in [0, 1e6]), ``scale`` (in (0, 1e6]), ``norm_bound`` (> 0 or None),
      ``seed`` (the instance); ``preset`` (``None`` or ``"two-branch"``, see above) with ``eps``.

    ## Version History
    * v0: initial release.
    """

    name = "linear-ar"
    env_id = "LinearAR-v0"
    context_length = 1

    def __init__(
        self,
        horizon: int = 10,
        vocab_size: int = 2,
        num_contexts: int = 4,
        feature_dim: int = 3,
        misspec: float = 1.0,
        scale: float = 2.0,
        norm_bound: float | None = None,
        seed: int = 0,
        preset: str | None = None,
        eps: float | None = None,
    ):
        self.preset = None if preset is None else check_choice("preset", preset, PRESETS)
        if self.preset is not None:
            self._init_two_branch(horizon, eps, norm_bound, dict(vocab_size=vocab_size, num_contexts=num_contexts,
                                  feature_dim=feature_dim, misspec=misspec, scale=scale, seed=seed))
            return
        if eps is not None:
            raise ValueError(f"eps applies only with preset='two-branch', got eps={eps!r} without a preset")
        self.horizon = check_int("horizon", horizon, 1)
        self.vocab_size = check_int("vocab_size", vocab_size, 2)
        self.num_contexts = check_int("num_contexts", num_contexts, 1)
        self.context_vocab_size = self.num_contexts
        self.feature_dim = check_int("feature_dim", feature_dim, 1)
        self.misspec = check_float("misspec", misspec, 0.0, MAX_LOGIT_SCALE, reason=_SCALE_REASON)
        self.scale = check_float("scale", scale, 0.0, MAX_LOGIT_SCALE, low_open=True, reason=_SCALE_REASON)
        self.norm_bound = None if norm_bound is None else check_float("norm_bound", norm_bound, 0.0, low_open=True)
        self.seed = check_int("seed", seed, 0)
        C, S, V, d = self.num_contexts, self.vocab_size + 1, self.vocab_size, self.feature_dim
        check_memory(f"LinearAR: num_contexts={C}, vocab_size={V}, feature_dim={d}", 8 * C * S * V * (2 * d + 4),
                     "its feature tables phi and psi, (num_contexts, vocab_size + 1, vocab_size, feature_dim) each")
        self.check_episode_size(f"horizon={self.horizon}, vocab_size={V}")
        rng = np.random.default_rng(self.seed)
        self.phi = rng.standard_normal((C, S, V, d))
        self.psi = rng.standard_normal((C, S, V, d))
        self.theta_star = rng.standard_normal(d) * self.scale / math.sqrt(d)
        self.w_star = rng.standard_normal(d) * self.scale / math.sqrt(d)
        logits = self.phi @ self.theta_star + self.misspec * (self.psi @ self.w_star)
        logits -= logits.max(axis=-1, keepdims=True)  # a stable softmax: finite logits give finite probabilities
        p = np.exp(logits)
        self._table = p / p.sum(axis=-1, keepdims=True)  # (C, S, V), S = V + 1 (start state V)
        if not np.all(np.isfinite(self._table)):  # not reached with scale, misspec <= MAX_LOGIT_SCALE
            raise ValueError(f"scale={self.scale} and misspec={self.misspec} give non-finite expert logits")
        self._greedy = self._table.argmax(axis=-1)
        self._fm = None

    def _init_two_branch(self, horizon, eps, norm_bound, generator_args):
        """The ``two-branch`` preset: the Rohatgi et al. construction as an order-1 linear target."""
        defaults = dict(vocab_size=2, num_contexts=4, feature_dim=3, misspec=1.0, scale=2.0, seed=0)
        changed = sorted(k for k, v in generator_args.items() if v != defaults[k])
        if changed:
            raise ValueError(f"preset='two-branch' fixes {', '.join(changed)}: give only horizon, eps and norm_bound")
        self.horizon = check_int("horizon", horizon, 1)
        self.eps = check_float("eps", 0.01 if eps is None else eps, 0.0, 1.0, low_open=True, high_open=True)
        self.norm_bound = check_float("norm_bound", 20.0 if norm_bound is None else norm_bound, 0.0, MAX_LOGIT_SCALE,
                                      low_open=True, reason="it bounds the learner's logits")
        self.vocab_size, self.num_contexts, self.feature_dim = 3, 1, 3
        self.check_episode_size(f"horizon={self.horizon}, vocab_size=3")
        self.context_vocab_size = 1
        self.misspec, self.scale, self.seed = None, None, None
        kappa = TWO_BRANCH_KAPPA
        # states 0, 1, 2 = the previous token, 3 = the start; parameters (first step, t, u)
        phi = np.zeros((1, 4, 3, 3))
        phi[0, 3, 1:, 0] = 1.0  # start: the rare branch's two tokens, logit first
        phi[0, 0, 1:, 1] = 1.0  # common branch: a leak to token 1 or 2, logit t
        for s, other in ((1, 2), (2, 1)):  # rare branch: token 0 (logit t), the other rare token (t + kappa u)
            phi[0, s, 0, 1] = 1.0
            phi[0, s, other] = (0.0, 1.0, kappa)
        self.phi, self.psi = phi, np.zeros_like(phi)
        self.theta_star = self.w_star = None
        table = np.zeros((1, 4, 3))
        table[0, 3] = (1.0 - self.eps, self.eps / 2, self.eps / 2)
        table[0, 0] = (1.0, 0.0, 0.0)
        table[0, 1:3] = (0.0, 0.5, 0.5)
        self._table = table
        self._greedy = table.argmax(axis=-1)
        self._fm = None

    def task_args(self) -> dict:
        if self.preset is not None:
            return {"horizon": self.horizon, "preset": self.preset, "eps": self.eps, "norm_bound": self.norm_bound}
        return {
            "horizon": self.horizon,
            "vocab_size": self.vocab_size,
            "num_contexts": self.num_contexts,
            "feature_dim": self.feature_dim,
            "misspec": self.misspec,
            "scale": self.scale,
            "norm_bound": self.norm_bound,
            "seed": self.seed,
        }

    def context_token_names(self):
        return [f"x{i}" for i in range(self.num_contexts)]

    # ------------------------------------------------------------------ expert
    def sample_contexts(self, n, rng):
        return as_rng(rng).integers(0, self.num_contexts, size=(n, 1))

    def _state(self, prefixes):
        prefixes = np.asarray(prefixes)
        if prefixes.shape[1] == 0:
            return np.full(prefixes.shape[0], self.vocab_size, dtype=np.int64)
        return prefixes[:, -1].astype(np.int64)

    def expert_probs(self, contexts, prefixes):
        return self._table[np.asarray(contexts)[:, 0], self._state(prefixes)]

    def sample_expert(self, n, rng=None):
        rng = as_rng(rng)
        n = self.check_sample_size(n)
        ctx = self.sample_contexts(n, rng)
        seq = np.zeros((n, self.horizon), dtype=np.int64)
        s = np.full(n, self.vocab_size)
        for h in range(self.horizon):
            seq[:, h] = sample_categorical(self._table[ctx[:, 0], s], rng)
            s = seq[:, h]
        return ctx, seq

    def expert_step_probs(self, contexts, sequences):
        self.check_step_probs_size(sequences)
        seq = np.asarray(sequences, dtype=np.int64)
        states = np.concatenate([np.full((len(seq), 1), self.vocab_size), seq[:, :-1]], axis=1)
        return self._table[np.asarray(contexts)[:, :1], states]

    def reward(self, contexts, sequences):
        seq = np.asarray(sequences, dtype=np.int64)
        states = np.concatenate([np.full((len(seq), 1), self.vocab_size), seq[:, :-1]], axis=1)
        greedy = self._greedy[np.asarray(contexts)[:, :1], states]
        return (greedy == seq).mean(axis=1)

    def enumerate_contexts(self):
        return np.arange(self.num_contexts)[:, None], np.full(self.num_contexts, 1.0 / self.num_contexts)

    # ------------------------------------------------------------------ learner class
    def feature_map(self) -> FeatureMap:
        if self._fm is None:
            V = self.vocab_size
            trans = np.tile(np.arange(V), (V + 1, 1))  # next state = the token just emitted
            common = dict(features=self.phi, offset=np.zeros(self.phi.shape[:3]), transitions=trans, initial_state=V,
                          context_index=lambda ctx: np.asarray(ctx)[:, 0], norm_bound=self.norm_bound)
            if self.preset is None:
                self._fm = FeatureMap(
                    **common,
                    param_names=[f"theta{i}" for i in range(self.feature_dim)],
                    grid_ranges=[(-2.0 * self.scale, 2.0 * self.scale)] * self.feature_dim,
                    description="log-linear over the visible features phi(x, previous token, a)",
                )
            else:
                B = self.norm_bound
                self._fm = FeatureMap(
                    **common,
                    bounded_dims=[1, 2],
                    param_names=["first_logit", "t", "u"],
                    grid_ranges=[(-10.0, 2.0), (-B, B), (-B, B)],
                    description="two-branch preset: leak logit t; the rare branch's coin t + kappa u; ||(t, u)|| <= B",
                )
        return self._fm

    def expert_state_probs(self) -> np.ndarray:
        return self._table

    def exact_metrics(self, state_probs):
        from ..metrics import markov_metrics, markov_state_reward

        fm = self.feature_map()
        ctx_p = np.full(self.num_contexts, 1.0 / self.num_contexts)
        out = markov_metrics(fm, self._table, state_probs, ctx_p, self.horizon)
        # reward: mean over positions of 1[a_h = greedy(x, s_h)]
        onehot = np.zeros_like(self._table)
        np.put_along_axis(onehot, self._greedy[..., None], 1.0, axis=-1)
        j_star = markov_state_reward(fm, self._table, onehot, ctx_p, self.horizon)
        j_pol = markov_state_reward(fm, state_probs, onehot, ctx_p, self.horizon)
        out["regret"] = j_star - j_pol
        return out
