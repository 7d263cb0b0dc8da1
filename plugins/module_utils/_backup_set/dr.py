# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DR sets (private module_utils): one backup set of kind ``dr`` that names the component sets of
one recovery point, each pinned by the checksum of its manifest.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._backup_set.ids import (
    MANIFEST,
    BackupSetError,
    parse_backup_id,
    validate_kind,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.manifest import (
    SELF_SHA256,
    self_sha256_problem,
    set_file_count,
    set_size,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.reader import BackupSet

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
        "size_bytes": set_size(manifest),
        "file_count": set_file_count(manifest),
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
        # a DR set written before size_bytes counted an S3 snapshot's objects recorded the files only
        legacy_size = (found.manifest or {}).get("total_size_bytes")
        if ref.get("kind") == "s3" and recorded.get("size_bytes") == legacy_size != actual["size_bytes"]:
            actual["size_bytes"] = legacy_size
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
