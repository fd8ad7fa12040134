"""Demonstration files: round trip, byte-identical output, refusal of bad files, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile

import numpy as np
import pytest

import ar_envs
from ar_envs import data
from ar_envs.data import Demonstrations, generate, load_demonstrations, save_demonstrations
from ar_envs.tasks import LinearAR, PathStar, TwoBranch


def _same(a: Demonstrations, b: Demonstrations) -> None:
    assert np.array_equal(a.contexts, b.contexts) and a.contexts.dtype == b.contexts.dtype == np.int64
    assert np.array_equal(a.sequences, b.sequences) and b.sequences.dtype == np.int64
    if a.expert_probs is None:
        assert b.expert_probs is None
    else:
        assert np.array_equal(a.expert_probs, b.expert_probs)
    assert (a.task_name, a.task_args, a.seed) == (b.task_name, b.task_args, b.seed)


@pytest.mark.parametrize(
    "task, with_probs",
    [(TwoBranch(horizon=7, eps=0.3), False), (LinearAR(horizon=4, vocab_size=3), True), (PathStar(degree=3, path_length=4, num_nodes=300), False)],
)
def test_round_trip(tmp_path, task, with_probs):
    demos = generate(task, 50, seed=3, with_probs=with_probs)
    path = tmp_path / "demos.npz"
    save_demonstrations(demos, path)
    back = load_demonstrations(path, task=task)
    _same(demos, back)
    assert len(back) == 50
    # an ordinary .npz: numpy reads it without pickles, and the metadata says what it is
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["metadata"].tobytes())
        assert np.array_equal(z["sequences"], demos.sequences)
    assert meta["format"] == "ar_envs.demonstrations" and meta["version"] == 1
    assert meta["task_name"] == task.name and meta["task_args"] == json.loads(json.dumps(task.task_args()))
    assert meta["seed"] == 3 and meta["n"] == 50 and meta["ar_envs_version"] == ar_envs.__version__
    assert len(meta["sha256"]) == 64


def test_tokens_are_stored_compactly(tmp_path):
    task = PathStar(degree=3, path_length=4, num_nodes=300)  # tokens up to 303: two bytes each
    demos = generate(task, 20, seed=0)
    save_demonstrations(demos, tmp_path / "d.npz")
    with np.load(tmp_path / "d.npz") as z:
        assert z["contexts"].dtype == np.uint16 and z["sequences"].dtype == np.uint16


def test_same_seed_same_bytes_different_seed_different_bytes(tmp_path):
    task = TwoBranch(horizon=10, eps=0.4)
    paths = [tmp_path / name for name in ("a.npz", "b.npz", "c.npz")]
    save_demonstrations(generate(task, 200, seed=1), paths[0])
    save_demonstrations(generate(task, 200, seed=1), paths[1])
    save_demonstrations(generate(task, 200, seed=2), paths[2])
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b
    assert a != c
    # no timestamps: every zip entry carries the fixed 1980-01-01 date
    with zipfile.ZipFile(paths[0]) as zf:
        assert {info.date_time for info in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_file_name_is_kept_exactly(tmp_path):
    save_demonstrations(generate(TwoBranch(horizon=3), 5, seed=0), tmp_path / "demos.bin")
    assert os.listdir(tmp_path) == ["demos.bin"]


def test_load_checks_the_task(tmp_path):
    task = TwoBranch(horizon=5, eps=0.2)
    save_demonstrations(generate(task, 10, seed=0), tmp_path / "d.npz")
    load_demonstrations(tmp_path / "d.npz", task="two-branch")
    with pytest.raises(ValueError, match="d.npz.*two-branch"):
        load_demonstrations(tmp_path / "d.npz", task=TwoBranch(horizon=6, eps=0.2))
    with pytest.raises(ValueError, match="mixture"):
        load_demonstrations(tmp_path / "d.npz", task="mixture")


# ------------------------------------------------------------------------------------------
# refusing bad files
# ------------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "demos.npz"
    save_demonstrations(generate(TwoBranch(horizon=8, eps=0.5), 100, seed=0, with_probs=True), path)
    return path


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file(saved, keep):
    raw = saved.read_bytes()
    saved.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(ValueError, match=r"demos\.npz: .*(corrupt|truncated)"):
        load_demonstrations(saved)


def test_flipped_bytes_anywhere_are_detected(saved):
    raw = saved.read_bytes()
    rng = np.random.default_rng(0)
    for pos in rng.choice(len(raw), size=40, replace=False).tolist() + [len(raw) // 2]:
        bad = bytearray(raw)
        bad[pos] ^= 0x01
        saved.write_bytes(bytes(bad))
        try:
            load_demonstrations(saved)
        except ValueError as exc:
            assert str(exc).startswith(str(saved))
        else:  # a flip in a zip field nothing reads (e.g. "version made by") changes no content
            with zipfile.ZipFile(saved) as zf:
                assert [zf.read(i) for i in zf.namelist()] == [zipfile.ZipFile(_bytes_file(raw)).read(i) for i in zf.namelist()]


def _bytes_file(raw: bytes):
    import io

    return io.BytesIO(raw)


def test_changed_array_with_valid_zip_fails_the_checksum(saved, tmp_path):
    # rebuild the archive with one token changed: zip CRCs are valid, only our checksum can tell
    with np.load(saved) as z:
        members = {k: z[k] for k in z.files}
    members["sequences"] = members["sequences"].copy()
    members["sequences"][0, 0] ^= 1
    forged = tmp_path / "forged.npz"
    np.savez(forged, **members)
    with pytest.raises(ValueError, match=r"forged\.npz: corrupt file: SHA-256 checksum mismatch"):
        load_demonstrations(forged)


def test_metadata_that_disagrees_with_the_arrays(saved, tmp_path):
    with np.load(saved) as z:
        members = {k: z[k] for k in z.files}
    meta = json.loads(members["metadata"].tobytes())
    meta["n"] = 99
    members["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "n.npz", **members)
    with pytest.raises(ValueError, match=r"n\.npz: corrupt file: metadata says n = 99"):
        load_demonstrations(tmp_path / "n.npz")
    meta["n"], meta["version"] = 100, 7
    members["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "v.npz", **members)
    with pytest.raises(ValueError, match=r"v\.npz: format version 7 is newer"):
        load_demonstrations(tmp_path / "v.npz")
    del members["expert_probs"]
    meta["version"] = 1
    members["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "m.npz", **members)
    with pytest.raises(ValueError, match=r"m\.npz: corrupt file: arrays"):
        load_demonstrations(tmp_path / "m.npz")


def test_a_random_npz_is_refused(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, contexts=np.zeros((3, 0), dtype=np.int64), sequences=np.ones((3, 4), dtype=np.int64))
    with pytest.raises(ValueError, match=r"other\.npz: not an ar_envs demonstrations file \(no metadata"):
        load_demonstrations(path)
    np.savez(path, metadata=np.frombuffer(b'{"format": "something-else"}', dtype=np.uint8))
    with pytest.raises(ValueError, match=r"other\.npz: not an ar_envs demonstrations file \(format 'something-else'"):
        load_demonstrations(path)
    np.savez(path, metadata=np.frombuffer(b"\xff\xfe not json", dtype=np.uint8))
    with pytest.raises(ValueError, match=r"other\.npz: corrupt metadata"):
        load_demonstrations(path)


def test_a_pickled_object_array_is_never_unpickled(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, metadata=np.array([{"format": "ar_envs.demonstrations"}], dtype=object))
    with pytest.raises(ValueError, match=r"pickled\.npz: corrupt or truncated file"):
        load_demonstrations(path)


def test_a_text_file_and_a_plain_npy_are_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("contexts,sequences\n1,2\n")
    with pytest.raises(ValueError, match=r"notes\.txt: not an ar_envs demonstrations file"):
        load_demonstrations(text)
    npy = tmp_path / "arr.npy"
    np.save(npy, np.arange(4))
    with pytest.raises(ValueError, match=r"arr\.npy: not an ar_envs demonstrations file"):
        load_demonstrations(npy)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.npz"):
        load_demonstrations(empty)
    with pytest.raises(FileNotFoundError):
        load_demonstrations(tmp_path / "missing.npz")


# ------------------------------------------------------------------------------------------
# atomic writes and bad input
# ------------------------------------------------------------------------------------------


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    demos = generate(TwoBranch(horizon=5), 30, seed=0)
    calls = []

    def failing_write(zf, name, arr):
        calls.append(name)
        if len(calls) == 2:  # after the metadata entry is written, before the arrays
            raise OSError("disk full")
        return original(zf, name, arr)

    original = data._write_member
    monkeypatch.setattr(data, "_write_member", failing_write)
    with pytest.raises(OSError, match="disk full"):
        save_demonstrations(demos, tmp_path / "d.npz")
    assert os.listdir(tmp_path) == []  # no file, no temporary file
    # an existing file survives a failed overwrite unchanged
    monkeypatch.setattr(data, "_write_member", original)
    save_demonstrations(demos, tmp_path / "d.npz")
    before = (tmp_path / "d.npz").read_bytes()
    calls.clear()
    monkeypatch.setattr(data, "_write_member", failing_write)
    with pytest.raises(OSError):
        save_demonstrations(generate(TwoBranch(horizon=5), 30, seed=1), tmp_path / "d.npz")
    assert os.listdir(tmp_path) == ["d.npz"] and (tmp_path / "d.npz").read_bytes() == before


def test_save_rejects_bad_demonstrations(tmp_path):
    good = generate(TwoBranch(horizon=4), 6, seed=0)
    with pytest.raises(ValueError, match="demos must be"):
        save_demonstrations({"contexts": good.contexts}, tmp_path / "x.npz")
    with pytest.raises(ValueError, match="demos.sequences"):
        save_demonstrations(Demonstrations(good.contexts, good.sequences.astype(float) + 0.5), tmp_path / "x.npz")
    with pytest.raises(ValueError, match="rows"):
        save_demonstrations(Demonstrations(good.contexts[:3], good.sequences), tmp_path / "x.npz")
    with pytest.raises(ValueError, match="demos.expert_probs"):
        save_demonstrations(Demonstrations(good.contexts, good.sequences, np.zeros((6, 2))), tmp_path / "x.npz")
    with pytest.raises(ValueError, match="task_args"):
        save_demonstrations(Demonstrations(good.contexts, good.sequences, task_args={"x": object()}), tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


def test_checksum_covers_names_dtypes_and_shapes():
    a = {"sequences": np.zeros((2, 3), dtype=np.uint8)}
    assert data._checksum(a) != data._checksum({"sequences": np.zeros((3, 2), dtype=np.uint8)})
    assert data._checksum(a) != data._checksum({"sequences": np.zeros((2, 3), dtype=np.int8)})
    assert data._checksum(a) != data._checksum({"contexts": np.zeros((2, 3), dtype=np.uint8)})
    # and it is a plain SHA-256 of a documented byte layout
    h = hashlib.sha256(json.dumps(["sequences", "|u1", [2, 3]]).encode() + bytes(6)).hexdigest()
    assert data._checksum(a) == h


def test_episode_observations_and_rewards_refuse_what_does_not_fit_the_task():
    from ar_envs.data import episode_observations, episode_rewards
    from ar_envs.tasks import PathStar

    task = PathStar(degree=2, path_length=3, num_nodes=9)
    ctx, seq = task.sample_expert(4, 0)
    assert episode_observations(task, ctx, seq).shape == (4, 4, task.context_length + 3)
    assert episode_rewards(task, ctx, seq)[:, -1].tolist() == [1.0] * 4
    with pytest.raises(ValueError, match=r"sequences must have shape \(4, 3\)"):
        episode_observations(task, ctx, seq[:, :2])
    with pytest.raises(ValueError, match=r"sequences must hold tokens in \[0, 12\]"):
        episode_observations(task, ctx, seq + 20)
    with pytest.raises(ValueError, match=r"contexts must have shape \(4, 15\), got \(3, 15\)"):
        episode_observations(task, ctx[:3], seq)
    with pytest.raises(ValueError, match="contexts must hold integer tokens"):
        episode_observations(task, ctx.astype(float), seq)
