"""Expert demonstrations: generation, saving and loading.

A demonstrations file is one ``.npz`` archive (readable by ``numpy.load``) holding the arrays
``contexts``, ``sequences`` (and ``expert_probs`` when generated ``with_probs``) and a JSON
``metadata`` entry::

    {"format": "ar_envs.demonstrations", "version": 1, "ar_envs_version": "...",
     "task_name": "two-branch", "task_args": {...}, "seed": 0, "n": 1000,
     "arrays": {"contexts": {"dtype": "|u1", "shape": [1000, 0]}, ...}, "sha256": "..."}

``sha256`` is a checksum of the stored arrays (name, dtype, shape and bytes, in sorted order).
Token arrays are stored in the smallest unsigned integer type that holds them and come back as
``int64``. The file is written atomically (a temporary file in the same directory, then
``os.replace``) and holds no timestamps, so the same demonstrations give the same bytes.
Loading never unpickles anything; a truncated, corrupt or foreign file raises ``ValueError``
naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from .core import Task, as_rng, check_int, check_memory
from .env import token_dtype
from .fileio import atomic_path

__all__ = ["Demonstrations", "generate", "save_demonstrations", "load_demonstrations", "episode_observations",
           "episode_rewards", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "ar_envs.demonstrations"
FORMAT_VERSION = 1
_TOKEN_ARRAYS = ("contexts", "sequences")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry: no timestamps
MAX_METADATA_BYTES = 1 << 20  # the JSON metadata is a few hundred bytes; more is not ours
MAX_EXPANSION = 100  # the most a compressed entry may expand (ar_envs stores entries uncompressed)


@dataclass
class Demonstrations:
    """``n`` expert sequences: ``contexts (n, L)``, ``sequences (n, H)`` and optionally the
    expert's teacher-forced next-token distributions ``expert_probs (n, H, V)``."""

    contexts: np.ndarray
    sequences: np.ndarray
    expert_probs: np.ndarray | None = None
    task_name: str = ""
    task_args: dict = field(default_factory=dict)
    seed: int | None = None

    def __len__(self) -> int:
        return int(self.sequences.shape[0])


def check_demonstrations(task: Task, demos) -> Demonstrations:
    """``demos`` if it is a :class:`Demonstrations` of at least one sequence of ``task``'s shape
    (contexts ``(n, L)``, sequences ``(n, H)`` of tokens in ``[0, V-1]``), else ``ValueError``:
    what learners call before fitting, so that data of another horizon or task fails loudly."""
    if not isinstance(demos, Demonstrations):
        raise ValueError(f"demos must be ar_envs.data.Demonstrations, got {type(demos).__name__}")
    n = len(demos)
    if n < 1:
        raise ValueError("demos must hold at least 1 demonstration, got 0")
    task.check_tokens("demos.sequences", demos.sequences, exact_len=task.horizon)
    task.check_contexts(demos.contexts, n)
    return demos


def generate(task: Task, n: int, seed: int | None = None, with_probs: bool = False) -> Demonstrations:
    """Sample ``n`` demonstrations from ``task``'s expert (same seed, same arrays)."""
    n = check_int("n", n, 1)
    task.check_sample_size(n)
    if with_probs:
        check_memory(f"{type(task).__name__}: n={n}, with_probs=True", 8 * n * task.horizon * task.vocab_size,
                     f"the expert's distributions, (n, H, V) = ({n}, {task.horizon}, {task.vocab_size}) float64")
    ctx, seq = task.sample_expert(n, as_rng(seed))
    probs = task.expert_step_probs(ctx, seq) if with_probs else None
    return Demonstrations(ctx, seq, probs, task.name, task.task_args(), seed)


# --------------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------------


def episode_observations(task: Task, contexts, sequences) -> np.ndarray:
    """The ``H + 1`` observations of each episode, ``(n, H + 1, L + H)``, in the environments'
    token dtype (:func:`~ar_envs.env.token_dtype`).

    Observation ``t`` (``t = 0 .. H``) is what :class:`ar_envs.env.SequenceEnv` shows after ``t``
    tokens: the context, the first ``t`` tokens of the sequence, then the padding id ``V``.
    Observation ``0`` is the reset observation, observation ``H`` the terminal one.
    """
    L, H, V = task.context_length, task.horizon, task.vocab_size
    sequences = task.check_tokens("sequences", sequences, exact_len=H)
    n = len(sequences)
    contexts = task.check_contexts(contexts, n)
    obs = np.full((n, H + 1, L + H), V, dtype=token_dtype(task))
    obs[:, :, :L] = contexts[:, None, :]
    shown = np.arange(H)[None, :] < np.arange(H + 1)[:, None]  # (H + 1, H): token h is shown after step t > h
    obs[:, :, L:] = np.where(shown[None], sequences[:, None, :], V)
    return obs


def episode_rewards(task: Task, contexts, sequences) -> np.ndarray:
    """The environments' rewards along each episode, float64 ``(n, H)``: ``0`` until the last
    step, then the task's sequence reward."""
    sequences = np.asarray(sequences)
    rewards = np.zeros(sequences.shape, dtype=np.float64)
    if sequences.size:
        rewards[:, -1] = task.reward(contexts, sequences)
    return rewards


def _compact_tokens(name: str, arr) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"demos.{name} must be a 2-d integer token array, got shape {arr.shape} dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        return np.ascontiguousarray(arr)
    top = int(arr.max()) if arr.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return np.ascontiguousarray(arr, dtype=dtype)
    return np.ascontiguousarray(arr)


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = arrays[name]
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _json_seed(seed):
    if seed is None or isinstance(seed, bool):
        return None
    if isinstance(seed, (int, np.integer)):
        return int(seed)
    return None  # e.g. a Generator: not reproducible from the file, recorded as null


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _write_member(zf: zipfile.ZipFile, name: str, arr: np.ndarray) -> None:
    info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
    info.create_system = 3  # the same bytes on every platform
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_STORED
    zf.writestr(info, _npy_bytes(arr))


def save_demonstrations(demos: Demonstrations, path: str | os.PathLike) -> None:
    """Write ``demos`` to ``path`` (one ``.npz`` file, exactly that name) atomically.

    The same demonstrations give byte-identical files. If writing fails, ``path`` keeps its
    previous content (or does not exist) and no temporary file is left behind.
    """
    if not isinstance(demos, Demonstrations):
        raise ValueError(f"demos must be a Demonstrations, got {type(demos).__name__}")
    arrays = {name: _compact_tokens(name, getattr(demos, name)) for name in _TOKEN_ARRAYS}
    n = arrays["sequences"].shape[0]
    if arrays["contexts"].shape[0] != n:
        raise ValueError(f"demos.contexts has {arrays['contexts'].shape[0]} rows but demos.sequences has {n}")
    if demos.expert_probs is not None:
        probs = np.ascontiguousarray(demos.expert_probs, dtype=np.float64)
        if probs.ndim != 3 or probs.shape[:2] != arrays["sequences"].shape:
            raise ValueError(f"demos.expert_probs must have shape (n, H, V) with (n, H) = {arrays['sequences'].shape}, got {probs.shape}")
        arrays["expert_probs"] = probs
    from . import __version__

    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "ar_envs_version": __version__,
        "task_name": str(demos.task_name),
        "task_args": demos.task_args,
        "seed": _json_seed(demos.seed),
        "n": int(n),
        "arrays": {k: {"dtype": a.dtype.str, "shape": list(a.shape)} for k, a in sorted(arrays.items())},
        "sha256": _checksum(arrays),
    }
    try:
        meta_bytes = json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"demos.task_args must be JSON-serialisable (finite numbers, strings, lists, dicts): {exc}") from None
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            _write_member(zf, "metadata", np.frombuffer(meta_bytes, dtype=np.uint8))
            for name in sorted(arrays):
                _write_member(zf, name, arrays[name])


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def load_demonstrations(path: str | os.PathLike, task: Task | str | None = None) -> Demonstrations:
    """Read a file written by :func:`save_demonstrations`.

    ``task`` (a :class:`Task`, or a task name) is checked against the task the demonstrations
    were generated from: same name, and for a ``Task`` the same ``task_args``.

    Raises ``ValueError`` naming the file for anything that is not an intact demonstrations
    file (truncated, corrupt, checksum mismatch, another format or a newer version), and for a
    task mismatch. A missing file raises ``FileNotFoundError``.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":
        raise ValueError(f"{path}: not an ar_envs demonstrations file (not an .npz archive)")

    def bad(what: str) -> ValueError:
        return _FileError(f"{path}: {what}")

    try:
        with zipfile.ZipFile(path) as zf:
            members = {}
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise bad(f"not an ar_envs demonstrations file (unexpected entry {info.filename!r})")
                members[info.filename[: -len(".npy")]] = info
            if "metadata" not in members:
                raise bad(f"not an ar_envs demonstrations file (no metadata entry; holds {sorted(members)})")
            _check_entry_sizes(path, members)
            # nothing is decompressed beyond the .npy headers until every size is known to agree
            if members["metadata"].file_size > MAX_METADATA_BYTES:
                raise bad(f"refused: the metadata entry is {members['metadata'].file_size} bytes (at most {MAX_METADATA_BYTES})")
            meta_dtype, meta_shape, _ = _npy_header(zf, members["metadata"])
            if meta_dtype.str != "|u1" or len(meta_shape) != 1:
                raise bad("not an ar_envs demonstrations file (metadata is not a JSON byte string)")
            meta_raw = _read_npy(zf, members["metadata"])
            try:
                meta = json.loads(meta_raw.tobytes().decode())
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise bad(f"corrupt metadata ({exc})") from None
            if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
                raise bad(f"not an ar_envs demonstrations file (format {meta.get('format') if isinstance(meta, dict) else None!r})")
            version = meta.get("version")
            if not isinstance(version, int) or version < 1:
                raise bad(f"corrupt metadata (version {version!r})")
            if version > FORMAT_VERSION:
                raise bad(f"format version {version} is newer than this ar_envs reads ({FORMAT_VERSION}); upgrade ar_envs")
            declared = meta.get("arrays")
            if not isinstance(declared, dict) or set(members) != set(declared) | {"metadata"}:
                raise bad(f"corrupt file: arrays {sorted(set(members) - {'metadata'})} do not match the metadata")
            _check_declared(bad, declared, meta.get("n"))
            for name in sorted(declared):
                spec, info = declared[name], members[name]
                dtype, shape, header_len = _npy_header(zf, info)
                if dtype.str != spec["dtype"] or list(shape) != spec["shape"]:
                    raise bad(f"corrupt file: array {name!r} is {dtype.str} {list(shape)}, metadata says {spec}")
                size = header_len + math.prod(shape) * dtype.itemsize
                if info.file_size != size:
                    raise bad(f"corrupt file: entry {name!r} holds {info.file_size} bytes, its header declares {size}")
            arrays = {name: _read_npy(zf, members[name]) for name in sorted(declared)}
    except _FileError:
        raise
    except Exception as exc:  # zip damage (bad CRC, truncation), npy header damage, object arrays
        raise bad(f"corrupt or truncated file ({type(exc).__name__}: {exc})") from None

    for name, a in arrays.items():
        spec = declared[name]
        if a.dtype.str != spec.get("dtype") or list(a.shape) != spec.get("shape"):
            raise bad(f"corrupt file: array {name!r} is {a.dtype.str} {list(a.shape)}, metadata says {spec}")
    if _checksum(arrays) != meta.get("sha256"):
        raise bad("corrupt file: SHA-256 checksum mismatch (the arrays changed after saving)")
    for name in _TOKEN_ARRAYS:
        if name not in arrays or arrays[name].ndim != 2:
            raise bad(f"corrupt file: {name} must be a 2-d token array")
    n = meta.get("n")
    if arrays["sequences"].shape[0] != n or arrays["contexts"].shape[0] != n:
        raise bad(f"corrupt file: metadata says n = {n}, arrays hold {arrays['sequences'].shape[0]} rows")

    demos = Demonstrations(
        contexts=arrays["contexts"].astype(np.int64),
        sequences=arrays["sequences"].astype(np.int64),
        expert_probs=arrays.get("expert_probs"),
        task_name=meta.get("task_name", ""),
        task_args=meta.get("task_args") or {},
        seed=meta.get("seed"),
    )
    if task is not None:
        _check_task(path, demos, task)
    return demos


class _FileError(ValueError):
    """A refused file (the message names it)."""


def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    # the whole entry is read first, so zip's CRC check runs before numpy parses the header
    return np.lib.format.read_array(io.BytesIO(zf.read(info)), allow_pickle=False)


def _check_entry_sizes(path: str, members: dict[str, zipfile.ZipInfo]) -> None:
    """The zip directory's sizes, before anything is decompressed: stored entries hold exactly
    their size and fit in the file; a compressed entry (ar_envs writes none) may expand at most
    ``MAX_EXPANSION`` times, so a small file cannot unpack into gigabytes."""
    on_disk = os.path.getsize(path)
    for name, info in members.items():
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size or info.compress_size > on_disk:
                raise _FileError(f"{path}: corrupt file: entry {name!r} declares {info.file_size} bytes in a "
                                 f"{on_disk}-byte file")
        elif info.file_size > MAX_EXPANSION * max(info.compress_size, 1):
            raise _FileError(f"{path}: refused: compressed entry {name!r} would expand from {info.compress_size} to "
                             f"{info.file_size} bytes (more than {MAX_EXPANSION}x; save_demonstrations stores entries "
                             "uncompressed)")


def _npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[np.dtype, tuple, int]:
    """``(dtype, shape, header length)`` from the start of a ``.npy`` entry, decompressing only
    the header. Object arrays, Fortran order and unknown header versions are refused."""
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"entry {info.filename!r}: unsupported .npy version {version}")
        header_len = fh.tell()
    if dtype.hasobject or fortran:
        raise ValueError(f"entry {info.filename!r}: {'object arrays' if dtype.hasobject else 'Fortran order'} not allowed")
    return dtype, shape, header_len


def _check_declared(bad, declared: dict, n) -> None:
    """The metadata's array table, before any array is read: known names, numeric dtypes, shapes
    of non-negative ints that agree with each other and with ``n`` (tokens ``(n, L)`` and
    ``(n, H)``, probabilities ``(n, H, V)``)."""
    kinds = {"contexts": "ui", "sequences": "ui", "expert_probs": "f"}
    for name, spec in declared.items():
        if name not in kinds:
            raise bad(f"corrupt file: unknown array {name!r} in the metadata")
        shape = spec.get("shape") if isinstance(spec, dict) else None
        try:
            dtype = np.dtype(spec["dtype"]) if isinstance(spec.get("dtype"), str) else None
        except (TypeError, ValueError, KeyError):
            dtype = None
        ok_shape = isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        if dtype is None or dtype.kind not in kinds[name] or dtype.itemsize > 8 or not ok_shape:
            raise bad(f"corrupt file: metadata of array {name!r} is {spec!r} (needs a numeric dtype and a shape)")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise bad(f"corrupt metadata (n = {n!r})")
    for name in _TOKEN_ARRAYS:
        if name not in declared or len(declared[name]["shape"]) != 2:
            raise bad(f"corrupt file: {name} must be a 2-d token array")
        if declared[name]["shape"][0] != n:
            raise bad(f"corrupt file: metadata says n = {n}, arrays hold {declared[name]['shape'][0]} rows")
    if "expert_probs" in declared:
        shape = declared["expert_probs"]["shape"]
        if len(shape) != 3 or shape[:2] != declared["sequences"]["shape"]:
            raise bad(f"corrupt file: expert_probs must have shape (n, H, V) with (n, H) = "
                      f"{tuple(declared['sequences']['shape'])}, metadata says {shape}")


def _check_task(path: str, demos: Demonstrations, task: Task | str) -> None:
    if isinstance(task, str):
        name, args = task, None
    elif isinstance(task, Task):
        name, args = task.name, json.loads(json.dumps(task.task_args()))
    else:
        raise ValueError(f"task must be a Task, a task name or None, got {type(task).__name__}")
    if demos.task_name != name or (args is not None and demos.task_args != args):
        have = f"{demos.task_name} {demos.task_args}"
        want = name if args is None else f"{name} {args}"
        raise ValueError(f"{path}: demonstrations of task {have}, but task {want} was asked for")
