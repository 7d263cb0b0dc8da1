# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading backup sets (private module_utils): :class:`BackupSet`, listing the sets under a root and
finding one by id or as ``latest``.

A directory without a valid manifest is not a backup set for any reader. See docs/backup-format.md.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._backup_set.ids import (
    KIND_RE,
    MANIFEST,
    BackupSetError,
    is_backup_id,
    parse_backup_id,
    source_dirname,
    validate_kind,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.manifest import (
    OBJECTS_DIR,
    check_manifest,
    set_file_count,
    set_size,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.storage import LocalStorage, Storage

# invalid sets a failed ``latest`` search names (newest first), so the message stays one line
LATEST_PROBLEMS_SHOWN = 3


class BackupSet:
    """One backup set found under a root (valid or not)."""

    def __init__(self, storage: Storage, kind: str, source_dir: str, backup_id: str) -> None:
        self.storage = storage
        self.kind = kind
        self.source_dir = source_dir
        self.backup_id = backup_id
        self.rel = f"{kind}/{source_dir}/{backup_id}"
        self.manifest: dict[str, Any] | None = None
        self.error: str | None = None
        # True only when manifest.json is absent: an interrupted (or running) backup, as opposed
        # to a set whose manifest is unreadable or corrupt
        self.incomplete = False

    @property
    def valid(self) -> bool:
        return self.manifest is not None and self.error is None

    @property
    def location(self) -> str:
        local = self.storage.local_path(self.rel)
        return local if local else f"{self.storage.url.rstrip('/')}/{self.rel}"

    @property
    def source(self) -> str:
        if self.manifest:
            return str(self.manifest["source"])
        return urllib.parse.unquote(self.source_dir)  # reverse of source_dirname()

    @property
    def when(self) -> _dt.datetime:
        return parse_backup_id(self.backup_id)

    def load(self, check_sizes: bool = True) -> BackupSet:
        """Read and validate the manifest; with check_sizes, every listed file must exist at its size."""
        mrel = f"{self.rel}/{MANIFEST}"
        try:
            raw = self.storage.read_bytes(mrel)
        except FileNotFoundError:
            self.error = "no manifest (incomplete or interrupted backup)"
            self.incomplete = True
            return self
        except OSError as exc:
            self.error = f"cannot read manifest: {exc.strerror or exc}"
            return self
        try:
            manifest = json.loads(raw.decode("utf-8"))
            check_manifest(manifest, self.kind, self.source_dir, self.backup_id)
        except (ValueError, UnicodeDecodeError) as exc:
            self.error = f"manifest is not valid JSON: {exc}"
            return self
        except BackupSetError as exc:
            self.error = str(exc)
            return self
        self.manifest = manifest
        if check_sizes:
            problem = self._size_problem()
            if problem:
                self.error = problem
        return self

    def _size_problem(self) -> str | None:
        if self.manifest is None:
            return self.error or "no manifest"
        objects = self.manifest.get("objects") or []
        listed = self.storage.file_sizes(self.rel) if self.manifest["files"] or objects else None
        for obj in objects:  # S3 snapshots: every object at objects/<key> with its size
            path = f"{OBJECTS_DIR}/{obj['key']}"
            try:
                size = listed[path] if listed is not None else self.storage.size(f"{self.rel}/{path}")
            except (KeyError, FileNotFoundError):
                return f"object {obj['key']!r} listed in the manifest is missing"
            except OSError as exc:
                return f"cannot stat object {obj['key']!r}: {exc.strerror or exc}"
            if size != int(obj["size"]):
                return f"size mismatch on object {obj['key']!r}: manifest {obj['size']} bytes, found {size}"
        for entry in self.manifest["files"]:
            rel = f"{self.rel}/{entry['path']}"
            try:
                if listed is not None:
                    if entry["path"] not in listed:
                        raise FileNotFoundError(rel)
                    size = listed[entry["path"]]
                else:
                    size = self.storage.size(rel)
            except FileNotFoundError:
                return f"file {entry['path']} listed in the manifest is missing"
            except OSError as exc:
                return f"cannot stat {entry['path']}: {exc.strerror or exc}"
            if size != int(entry["size"]):
                return f"size mismatch on {entry['path']}: manifest {entry['size']} bytes, found {size}"
        return None

    def verify(self, workers: int = 2) -> list[str]:
        """Re-hash every file; return a list of problems (empty when the set is intact)."""
        if self.manifest is None:
            return [self.error or "no manifest"]
        problems: list[str] = []
        size_problem = self._size_problem()
        if size_problem:
            return [size_problem]

        def one(entry: dict[str, Any]) -> str | None:
            try:
                digest = self.storage.sha256(f"{self.rel}/{entry['path']}")
            except OSError as exc:
                return f"cannot read {entry['path']}: {exc.strerror or exc}"
            if digest != entry["sha256"]:
                return f"checksum mismatch on {entry['path']}"
            return None

        entries = self.manifest["files"]
        if workers > 1 and len(entries) > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(one, entries))
        else:
            results = [one(e) for e in entries]
        problems.extend(r for r in results if r)
        return problems

    def summary(self) -> dict[str, Any]:
        """The same keys for every set (None where unknown), so callers can document one shape."""
        manifest = self.manifest or {}
        return {
            "kind": self.kind,
            "source": self.source,
            "backup_id": self.backup_id,
            "path": self.location,
            "valid": self.valid,
            "error": self.error,
            "started": manifest.get("started"),
            "finished": manifest.get("finished"),
            "size_bytes": set_size(manifest) if self.manifest else None,
            "file_count": set_file_count(manifest) if self.manifest else None,
        }


def iter_sets(storage: Storage, kind: str | None = None, source: str | None = None) -> Iterator[BackupSet]:
    """Every directory that looks like a backup set (valid or not), unordered, unloaded."""
    kinds = [validate_kind(kind)] if kind else [k for k in storage.list_dirs("") if KIND_RE.match(k)]
    for k in kinds:
        sources = [source_dirname(source)] if source else storage.list_dirs(k)
        for s in sources:
            for bid in storage.list_dirs(f"{k}/{s}"):
                if is_backup_id(bid):
                    yield BackupSet(storage, k, s, bid)


def list_sets(
    storage: Storage, kind: str | None = None, source: str | None = None, check_sizes: bool = True
) -> list[BackupSet]:
    """All sets, loaded, newest first (by backup id)."""
    sets = [s.load(check_sizes=check_sizes) for s in iter_sets(storage, kind, source)]
    sets.sort(key=lambda s: (s.backup_id, s.kind, s.source_dir), reverse=True)
    return sets


def find_set(storage: Storage, kind: str, source: str, backup_id: str) -> BackupSet:
    """The set with that id, loaded and valid. Raises BackupSetError when none fits.

    ``latest`` is the newest valid set. The search is lazy: sets are loaded newest first and it stops
    at the first valid one, so the older sets (on S3, each a manifest read and a listing) are never
    read. When none is valid, the message names the newest invalid ones and why."""
    validate_kind(kind)
    if backup_id == "latest":
        problems = []
        for candidate in sorted(iter_sets(storage, kind, source), key=lambda s: s.backup_id, reverse=True):
            if candidate.load().valid:
                return candidate
            problems.append(f"{candidate.backup_id}: {candidate.error}")
        shown = "; ".join(problems[:LATEST_PROBLEMS_SHOWN])
        detail = f" (invalid: {shown})" if problems else ""
        raise BackupSetError(f"no valid {kind} backup set of {source!r} under {storage.url}{detail}")
    parse_backup_id(backup_id)
    found = BackupSet(storage, kind, source_dirname(source), backup_id)
    if not storage.exists(found.rel):
        raise BackupSetError(f"no {kind} backup set {backup_id} of {source!r} under {storage.url}")
    found.load()
    if not found.valid:
        raise BackupSetError(f"{kind} backup set {backup_id} of {source!r} is not valid: {found.error}")
    return found


def open_set_path(path: str, kind: str | None = None) -> BackupSet:
    """A set given directly by its directory ``<root>/<kind>/<source>/<backup_id>``."""
    path = os.path.abspath(os.path.expanduser(path))
    backup_id = os.path.basename(path)
    source_dir = os.path.basename(os.path.dirname(path))
    found_kind = os.path.basename(os.path.dirname(os.path.dirname(path)))
    root = os.path.dirname(os.path.dirname(os.path.dirname(path)))
    if not os.path.isdir(path):
        raise BackupSetError(f"backup set path {path} does not exist or is not a directory")
    if not is_backup_id(backup_id):
        raise BackupSetError(f"backup set path {path} does not end in a backup id (YYYYMMDDTHHMMSSZ)")
    if kind and found_kind != kind:
        raise BackupSetError(f"backup set path {path} is a {found_kind!r} set, expected {kind!r}")
    found = BackupSet(LocalStorage(root), found_kind, source_dir, backup_id).load()
    if not found.valid:
        raise BackupSetError(f"backup set {path} is not valid: {found.error}")
    return found
