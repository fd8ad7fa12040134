"""Atomic file writes: a temporary file in the target's directory, fsync, then ``os.replace``.

A reader never sees a half-written file, and a failure leaves the previous file (or none).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path to write; on success it replaces ``path`` atomically. Only a
    regular file (or a symlink, which is replaced, not followed) is ever replaced: a device, a
    FIFO, a socket or a directory at ``path`` is refused with a ``ValueError`` before anything
    is written (``/dev/null`` must never become a regular file)."""
    path = os.fspath(path)
    if os.path.lexists(path):
        mode = os.lstat(path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise ValueError(f"{path} exists and is not a regular file; refusing to replace it")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix + ".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def create_new_bytes(path: str | os.PathLike, data: bytes) -> bool:
    """Create ``path`` holding ``data`` only if nothing exists there: the content is written to a
    temporary file first and then hard-linked into place, so the file appears complete or not at
    all, and an existing file, device or symlink is never replaced. Returns ``False`` (and writes
    nothing) when ``path`` already exists. Falls back to an exclusive create on file systems
    without hard links."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here (e.g. some network or FAT file systems)
            pass
        try:
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except FileExistsError:
            return False
        try:
            write_all(out, data)
            os.fsync(out)
        finally:
            os.close(out)
        return True
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the file descriptor ``fd``: ``os.write`` may write less than it
    was given (a full disk, a signal), so write the rest until done; a write that makes no
    progress raises ``OSError(ENOSPC)`` instead of looping."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, "no bytes written (is the disk full?)")
        view = view[n:]
