#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_retention
short_description: Delete S3 objects older than a number of days under a prefix
version_added: 0.1.0
description:
  - Lists the objects under O(prefix) in O(bucket) and deletes those last modified more than
    O(older_than_days) days ago, always keeping the O(min_keep) newest objects under the prefix.
  - Works on any S3 server (MinIO, SeaweedFS, Ceph RGW, AWS S3) because the selection is made by the
    module, not by a bucket lifecycle rule. Deletes go in batches with C(DeleteObjects).
  - Only the current version of each object is considered; on a versioned bucket a delete adds a
    delete marker.
  - Objects that M(runbook.stack.s3_restore) kept under C(pre-restore-<backup_id>[.N]/) are not live data
    and are left out, unless O(prefix) itself starts with C(pre-restore-) (set it to C(pre-restore-) to
    expire the kept copies).
extends_documentation_fragment:
  - runbook.stack.s3
  - runbook.stack._attributes
  - runbook.stack._attributes.actiongroup_s3
attributes:
  check_mode:
    support: full
    details: Check mode lists and selects like a real run, returns the counts and a sample of the keys
      that would be deleted, and deletes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A second run finds nothing old enough left and reports C(changed=false), unless objects
      have aged past O(older_than_days) in between.
options:
  bucket:
    description:
      - Bucket to clean up.
    type: str
    required: true
  prefix:
    description:
      - Only objects whose key starts with this prefix are considered; V("") means the whole bucket.
    type: str
    default: ""
  older_than_days:
    description:
      - Delete objects last modified more than this many days ago. Fractions are allowed
        (V(0.5) is twelve hours); V(0) selects every object older than now.
      - Must be 0 or more.
    type: float
    required: true
  min_keep:
    description:
      - Never delete the newest O(min_keep) objects under O(prefix) (by last-modified time), however old they are.
    type: int
    default: 0
  batch_size:
    description:
      - Keys per C(DeleteObjects) request, from 1 to 1000 (the S3 limit).
    type: int
    default: 1000
  sample_size:
    description:
      - How many of the selected keys (oldest first) to return in RV(sample).
    type: int
    default: 10
seealso:
  - module: runbook.stack.s3_health_info
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Show what 14-day retention of the nightly dumps would delete
  runbook.stack.s3_retention:
    endpoint_url: https://minio.internal.example.com:9000
    access_key: backup-admin
    secret_key: "{{ vault_s3_secret_key }}"
    bucket: pg-backups
    prefix: nightly/
    older_than_days: 14
    min_keep: 7
  check_mode: true
  register: retention_plan

- name: Keep 14 days of nightly dumps, and never fewer than the 7 newest
  runbook.stack.s3_retention:
    bucket: pg-backups
    prefix: nightly/
    older_than_days: 14
    min_keep: 7
  register: retention
"""

RETURN = r"""
matched:
  description: Objects found under O(prefix).
  type: int
  returned: always
  sample: 42
would_delete:
  description: Objects selected for deletion (the same in check mode and in a real run).
  type: int
  returned: always
  sample: 20
deleted:
  description: Objects deleted; 0 in check mode.
  type: int
  returned: always
  sample: 20
bytes:
  description: Total size of the objects selected for deletion.
  type: int
  returned: always
  sample: 2147483648
kept:
  description: Objects under O(prefix) that are kept.
  type: int
  returned: always
  sample: 22
sample:
  description: Up to O(sample_size) of the selected keys, oldest first.
  type: list
  elements: str
  returned: always
  sample: ["nightly/2026-11-01/app.dump", "nightly/2026-11-02/app.dump"]
duration_s:
  description: Seconds the module spent listing and deleting.
  type: float
  returned: always
  sample: 1.73
"""

import datetime as dt
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._s3.connection import client, conn_info, s3_argument_spec
from ansible_collections.runbook.stack.plugins.module_utils._s3.copy_plan import is_kept_key
from ansible_collections.runbook.stack.plugins.module_utils._s3.errors import BOTO3_IMPORT_ERROR, HAS_BOTO3, S3Error
from ansible_collections.runbook.stack.plugins.module_utils._s3.retention import DELETE_BATCH_MAX, select_for_retention
from ansible_collections.runbook.stack.plugins.module_utils._s3.storage import S3Storage


def check_options(params: dict[str, Any]) -> None:
    if params["older_than_days"] < 0:
        raise S3Error(f"older_than_days must be 0 or more, got {params['older_than_days']}")
    if params["min_keep"] < 0:
        raise S3Error(f"min_keep must be 0 or more, got {params['min_keep']}")
    if not 1 <= params["batch_size"] <= DELETE_BATCH_MAX:
        raise S3Error(f"batch_size must be between 1 and {DELETE_BATCH_MAX}, got {params['batch_size']}")
    if params["sample_size"] < 0:
        raise S3Error(f"sample_size must be 0 or more, got {params['sample_size']}")


def main() -> None:
    argument_spec = s3_argument_spec() | dict(
        bucket=dict(type="str", required=True),
        prefix=dict(type="str", default=""),
        older_than_days=dict(type="float", required=True),
        min_keep=dict(type="int", default=0),
        batch_size=dict(type="int", default=DELETE_BATCH_MAX),
        sample_size=dict(type="int", default=10),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=BOTO3_IMPORT_ERROR)

    started = time.monotonic()
    params = module.params
    bucket = params["bucket"]
    deleted = 0
    try:
        check_options(params)
        info = conn_info(params)
        storage = S3Storage.bucket_root(bucket, info, client(info))
        objects = [o for o in storage.list_objects(params["prefix"]) if not is_kept_key(o["Key"], params["prefix"])]
        now = dt.datetime.now(dt.timezone.utc)
        delete, keep = select_for_retention(objects, now, params["older_than_days"], params["min_keep"])
        if delete and not module.check_mode:
            deleted = storage.delete_keys([o["Key"] for o in delete], params["batch_size"])
    except S3Error as exc:
        module.fail_json(msg=str(exc), deleted=deleted, duration_s=round(time.monotonic() - started, 3))
    module.exit_json(
        changed=bool(delete),
        matched=len(objects),
        would_delete=len(delete),
        deleted=deleted,
        bytes=sum(int(o.get("Size", 0)) for o in delete),
        kept=len(keep),
        sample=[o["Key"] for o in delete[: params["sample_size"]]],
        duration_s=round(time.monotonic() - started, 3),
    )


if __name__ == "__main__":
    main()
