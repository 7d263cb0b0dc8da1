# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup-set format shared by every kind of backup (private module_utils).

Layout: ``<root>/<kind>/<source>/<backup_id>/`` with ``manifest.json`` written last and atomically.
A directory without a valid manifest is not a backup set for any reader. See docs/backup-format.md.

Storage access goes through the small :class:`Storage` interface so that the same code works on a
local directory today and under an S3 prefix later.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import re
import shutil
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable

from ansible_collections.runbook.stack.plugins.module_utils._common.files import atomic_write, fsync_dir

FORMAT_NAME = "runbook.stack/backup-set"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ID_FORMAT = "%Y%m%dT%H%M%SZ"
# ASCII digits only and \Z (not $, which also matches before a trailing newline)
ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z\Z")
KIND_RE = re.compile(r"^[a-z][a-z0-9_]*\Z")
SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
FILE_MODE = 0o600
DIR_MODE = 0o700
HASH_CHUNK = 4 * 1024 * 1024


class BackupSetError(Exception):
    """A backup set is missing, incomplete, corrupt or cannot be written."""


# --------------------------------------------------------------------------------------------
# identifiers and names
# --------------------------------------------------------------------------------------------


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def format_backup_id(when: _dt.datetime) -> str:
    return when.astimezone(_dt.timezone.utc).strftime(ID_FORMAT)


def parse_backup_id(backup_id: str) -> _dt.datetime:
    if not isinstance(backup_id, str) or not ID_RE.match(backup_id):
        raise BackupSetError(f"invalid backup id {backup_id!r}: expected a UTC timestamp YYYYMMDDTHHMMSSZ")
    try:
        return _dt.datetime.strptime(backup_id, ID_FORMAT).replace(tzinfo=_dt.timezone.utc)
    except ValueError as exc:
        raise BackupSetError(f"invalid backup id {backup_id!r}: {exc}") from exc


def is_backup_id(name: str) -> bool:
    """True when name is a backup id that parses to a real UTC time (not only the right shape)."""
    try:
        parse_backup_id(name)
    except BackupSetError:
        return False
    return True


def iso(when: _dt.datetime) -> str:
    return when.astimezone(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_SAFE = re.compile(r"[A-Za-z0-9._-]")


def source_dirname(source: str) -> str:
    """Encode a source name (database name, bucket, host:port) as one safe path component.

    Characters outside ``[A-Za-z0-9._-]`` become ``%XX`` (UTF-8 bytes), so the mapping is reversible
    and two different sources never share a directory.
    """
    if not source:
        raise BackupSetError("the backup source name must not be empty")
    out = []
    for ch in source:
        if _SAFE.match(ch):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    name = "".join(out)
    if name in (".", ".."):
        name = name.replace(".", "%2E")
    return name


def validate_kind(kind: str) -> str:
    if not KIND_RE.match(kind or ""):
        raise BackupSetError(f"invalid backup kind {kind!r}: expected lower-case letters, digits and _")
    return kind


# --------------------------------------------------------------------------------------------
# helpers every backup and restore module uses
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# storage interface
# --------------------------------------------------------------------------------------------


class Storage:
    """Where backup sets live. Paths are '/'-separated and relative to the root."""

    url: str

    def list_dirs(self, rel: str) -> list[str]:  # names of sub-directories of rel ([] when missing)
        raise NotImplementedError

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

    def local_path(self, rel: str) -> str | None:
        """A filesystem path for rel when this storage is local, else None."""
        return None

    def file_sizes(self, rel: str) -> dict[str, int] | None:
        """{path relative to rel: size} of every file below rel in one listing, or None when the
        storage has no cheaper way than one size() call per file (local directories)."""
        return None


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
        # imported here: _s3 builds on this module, and local roots must work without boto3
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


# --------------------------------------------------------------------------------------------
# local file helpers
# --------------------------------------------------------------------------------------------


def keep_name(name: Callable[[str], str], taken: Callable[[str], bool], sep: str, limit: int) -> tuple[str, str | None]:
    """Where a restore keeps the data it replaces: ``name("")``, else ``name(sep + "2")``,
    ``name(sep + "3")``... up to ``limit``, the first that ``taken`` says is free (an earlier restore
    of the same set keeps its copy; it is never overwritten). Returns (the name, None), or (the first
    name, the last one tried) when every one is taken."""
    first = name("")
    if not taken(first):
        return first, None
    for n in range(2, limit + 1):
        candidate = name(f"{sep}{n}")
        if not taken(candidate):
            return candidate, None
    return first, name(f"{sep}{limit}")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(HASH_CHUNK)
        view = memoryview(buf)
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def make_private_dirs(path: str) -> list[str]:
    """Create ``path`` and every missing directory above it with mode 0700, top-down; return the
    directories created. Each is chmod'ed after its mkdir, so the umask cannot widen or narrow it.
    Directories that already exist are left as they are (a root the user made keeps its mode)."""
    path = os.path.abspath(path)
    missing: list[str] = []
    probe = path
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    created: list[str] = []
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise NotADirectoryError(errno.ENOTDIR, f"{directory} exists and is not a directory") from None
            continue  # made by a concurrent writer: not ours to chmod
        os.chmod(directory, DIR_MODE)
        created.append(directory)
    return created


@contextmanager
def private_umask() -> Iterator[None]:
    """Umask 0077 inside the block: whatever this process and its children (pg_dump, redis-cli)
    create is 0600/0700 from the start, also when the module is killed before a set is sealed."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def remove_tree(path: str) -> None:
    """Remove path and everything below it, also directories left unreadable (e.g. mode 0500 or 0000).

    Directories are made 0700 top-down before the removal (symbolic links are removed, never followed).
    """
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
        return
    if not os.path.lexists(path):
        return
    os.chmod(path, DIR_MODE)
    for dirpath, dirnames, _filenames in os.walk(path):
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, DIR_MODE)
    shutil.rmtree(path)


def walk_files(base: str) -> list[str]:
    """Relative '/'-separated paths of every regular file under base, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, base).replace(os.sep, "/")
            if rel == MANIFEST:
                continue
            out.append(rel)
    return sorted(out)


def fsync_tree(base: str) -> None:
    """fsync every file and directory below (and including) base, so that a manifest written
    afterwards never outlives the data it lists."""
    for dirpath, _dirnames, filenames in os.walk(base):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def secure_tree(base: str) -> None:
    """Files 0600, directories 0700 below (and including) base; symbolic links are left alone, so a
    link inside a set can never change the mode of something outside it."""
    os.chmod(base, DIR_MODE)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, DIR_MODE if name in dirnames else FILE_MODE)


def hash_files(
    base: str, rels: Iterable[str], workers: int = 2, known: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """[{path, size, sha256}] for files under base; hashing runs in threads (hashlib drops the GIL).

    ``known`` maps paths to SHA-256 digests the writer computed while it wrote those files (no
    second read); every other file is hashed here."""
    rels = list(rels)
    known = known or {}

    def one(rel: str) -> dict[str, Any]:
        full = os.path.join(base, *rel.split("/"))
        digest = known.get(rel) or sha256_file(full)
        return {"path": rel, "size": os.stat(full).st_size, "sha256": digest}

    if len(rels) <= 1 or workers <= 1:
        return [one(r) for r in rels]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, rels))


# --------------------------------------------------------------------------------------------
# manifest
# --------------------------------------------------------------------------------------------


def set_rel(kind: str, source: str, backup_id: str) -> str:
    return f"{validate_kind(kind)}/{source_dirname(source)}/{backup_id}"


def build_manifest(
    *,
    kind: str,
    source: str,
    backup_id: str,
    started: _dt.datetime,
    finished: _dt.datetime,
    files: list[dict[str, Any]],
    source_identity: dict[str, Any] | None = None,
    tool: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    facts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    files = sorted(files, key=lambda f: f["path"])
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "source": source,
        "backup_id": backup_id,
        "source_identity": source_identity or {},
        "started": iso(started),
        "finished": iso(finished),
        "duration_s": round((finished - started).total_seconds(), 3),
        "tool": tool or {},
        "server": server or {},
        "files": files,
        "total_size_bytes": sum(int(f["size"]) for f in files),
        "facts": facts or {},
    }


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


# A manifest may carry the SHA-256 of its own content: the canonical JSON (manifest_bytes) of the
# manifest without this key. It survives re-serialisation (upload, download) and catches any edit
# of a value; it is a checksum, not a signature (whoever edits the file can recompute it).
SELF_SHA256 = "self_sha256"


def manifest_self_sha256(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest's canonical JSON without its ``self_sha256`` key."""
    return hashlib.sha256(manifest_bytes({k: v for k, v in manifest.items() if k != SELF_SHA256})).hexdigest()


def with_self_sha256(manifest: dict[str, Any]) -> dict[str, Any]:
    return {**manifest, SELF_SHA256: manifest_self_sha256(manifest)}


def self_sha256_problem(manifest: dict[str, Any]) -> str | None:
    """None when the manifest's ``self_sha256`` matches its content (or it has none: see
    ``SELF_SHA256 in manifest``), else the problem."""
    recorded = manifest.get(SELF_SHA256)
    if recorded is None:
        return None
    if recorded != manifest_self_sha256(manifest):
        return "manifest.json was changed after the set was written (its self_sha256 checksum does not match)"
    return None


def check_manifest(manifest: Any, kind: str, source_dir: str, backup_id: str) -> dict[str, Any]:
    """Structural validation of a parsed manifest against the directory it was found in."""
    if not isinstance(manifest, dict):
        raise BackupSetError("manifest is not a JSON object")
    if manifest.get("format") != FORMAT_NAME:
        raise BackupSetError(f"manifest format is {manifest.get('format')!r}, expected {FORMAT_NAME!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1 or version > FORMAT_VERSION:
        raise BackupSetError(f"unsupported manifest format_version {version!r} (this reader knows 1..{FORMAT_VERSION})")
    for key in ("kind", "source", "backup_id", "started", "finished", "files"):
        if key not in manifest:
            raise BackupSetError(f"manifest has no {key!r}")
    if manifest["kind"] != kind:
        raise BackupSetError(f"manifest kind {manifest['kind']!r} does not match directory kind {kind!r}")
    if source_dirname(str(manifest["source"])) != source_dir:
        raise BackupSetError(f"manifest source {manifest['source']!r} does not match directory {source_dir!r}")
    if manifest["backup_id"] != backup_id:
        raise BackupSetError(f"manifest backup_id {manifest['backup_id']!r} does not match directory {backup_id!r}")
    files = manifest["files"]
    if not isinstance(files, list):
        raise BackupSetError("manifest 'files' is not a list")
    for entry in files:
        if not isinstance(entry, dict) or not {"path", "size", "sha256"} <= set(entry):
            raise BackupSetError(f"manifest file entry {entry!r} lacks path/size/sha256")
        path = entry["path"]
        if not isinstance(path, str) or path == MANIFEST or any(p in ("", ".", "..") for p in path.split("/")):
            raise BackupSetError(f"manifest file entry has an unsafe path {path!r}")
        size = entry["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BackupSetError(f"manifest file entry {path} has an invalid size {size!r}")
        if not isinstance(entry["sha256"], str) or not SHA256_RE.match(entry["sha256"]):
            raise BackupSetError(f"manifest file entry {path} has an invalid sha256 {entry['sha256']!r}")
    if "objects" in manifest:
        check_objects(manifest["objects"])
    return manifest


OBJECTS_DIR = "objects"


def check_objects(objects: Any) -> None:
    """``objects``: the S3 objects of an ``s3_snapshot`` set, each stored at ``objects/<key>``."""
    if not isinstance(objects, list):
        raise BackupSetError("manifest 'objects' is not a list")
    for entry in objects:
        if not isinstance(entry, dict) or not {"key", "size"} <= set(entry):
            raise BackupSetError(f"manifest object entry {entry!r} lacks key/size")
        if not isinstance(entry["key"], str) or not entry["key"]:
            raise BackupSetError(f"manifest object entry has an invalid key {entry['key']!r}")
        size = entry["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BackupSetError(f"manifest object {entry['key']!r} has an invalid size {size!r}")


# --------------------------------------------------------------------------------------------
# reading sets
# --------------------------------------------------------------------------------------------


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
            "size_bytes": manifest.get("total_size_bytes"),
            "file_count": len(manifest["files"]) if self.manifest else None,
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
    """The set with that id (``latest`` = newest valid one). Raises BackupSetError when none fits."""
    validate_kind(kind)
    if backup_id == "latest":
        for candidate in list_sets(storage, kind, source):
            if candidate.valid:
                return candidate
        raise BackupSetError(f"no valid {kind} backup set of {source!r} under {storage.url}")
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


# --------------------------------------------------------------------------------------------
# writing sets (local)
# --------------------------------------------------------------------------------------------


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
        deadline = time.monotonic() + max_wait_s
        while True:
            started = self._now()
            backup_id = format_backup_id(started)
            path = os.path.join(parent, backup_id)
            try:
                os.mkdir(path, DIR_MODE)
            except FileExistsError:
                # another set already has this second: wait for the next one (ids stay true start times)
                if time.monotonic() > deadline:
                    raise BackupSetError(f"cannot allocate a unique backup id under {parent}") from None
                time.sleep(1.0 - (started.microsecond / 1e6) + 0.001)
                continue
            except OSError as exc:
                raise BackupSetError(f"cannot create backup directory {path}: {exc.strerror or exc}") from exc
            self.backup_id, self.started, self.path = backup_id, started, path
            os.chmod(path, DIR_MODE)
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


# --------------------------------------------------------------------------------------------
# retention
# --------------------------------------------------------------------------------------------


def select_prune(
    sets: list[BackupSet], keep_last: int | None, keep_days: float | None, now: _dt.datetime
) -> tuple[list[BackupSet], list[BackupSet]]:
    """Split the VALID sets of one source into (keep, remove), newest first.

    A set is kept when it is among the newest ``keep_last`` valid sets or younger than ``keep_days``
    days. With neither rule, nothing is removed. The newest valid set is never removed.
    Invalid sets are not considered here (callers report them separately).
    """
    valid = sorted((s for s in sets if s.valid), key=lambda s: s.backup_id, reverse=True)
    if keep_last is None and keep_days is None:
        return valid, []
    keep: list[BackupSet] = []
    remove: list[BackupSet] = []
    for idx, s in enumerate(valid):
        by_count = keep_last is not None and idx < keep_last
        by_age = keep_days is not None and (now - s.when).total_seconds() < keep_days * 86400
        if idx == 0 or by_count or by_age:
            keep.append(s)
        else:
            remove.append(s)
    return keep, remove


# --------------------------------------------------------------------------------------------
# DR sets: one set of kind "dr" that names the component sets of one recovery point
# --------------------------------------------------------------------------------------------

DR_KIND = "dr"
DR_COMPONENTS_FILE = "components.json"
_COMPONENT_KEYS = ("kind", "source", "backup_id", "root")


def manifest_sha256(found: BackupSet) -> str:
    """SHA-256 of the set's manifest.json bytes: what a DR set records to pin a component set."""
    return hashlib.sha256(found.storage.read_bytes(f"{found.rel}/{MANIFEST}")).hexdigest()


def check_component_ref(index: int, ref: Any) -> dict[str, str]:
    """One component reference {kind, source, backup_id, root}, all non-empty strings, and optionally
    the host it was taken on (``host``: the inventory host that restores it; omitted when empty)."""
    if not isinstance(ref, dict):
        raise BackupSetError(f"components[{index}] must be a dict with {', '.join(_COMPONENT_KEYS)}")
    missing = [k for k in _COMPONENT_KEYS if not isinstance(ref.get(k), str) or not ref.get(k)]
    if missing:
        raise BackupSetError(f"components[{index}] needs a non-empty {', '.join(missing)}")
    validate_kind(ref["kind"])
    if ref["kind"] == DR_KIND:
        raise BackupSetError(f"components[{index}]: a DR set cannot contain another DR set")
    if ref["backup_id"] != "latest":
        parse_backup_id(ref["backup_id"])
    host = ref.get("host")
    if host is not None and not isinstance(host, str):
        raise BackupSetError(f"components[{index}]: host must be a string (an inventory host name)")
    return {k: ref[k] for k in _COMPONENT_KEYS} | ({"host": host} if host else {})


def describe_component(ref: dict[str, str], found: BackupSet) -> dict[str, Any]:
    """What a DR set records of one component set (its manifest pinned by checksum)."""
    manifest = found.manifest or {}
    return {
        **ref,
        "backup_id": found.backup_id,
        "location": found.location,
        "manifest_sha256": manifest_sha256(found),
        "started": manifest.get("started"),
        "finished": manifest.get("finished"),
        "size_bytes": manifest.get("total_size_bytes"),
        "file_count": len(manifest.get("files") or []) + len(manifest.get("objects") or []),
        "facts": manifest.get("facts") or {},
    }


def recovery_point(components: list[dict[str, Any]]) -> str:
    """The DR set's recovery point: the start of its oldest component (each component holds the
    data as of its own start, so everything is at least that fresh)."""
    starts = [c["started"] for c in components if c.get("started")]
    if not starts:
        raise BackupSetError("no component has a start time")
    return min(starts)


def check_dr_component(recorded: dict[str, Any], found: BackupSet, verify: bool, workers: int = 2) -> list[str]:
    """Problems of one component set against what the DR set recorded (empty when it is intact)."""
    if not found.valid:
        return [found.error or "not a valid backup set"]
    problems = []
    if manifest_sha256(found) != recorded.get("manifest_sha256"):
        problems.append("manifest changed since the DR set was made (checksum mismatch)")
    else:
        # the manifest is the pinned one: what the DR set says of it (row counts, key counts, times,
        # sizes) must be what it says, or a later check compares the restore with wrong figures
        ref = {k: recorded[k] for k in (*_COMPONENT_KEYS, "host") if k in recorded}
        actual = describe_component(ref, found)
        diffs = [
            d
            for key in ("started", "finished", "size_bytes", "file_count", "facts")
            for d in value_diffs(key, recorded.get(key), actual.get(key), "in the DR set", "in its manifest")
        ]
        if diffs:
            more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
            problems.append("the DR set records other figures than the set's manifest: " + "; ".join(diffs[:3]) + more)
    if verify:
        problems.extend(found.verify(workers=workers))
    return problems


def value_diffs(path: str, a: Any, b: Any, a_label: str, b_label: str) -> list[str]:
    """Where two JSON values differ, one line per leaf:
    ``facts.tables.public.orders: 1999 in the DR set, 2000 in its manifest``."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            out.extend(value_diffs(f"{path}.{key}", a.get(key), b.get(key), a_label, b_label))
        return out
    if a == b and type(a) is type(b):
        return []
    return [f"{path}: {json.dumps(a)} {a_label}, {json.dumps(b)} {b_label}"]


def check_dr_set(dr: BackupSet) -> tuple[str, list[str]]:
    """Problems of a DR set's own files: (``verified``, ``mismatch`` or ``missing``: its manifest's
    own checksum, problems).

    The manifest must match its ``self_sha256``, the DR set's files (``components.json``) must match
    the manifest, and the components named in the manifest must be those of ``components.json``
    (written with the set and hashed in the manifest): a component repointed or re-figured by an
    edit of manifest.json is named here even in a set written before manifests carried a checksum.
    """
    manifest = dr.manifest or {}
    problems: list[str] = []
    problem = self_sha256_problem(manifest)
    checksum = "missing" if SELF_SHA256 not in manifest else "mismatch" if problem else "verified"
    if problem:
        problems.append(f"DR set {dr.backup_id}: {problem}")
    problems.extend(f"DR set {dr.backup_id}: {p}" for p in dr.verify(workers=1))
    recorded = (manifest.get("facts") or {}).get("components")
    try:
        written = json.loads(dr.storage.read_bytes(f"{dr.rel}/{DR_COMPONENTS_FILE}").decode("utf-8"))
    except FileNotFoundError:
        problems.append(f"DR set {dr.backup_id}: {DR_COMPONENTS_FILE} is missing")
        return checksum, problems
    except (OSError, ValueError) as exc:
        problems.append(f"DR set {dr.backup_id}: cannot read {DR_COMPONENTS_FILE}: {exc}")
        return checksum, problems
    if not isinstance(recorded, list) or not isinstance(written, list) or len(recorded) != len(written):
        problems.append(
            f"DR set {dr.backup_id}: manifest.json and {DR_COMPONENTS_FILE} do not name the same number of components"
        )
        return checksum, problems
    for index, (rec, wrote) in enumerate(zip(recorded, written)):
        if not isinstance(rec, dict) or not isinstance(wrote, dict):
            problems.append(f"DR set {dr.backup_id}: component {index} is not a JSON object")
            continue
        diffs = [
            d
            for key in sorted(set(rec) | set(wrote))
            for d in value_diffs(key, wrote.get(key), rec.get(key), f"in {DR_COMPONENTS_FILE}", "in manifest.json")
        ]
        if diffs:
            label = f"{wrote.get('kind')} set {wrote.get('backup_id')} of {wrote.get('source')!r}"
            more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
            problems.append(
                f"{label}: manifest.json of DR set {dr.backup_id} was edited, it differs from "
                f"{DR_COMPONENTS_FILE} (written with the set): " + "; ".join(diffs[:3]) + more
            )
    return checksum, problems
