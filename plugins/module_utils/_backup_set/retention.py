# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention of backup sets (private module_utils): which sets a prune keeps and removes
(:func:`select_prune`) and the plan of one prune run under a root (:func:`plan_prune`).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._backup_set.reader import BackupSet, list_sets
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.storage import Storage


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


def scan_tree(storage: Storage, backup_set: BackupSet) -> tuple[int, _dt.datetime]:
    """(bytes stored, time of the last write) of a set directory, never earlier than its backup id
    (see :meth:`Storage.usage`: on S3 the sizes and newest LastModified of the set's objects)."""
    size, last_write = storage.usage(backup_set.rel)
    if last_write is None or last_write < backup_set.when:
        return size, backup_set.when
    return size, last_write


def plan_prune(
    storage: Storage,
    kind: str,
    source: str | None,
    keep_last: int | None,
    keep_days: float | None,
    incomplete_h: int,
    now: _dt.datetime,
) -> dict[str, Any]:
    """Decide, per source, what goes. Returns lists of BackupSet and the disk size of each removal."""
    by_source: dict[str, list[BackupSet]] = {}
    for backup_set in list_sets(storage, kind, source):
        by_source.setdefault(backup_set.source_dir, []).append(backup_set)
    plan: dict[str, Any] = {
        "all": [],
        "kept": [],
        "removed": [],
        "removed_incomplete": [],
        "left_in_place": [],
        "sizes": {},
    }
    for _source_dir, group in sorted(by_source.items()):
        plan["all"].extend(group)
        keep, remove = select_prune(group, keep_last, keep_days, now)
        plan["kept"].extend(keep)
        plan["removed"].extend(remove)
        for backup_set in remove:
            plan["sizes"][backup_set.rel] = scan_tree(storage, backup_set)[0]
        for backup_set in group:
            if backup_set.valid:
                continue
            size, last_write = scan_tree(storage, backup_set)
            idle_h = (now - last_write).total_seconds() / 3600
            if backup_set.incomplete and idle_h > incomplete_h:
                plan["removed_incomplete"].append(backup_set)
                plan["sizes"][backup_set.rel] = size
                continue
            if backup_set.incomplete:
                backup_set.error = f"{backup_set.error}; last written {idle_h:.1f} h ago, maybe still running"
            plan["left_in_place"].append(backup_set)
    for key in ("kept", "removed", "removed_incomplete", "left_in_place"):
        plan[key].sort(key=lambda s: (s.backup_id, s.source_dir), reverse=True)
    return plan
