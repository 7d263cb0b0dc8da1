# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where backup sets live (private module_utils): the :class:`Storage` interface, the local
directory that implements it, and :func:`open_storage` for a backup root.

``_s3.S3Storage`` implements the same interface for ``s3://bucket/prefix`` roots. Readers, writers
and retention only call the methods below, so one code path serves both.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterator
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._backup_set.ids import MANIFEST, BackupSetError
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.local import remove_tree, sha256_file
from ansible_collections.runbook.stack.plugins.module_utils._common.files import atomic_write, fsync_dir


class Storage:
    """Where backup sets live. Paths are '/'-separated and relative to the root."""

    url: str

    def list_dirs(self, rel: str) -> list[str]:  # names of sub-directories of rel ([] when missing)
        raise NotImplementedError

    def iter_objects(self, rel: str) -> Iterator[dict[str, Any]]:
        """Every object (file) below the directory rel, as S3 lists them: ``Key`` (the S3 key, a
        local file's path), ``Size`` (bytes) and ``LastModified`` (an aware datetime)."""
        raise NotImplementedError

    def usage(self, rel: str) -> tuple[int, _dt.datetime | None]:
        """(bytes stored below rel, time of the last write there; None when nothing is there)."""
        total = 0
        newest: _dt.datetime | None = None
        for obj in self.iter_objects(rel):
            total += int(obj.get("Size", 0))
            when = obj.get("LastModified")
            if when is not None and (newest is None or when > newest):
                newest = when
        return total, newest

    def read_bytes(self, rel: str) -> bytes:
        raise NotImplementedError

    def write_atomic(self, rel: str, data: bytes) -> None:
        raise NotImplementedError

    def exists(self, rel: str) -> bool:
        raise NotImplementedError

    def size(self, rel: str) -> int:
        raise NotImplementedError

    def sha256(self, rel: str) -> str:
        raise NotImplementedError

    def remove_tree(self, rel: str) -> None:
        """Remove rel and everything below it; a set's manifest goes first, so that an interrupted
        removal leaves an incomplete directory, never a set that looks sealed but lacks files."""
        raise NotImplementedError

    def remove_set(self, rel: str) -> None:
        """Remove the set at rel for good: :meth:`remove_tree` (manifest first), and whatever the
        storage keeps for the set beside its files (``_s3.storage.S3Storage`` overrides it to delete
        the directory markers SeaweedFS keeps; a directory keeps nothing beside its files)."""
        self.remove_tree(rel)

    def local_path(self, rel: str) -> str | None:
        """A filesystem path for rel when this storage is local, else None."""
        return None

    def file_sizes(self, rel: str) -> dict[str, int] | None:
        """{path relative to rel: size} of every file below rel in one listing, or None when the
        storage has no cheaper way than one size() call per file (local directories)."""
        return None


def _lstat_tree(base: str) -> Iterator[tuple[str, os.stat_result, bool]]:
    """(path, lstat, is a file) of base, every directory and every file below it; what vanishes
    during the walk is skipped, symbolic links are not followed."""
    for dirpath, _dirnames, filenames in os.walk(base):
        for path in [dirpath, *(os.path.join(dirpath, name) for name in filenames)]:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            yield path, st, path != dirpath


def _mtime(st: os.stat_result) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(st.st_mtime, _dt.timezone.utc)


class LocalStorage(Storage):
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.url = self.root

    def _p(self, rel: str) -> str:
        return os.path.join(self.root, *[p for p in rel.split("/") if p])

    def local_path(self, rel: str) -> str:
        return self._p(rel)

    def list_dirs(self, rel: str) -> list[str]:
        try:
            with os.scandir(self._p(rel)) as it:
                return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise BackupSetError(f"cannot list {self._p(rel)}: {exc.strerror or exc}") from exc

    def iter_objects(self, rel: str) -> Iterator[dict[str, Any]]:
        for path, st, is_file in _lstat_tree(self._p(rel)):
            if is_file:
                yield {"Key": path, "Size": st.st_size, "LastModified": _mtime(st)}

    def usage(self, rel: str) -> tuple[int, _dt.datetime | None]:
        """Like any storage's, and a directory's own mtime counts as a write too (a backup that
        has only made directories so far is still being written)."""
        total = 0
        newest: _dt.datetime | None = None
        for _path, st, is_file in _lstat_tree(self._p(rel)):
            if is_file:
                total += st.st_size
            when = _mtime(st)
            if newest is None or when > newest:
                newest = when
        return total, newest

    def read_bytes(self, rel: str) -> bytes:
        with open(self._p(rel), "rb") as fh:
            return fh.read()

    def write_atomic(self, rel: str, data: bytes) -> None:
        atomic_write(self._p(rel), data)

    def exists(self, rel: str) -> bool:
        return os.path.exists(self._p(rel))

    def size(self, rel: str) -> int:
        return os.stat(self._p(rel)).st_size

    def sha256(self, rel: str) -> str:
        return sha256_file(self._p(rel))

    def remove_tree(self, rel: str) -> None:
        path = self._p(rel)
        try:
            os.unlink(os.path.join(path, MANIFEST))
            fsync_dir(path)
        except (FileNotFoundError, NotADirectoryError):
            pass
        remove_tree(path)


def open_storage(root: str, s3: Any = None) -> Storage:
    """Storage for a backup root: a local directory, or ``s3://bucket/prefix`` given the S3
    connection ``s3`` (an ``_s3.S3Conn``; the S3 code is only imported for such roots)."""
    if not root:
        raise BackupSetError("the backup root must not be empty")
    if root.startswith("s3://"):
        if s3 is None:
            raise BackupSetError(f"backup root {root!r}: this module does not take S3 connection options")
        # imported here: _s3 builds on this package, and local roots must work without boto3
        from ansible_collections.runbook.stack.plugins.module_utils import _s3  # pylint: disable=import-outside-toplevel

        if not _s3.HAS_BOTO3:
            raise BackupSetError(f"backup root {root!r} needs the boto3 Python library on the managed host")
        try:
            return _s3.S3Storage(root, s3)
        except _s3.S3Error as exc:
            raise BackupSetError(f"backup root {root!r}: {exc}") from None
    if "://" in root:
        raise BackupSetError(f"backup root {root!r}: only local directories and s3://bucket/prefix are supported")
    return LocalStorage(root)
