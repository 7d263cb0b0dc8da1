# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""On-demand ``pgbackrest expire`` of runbook.stack.postgresql_physical_backup (``type: expire``), private.

The prediction mirrors pgBackRest 2.45's expire command (src/command/expire/expire.c) on the backup
list of ``pgbackrest info --output=json`` (oldest first, as parse_info returns it):

- ``--set=<label>`` (ad hoc): that backup and every backup depending on it (through ``prior``) go,
  whatever the retention; the newest full backup is refused when it is the only full backup or the
  full backup before it belongs to another database (``database_id``); no retention is applied.
- otherwise count retention: all but the newest ``retention_full`` full backups go, each with its
  dependents; then ``retention_diff`` (when set) keeps that many of the newest full + diff backups
  and expires the older diff backups (full ones only count) with their dependents.

Time-based full retention (``repo1-retention-full-type=time``) is not predicted; an explicit
``retention_full`` always runs with ``--repo1-retention-full-type=count``.
"""

from __future__ import annotations

import re
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest import PgBackRestError, read_config

_ANY_LABEL_RE = re.compile(r"^\d{8}-\d{6}F(?:_\d{8}-\d{6}[DI])?$")


def expire_options(params: dict[str, Any]) -> list[str]:
    """pgbackrest expire options from the module's params; bad combinations name the option."""
    kind = params.get("type")
    retention = params.get("retention_full")
    label = params.get("set")
    if kind != "expire":
        given = [name for name, value in (("retention_full", retention), ("set", label)) if value not in (None, "")]
        if given:
            verb = "apply" if len(given) > 1 else "applies"
            raise PgBackRestError(f"{' and '.join(given)} {verb} only to type=expire, not to a {kind} backup")
        return []
    if retention is not None and label not in (None, ""):
        raise PgBackRestError(
            "set and retention_full cannot be combined (pgBackRest applies no retention when expiring one set)"
        )
    if retention is not None:
        if retention < 1:
            raise PgBackRestError(f"retention_full must be 1 or more, got {retention}")
        return [f"--repo1-retention-full={retention}", "--repo1-retention-full-type=count"]
    if label not in (None, ""):
        if not _ANY_LABEL_RE.match(label):
            raise PgBackRestError(f"set {label!r} is not a pgBackRest backup label (e.g. 20261205-215734F)")
        return [f"--set={label}"]
    return []


def dependents(backups: list[dict[str, Any]], label: str) -> list[str]:
    """``label`` and every backup that depends on it through its ``prior`` chain, oldest first."""
    gone = {label}
    for backup in backups:  # oldest first: a backup's prior is listed before it
        if backup.get("prior") in gone:
            gone.add(backup["label"])
    return [b["label"] for b in backups if b["label"] in gone]


def _fulls(backups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [b for b in backups if b.get("type") == "full"]


def set_refusal(backups: list[dict[str, Any]], label: str) -> str:
    """Why ``pgbackrest expire --set=label`` would refuse (or do nothing), "" when it would expire it."""
    labels = [b["label"] for b in backups]
    if label not in labels:
        return f"set {label!r} names no backup of this stanza (backups: {', '.join(labels) or 'none'})"
    fulls = _fulls(backups)
    if fulls and fulls[-1]["label"] == label:
        if len(fulls) == 1:
            return f"set {label!r} is the only full backup; pgBackRest expires it only after another full backup"
        if fulls[-2].get("database_id") != fulls[-1].get("database_id"):
            return (
                f"set {label!r} is the newest full backup and the one before it ({fulls[-2]['label']}) belongs to "
                "another database; pgBackRest expires it only after another full backup"
            )
    return ""


def predict_expire(
    backups: list[dict[str, Any]],
    retention_full: int | None = None,
    label: str | None = None,
    retention_diff: int | None = None,
) -> list[str]:
    """Labels ``pgbackrest expire`` would remove, oldest first (see the module docstring)."""
    if label:
        cause = set_refusal(backups, label)
        if cause:
            raise PgBackRestError(cause)
        return sorted(dependents(backups, label))
    left = list(backups)
    gone: list[str] = []

    def drop(name: str) -> None:
        removed = dependents(left, name)
        gone.extend(removed)
        left[:] = [b for b in left if b["label"] not in removed]

    if retention_full:
        fulls = _fulls(left)
        for full in fulls[: max(len(fulls) - retention_full, 0)]:
            drop(full["label"])
    if retention_diff:
        candidates = [b for b in left if b.get("type") in ("full", "diff")]
        for backup in candidates[: max(len(candidates) - retention_diff, 0)]:
            if backup.get("type") == "diff" and any(b["label"] == backup["label"] for b in left):
                drop(backup["label"])
    return sorted(gone)


def configured_retention(config_file: str, stanza: str) -> tuple[int | None, int | None, str]:
    """(repo1-retention-full, repo1-retention-diff, repo1-retention-full-type) of the stanza, the stanza's
    section overriding [global]; None where unset."""
    parser = read_config(config_file)

    def value(key: str) -> str | None:
        for section in (stanza, "global"):
            if parser.has_section(section) and parser.has_option(section, key):
                return parser.get(section, key).strip()
        return None

    def number(key: str) -> int | None:
        text = value(key)
        if text in (None, ""):
            return None
        try:
            return int(text)
        except ValueError:
            raise PgBackRestError(f"config_file {config_file} sets {key}={text!r}, not a number") from None

    return number("repo1-retention-full"), number("repo1-retention-diff"), value("repo1-retention-full-type") or "count"
