"""Any :class:`~ar_agents.policies.base.TokenPolicy` as a Stable-Baselines3 actor-critic policy.

SB3's PPO (and A2C) can then train one of our policy classes from scratch or fine-tune a trained
one (a behaviour-cloning start), on any environment of this package::

    from stable_baselines3 import PPO
    from ar_agents.integrations.sb3_policy import TokenActorCriticPolicy, load_token_policy
    from ar_agents.integrations.sb3_vec_env import SequenceVecEnv

    venv = SequenceVecEnv(task, n_envs=8)
    model = PPO(TokenActorCriticPolicy, venv, policy_kwargs=dict(task=task, policy_kind="transformer",
                policy_args=dict(n_layer=1, n_embd=32)))
    load_token_policy(model.policy, bc_policy)     # optional: start from a trained TokenPolicy
    model.learn(10_000)
    trained = model.policy.token_policy             # a TokenPolicy again (sample, greedy, save, ...)

Files: SB3's ``model.save`` / ``PPO.load`` / ``TokenActorCriticPolicy.load`` unpickle what they
read (SB3's own format: load only files you trust). ``trained.save(path)`` /
``TokenPolicy.load(path)`` is this package's checked format: no pickled code, a checksum, and
classes only from an allow-list.

With sb3-contrib installed, :class:`MaskableTokenActorCriticPolicy` is the same policy for
``MaskablePPO`` (invalid tokens get probability 0 through the environment's ``action_masks()``).

How observations reach the model
--------------------------------
The environments' observation is a ``MultiDiscrete`` token array ``[context, generated tokens
padded with V]``. SB3 one-hot encodes ``MultiDiscrete`` observations inside
``BaseModel.extract_features`` (``preprocessing.preprocess_obs``) before any features extractor
sees them, and ``ActorCriticPolicy.get_distribution`` / ``predict_values`` call that base method
directly. This adapter therefore overrides the four entry points that read observations
(``forward``, ``evaluate_actions``, ``get_distribution``, ``predict_values``) and
``extract_features`` itself: the observation tensor (integer ids, or the float32 copies SB3's
roll-out buffer stores) is rounded to token ids and mapped to the policy's causal stream by
``TokenPolicy.observation_to_stream``, so the ids go to our embeddings, never through a one-hot
layer. The environments keep their ``MultiDiscrete`` space (stock ``MlpPolicy`` still works on
them); no wrapper that re-declares the ids as an integer ``Box`` is needed, and a policy trained
here runs on ``SequenceEnv``, ``DummyVecEnv`` and :class:`~ar_agents.integrations.sb3_vec_env.SequenceVecEnv`
alike. SB3's ``net_arch`` / ``mlp_extractor`` / ``action_net`` / ``value_net`` are not built.

Actor and critic
----------------
* Actor: the TokenPolicy's next-token logits at the current position (stream position
  ``L + t`` after ``t`` generated tokens), the logits of SB3's ``Categorical`` distribution. So
  the SB3 policy's action probabilities are exactly the TokenPolicy's ``next_token_probs``.
* Critic: a *separate* network of the same architecture (same class and configuration as the
  actor unless ``critic_args`` overrides some of its arguments) whose output head has one unit
  instead of ``V``; the value of an observation is its output at the same stream position.
  Separate weights keep a behaviour-cloning start exact (the value loss of PPO does not move
  the actor's trunk before the first policy update, and the critic's random start does not
  perturb the actor) and need no access to a class's hidden layers; the cost is a second
  forward pass. A complete sequence (a terminal observation, which SB3 only evaluates to
  bootstrap a truncated episode) is read at the last stream position.

SB3's orthogonal initialisation is not applied: the actor starts exactly as
``ar_agents.policies.make_policy`` builds it (under SB3's seeded torch generator, so PPO's
``seed`` fixes the initial weights).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy

from ar_envs.core import Task

from ar_agents.policies import POLICY_KINDS, make_policy
from ar_agents.policies.base import TokenPolicy, stream_spec

__all__ = ["TokenActorCriticPolicy", "MaskableTokenActorCriticPolicy", "load_token_policy", "check_spec"]

_SPEC_KEYS = ("vocab_size", "context_length", "horizon", "input_vocab_size", "bos", "dummy", "pad")


class _SpecTask(Task):
    """The smallest task whose :func:`stream_spec` is a given spec (for ``make_policy``)."""

    def __init__(self, spec: dict):
        self.vocab_size = int(spec["vocab_size"])
        self.context_length = int(spec["context_length"])
        self.horizon = int(spec["horizon"])
        self.context_vocab_size = int(spec["bos"])  # base = max(context vocab, V + 1) = bos


def check_spec(spec, observation_space: spaces.Space | None = None, action_space: spaces.Space | None = None) -> dict:
    """``spec`` (a :func:`stream_spec` dict) checked against itself and the spaces, or ``ValueError``."""
    if not isinstance(spec, dict) or set(spec) != set(_SPEC_KEYS):
        raise ValueError(f"spec must be a dict with the keys {list(_SPEC_KEYS)} (ar_agents.policies.stream_spec(task)), got {spec!r}")
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in spec.values()):
        raise ValueError(f"spec must map its keys to integers (ar_agents.policies.stream_spec(task)), got {spec!r}")
    spec = {k: int(v) for k, v in spec.items()}
    if spec["vocab_size"] < 2 or spec["horizon"] < 1 or spec["context_length"] < 0 or spec != stream_spec(_SpecTask(spec)):
        raise ValueError(f"spec is not the stream spec of any task (see ar_agents.policies.stream_spec): {spec}")
    L, H, V = spec["context_length"], spec["horizon"], spec["vocab_size"]
    if action_space is not None and not (isinstance(action_space, spaces.Discrete) and int(action_space.n) == V):
        raise ValueError(f"action_space must be Discrete({V}) for this spec (vocab_size {V}), got {action_space}")
    if observation_space is not None:
        ok = isinstance(observation_space, spaces.MultiDiscrete) and observation_space.shape == (L + H,)
        if ok:
            nvec = np.asarray(observation_space.nvec)
            ok = bool(np.all(nvec[L:] == V + 1)) and bool(np.all(nvec[:L] <= spec["bos"]))
        if not ok:
            raise ValueError(
                f"observation_space must be the environments' MultiDiscrete token array of length L + H = {L + H} "
                f"(context ids <= {spec['bos'] - 1}, then {H} entries of V + 1 = {V + 1}) for this spec, got {observation_space}"
            )
    return spec


def _build_token_policy(kind, spec: dict, args: dict) -> TokenPolicy:
    """A fresh TokenPolicy for ``spec``: ``kind`` a name of ``POLICY_KINDS`` or a TokenPolicy subclass."""
    if isinstance(kind, str):
        if kind not in POLICY_KINDS:
            raise ValueError(f"policy_kind must be one of {POLICY_KINDS} or a TokenPolicy subclass, got {kind!r}")
        return make_policy(kind, _SpecTask(spec), **args)
    if isinstance(kind, type) and issubclass(kind, TokenPolicy):
        return kind(spec, **args)
    raise ValueError(f"policy_kind must be one of {POLICY_KINDS} or a TokenPolicy subclass, got {kind!r}")


def _build_critic(actor: TokenPolicy, critic_args: dict) -> TokenPolicy:
    """The actor's class and configuration (overridden by ``critic_args``) with a 1-unit head."""
    config = {**actor.config, **critic_args}
    spec = dict(actor.spec, vocab_size=1)  # one output: the value; the stream (ids, padding) is unchanged
    try:
        return type(actor)(spec, **config)
    except TypeError as exc:
        raise ValueError(f"critic_args must be constructor arguments of {type(actor).__name__}: {exc}") from None


class _TokenActorCritic:
    """The shared body of the SB3 policies below (a mixin placed before the SB3 base class)."""

    token_policy: TokenPolicy
    critic: TokenPolicy

    def _setup_token_policy(self, observation_space, action_space, task, spec, policy_kind, policy_args, critic_args,
                            use_sde) -> None:
        if use_sde:
            raise ValueError("use_sde must be False: the action space is Discrete (token ids)")
        if task is not None and spec is not None:
            raise ValueError("give either task or spec in policy_kwargs, not both")
        if task is not None:
            if not isinstance(task, Task):
                raise ValueError(f"task must be an ar_envs Task, got {type(task).__name__}")
            spec = stream_spec(task)
        if spec is None:
            raise ValueError(
                "policy_kwargs must give task=<the ar_envs Task> (or spec=ar_agents.policies.stream_spec(task)): "
                "the observation space alone does not tell the context from the generated tokens"
            )
        if policy_args is not None and not isinstance(policy_args, dict):
            raise ValueError(f"policy_args must be a dict of keyword arguments, got {policy_args!r}")
        if critic_args is not None and not isinstance(critic_args, dict):
            raise ValueError(f"critic_args must be a dict of keyword arguments, got {critic_args!r}")
        # plain attributes, read by _build (called from the SB3 base constructor)
        self._spec = check_spec(spec, observation_space, action_space)
        self._policy_kind = policy_kind
        self._policy_args = dict(policy_args or {})
        self._critic_args = dict(critic_args or {})

    # ------------------------------------------------------------------ SB3 hooks
    def _build(self, lr_schedule) -> None:
        self.token_policy = _build_token_policy(self._policy_kind, self._spec, self._policy_args)
        self.critic = _build_critic(self.token_policy, self._critic_args)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _token_constructor_parameters(self, data: dict) -> dict:
        keep = ("observation_space", "action_space", "lr_schedule", "optimizer_class", "optimizer_kwargs")
        out = {k: data[k] for k in keep}
        out.update(spec=dict(self._spec), policy_kind=self._policy_kind, policy_args=dict(self._policy_args),
                   critic_args=dict(self._critic_args))
        return out

    def extract_features(self, obs, features_extractor=None) -> tuple[th.Tensor, th.Tensor]:
        """``(stream ids (n, L + H), next-token position (n,))`` of raw observations: no one-hot."""
        if obs.dtype.is_floating_point:  # SB3's roll-out buffer stores observations as float32
            obs = th.round(obs)
        ids, pos = self.token_policy.observation_to_stream(obs.long().cpu())
        return ids, pos.clamp(max=ids.shape[1] - 1)

    def _logits_at(self, net: TokenPolicy, features) -> th.Tensor:
        ids, pos = features
        L = net.context_length  # the next-token position is L + (tokens so far) >= L
        return net(ids, start=L)[th.arange(len(pos), device=ids.device), pos - L]

    def _distribution(self, features, action_masks=None):
        distribution = self.action_dist.proba_distribution(action_logits=self._logits_at(self.token_policy, features))
        if action_masks is not None:
            distribution.apply_masking(action_masks)
        return distribution

    # ------------------------------------------------------------------ SB3 entry points
    def forward(self, obs: th.Tensor, deterministic: bool = False, action_masks=None):
        features = self.extract_features(obs)
        distribution = self._distribution(features, action_masks)
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        values = self._logits_at(self.critic, features)
        return actions.reshape((-1, *self.action_space.shape)), values, log_prob

    def evaluate_actions(self, obs: th.Tensor, actions: th.Tensor, action_masks=None):
        features = self.extract_features(obs)
        distribution = self._distribution(features, action_masks)
        values = self._logits_at(self.critic, features)
        return values, distribution.log_prob(actions), distribution.entropy()

    def get_distribution(self, obs: th.Tensor, action_masks=None):
        return self._distribution(self.extract_features(obs), action_masks)

    def predict_values(self, obs: th.Tensor) -> th.Tensor:
        return self._logits_at(self.critic, self.extract_features(obs))


class TokenActorCriticPolicy(_TokenActorCritic, ActorCriticPolicy):
    """An SB3 ``ActorCriticPolicy`` whose actor is one of our TokenPolicy classes (see the module
    docstring for how observations are fed and what the critic is).

    Arguments (as ``policy_kwargs``; SB3 passes the spaces and ``lr_schedule``):

    * ``task``: the :class:`ar_envs.Task` whose environments this policy acts in (only its
      stream shape is kept), or ``spec``: that shape, ``ar_agents.policies.stream_spec(task)``.
    * ``policy_kind``: ``"linear"``, ``"mlp"``, ``"transformer"``, ``"hf:gpt2"``, ... (``ar_agents.policies.make_policy``)
      or a TokenPolicy subclass; ``policy_args``: its constructor arguments.
    * ``critic_args``: arguments of the critic that differ from the actor's (e.g. a narrower
      ``n_embd``); the critic has the actor's class.
    * ``optimizer_class`` / ``optimizer_kwargs``: as in SB3 (Adam with ``eps=1e-5`` by default).

    ``token_policy`` is the trained TokenPolicy; :func:`load_token_policy` copies trained weights in.
    """

    def __init__(self, observation_space, action_space, lr_schedule, task: Task | None = None, spec: dict | None = None,
                 policy_kind: Any = "transformer", policy_args: dict | None = None, critic_args: dict | None = None,
                 optimizer_class=th.optim.Adam, optimizer_kwargs: dict | None = None, use_sde: bool = False):
        self._setup_token_policy(observation_space, action_space, task, spec, policy_kind, policy_args, critic_args,
                                 use_sde)
        super().__init__(observation_space, action_space, lr_schedule, optimizer_class=optimizer_class,
                         optimizer_kwargs=optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return self._token_constructor_parameters(super()._get_constructor_parameters())


def load_token_policy(sb3_policy, token_policy: TokenPolicy) -> None:
    """Copy ``token_policy``'s weights into the actor of ``sb3_policy`` (a behaviour-cloning start).

    Both must be the same class with the same configuration and stream; afterwards the SB3
    policy's action probabilities equal ``token_policy``'s next-token probabilities. The
    critic is left as it is.
    """
    if not isinstance(sb3_policy, _TokenActorCritic):
        raise ValueError(f"sb3_policy must be a TokenActorCriticPolicy (model.policy), got {type(sb3_policy).__name__}")
    if not isinstance(token_policy, TokenPolicy):
        raise ValueError(f"token_policy must be a TokenPolicy, got {type(token_policy).__name__}")
    actor = sb3_policy.token_policy
    if type(token_policy) is not type(actor) or token_policy.config != actor.config or token_policy.spec != actor.spec:
        raise ValueError(
            f"token_policy must match the SB3 policy's actor: {type(actor).__name__}({actor.config}) on stream "
            f"{actor.spec}, got {type(token_policy).__name__}({token_policy.config}) on stream {token_policy.spec}"
        )
    actor.load_state_dict(copy.deepcopy(token_policy.state_dict()))


def _maskable_class():
    try:
        from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
    except ImportError as exc:  # pragma: no cover - sb3-contrib is a test extra
        raise ImportError("MaskableTokenActorCriticPolicy needs sb3-contrib (pip install 'sb3-contrib>=2.8')") from exc

    class MaskableTokenActorCriticPolicy(_TokenActorCritic, MaskableActorCriticPolicy):
        """:class:`TokenActorCriticPolicy` for sb3-contrib's ``MaskablePPO`` (same arguments):
        tokens the environment's ``action_masks()`` rules out get probability 0."""

        def __init__(self, observation_space, action_space, lr_schedule, task: Task | None = None,
                     spec: dict | None = None, policy_kind: Any = "transformer", policy_args: dict | None = None,
                     critic_args: dict | None = None, optimizer_class=th.optim.Adam,
                     optimizer_kwargs: dict | None = None, use_sde: bool = False):
            self._setup_token_policy(observation_space, action_space, task, spec, policy_kind, policy_args,
                                     critic_args, use_sde)
            super().__init__(observation_space, action_space, lr_schedule, optimizer_class=optimizer_class,
                             optimizer_kwargs=optimizer_kwargs)

        def _get_constructor_parameters(self) -> dict[str, Any]:
            return self._token_constructor_parameters(super()._get_constructor_parameters())

    MaskableTokenActorCriticPolicy.__module__ = __name__
    MaskableTokenActorCriticPolicy.__qualname__ = "MaskableTokenActorCriticPolicy"
    return MaskableTokenActorCriticPolicy


_LAZY: dict[str, type] = {}


def __getattr__(name: str):
    # MaskableTokenActorCriticPolicy is built on first use, so that sb3-contrib stays optional
    if name == "MaskableTokenActorCriticPolicy":
        if name not in _LAZY:
            _LAZY[name] = _maskable_class()
        return _LAZY[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
