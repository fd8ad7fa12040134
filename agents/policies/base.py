"""The base class of the neural policy classes: one causal token stream, batched teacher forcing.

Every neural policy reads one stream of input ids::

    [BOS] context_1 .. context_L  a_1 .. a_{t}

and returns next-token logits at every position (causally: position ``i`` sees inputs ``<= i``).
The logits at stream position ``L + h`` (0-based, counting BOS as position 0) predict answer
token ``a_{h+1}``. So the teacher-forced input of a whole sequence is
``[BOS] + context + answer[:-1]`` (length ``L + H``) and one forward pass scores all ``H``
answer tokens: :meth:`TokenPolicy.answer_logits`.

Input ids: context tokens and answer tokens share one id space (``0 .. base-1`` with
``base = max(context_vocab_size, vocab_size + 1)``: a node id in a path-star prompt and the same
node in the answer get the same embedding); ``vocab_size`` itself is the environments' padding
id; ``BOS = base`` and ``DUMMY = base + 1`` (the teacherless placeholder). ``input_vocab_size =
base + 2``. An environment observation ``(L + H,)`` maps to the stream by
``[BOS] + observation[:-1]`` (:meth:`TokenPolicy.observation_to_stream`); causality means the
padding after the prefix is never seen by the position that predicts the next token.

Subclasses implement ``forward(ids (n, T)) -> logits (n, T, V)`` and ``config`` (a dict that
rebuilds the module, used by ``save`` / ``load``).

The scoring, decoding and ``predict`` methods run without gradients and in evaluation mode (no
dropout), restoring the module's mode afterwards, so their numbers do not depend on whether the
module was left in training mode. :meth:`TokenPolicy.answer_logits` and ``forward`` are the
differentiable entry points for training and follow the module's mode.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import zipfile

import numpy as np
import torch
from torch import nn

from ar_envs.core import Task, as_rng
from ar_envs.fileio import atomic_path

POLICY_FORMAT = "ar-envs-policy"


def _inference(method):
    """Run ``method`` under ``torch.no_grad()`` in evaluation mode; the training mode is restored."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        was_training = self.training
        if was_training:
            self.eval()
        try:
            with torch.no_grad():
                return method(self, *args, **kwargs)
        finally:
            if was_training:
                self.train()

    return wrapper


def check_start(start, length: int) -> int:
    """``start`` as an int in ``[0, length]`` (the first stream position to compute logits at)."""
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or not 0 <= start <= length:
        raise ValueError(f"start must be an integer in [0, {length}] (positions of the stream), got {start!r}")
    return int(start)


def stream_spec(task: Task) -> dict:
    """The shape of a task's token stream (what a policy needs to know about the task)."""
    base = max(task.context_vocab_size, task.vocab_size + 1)
    return {
        "vocab_size": task.vocab_size,
        "context_length": task.context_length,
        "horizon": task.horizon,
        "input_vocab_size": base + 2,
        "bos": base,
        "dummy": base + 1,
        "pad": task.vocab_size,
    }


class TokenPolicy(nn.Module):
    """Base class: a causal next-token model over the stream defined in the module docstring."""

    def __init__(self, spec: dict):
        super().__init__()
        self.spec = dict(spec)
        self.vocab_size = int(spec["vocab_size"])
        self.context_length = int(spec["context_length"])
        self.horizon = int(spec["horizon"])
        self.input_vocab_size = int(spec["input_vocab_size"])
        self.bos = int(spec["bos"])
        self.dummy = int(spec["dummy"])
        self.pad = int(spec["pad"])

    # ------------------------------------------------------------------ to implement
    def forward(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Next-token logits at stream positions ``start .. T-1``: ``(n, T) -> (n, T - start, V)``.

        Position ``t``'s logits predict the token after ``ids[:, t]`` from ``ids[:, :t + 1]``.
        Callers that score only the answer pass ``start = L`` (teacher forcing) or ``T - 1``
        (decoding), so a class can skip the work for the prompt's positions.
        """
        raise NotImplementedError

    @property
    def config(self) -> dict:
        """Keyword arguments (besides ``spec``) that rebuild this module."""
        raise NotImplementedError

    # ------------------------------------------------------------------ streams
    def _device(self):
        return next(self.parameters()).device

    def stream(self, contexts, tokens) -> torch.Tensor:
        """``[BOS] + context + tokens`` as a LongTensor ``(n, 1 + L + t)``."""
        contexts = torch.as_tensor(np.asarray(contexts), dtype=torch.long)
        tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
        n = tokens.shape[0]
        bos = torch.full((n, 1), self.bos, dtype=torch.long)
        return torch.cat([bos, contexts.reshape(n, -1), tokens], dim=1).to(self._device())

    def observation_to_stream(self, observations) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids (n, L + H), next-token position (n,))`` from environment observations."""
        obs = torch.as_tensor(np.asarray(observations), dtype=torch.long).reshape(-1, self.context_length + self.horizon)
        lengths = (obs[:, self.context_length :] != self.pad).sum(dim=1)
        ids = torch.cat([torch.full((obs.shape[0], 1), self.bos, dtype=torch.long), obs[:, :-1]], dim=1)
        return ids.to(self._device()), (self.context_length + lengths).to(self._device())

    def teacherless_stream(self, contexts) -> torch.Tensor:
        """``[BOS] + context + (H - 1) x DUMMY``: the input of teacherless / multi-token training."""
        n = len(contexts)
        dummies = np.full((n, self.horizon - 1), self.dummy, dtype=np.int64)
        return self.stream(contexts, dummies)

    # ------------------------------------------------------------------ scoring (teacher forcing)
    def answer_logits(self, contexts, sequences) -> torch.Tensor:
        """Teacher-forced logits of all answer tokens in one pass, ``(n, H', V)`` for ``H' <= H``."""
        sequences = np.asarray(sequences)
        ids = self.stream(contexts, sequences[:, :-1])
        return self.forward(ids, start=self.context_length)

    @_inference
    def sequence_log_prob(self, contexts, sequences) -> np.ndarray:
        """Exact ``log P(a_1..a_H | x)`` under the policy (natural log), ``(n,)``, batched."""
        out = []
        seq_all = np.asarray(sequences, dtype=np.int64)
        ctx_all = np.asarray(contexts)
        for start in range(0, len(seq_all), 4096):
            seq = seq_all[start : start + 4096]
            logp = torch.log_softmax(self.answer_logits(ctx_all[start : start + 4096], seq).double(), dim=-1)
            tgt = torch.as_tensor(seq, dtype=torch.long, device=logp.device)
            out.append(logp.gather(-1, tgt[..., None])[..., 0].sum(dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    @_inference
    def teacher_forced_probs(self, contexts, sequences) -> np.ndarray:
        """Next-token distributions at every answer position given the true prefix, ``(n, H, V)``."""
        return torch.softmax(self.answer_logits(contexts, sequences).double(), dim=-1).cpu().numpy()

    @_inference
    def next_token_probs(self, contexts, prefixes) -> np.ndarray:
        ids = self.stream(contexts, prefixes)
        return torch.softmax(self.forward(ids, start=ids.shape[1] - 1)[:, 0, :].double(), dim=-1).cpu().numpy()

    # ------------------------------------------------------------------ decoding
    @_inference
    def _decode(self, contexts, pick) -> np.ndarray:
        contexts = np.asarray(contexts)
        n = len(contexts)
        seq = np.zeros((n, self.horizon), dtype=np.int64)
        for h in range(self.horizon):
            seq[:, h] = pick(self.next_token_probs(contexts, seq[:, :h]))
        return seq

    def greedy(self, contexts) -> np.ndarray:
        return self._decode(contexts, lambda p: p.argmax(axis=1))

    def sample(self, contexts, rng=None) -> np.ndarray:
        from ar_envs.core import sample_categorical

        rng = as_rng(rng)
        return self._decode(contexts, lambda p: sample_categorical(p, rng))

    def teacherless_logits(self, contexts) -> torch.Tensor:
        """Logits of all ``H`` answer tokens from ``[BOS] + context + DUMMY...`` in one parallel
        pass, ``(n, H, V)`` (the model never sees an answer token)."""
        return self.forward(self.teacherless_stream(np.asarray(contexts)), start=self.context_length)

    @_inference
    def teacherless_decode(self, contexts) -> np.ndarray:
        """All answer tokens at once from ``[BOS] + context + DUMMY...`` (one parallel pass, argmax)."""
        return self.teacherless_logits(contexts).argmax(dim=-1).cpu().numpy()

    # ------------------------------------------------------------------ raw observations (RL code)
    @_inference
    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        """SB3-style ``predict`` on raw environment observations ``(L + H,)`` or ``(n, L + H)``."""
        obs = np.asarray(observation)
        ids, pos = self.observation_to_stream(obs)
        L = self.context_length
        logits = self.forward(ids, start=L)  # the next-token position is L + (tokens so far) >= L
        last = logits[torch.arange(len(pos)), pos.clamp(max=ids.shape[1] - 1) - L]
        if deterministic:
            actions = last.argmax(dim=-1).cpu().numpy()
        else:
            actions = torch.distributions.Categorical(logits=last).sample().cpu().numpy()
        return (actions[0] if obs.ndim == 1 else actions), state

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | os.PathLike) -> None:
        """One file: the weights, the config that rebuilds the module and a SHA-256 checksum of
        both (written atomically). Non-finite weights are refused (``ValueError``): a file
        never holds a policy that scores NaN."""
        state = self.state_dict()
        check_finite_weights(state, f"cannot save {type(self).__name__}")
        payload = {
            "format": POLICY_FORMAT,
            "class": class_path(type(self)),
            "spec": self.spec,
            "config": self.config,
            "state_dict": state,
        }
        payload["sha256"] = policy_checksum(payload)
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike, classes=()) -> "TokenPolicy":
        """The policy saved in ``path`` by :meth:`save`.

        Loading never imports or runs code named by the file: its ``class`` field is looked up
        among this package's policy classes (``ar_agents.policies.POLICY_CLASSES``), ``cls`` when
        called on a subclass (``MyPolicy.load(path)``), and ``classes`` (your own
        ``TokenPolicy`` subclasses: ``TokenPolicy.load(path, classes=[MyPolicy])``); the
        result must be an instance of ``cls``. The file is refused with a ``ValueError`` naming
        it, before any weights are built, if it is not a zip archive of uncompressed entries
        (what ``torch.save`` writes; a compressed entry could expand without bound), names
        another class, fails its SHA-256 checksum, holds non-finite weights, or its config
        would build other weights than the file holds. Unpickling is restricted to tensors and
        plain data (``torch.load(weights_only=True)``).
        """
        path = os.fspath(path)
        allowed = allowed_policy_classes(cls, classes)
        _check_archive(path)
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
            raise ValueError(f"{path}: not a readable ar-envs policy file ({type(exc).__name__}: {exc})") from None
        if not isinstance(payload, dict) or payload.get("format") != POLICY_FORMAT:
            raise ValueError(f"{path}: not an ar-envs policy file")
        fields = {"class": str, "spec": dict, "config": dict, "state_dict": dict, "sha256": str}
        for key, kind in fields.items():
            if not isinstance(payload.get(key), kind):
                raise ValueError(f"{path}: corrupt ar-envs policy file (field {key!r} missing or not a {kind.__name__})")
        name = payload["class"]
        if name not in allowed:
            raise ValueError(
                f"{path}: policy class {name!r} is not one this loader may build (allowed: {sorted(allowed)}); a file "
                f"never names code to import: pass your class, e.g. TokenPolicy.load(path, classes=[MyPolicy])"
            )
        model_cls = allowed[name]
        state = payload["state_dict"]
        if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
            raise ValueError(f"{path}: corrupt ar-envs policy file (state_dict must map names to tensors)")
        try:
            checksum = policy_checksum(payload)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{path}: corrupt ar-envs policy file ({type(exc).__name__}: {exc})") from None
        if checksum != payload["sha256"]:
            raise ValueError(f"{path}: corrupt ar-envs policy file: SHA-256 checksum mismatch (weights or config changed after saving)")
        check_finite_weights(state, f"{path}: refused policy file")
        try:
            _check_shapes(model_cls, payload["spec"], payload["config"], state)
            model = model_cls(payload["spec"], **payload["config"])
            model.load_state_dict(state)
        except (TypeError, KeyError, RuntimeError, ValueError) as exc:
            raise ValueError(f"{path}: corrupt ar-envs policy file ({type(exc).__name__}: {exc})") from None
        return model

    def describe(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"{type(self).__name__}({json.dumps(self.config)}, {n} parameters)"


# --------------------------------------------------------------------------------------------
# policy files: class allow-list, checksum, weight checks
# --------------------------------------------------------------------------------------------


def class_path(cls: type) -> str:
    """``module:qualname``, the name a policy file records its class by."""
    return f"{cls.__module__}:{cls.__qualname__}"


def allowed_policy_classes(cls: type, classes=()) -> dict[str, type]:
    """The classes :meth:`TokenPolicy.load` may build, by :func:`class_path`: this package's
    (``ar_agents.policies.POLICY_CLASSES``), ``cls`` and ``classes`` (a class or an iterable of
    them), keeping only subclasses of ``cls``."""
    from ar_agents.policies import POLICY_CLASSES

    if isinstance(classes, type):
        classes = [classes]
    try:
        extra = list(classes)
    except TypeError:
        raise ValueError(f"classes must be a TokenPolicy subclass or a list of them, got {classes!r}") from None
    for c in extra:
        if not (isinstance(c, type) and issubclass(c, TokenPolicy)):
            raise ValueError(f"classes must hold TokenPolicy subclasses, got {c!r}")
    candidates = [*POLICY_CLASSES, *extra] + ([cls] if cls is not TokenPolicy else [])
    return {class_path(c): c for c in candidates if issubclass(c, cls)}


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def policy_checksum(payload: dict) -> str:
    """SHA-256 of a policy file's class, spec, config and weights (name, dtype, shape and bytes
    of each tensor, in sorted order)."""
    h = hashlib.sha256()
    head = [payload["class"], payload["spec"], payload["config"]]
    h.update(json.dumps(head, sort_keys=True, separators=(",", ":"), default=repr).encode())
    for name in sorted(payload["state_dict"]):
        t = payload["state_dict"][name]
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def check_finite_weights(state: dict, what: str) -> None:
    """``ValueError`` (starting with ``what``) naming the first weight with a NaN or an infinity."""
    for name, t in state.items():
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{what}: weight {name!r} holds non-finite values (NaN or inf)")


def _check_archive(path: str) -> None:
    """A policy file is a zip archive of *uncompressed* entries (what ``torch.save`` writes), so
    loading it takes no more memory than its size on disk; anything else is refused unread."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable ar-envs policy file (not a zip archive as torch.save writes)") from None
    on_disk = os.path.getsize(path)
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"{path}: refused policy file: entry {info.filename!r} is compressed "
                             f"({info.compress_size} bytes expanding to {info.file_size}); torch.save stores entries uncompressed")
        if info.file_size != info.compress_size or info.file_size > on_disk:
            raise ValueError(f"{path}: corrupt ar-envs policy file: entry {info.filename!r} declares {info.file_size} "
                             f"bytes in a {on_disk}-byte file")


def _check_shapes(cls: type, spec: dict, config: dict, state: dict) -> None:
    """Build ``cls(spec, **config)`` on the meta device (no memory) and check that it has exactly
    the file's weights (names and shapes), so a config cannot make the real build allocate
    more than the file holds. Classes that cannot be built on the meta device skip the check."""
    try:
        with torch.device("meta"):
            probe = cls(spec, **config)
    except (TypeError, KeyError, ValueError):
        raise
    except Exception:  # noqa: BLE001 - an operation the meta device lacks: build for real
        return
    want = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    if want != have:
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        raise ValueError(f"the config builds other weights than the file holds (differ: {diff[:5]})")
