#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_info
short_description: List and check the backup sets stored under a backup root
version_added: 0.1.0
description:
  - Lists the backup sets of every kind (PostgreSQL, Redis, S3, ...) stored under O(root) in the
    runbook.stack backup-set format C(<root>/<kind>/<source>/<backup_id>/), newest first.
  - A directory without a valid C(manifest.json) is not a backup. It is still listed (unless
    O(include_invalid=false)) with RV(sets[].valid=false) and the reason in RV(sets[].error), so that
    interrupted or damaged backups are visible. Interrupted backups can be removed with
    M(runbook.stack.backup_prune).
  - Listing checks that every file named in a manifest exists with the recorded size. O(verify=true)
    also re-computes the SHA-256 of every file, which reads every byte of every set.
  - The format is described in C(docs/backup-format.md) of the collection.
  - O(root) can also be an S3 backup root C(s3://bucket/prefix), as written by
    M(runbook.stack.backup_upload). The S3 connection options are only used for such roots, and
    boto3 is only needed for them.
  - This module only reads; it never changes anything.
author:
  - runbook.stack maintainers (@runbook-stack)
extends_documentation_fragment:
  - runbook.stack.s3
  - runbook.stack._attributes
  - runbook.stack._attributes.info_module
  - runbook.stack._attributes.actiongroup_s3
options:
  root:
    description:
      - The backup root directory (the O(runbook.stack.postgresql_backup#module:dest) of the backup modules),
        or an S3 backup root C(s3://bucket/prefix) (the bucket must exist).
      - A root that does not exist yet holds no backups; the module then returns empty lists.
    type: path
    required: true
    aliases: [backup_root]
  kind:
    description:
      - Only list sets of this kind, for example V(postgresql).
      - Lower-case letters, digits and C(_), starting with a letter.
      - When omitted, every kind under O(root) is listed.
    type: str
  source:
    description:
      - Only list sets of this source (database name, Redis instance, bucket, ...), as given to the
        backup module; it is encoded into the directory name by the module.
      - When omitted, every source is listed.
    type: str
  verify:
    description:
      - Re-compute the SHA-256 of every file of every valid set and compare it with the manifest.
        On an S3 root every object is streamed through the hash; nothing is stored locally.
      - A set whose files do not match is reported with RV(sets[].valid=false) and the mismatching
        file in RV(sets[].error).
    type: bool
    default: false
  include_invalid:
    description:
      - List directories that are not valid backup sets (no manifest, damaged manifest, missing or
        changed files) in RV(sets), with the reason.
      - They are counted in RV(invalid_count) either way.
    type: bool
    default: true
  include_manifest:
    description:
      - Add the whole manifest of each valid set to its entry in RV(sets) (file list, tool, server and
        kind-specific facts such as the row count of every table).
    type: bool
    default: false
notes:
  - O(verify=true) reads every byte of every listed set; filter with O(kind) and O(source) on large roots.
seealso:
  - module: runbook.stack.backup_prune
  - module: runbook.stack.backup_upload
  - module: runbook.stack.postgresql_backup
  - module: runbook.stack.postgresql_restore
"""

EXAMPLES = r"""
- name: Find the newest valid backup of the application database
  runbook.stack.backup_info:
    root: /var/backups/runbook
    kind: postgresql
    source: app
  register: app_backups

- name: Restore exactly that backup
  runbook.stack.postgresql_restore:
    name: app
    path: "{{ app_backups.latest.path }}"
  when: app_backups.latest is not none

- name: Check every backup byte by byte and fail on any damaged or interrupted set
  runbook.stack.backup_info:
    root: /var/backups/runbook
    verify: true
  register: all_backups
  failed_when: all_backups.invalid_count > 0

- name: Check the off-host copies on S3 byte by byte
  runbook.stack.backup_info:
    endpoint_url: https://minio.internal.example.com:9000
    access_key: backup-reader
    secret_key: "{{ vault_s3_secret_key }}"
    root: s3://offsite-backups/runbook
    kind: postgresql
    verify: true
  register: offsite

- name: Show the newest backup of each source
  ansible.builtin.debug:
    msg: "{{ item.key }}: {{ item.value.backup_id }} ({{ item.value.size_bytes }} bytes)"
  loop: "{{ all_backups.latest_by_source | dict2items }}"
"""

RETURN = r"""
sets:
  description:
    - The backup sets found, newest first (by backup id, then kind and source).
    - Invalid sets are included only with O(include_invalid=true).
  returned: always
  type: list
  elements: dict
  contains:
    kind:
      description: Kind of backup.
      type: str
      sample: postgresql
    source:
      description: Source name as given to the backup module (decoded from the directory name).
      type: str
      sample: app
    backup_id:
      description: Backup id, the UTC start time C(YYYYMMDDTHHMMSSZ).
      type: str
      sample: "20261122T020000Z"
    path:
      description: Directory of the set (C(s3://bucket/prefix/...) on an S3 root).
      type: str
      sample: /var/backups/runbook/postgresql/app/20261122T020000Z
    valid:
      description: Whether the set has a valid manifest, all its files at the recorded sizes and, with O(verify=true), matching checksums.
      type: bool
      sample: true
    error:
      description: Why the set is not valid; V(null) for a valid set.
      type: str
      sample: "checksum mismatch on data/3021.dat.gz"
    started:
      description: UTC start time from the manifest; V(null) without a valid manifest.
      type: str
      sample: "2026-11-22T02:00:00.412Z"
    finished:
      description: UTC time the set was sealed; V(null) without a valid manifest.
      type: str
      sample: "2026-11-22T02:03:51.907Z"
    size_bytes:
      description: Total size of the files listed in the manifest and, for an S3 snapshot set, of its objects; V(null) without a valid manifest.
      type: int
      sample: 734003200
    file_count:
      description: Number of files listed in the manifest and, for an S3 snapshot set, of its objects; V(null) without a valid manifest.
      type: int
      sample: 42
    manifest:
      description: The whole manifest (see C(docs/backup-format.md)); V(null) when it could not be read.
      type: dict
      returned: when O(include_manifest=true)
latest:
  description:
    - Summary of the newest valid set among the listed ones (same keys as an element of RV(sets)),
      or V(null) when there is none.
    - With O(kind) and O(source) set, this is the set a restore of C(latest) would use.
  returned: always
  type: dict
  sample:
    kind: postgresql
    source: app
    backup_id: "20261122T020000Z"
    path: /var/backups/runbook/postgresql/app/20261122T020000Z
    valid: true
    error: null
    started: "2026-11-22T02:00:00.412Z"
    finished: "2026-11-22T02:03:51.907Z"
    size_bytes: 734003200
    file_count: 42
latest_by_source:
  description: The newest valid set of each source, keyed C(<kind>/<source>) (same keys as an element of RV(sets)).
  returned: always
  type: dict
  sample:
    postgresql/app:
      backup_id: "20261122T020000Z"
      path: /var/backups/runbook/postgresql/app/20261122T020000Z
valid_count:
  description: Number of valid sets found (after O(verify)).
  returned: always
  type: int
  sample: 14
invalid_count:
  description: Number of directories found that are not valid sets, whether or not O(include_invalid) lists them.
  returned: always
  type: int
  sample: 1
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.stack.plugins.module_utils import _s3
from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    BackupSet,
    BackupSetError,
    Storage,
    list_sets,
    open_storage,
)


def verify_sets(sets: list[BackupSet]) -> None:
    """Re-hash the files of every valid set; a set with problems becomes invalid with the reason."""
    for backup_set in sets:
        if backup_set.valid:
            problems = backup_set.verify()
            if problems:
                backup_set.error = "; ".join(problems)


def describe(backup_set: BackupSet, include_manifest: bool) -> dict[str, Any]:
    summary = backup_set.summary()
    if include_manifest:
        summary["manifest"] = backup_set.manifest
    return summary


def backup_inventory(
    storage: Storage,
    kind: str | None,
    source: str | None,
    verify: bool,
    include_invalid: bool,
    include_manifest: bool,
) -> dict[str, Any]:
    for option, value in (("kind", kind), ("source", source)):
        if value == "":
            raise BackupSetError(f"{option} must not be an empty string; omit it to list every {option}")
    sets = list_sets(storage, kind, source)
    if verify:
        verify_sets(sets)
    listed: list[dict[str, Any]] = []
    latest_by_source: dict[str, dict[str, Any]] = {}
    for backup_set in sets:  # newest first
        if not (backup_set.valid or include_invalid):
            continue
        summary = describe(backup_set, include_manifest)
        listed.append(summary)
        if backup_set.valid:
            latest_by_source.setdefault(f"{backup_set.kind}/{backup_set.source}", summary)
    valid_count = sum(1 for s in sets if s.valid)
    return {
        "sets": listed,
        "latest": next((s for s in listed if s["valid"]), None),
        "latest_by_source": latest_by_source,
        "valid_count": valid_count,
        "invalid_count": len(sets) - valid_count,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec=_s3.s3_argument_spec()
        | {
            "root": {"type": "path", "required": True, "aliases": ["backup_root"]},
            "kind": {"type": "str"},
            "source": {"type": "str"},
            "verify": {"type": "bool", "default": False},
            "include_invalid": {"type": "bool", "default": True},
            "include_manifest": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        s3 = _s3.conn_info(p) if p["root"].startswith("s3://") else None  # S3 options only for S3 roots
        result = backup_inventory(
            open_storage(p["root"], s3=s3),
            p["kind"],
            p["source"],
            p["verify"],
            p["include_invalid"],
            p["include_manifest"],
        )
    except (BackupSetError, _s3.S3Error, OSError) as exc:
        module.fail_json(msg=f"cannot list backups under {p['root']}: {exc}")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
