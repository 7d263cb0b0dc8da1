# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Crash-safe file writes shared by every module that writes files (private).

- ``atomic_write``: a file is replaced whole or not at all (temp file in the same directory, mode and
  owner set before a byte is written, fsync, rename, fsync of the directory).
- ``atomic_copy``: the same for a copy of a file (streamed, any size), owner and mode taken from a
  reference file.
- ``fsync_dir``: make a rename or a new entry in a directory durable.
- ``flock_within``: take an exclusive ``flock`` on an open file, waiting at most a given time.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time

PRIVATE_FILE_MODE = 0o600


def flock_within(fd: int, timeout: float, poll: float = 0.05) -> bool:
    """Take an exclusive flock on ``fd``, trying every ``poll`` seconds for at most ``timeout`` seconds
    (0: one try). True once held; False when another process still holds it at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)


def fsync_dir(path: str) -> None:
    """fsync the directory ``path`` (a rename or create in it survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: str, data: bytes, mode: int = PRIVATE_FILE_MODE, uid: int | None = None, gid: int | None = None
) -> None:
    """Replace ``path`` with ``data``: temp file in the same directory, mode and owner set before a
    byte is written, fsync, rename, fsync of the directory. A reader sees the old or the new file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if uid is not None or gid is not None:
            os.chmod(tmp, mode)  # fchown may clear set-id bits; the final mode is the one asked for
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(directory)


def atomic_copy(src: str, dest: str, like: os.stat_result | None = None, tag: str = "copy") -> None:
    """Replace ``dest`` with a copy of ``src`` (crash-safe like ``atomic_write``), with the mode and, as
    root, the owner of ``like``. The temp file is ``.<name of dest>.<tag>-XXXXXXXX`` in the directory
    of ``dest``: a caller that can be killed midway finds its leftovers by that prefix."""
    directory = os.path.dirname(os.path.abspath(dest))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.{tag}-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fout, open(src, "rb") as fin:
            shutil.copyfileobj(fin, fout, 4 * 1024 * 1024)
            fout.flush()
            if like is not None:
                os.fchmod(fout.fileno(), like.st_mode & 0o7777)
                if os.geteuid() == 0:
                    os.fchown(fout.fileno(), like.st_uid, like.st_gid)
            os.fsync(fout.fileno())
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(directory)
