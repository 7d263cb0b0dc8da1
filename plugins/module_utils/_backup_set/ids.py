# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Names in the backup-set layout ``<root>/<kind>/<source>/<backup_id>/`` (private module_utils).

The error type of the package, backup ids (UTC start times), kinds and the encoding of a source name
as one directory name. See docs/backup-format.md.
"""

from __future__ import annotations

import datetime as _dt
import re

MANIFEST = "manifest.json"
ID_FORMAT = "%Y%m%dT%H%M%SZ"
# ASCII digits only and \Z (not $, which also matches before a trailing newline)
ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z\Z")
KIND_RE = re.compile(r"^[a-z][a-z0-9_]*\Z")


class BackupSetError(Exception):
    """A backup set is missing, incomplete, corrupt or cannot be written."""


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


def set_rel(kind: str, source: str, backup_id: str) -> str:
    """Where a set lives below its root: ``<kind>/<encoded source>/<backup_id>``."""
    return f"{validate_kind(kind)}/{source_dirname(source)}/{backup_id}"
