#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_restore
short_description: Restore the objects of an S3 snapshot set server-side into a bucket
version_added: 0.1.0
description:
  - Restores a backup set made by M(runbook.stack.s3_snapshot) from
    C(<backup_root>/s3/<source_bucket>/<backup_id>/) into O(bucket), copying the objects server-side with
    their content type and user metadata.
  - Before anything changes, the set must be valid (C(manifest.json) present and consistent) and every
    object the manifest lists must exist in the set with its recorded size (one listing); otherwise the
    module refuses and names the set and the problem.
  - After the copies and deletes, the target is listed again and checked against the manifest (every key
    present with its size, and its ETag where ETags are comparable). The module fails naming the keys that
    do not match.
  - "ETag rule: an object whose size differs is different. An ETag equal to the snapshot's source ETag or
    to the ETag of the backup copy means identical. Two plain MD5 ETags (32 hex digits) that differ mean
    different content. A multipart ETag (C(<md5>-<parts>)) depends on the part sizes, so when no plain MD5
    can be compared and no ETag is equal, the size alone decides and the object is taken as identical
    (like C(aws s3 sync --size-only)). Use O(mode=overwrite) to copy regardless."
  - Content type and user metadata are not compared (a listing does not show them); they are copied with
    every object that is copied.
  - "Nothing is lost: before anything changes, every object of O(bucket) that the restore would replace
    with other content or delete (O(mode=mirror)) is copied server-side, with its content type and
    metadata, to C(pre-restore-<backup_id>/<its key>) in the same bucket, and the copies are checked (size
    and ETag). The kept prefix is always at the bucket root, whatever O(prefix) is. When an earlier restore
    of the same set kept objects already, C(pre-restore-<backup_id>.2/) (then C(.3/), ...) is used instead,
    so the newest suffix holds the state just before the latest run. To roll back, copy the kept objects
    back to their keys (for example C(aws s3 cp --recursive s3://<bucket>/pre-restore-<id>/ s3://<bucket>/))
    and delete the objects the restore added. O(keep_previous=false) turns this off."
  - "Kept areas (keys matching C(pre-restore-<YYYYMMDDTHHMMSSZ>[.N]/) at the bucket root) are not live data:
    this module never deletes or keeps them again in O(mode=mirror), and M(runbook.stack.s3_snapshot) and
    M(runbook.stack.s3_retention) leave them out unless their O(prefix) itself starts with C(pre-restore-).
    Remove a kept area with M(runbook.stack.s3_retention) and that prefix once it is no longer needed."
extends_documentation_fragment:
  - runbook.stack.s3
  - runbook.stack.backup_set.s3_root
  - runbook.stack._attributes
  - runbook.stack._attributes.actiongroup_s3
attributes:
  check_mode:
    support: full
    details: Validates the set, lists the target and returns RV(would_copy), RV(would_delete),
      RV(would_keep), the RV(keep_prefix) a real run would use and a sample of the keys; copies, keeps and
      deletes nothing.
  diff_mode:
    support: partial
    details: The diff lists the objects that change (at most O(sample_size) keys, by key), each with its size
      before and after, and the kept copies.
  idempotent:
    support: full
    details: With O(mode=missing) or O(mode=mirror) a second run finds the target identical and reports
      C(changed=false). O(mode=overwrite) copies every object on every run.
options:
  source_bucket:
    description:
      - Name of the bucket the snapshot was taken of (the source of the set). Defaults to O(bucket).
    type: str
    aliases: [source]
  backup_id:
    description:
      - Id of the set to restore (C(YYYYMMDDTHHMMSSZ)), or V(latest) for the newest valid set of
        O(source_bucket).
    type: str
    default: latest
  bucket:
    description:
      - Bucket to restore into. It must exist.
    type: str
    required: true
  prefix:
    description:
      - Prefix that replaces the snapshot's prefix in every restored key, for example to restore
        C(tenants/a/...) as C(restored/tenants/a/...) with V(restored/tenants/a/) when the snapshot was taken
        with prefix C(tenants/a/).
      - Defaults to the snapshot's prefix, so keys are restored unchanged.
    type: str
  mode:
    description:
      - V(missing) copies the objects that are absent from the target or differ from the snapshot (see the
        ETag rule above) and leaves all other objects alone.
      - V(overwrite) copies every object of the snapshot.
      - V(mirror) copies like V(missing) and also deletes the objects under O(prefix) in O(bucket) that the
        snapshot does not have (kept first, see O(keep_previous)). Requires O(allow_delete=true).
    type: str
    default: missing
    choices: [missing, overwrite, mirror]
  allow_delete:
    description:
      - Must be V(true) for O(mode=mirror), which deletes objects; the module refuses otherwise before it
        does anything.
    type: bool
    default: false
  keep_previous:
    description:
      - Keep every object the restore replaces with other content or deletes under
        C(pre-restore-<backup_id>/) (or C(.2/), C(.3/), ... when taken) in O(bucket), copied and checked
        before anything changes (V(true)); or replace and delete without a copy (V(false)).
      - The kept copies take the space of the objects they keep until they are removed.
    type: bool
    default: true
  concurrency:
    description:
      - Copy requests in flight at once, from 1 to 256.
    type: int
    default: 32
  multipart_threshold:
    description:
      - Objects of this many bytes or more are copied with a multipart upload; from 5 MiB to 5 GiB.
    type: int
    default: 5368709120
  part_size:
    description:
      - Size of each part of a multipart copy, from 5 MiB to 5 GiB.
    type: int
    default: 268435456
  sample_size:
    description:
      - How many keys to return in RV(sample) for copies and for deletes.
    type: int
    default: 10
seealso:
  - module: runbook.stack.s3_snapshot
  - module: runbook.stack.backup_info
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Put back whatever is missing or damaged in the uploads bucket from the newest snapshot
  runbook.stack.s3_restore:
    endpoint_url: https://minio.internal.example.com:9000
    access_key: backup-admin
    secret_key: "{{ vault_s3_secret_key }}"
    backup_root: s3://backups
    bucket: app-uploads
  register: restored

- name: Preview making the bucket exactly the snapshot of 22 November
  runbook.stack.s3_restore:
    backup_root: s3://backups
    bucket: app-uploads
    backup_id: 20261122T020000Z
    mode: mirror
    allow_delete: true
  check_mode: true
  register: plan

- name: Say where the objects written since the snapshot will be kept
  ansible.builtin.debug:
    msg: "{{ plan.would_keep }} objects would be kept under {{ plan.kept_location }}"
  when: plan.would_keep > 0

- name: Restore one tenant's snapshot under another prefix of a scratch bucket
  runbook.stack.s3_restore:
    backup_root: s3://backups
    source_bucket: app-data
    bucket: restore-scratch
    prefix: check/tenants/a/
"""

RETURN = r"""
backup_id:
  description: Id of the set restored.
  type: str
  returned: success
  sample: 20261122T020000Z
location:
  description: URL of the set restored.
  type: str
  returned: success
  sample: s3://backups/s3/app-uploads/20261122T020000Z
mode:
  description: The O(mode) used.
  type: str
  returned: always
  sample: missing
would_copy:
  description: Objects selected for copying (the same in check mode and in a real run).
  type: int
  returned: success
  sample: 12
would_delete:
  description: Objects selected for deletion (O(mode=mirror) only).
  type: int
  returned: success
  sample: 3
copied:
  description: Objects copied; 0 in check mode.
  type: int
  returned: always
  sample: 12
deleted:
  description: Objects deleted; 0 in check mode.
  type: int
  returned: always
  sample: 3
would_keep:
  description: Objects of the target selected for keeping (replaced with other content or deleted); 0 with
    O(keep_previous=false).
  type: int
  returned: success
  sample: 4
kept:
  description: Objects copied to RV(keep_prefix) and checked; 0 in check mode.
  type: int
  returned: always
  sample: 4
keep_prefix:
  description: Prefix at the root of O(bucket) under which the replaced and deleted objects are (or in check
    mode would be) kept, each at C(<keep_prefix><its key>); null when nothing is kept.
  type: str
  returned: always
  sample: pre-restore-20261122T020000Z/
kept_location:
  description: URL of RV(keep_prefix); null when nothing is kept.
  type: str
  returned: always
  sample: s3://app-uploads/pre-restore-20261122T020000Z/
skipped_objects:
  description: Objects of the snapshot already identical in the target (not copied).
  type: int
  returned: success
  sample: 4992
verified:
  description: Objects of the snapshot found in the target with the right size and ETag after the run
    (in check mode, before it, when nothing needs to change; else 0).
  type: int
  returned: success
  sample: 5004
bytes:
  description: Bytes selected for copying.
  type: int
  returned: success
  sample: 98304
sample:
  description: Up to O(sample_size) target keys that are (or would be) copied and deleted.
  type: dict
  returned: success
  contains:
    to_copy:
      description: Keys copied (or to be copied in check mode).
      type: list
      elements: str
    to_delete:
      description: Keys deleted (or to be deleted in check mode).
      type: list
      elements: str
    to_keep:
      description: Keys kept under RV(keep_prefix) (or to be kept in check mode), as they were before the
        restore.
      type: list
      elements: str
  sample: {"to_copy": ["img/1.png"], "to_delete": ["tmp/stray.txt"], "to_keep": ["img/1.png", "tmp/stray.txt"]}
steps:
  description:
    - What the run did, in order, with the seconds each step took, as every module of this collection returns
      them; a check run finds the set and plans only.
  type: list
  elements: dict
  returned: always
  contains:
    step: {description: What was done., type: str}
    duration_s: {description: Seconds it took., type: float}
  sample:
    - {"step": "find the set and check its objects", "duration_s": 0.12}
    - {"step": "list the target and plan", "duration_s": 0.05}
    - {"step": "server-side copies from the set", "duration_s": 1.7}
    - {"step": "verify the target against the manifest", "duration_s": 0.06}
duration_s:
  description: Seconds the module spent.
  type: float
  returned: always
  sample: 1.21
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._backup_set.ids import BackupSetError
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.reader import find_set
from ansible_collections.runbook.stack.plugins.module_utils._common.process import Interrupted, stop_on_signals
from ansible_collections.runbook.stack.plugins.module_utils._common.steps import Steps
from ansible_collections.runbook.stack.plugins.module_utils._s3.connection import client, conn_info, s3_argument_spec
from ansible_collections.runbook.stack.plugins.module_utils._s3.copier import Copier, CopyJob
from ansible_collections.runbook.stack.plugins.module_utils._s3.copy_plan import (
    DEFAULT_MULTIPART_THRESHOLD,
    DEFAULT_PART_SIZE,
    RESTORE_MODES,
    backup_key,
    check_copy_options,
    check_no_overlap,
    deprecated_root_message,
    free_keep_prefix,
    plan_restore,
    restore_diff,
    sample,
    snapshot_root,
    snapshot_root_spec,
    split_backup_prefix,
    verify_restore,
)
from ansible_collections.runbook.stack.plugins.module_utils._s3.errors import BOTO3_IMPORT_ERROR, HAS_BOTO3, S3Error
from ansible_collections.runbook.stack.plugins.module_utils._s3.storage import S3Storage

KEYS_SHOWN = 10


def target_listing(target: S3Storage, prefix: str) -> dict[str, tuple[int, str]]:
    """{key: (size, ETag)} of the objects of the target bucket under ``prefix``."""
    return {o["Key"]: (int(o.get("Size", 0)), str(o.get("ETag") or "")) for o in target.list_objects(prefix)}


def check_options(p: dict[str, Any]) -> None:
    if p["mode"] not in RESTORE_MODES:
        raise S3Error(f"unknown mode {p['mode']!r}: expected one of {', '.join(RESTORE_MODES)}")
    if p["mode"] == "mirror" and not p["allow_delete"]:
        raise S3Error(
            "mode=mirror deletes the objects of the target that the snapshot does not have: set allow_delete: true"
        )
    if p["sample_size"] < 0:
        raise S3Error(f"sample_size must be 0 or more, got {p['sample_size']}")
    check_copy_options(p["concurrency"], p["multipart_threshold"], p["part_size"])


def shown(keys: list[str]) -> str:
    more = f" and {len(keys) - KEYS_SHOWN} more" if len(keys) > KEYS_SHOWN else ""
    return "; ".join(keys[:KEYS_SHOWN]) + more


def main() -> None:
    argument_spec = s3_argument_spec() | dict(
        source_bucket=dict(type="str", aliases=["source"]),
        backup_id=dict(type="str", default="latest"),
        bucket=dict(type="str", required=True),
        prefix=dict(type="str"),
        mode=dict(type="str", default="missing", choices=list(RESTORE_MODES)),
        allow_delete=dict(type="bool", default=False),
        keep_previous=dict(type="bool", default=True),
        concurrency=dict(type="int", default=32),
        multipart_threshold=dict(type="int", default=DEFAULT_MULTIPART_THRESHOLD),
        part_size=dict(type="int", default=DEFAULT_PART_SIZE),
        sample_size=dict(type="int", default=10),
    )
    root_spec, root_rules = snapshot_root_spec()
    module = AnsibleModule(argument_spec=argument_spec | root_spec, **root_rules, supports_check_mode=True)
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=BOTO3_IMPORT_ERROR)

    p = module.params
    deprecated = deprecated_root_message(p["backup_root"], p["backup_bucket"], p["backup_prefix"])
    if deprecated:
        # the version as _s3.copy_plan.DEPRECATED_ROOT_REMOVAL: sanity's pylint wants a literal here
        module.deprecate(deprecated, version="2.0.0", collection_name="runbook.stack")
    t0 = time.monotonic()
    steps = Steps()
    source = p["source_bucket"] or p["bucket"]
    what = f"backup {p['backup_id']} of bucket {source!r}"
    done = dict(copied=0, deleted=0, kept=0)
    keeping: dict[str, Any] = dict(keep_prefix=None, kept_location=None)
    result: dict[str, Any] = {}
    stop_on_signals()  # SIGTERM, SIGINT, SIGHUP or a vanished controller: report what was kept, as on any failure
    try:
        check_options(p)
        backup_bucket, backup_prefix = snapshot_root(p["backup_root"], p["backup_bucket"], p["backup_prefix"])
        root, kind = split_backup_prefix(backup_prefix)
        info = conn_info(p)
        cli = client(info, max_pool_connections=2 * p["concurrency"])
        storage = S3Storage(f"s3://{backup_bucket}/{root}", info, cli)
        target_bucket = S3Storage.bucket_root(p["bucket"], info, cli)

        # 1. the set: valid manifest, every object present at its size (one listing)
        found = find_set(storage, kind, source, p["backup_id"])
        what = f"backup {found.backup_id} of bucket {source!r}"
        manifest = found.manifest or {}
        if not isinstance(manifest.get("objects"), list):
            raise BackupSetError(f"set {found.location} is not an S3 snapshot (its manifest lists no objects)")
        entries = manifest["objects"]
        from_prefix = str((manifest.get("facts") or {}).get("prefix") or "")
        to_prefix = from_prefix if p["prefix"] is None else p["prefix"]
        check_no_overlap(p["bucket"], to_prefix, backup_bucket, backup_prefix)
        set_key_prefix = f"{storage.key(found.rel)}/"
        steps.mark("find the set and check its objects")

        # 2. the target, the plan and where what it replaces is kept
        target = target_listing(target_bucket, to_prefix)
        plan = plan_restore(entries, target, p["mode"], from_prefix, to_prefix)
        to_keep = plan.replaced if p["keep_previous"] else []
        if to_keep:
            keep_prefix = free_keep_prefix(cli, info, p["bucket"], found.backup_id)
            keeping = dict(keep_prefix=keep_prefix, kept_location=f"s3://{p['bucket']}/{keep_prefix}")
        result = dict(
            backup_id=found.backup_id,
            location=found.location,
            would_copy=len(plan.copy),
            would_delete=len(plan.delete),
            would_keep=len(to_keep),
            skipped_objects=plan.skipped,
            bytes=plan.bytes,
            verified=0,
            sample=dict(
                to_copy=sample((key for _entry, key in plan.copy), p["sample_size"]),
                to_delete=sample(plan.delete, p["sample_size"]),
                to_keep=sample((key for key, _size, _etag in to_keep), p["sample_size"]),
            ),
        )
        steps.mark("list the target and plan")
        if module._diff:
            result["diff"] = restore_diff(plan, p["bucket"], keeping["keep_prefix"], found.backup_id, p["sample_size"])
        if not plan.copy and not plan.delete:
            # nothing to change: the listing just taken is the verification
            problems = verify_restore(entries, target, from_prefix, to_prefix)
            if problems:
                raise S3Error(f"the target does not match the snapshot: {shown(problems)}")
            result["verified"] = len(entries)
            steps.mark("verify the target (nothing to change)")
        elif not module.check_mode:
            copier = Copier(info, cli, p["concurrency"], p["multipart_threshold"], p["part_size"])
            # 3. keep what is replaced or deleted, checked, before anything changes (only if unchanged
            # since the listing: the copy carries the listed ETag as a condition)
            if to_keep:
                keep_prefix = keeping["keep_prefix"]
                keep_jobs = [
                    CopyJob(p["bucket"], key, p["bucket"], f"{keep_prefix}{key}", size=size, etag=etag)
                    for key, size, etag in to_keep
                ]
                copier.run(keep_jobs)
                problems = verify_restore(
                    [{"key": key, "size": size, "etag": etag} for key, size, etag in to_keep],
                    target_listing(target_bucket, keep_prefix),
                    "",
                    keep_prefix,
                    copied={j.dst_key: j.new_etag for j in keep_jobs},
                )
                if problems:
                    raise S3Error(f"the kept copies do not match the objects they keep: {shown(problems)}")
                done["kept"] = len(keep_jobs)
                steps.mark("keep what is replaced or deleted, and check the copies")
            # 4. copies (server-side, from the backup objects, only if they still have the recorded ETag)
            jobs = [
                CopyJob(
                    src_bucket=backup_bucket,
                    src_key=backup_key(set_key_prefix, entry["key"]),
                    dst_bucket=p["bucket"],
                    dst_key=key,
                    size=int(entry["size"]),
                    etag=str(entry.get("backup_etag") or ""),
                )
                for entry, key in plan.copy
            ]
            copier.run(jobs)
            done["copied"] = len(jobs)
            steps.mark("server-side copies from the set")
            # 5. deletes (mirror)
            if plan.delete:
                done["deleted"] = target_bucket.delete_keys(plan.delete)
                steps.mark("delete what the set does not hold")
            # 6. verify the target against the manifest
            after = target_listing(target_bucket, to_prefix)
            problems = verify_restore(
                entries, after, from_prefix, to_prefix, copied={j.dst_key: j.new_etag for j in jobs}
            )
            if problems:
                raise S3Error(f"verification failed, the target does not match the snapshot: {shown(problems)}")
            result["verified"] = len(entries)
            steps.mark("verify the target against the manifest")
    except (S3Error, BackupSetError, OSError, Interrupted) as exc:
        where = keeping["kept_location"]
        if where and done["kept"]:
            kept = f"; the {done['kept']} objects it replaces or deletes were kept under {where} before any change"
        elif where:
            kept = f"; nothing was replaced (copies of the objects to keep may be under {where})"
        else:
            kept = ""
        module.fail_json(
            msg=f"cannot restore {what} into bucket {p['bucket']!r}: {exc}{kept}",
            mode=p["mode"],
            changed=any(done.values()),
            **done,
            **keeping,
            steps=steps.items,
            duration_s=round(time.monotonic() - t0, 3),
        )
    module.exit_json(
        changed=bool(result["would_copy"] or result["would_delete"]),
        mode=p["mode"],
        **result,
        **done,
        **keeping,
        steps=steps.items,
        duration_s=round(time.monotonic() - t0, 3),
    )


if __name__ == "__main__":
    main()
