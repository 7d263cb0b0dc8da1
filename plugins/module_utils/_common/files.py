# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Crash-safe file writes shared by every module that writes files (private).

- ``atomic_write``: a file is replaced whole or not at all (temp file in the same directory, mode and
  owner set before a byte is written, fsync, rename, fsync of the directory).
- ``fsync_dir``: make a rename or a new entry in a directory durable.
"""

from __future__ import annotations

import os
import tempfile

PRIVATE_FILE_MODE = 0o600


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
