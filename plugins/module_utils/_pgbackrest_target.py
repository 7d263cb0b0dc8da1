# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pgBackRest restore targets and the restore command line (private), for postgresql_pitr_restore:
which recovery target the module's options name, and the ``pgbackrest restore`` argv that reaches it."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest import PgBackRestError, Runner

_LSN_RE = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")
_LABEL_RE = re.compile(r"^\d{8}-\d{6}F(?:_\d{8}-\d{6}[DI])?$")


def parse_target_time(value: str) -> str:
    """An ISO 8601 time with an explicit offset, as PostgreSQL's recovery_target_time reads it."""
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise PgBackRestError(
            f"target_time {value!r} is not an ISO 8601 time (expected e.g. 2026-12-05T21:57:19.68+00:00)"
        ) from None
    if moment.tzinfo is None:
        raise PgBackRestError(f"target_time {value!r} has no UTC offset (add +00:00 or Z, a bare time is ambiguous)")
    return moment.isoformat(sep=" ")


def restore_target(params: dict[str, Any]) -> tuple[str, str | None]:
    """(pgBackRest --type, --target) from the module's target options; exactly one must be given."""
    given = {k: params.get(k) for k in ("target_time", "target_lsn", "target_name") if params.get(k) not in (None, "")}
    target = params.get("target")
    if target and given:
        raise PgBackRestError(f"target={target} cannot be combined with {', '.join(sorted(given))}")
    if len(given) > 1:
        raise PgBackRestError(f"give one recovery target, not {' and '.join(sorted(given))}")
    if "target_time" in given:
        return "time", parse_target_time(str(given["target_time"]))
    if "target_lsn" in given:
        lsn = str(given["target_lsn"]).strip()
        if not _LSN_RE.match(lsn):
            raise PgBackRestError(f"target_lsn {lsn!r} is not a WAL location (expected e.g. 0/3000060)")
        return "lsn", lsn.upper()
    if "target_name" in given:
        name = str(given["target_name"])
        if len(name) > 63 or not name.strip():
            raise PgBackRestError(f"target_name {name!r} is not a restore point name (1 to 63 characters)")
        return "name", name
    if target == "immediate":
        return "immediate", None
    if target in (None, "", "latest"):
        return "default", None
    raise PgBackRestError(f"target {target!r} is not one of latest, immediate")


def restore_argv(
    runner: Runner,
    dest: str,
    kind: str,
    target: str | None,
    backup_set: str | None,
    promote: bool,
    exclusive: bool,
    archive_mode: str,
) -> list[str]:
    opts = [f"--pg1-path={dest}", f"--type={kind}", f"--archive-mode={archive_mode}"]
    if target is not None:
        opts.append(f"--target={target}")
        opts.append(f"--target-action={'promote' if promote else 'pause'}")
        if exclusive:
            opts.append("--target-exclusive")
    if backup_set:
        if not _LABEL_RE.match(backup_set):
            raise PgBackRestError(f"backup_set {backup_set!r} is not a pgBackRest backup label (e.g. 20261205-215734F)")
        opts.append(f"--set={backup_set}")
    # tablespaces would otherwise be restored to their original paths: the live cluster's
    opts.append(f"--tablespace-map-all={dest.rstrip('/')}.tablespaces")
    return runner.argv("restore", *opts)
