# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The manifest of a backup set (private module_utils): building it, its canonical bytes, its own
checksum, and the structural checks every reader applies. See docs/backup-format.md.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._backup_set.ids import (
    MANIFEST,
    BackupSetError,
    iso,
    source_dirname,
)

FORMAT_NAME = "runbook.stack/backup-set"
FORMAT_VERSION = 1
SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
OBJECTS_DIR = "objects"


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


def set_size(manifest: dict[str, Any]) -> int:
    """Bytes of a set: its files and, for an S3 snapshot set, its objects (the manifest not counted)."""
    return int(manifest.get("total_size_bytes") or 0) + sum(
        int(o.get("size", 0)) for o in manifest.get("objects") or []
    )


def set_file_count(manifest: dict[str, Any]) -> int:
    """Files of a set and, for an S3 snapshot set, its objects (the manifest not counted)."""
    return len(manifest.get("files") or []) + len(manifest.get("objects") or [])


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
