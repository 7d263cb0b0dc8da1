#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_restore_to_time
short_description: Put a versioned S3 bucket or prefix back to its state at a point in time
version_added: 0.1.0
description:
  - Restores, in place, every key of O(bucket) under O(prefix) to the state it had at O(target_time),
    from the bucket's own version history (ListObjectVersions). Versioning must be enabled on the
    bucket, for example with M(amazon.aws.s3_bucket) and C(versioning=true).
  - "For each key the module takes the newest entry (version or delete marker) whose LastModified,
    truncated to the second, is at or before O(target_time); so the target is the state at the end of
    that second. When two entries of a key fall in the same second, the server's listing order
    (newest first) decides."
  - If that entry is a version other than the current one, it is copied over the key server-side
    (CopyObject of that version id, content type and user metadata kept; a multipart copy from
    O(multipart_threshold) on). If it is a delete marker, or the key had no entry yet, the key is
    deleted; with versioning enabled that only adds a delete marker, so nothing is lost and the
    restore itself can be undone by a restore to a time just before it.
  - "A key is left alone when its current version already is the chosen one: the same version id,
    or the same size and ETag (a copy made by an earlier run). A second run therefore changes
    nothing, except for objects copied with a multipart copy, whose ETag usually differs from the
    source's: they are copied again."
  - "Refusals, before anything changes: versioning not C(Enabled) on the bucket (C(Suspended) or
    never enabled); O(target_time) in the future; O(target_time) older than the newest C(null)
    version or delete marker under O(prefix). A C(null) entry was written while versioning was off
    (before it was enabled, or while suspended) and replaced the key's earlier C(null) entry without
    keeping it, so the state before it is not recorded. And O(target_time) before the bucket's creation
    date (ListBuckets C(CreationDate); skipped when the credentials may not list buckets) when no
    version or delete marker under O(prefix) is that old either: the bucket did not exist then. Keys
    deleted before versioning was ever enabled leave no trace at all; no check can see them."
  - After the copies and deletes the prefix is listed again, and the module fails naming the keys
    whose current object is not their state at O(target_time) (present when it should be absent, or
    another size or ETag than the chosen version's or its copy's).
  - Keys first written under O(prefix) while the module runs are not in its plan and are left as they are.
    A write to a planned key while the module runs is kept as a version, but may be overwritten by the
    restore's copy or make the final verification fail; stop the writers first.
extends_documentation_fragment:
  - runbook.stack.s3
  - runbook.stack._attributes
  - runbook.stack._attributes.actiongroup_s3
attributes:
  check_mode:
    support: full
    details: Lists the versions and returns RV(would_copy), RV(would_delete), RV(sample) and RV(plan) as a
      real run would; copies and deletes nothing.
  diff_mode:
    support: partial
    details: The diff shows, for at most O(sample_size) changed keys, the current version and the version
      at O(target_time) (or absent).
  idempotent:
    support: partial
    details: A second run with the same O(target_time) finds every key in its state at that time and
      reports C(changed=false), except for objects that needed a multipart copy (see above).
options:
  bucket:
    description:
      - Bucket to restore. It must exist and have versioning enabled.
    type: str
    required: true
  prefix:
    description:
      - Only keys starting with this string are restored (a plain S3 prefix; V(tenants/a/) differs from
        V(tenants/a)). Keys outside it are never read or changed.
      - The default, the empty string, restores the whole bucket.
    type: str
    default: ""
  target_time:
    description:
      - The time to go back to, ISO 8601 with a time zone, for example V(2026-12-05T21:30:00Z) or
        V(2026-12-05T22:30:00+01:00) (converted to UTC).
      - Whole seconds only, as S3 records versions; a time with a non-zero fraction of a second, without a
        time zone, or in the future is refused.
    type: str
    required: true
  concurrency:
    description:
      - Copy requests in flight at once, from 1 to 256.
    type: int
    default: 32
  multipart_threshold:
    description:
      - Versions of this many bytes or more are copied with a multipart upload; from 5 MiB to 5 GiB.
    type: int
    default: 5368709120
  part_size:
    description:
      - Size of each part of a multipart copy, from 5 MiB to 5 GiB.
    type: int
    default: 268435456
  page_size:
    description:
      - Versions and delete markers asked for per ListObjectVersions request, from 1 to 1000.
    type: int
    default: 1000
  sample_size:
    description:
      - How many keys to return in RV(sample) for copies and for deletes, and in RV(plan).
    type: int
    default: 10
notes:
  - The versions under O(prefix) are all listed and held in memory (a few hundred bytes each).
seealso:
  - module: amazon.aws.s3_bucket
  - module: runbook.stack.s3_restore
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Preview putting the uploads bucket back to 21:30 UTC
  runbook.stack.s3_restore_to_time:
    endpoint_url: https://minio.internal.example.com:9000
    access_key: backup-admin
    secret_key: "{{ vault_s3_secret_key }}"
    bucket: app-uploads
    target_time: "2026-12-05T21:30:00Z"
  check_mode: true
  register: preview

- name: Show what would change
  ansible.builtin.debug:
    msg: "{{ preview.would_copy }} objects would be put back, {{ preview.would_delete }} deleted"

- name: Put one tenant's objects back to the state before the faulty import
  runbook.stack.s3_restore_to_time:
    bucket: app-uploads
    prefix: tenants/acme/
    target_time: "{{ import_started_at }}"
  register: restored
"""

RETURN = r"""
bucket:
  description: The bucket restored.
  type: str
  returned: always
  sample: app-uploads
prefix:
  description: The prefix restored.
  type: str
  returned: always
  sample: tenants/acme/
target_time:
  description: O(target_time) in UTC, as used.
  type: str
  returned: success
  sample: "2026-12-05T21:30:00Z"
recovery_point:
  description:
    - The second of the newest write (version or delete marker) at or before O(target_time) under O(prefix),
      in UTC; what the prefix is restored to. Null when nothing was written by then.
  type: str
  returned: success
  sample: "2026-12-05T21:29:58Z"
latest_write:
  description: The second of the newest write under O(prefix) (the current state's last write), in UTC.
  type: str
  returned: success
  sample: "2026-12-05T21:41:07Z"
key_count:
  description: Keys under O(prefix) with at least one version or delete marker.
  type: int
  returned: success
  sample: 5004
versions:
  description: Versions listed under O(prefix).
  type: int
  returned: success
  sample: 12410
delete_markers:
  description: Delete markers listed under O(prefix).
  type: int
  returned: success
  sample: 37
would_copy:
  description: Keys whose version at O(target_time) is to be copied over the current one (the same in
    check mode and in a real run).
  type: int
  returned: success
  sample: 12
would_delete:
  description: Keys that exist now and did not at O(target_time) (deleted then, or written after).
  type: int
  returned: success
  sample: 3
unchanged:
  description: Keys already in their state at O(target_time).
  type: int
  returned: success
  sample: 4989
copied:
  description: Versions copied; 0 in check mode.
  type: int
  returned: always
  sample: 12
deleted:
  description: Keys deleted (delete markers added); 0 in check mode.
  type: int
  returned: always
  sample: 3
verified:
  description: Keys found in their state at O(target_time) by the listing after the run; when nothing needs
    to change, by the listing the plan was made from; 0 in check mode when something would change.
  type: int
  returned: always
  sample: 5004
bytes:
  description: Bytes of the versions selected for copying.
  type: int
  returned: success
  sample: 98304
sample:
  description: Up to O(sample_size) keys that are (or in check mode would be) copied and deleted.
  type: dict
  returned: success
  contains:
    to_copy:
      description: Keys copied from their version at O(target_time).
      type: list
      elements: str
    to_delete:
      description: Keys deleted.
      type: list
      elements: str
  sample: {"to_copy": ["img/1.png"], "to_delete": ["img/new.png"]}
plan:
  description: Up to O(sample_size) changed keys (copies first) with their current entry and their entry at
    O(target_time) (null when the key did not exist yet).
  type: list
  elements: dict
  returned: success
  sample:
    - key: img/1.png
      action: copy
      current: {"version_id": "6711...", "last_modified": "2026-12-05T21:40:02Z", "delete_marker": false,
                "size": 812, "etag": "9dd4e461268c8034f5c8564e155c67a6"}
      at_target_time: {"version_id": "6711...", "last_modified": "2026-12-05T21:12:40Z", "delete_marker": false,
                       "size": 790, "etag": "1b267619c4812cc46ee281747884ca50"}
versioning:
  description: Versioning status of the bucket (V(Enabled), V(Suspended) or V(Disabled) when never enabled).
  type: str
  returned: when the status could be read
  sample: Enabled
duration_s:
  description: Seconds the module spent.
  type: float
  returned: always
  sample: 1.21
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._common.process import Interrupted, stop_on_signals
from ansible_collections.runbook.stack.plugins.module_utils._s3 import (
    BOTO3_IMPORT_ERROR,
    DEFAULT_MULTIPART_THRESHOLD,
    DEFAULT_PART_SIZE,
    HAS_BOTO3,
    Copier,
    S3Error,
    check_copy_options,
    client,
    conn_info,
    s3_argument_spec,
    sample,
)
from ansible_collections.runbook.stack.plugins.module_utils._s3_point_in_time import (
    Outcome,
    apply_plan,
    bucket_created,
    check_history_reaches,
    history,
    iso_z,
    iter_versions,
    now_utc,
    parse_target_time,
    plan_diff,
    plan_to_time,
    versioning_status,
)


def main() -> None:
    argument_spec = s3_argument_spec() | dict(
        bucket=dict(type="str", required=True),
        prefix=dict(type="str", default=""),
        target_time=dict(type="str", required=True),
        concurrency=dict(type="int", default=32),
        multipart_threshold=dict(type="int", default=DEFAULT_MULTIPART_THRESHOLD),
        part_size=dict(type="int", default=DEFAULT_PART_SIZE),
        page_size=dict(type="int", default=1000),
        sample_size=dict(type="int", default=10),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=BOTO3_IMPORT_ERROR)

    p = module.params
    t0 = time.monotonic()
    prefix = p["prefix"] or ""
    scope = f"bucket {p['bucket']!r}" + (f" (prefix {prefix!r})" if prefix else "")
    when = str(p["target_time"])
    done = Outcome()
    result: dict[str, Any] = dict(bucket=p["bucket"], prefix=prefix)
    stop_on_signals()  # SIGTERM, SIGINT, SIGHUP or a vanished controller: fail with what was done
    try:
        if p["sample_size"] < 0:
            raise S3Error(f"sample_size must be 0 or more, got {p['sample_size']}")
        check_copy_options(p["concurrency"], p["multipart_threshold"], p["part_size"])
        target = parse_target_time(p["target_time"], now_utc())
        when = iso_z(target)
        info = conn_info(p)
        cli = client(info, max_pool_connections=2 * p["concurrency"])

        # 1. versioning on, history complete back to T
        result["versioning"] = versioning_status(cli, info, p["bucket"])
        if result["versioning"] != "Enabled":
            raise S3Error(
                f"versioning is not enabled on the bucket (status {result['versioning']}): there is no history to "
                "restore from, and deletes would lose data (enable it, e.g. amazon.aws.s3_bucket versioning=true)"
            )
        histories = history(iter_versions(cli, info, p["bucket"], prefix, p["page_size"]))
        check_history_reaches(histories, target, bucket_created(cli, p["bucket"]))

        # 2. the plan
        plan = plan_to_time(histories, target)
        changed_keys = plan.copy + plan.delete
        result |= dict(
            target_time=when,
            key_count=len(plan.keys),
            versions=plan.versions,
            delete_markers=plan.delete_markers,
            would_copy=len(plan.copy),
            would_delete=len(plan.delete),
            unchanged=plan.unchanged,
            bytes=plan.bytes,
            recovery_point=iso_z(plan.recovery_point) if plan.recovery_point else None,
            latest_write=iso_z(plan.latest_write) if plan.latest_write else None,
            sample=dict(
                to_copy=sample((k.key for k in plan.copy), p["sample_size"]),
                to_delete=sample((k.key for k in plan.delete), p["sample_size"]),
            ),
            plan=[k.describe() for k in changed_keys[: p["sample_size"]]],
        )
        if module._diff:
            result["diff"] = plan_diff(changed_keys[: p["sample_size"]], p["bucket"], when, len(changed_keys))

        # 3. copies and deletes, then a fresh listing checked against the plan
        if not changed_keys:
            done.verified = len(plan.keys)  # the listing just taken shows every key in its state at T
        elif not module.check_mode:
            copier = Copier(info, cli, p["concurrency"], p["multipart_threshold"], p["part_size"])
            apply_plan(plan, info, cli, p["bucket"], prefix, copier, done)
    except (S3Error, Interrupted) as exc:
        module.fail_json(
            msg=f"cannot restore {scope} to {when}: {exc}",
            changed=done.started,
            copied=done.copied,
            deleted=done.deleted,
            verified=done.verified,
            **result,
            duration_s=round(time.monotonic() - t0, 3),
        )
    module.exit_json(
        changed=bool(result["would_copy"] or result["would_delete"]),
        copied=done.copied,
        deleted=done.deleted,
        verified=done.verified,
        **result,
        duration_s=round(time.monotonic() - t0, 3),
    )


if __name__ == "__main__":
    main()
