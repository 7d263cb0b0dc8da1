#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_prune
short_description: Apply a retention policy to the backup sets of one kind
version_added: 0.1.0
description:
  - Removes the backup sets of kind O(kind) under O(root) that no retention rule keeps, separately for
    each source (database, Redis instance, bucket, ...) or only for O(source).
  - A valid set is kept when it is among the newest O(keep_last) valid sets of its source, or younger
    than O(keep_days) days (by its backup id, the UTC start time). With both options a set is kept
    when either rule keeps it. The newest valid set of a source is never removed.
  - Directories without a C(manifest.json) are interrupted backups. They are removed when nothing
    was written to them for O(remove_incomplete_older_than_h) hours (judged by the newest
    modification time inside them and by their backup id); a younger one may be a backup in progress
    and is left alone.
  - Sets that have a manifest but are not valid (damaged manifest, missing files, wrong sizes) are
    never removed by this module; they are returned in RV(left_in_place) with a warning, for a human to
    look at (see M(runbook.stack.backup_info)).
  - A set is removed manifest first, so an interrupted removal leaves an incomplete directory, never
    a set that looks valid but lacks files.
  - O(root) can also be an S3 backup root C(s3://bucket/prefix), as written by
    M(runbook.stack.backup_upload). The same rules apply there; a set is removed with
    C(DeleteObjects), its manifest in a request of its own before its other objects. The S3
    connection options are only used for such roots, and boto3 is only needed for them.
  - The format is described in C(docs/backup-format.md) of the collection.
author:
  - runbook.stack maintainers (@runbook-stack)
extends_documentation_fragment:
  - runbook.stack.s3
  - runbook.stack._attributes
  - runbook.stack._attributes.actiongroup_s3
attributes:
  check_mode:
    support: full
    details: Reports what would be removed, with C(changed) predicted, and removes nothing.
  diff_mode:
    support: full
    details: The backup ids of each source before and after.
  idempotent:
    support: full
    details: A later run can remove more sets, because sets age past O(keep_days) and new backups push older ones out of O(keep_last).
options:
  root:
    description:
      - The backup root directory (the O(runbook.stack.postgresql_backup#module:dest) of the backup modules),
        or an S3 backup root C(s3://bucket/prefix).
      - A local root that does not exist holds no set, so there is nothing to prune and C(changed) is false (for
        example in check mode before the first backup). A path that exists but is not a directory, or
        cannot be read, fails. For an S3 root, the bucket must exist.
    type: path
    required: true
    aliases: [backup_root]
  kind:
    description:
      - Kind of backup to prune, for example V(postgresql).
      - Lower-case letters, digits and C(_), starting with a letter.
    type: str
    required: true
  source:
    description:
      - Prune only the sets of this source (database name, Redis instance, ...), as given to the backup module.
      - When omitted, the rules are applied to every source under O(kind), each on its own.
    type: str
  keep_last:
    description:
      - Keep the newest O(keep_last) valid sets of each source. Must be at least V(1).
      - At least one of O(keep_last) and O(keep_days) is required.
    type: int
  keep_days:
    description:
      - Keep every valid set younger than this many days (fractions allowed). Must be greater than V(0).
      - At least one of O(keep_last) and O(keep_days) is required.
    type: float
  remove_incomplete_older_than_h:
    description:
      - Remove directories without a manifest (interrupted backups) in which nothing was written for
        more than this many hours. Must be at least V(1).
      - Choose a value well above the duration of your longest backup (or upload).
      - On an S3 root, the time of the last write is the newest C(LastModified) of the objects under
        the set's prefix (and the backup id). Multipart uploads still in progress are not objects yet,
        so a large upload that is still running can look idle; keep this value above the duration of
        your longest M(runbook.stack.backup_upload).
    type: int
    default: 24
notes:
  - Run it after a successful backup, for example in the same play, so a failing backup job does not
    leave the retention policy to remove the sets it would need.
seealso:
  - module: runbook.stack.backup_info
  - module: runbook.stack.backup_upload
  - module: runbook.stack.postgresql_backup
"""

EXAMPLES = r"""
- name: Keep the last 7 backups of every database, and every backup of the last 14 days
  runbook.stack.backup_prune:
    root: /var/backups/runbook
    kind: postgresql
    keep_last: 7
    keep_days: 14

- name: Keep only the last 3 backups of the application database
  runbook.stack.backup_prune:
    root: /var/backups/runbook
    kind: postgresql
    source: app
    keep_last: 3
    remove_incomplete_older_than_h: 12
  register: pruned

- name: Keep 30 days of off-host copies on S3, at least the last 7
  runbook.stack.backup_prune:
    endpoint_url: https://minio.internal.example.com:9000
    access_key: backup-admin
    secret_key: "{{ vault_s3_secret_key }}"
    root: s3://offsite-backups/runbook
    kind: postgresql
    keep_last: 7
    keep_days: 30

- name: Report the space given back
  ansible.builtin.debug:
    msg: "removed {{ pruned.removed | length }} sets, {{ pruned.freed_bytes | human_readable }}"
"""

RETURN = r"""
removed:
  description: The valid sets removed (in check mode, that would be removed), newest first.
  returned: always
  type: list
  elements: dict
  contains:
    kind:
      description: Kind of backup.
      type: str
      sample: postgresql
    source:
      description: Source name.
      type: str
      sample: app
    backup_id:
      description: Backup id, the UTC start time C(YYYYMMDDTHHMMSSZ).
      type: str
      sample: "20261101T020000Z"
    path:
      description: Directory of the set (C(s3://bucket/prefix/...) on an S3 root).
      type: str
      sample: /var/backups/runbook/postgresql/app/20261101T020000Z
    valid:
      description: Whether the set was valid.
      type: bool
      sample: true
    error:
      description: Why the set is not valid; V(null) for a valid set.
      type: str
    started:
      description: UTC start time from the manifest; V(null) without a valid manifest.
      type: str
      sample: "2026-11-01T02:00:00.412Z"
    finished:
      description: UTC time the set was sealed; V(null) without a valid manifest.
      type: str
      sample: "2026-11-01T02:03:51.907Z"
    size_bytes:
      description: Size of the files of the set.
      type: int
      sample: 734003200
    file_count:
      description: Number of files listed in the manifest; V(null) without a valid manifest.
      type: int
      sample: 42
kept:
  description: The valid sets kept, newest first (same keys as RV(removed)).
  returned: always
  type: list
  elements: dict
removed_incomplete:
  description:
    - Directories without a manifest, with nothing written to them for more than
      O(remove_incomplete_older_than_h) hours, that were (in check mode, would be) removed, newest
      first (same keys as RV(removed)).
    - C(size_bytes) of each entry is the size found on disk.
  returned: always
  type: list
  elements: dict
left_in_place:
  description:
    - Directories that are not valid sets and were left alone, newest first (same keys as RV(removed)),
      with the reason in its C(error) key.
    - Incomplete ones younger than O(remove_incomplete_older_than_h) (maybe a backup in progress) and
      sets with a damaged manifest or damaged files (left for a human; a warning is emitted).
  returned: always
  type: list
  elements: dict
freed_bytes:
  description: Bytes on disk of everything in RV(removed) and RV(removed_incomplete) (in check mode, that would be freed).
  returned: always
  type: int
  sample: 2202009600
diff:
  description: Backup ids of each source under O(kind) before and after.
  returned: when diff mode is enabled
  type: dict
  contains:
    before_header:
      description: The kind directory the diff is about.
      type: str
      sample: /var/backups/runbook/postgresql
    after_header:
      description: Same as RV(diff.before_header).
      type: str
      sample: /var/backups/runbook/postgresql
    before:
      description: Source name to list of backup ids, newest first, before pruning.
      type: dict
      sample: {"app": ["20261122T020000Z", "20261121T020000Z", "20261101T020000Z"]}
    after:
      description: Source name to list of backup ids, newest first, after pruning.
      type: dict
      sample: {"app": ["20261122T020000Z", "20261121T020000Z"]}
"""

import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.stack.plugins.module_utils import _s3
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.ids import BackupSetError, utcnow, validate_kind
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.reader import BackupSet
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.retention import plan_prune
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.storage import Storage, open_storage


def check_rules(
    kind: str, source: str | None, keep_last: int | None, keep_days: float | None, incomplete_h: int
) -> None:
    validate_kind(kind)
    if source == "":
        raise BackupSetError("source must not be an empty string; omit it to prune every source")
    if keep_last is None and keep_days is None:
        raise BackupSetError("one of keep_last or keep_days is required")
    if keep_last is not None and keep_last < 1:
        raise BackupSetError(f"keep_last must be at least 1, got {keep_last}")
    if keep_days is not None and not keep_days > 0:
        raise BackupSetError(f"keep_days must be greater than 0, got {keep_days}")
    if incomplete_h < 1:
        raise BackupSetError(f"remove_incomplete_older_than_h must be at least 1, got {incomplete_h}")


def check_root(storage: Storage) -> None:
    """A missing local root holds no set (nothing to prune, e.g. before the first backup); a local
    root that is not a directory, or an S3 root whose bucket does not exist, is an error."""
    local = storage.local_path("")
    if local is None:
        if not storage.exists(""):
            raise BackupSetError("the backup root does not exist (no such bucket)")
    elif os.path.lexists(local) and not os.path.isdir(local):
        raise BackupSetError(f"the backup root {local} is not a directory")


def apply_plan(storage: Storage, plan: dict[str, Any]) -> None:
    """Remove the planned sets, oldest first."""
    doomed = sorted(plan["removed"] + plan["removed_incomplete"], key=lambda s: s.backup_id)
    for done, backup_set in enumerate(doomed):
        try:
            storage.remove_set(backup_set.rel)
        except (OSError, _s3.S3Error) as exc:
            raise BackupSetError(
                f"removing {backup_set.location} failed after {done} of {len(doomed)} removals: {exc}"
            ) from exc


def ids_by_source(sets: list[BackupSet]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for backup_set in sorted(sets, key=lambda s: s.backup_id, reverse=True):
        out.setdefault(backup_set.source, []).append(backup_set.backup_id)
    return out


def report(plan: dict[str, Any], want_diff: bool, where: str) -> tuple[dict[str, Any], list[str]]:
    """The module result and the warnings to emit."""

    def summaries(sets: list[BackupSet]) -> list[dict[str, Any]]:
        out = []
        for backup_set in sets:
            summary = backup_set.summary()
            if backup_set.rel in plan["sizes"] and summary["size_bytes"] is None:
                summary["size_bytes"] = plan["sizes"][backup_set.rel]
            out.append(summary)
        return out

    gone = plan["removed"] + plan["removed_incomplete"]
    result: dict[str, Any] = {
        "changed": bool(gone),
        "removed": summaries(plan["removed"]),
        "kept": summaries(plan["kept"]),
        "removed_incomplete": summaries(plan["removed_incomplete"]),
        "left_in_place": summaries(plan["left_in_place"]),
        "freed_bytes": sum(plan["sizes"][s.rel] for s in gone),
    }
    if want_diff:
        gone_rels = {s.rel for s in gone}
        result["diff"] = {
            "before_header": where,
            "after_header": where,
            "before": ids_by_source(plan["all"]),
            "after": ids_by_source([s for s in plan["all"] if s.rel not in gone_rels]),
        }
    warnings = [
        f"backup set {s.location} is not valid and was left in place: {s.error}"
        for s in plan["left_in_place"]
        if not s.incomplete
    ]
    return result, warnings


def main() -> None:
    module = AnsibleModule(
        argument_spec=_s3.s3_argument_spec()
        | {
            "root": {"type": "path", "required": True, "aliases": ["backup_root"]},
            "kind": {"type": "str", "required": True},
            "source": {"type": "str"},
            "keep_last": {"type": "int"},
            "keep_days": {"type": "float"},
            "remove_incomplete_older_than_h": {"type": "int", "default": 24},
        },
        required_one_of=[("keep_last", "keep_days")],
        supports_check_mode=True,
    )
    p = module.params
    of = f"source {p['source']!r}" if p["source"] else "every source"
    try:
        check_rules(p["kind"], p["source"], p["keep_last"], p["keep_days"], p["remove_incomplete_older_than_h"])
        s3 = _s3.conn_info(p) if p["root"].startswith("s3://") else None  # S3 options only for S3 roots
        storage = open_storage(p["root"], s3=s3)
        check_root(storage)
        plan = plan_prune(
            storage,
            p["kind"],
            p["source"],
            p["keep_last"],
            p["keep_days"],
            p["remove_incomplete_older_than_h"],
            utcnow(),
        )
        if not module.check_mode:
            apply_plan(storage, plan)
    except (BackupSetError, _s3.S3Error, OSError) as exc:
        module.fail_json(msg=f"cannot prune {p['kind']} backups of {of} under {p['root']}: {exc}")
    result, warnings = report(plan, module._diff, f"{storage.url}/{p['kind']}")
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
