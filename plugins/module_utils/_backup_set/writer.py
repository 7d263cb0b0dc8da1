# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writing backup sets (private module_utils): :func:`allocate_backup_id`, the one id allocation of
every writer, and :class:`LocalSetWriter`, which allocates the id, lets the caller fill the directory
and seals it with the manifest, written last and atomically.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from typing import Any, Callable

from ansible_collections.runbook.stack.plugins.module_utils._backup_set.ids import (
    MANIFEST,
    BackupSetError,
    format_backup_id,
    source_dirname,
    utcnow,
    validate_kind,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.local import (
    DIR_MODE,
    fsync_tree,
    hash_files,
    make_private_dirs,
    remove_tree,
    secure_tree,
    walk_files,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.manifest import (
    build_manifest,
    manifest_bytes,
    with_self_sha256,
)
from ansible_collections.runbook.stack.plugins.module_utils._common.files import atomic_write, fsync_dir


def check_dest_writable(dest: str) -> None:
    """Fail now, with the path and cause, when the backup root cannot be created or written."""
    probe = os.path.abspath(dest)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise BackupSetError(f"dest {dest} is not usable: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BackupSetError(f"dest {dest} is not writable: no write permission on {probe}")


def allocate_backup_id(
    claim: Callable[[str], bool],
    exhausted: Callable[[str], Exception],
    now: Callable[[], _dt.datetime] = utcnow,
    max_wait_s: float = 5.0,
) -> tuple[_dt.datetime, str]:
    """(start time, backup id) of a new set: the id is the start time ``now()`` to the second, and
    ``claim(backup_id)`` takes the set's place (True) or finds it taken (False). When another set
    already has this second, wait for the next one, so that ids stay true start times; after
    ``max_wait_s`` seconds raise ``exhausted(backup_id)``, the caller's error naming where.

    Local sets claim a new directory (:meth:`LocalSetWriter.create`), S3 snapshot sets an empty
    prefix (``_s3.storage.S3Storage.allocate_set``)."""
    deadline = time.monotonic() + max_wait_s
    while True:
        started = now()
        backup_id = format_backup_id(started)
        if claim(backup_id):
            return started, backup_id
        if time.monotonic() > deadline:
            raise exhausted(backup_id)
        time.sleep(1.0 - (started.microsecond / 1e6) + 0.001)


class LocalSetWriter:
    """Create a new local set directory, let the caller fill it, then seal it with the manifest.

    Usage::

        writer = LocalSetWriter(root, "postgresql", "app").create()
        try:
            ...write files under writer.path...
            manifest = writer.seal(...)
        except BaseException:
            writer.discard()
            raise

    Until ``seal`` has renamed the manifest into place, the directory is not a backup set.
    """

    def __init__(self, root: str, kind: str, source: str, now: Callable[[], _dt.datetime] = utcnow) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.kind = validate_kind(kind)
        self.source = source
        self._now = now
        self.backup_id = ""
        self.started: _dt.datetime | None = None
        self.path = ""

    def create(self, max_wait_s: float = 5.0) -> LocalSetWriter:
        parent = os.path.join(self.root, self.kind, source_dirname(self.source))
        try:
            make_private_dirs(parent)
        except OSError as exc:
            raise BackupSetError(f"cannot create backup directory under {self.root}: {exc.strerror or exc}") from exc

        def claim(backup_id: str) -> bool:
            path = os.path.join(parent, backup_id)
            try:
                os.mkdir(path, DIR_MODE)
            except FileExistsError:
                return False
            except OSError as exc:
                raise BackupSetError(f"cannot create backup directory {path}: {exc.strerror or exc}") from exc
            return True

        started, backup_id = allocate_backup_id(
            claim,
            lambda _id: BackupSetError(f"cannot allocate a unique backup id under {parent}"),
            self._now,
            max_wait_s,
        )
        self.backup_id, self.started, self.path = backup_id, started, os.path.join(parent, backup_id)
        os.chmod(self.path, DIR_MODE)
        return self

    def seal(
        self,
        hash_workers: int = 2,
        known_sha256: dict[str, str] | None = None,
        self_checksum: bool = False,
        **manifest_fields: Any,
    ) -> dict[str, Any]:
        """Hash every file (except those in ``known_sha256``), write manifest.json atomically, return
        the manifest; with ``self_checksum`` the manifest carries its own SHA-256 (``self_sha256``)."""
        if self.started is None:
            raise BackupSetError("seal() called before create()")
        secure_tree(self.path)
        fsync_tree(self.path)
        fsync_dir(os.path.dirname(self.path))
        files = hash_files(self.path, walk_files(self.path), workers=hash_workers, known=known_sha256)
        manifest = build_manifest(
            kind=self.kind,
            source=self.source,
            backup_id=self.backup_id,
            started=self.started,
            finished=self._now(),
            files=files,
            **manifest_fields,
        )
        if self_checksum:
            manifest = with_self_sha256(manifest)
        atomic_write(os.path.join(self.path, MANIFEST), manifest_bytes(manifest))
        return manifest

    def discard(self) -> None:
        if self.path:
            remove_tree(self.path)
