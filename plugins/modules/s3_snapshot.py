#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_snapshot
short_description: Copy the objects of an S3 bucket (or prefix) server-side into a verified backup set
version_added: 0.1.0
description:
  - Lists the objects under O(prefix) in O(bucket) and copies them server-side (C(CopyObject), no data
    through the managed host) into a new backup set C(<backup_root>/s3/<bucket>/<backup_id>/), each object
    at C(objects/<original key>), keeping its content type and user metadata.
  - The set is a regular backup set (kind C(s3), source O(bucket)) in the format every reader of the
    collection shares, on the root O(backup_root). C(manifest.json) is written last and lists every object
    with its size, source ETag, ETag of the copy and last-modified time; without it the set is never valid.
  - O(backup_root) may be in O(bucket) itself only when the sets cannot fall under O(prefix) (and O(prefix)
    not under the sets); the module refuses an overlap.
  - Each copy is made on the condition that the source still has the listed ETag; an object changed after
    the listing is looked up again and its current version is copied and recorded, an object deleted after
    the listing is left out and counted in RV(vanished).
  - Objects of O(multipart_threshold) bytes or more are copied with a multipart upload
    (C(UploadPartCopy) parts of O(part_size)), which is aborted on any failure.
  - On a failure the module deletes the copies it made (best effort); a run that is killed leaves copies
    without a manifest, which every reader reports as an incomplete set, never as a backup.
  - The backup-set format is described in C(docs/backup-format.md) of the collection.
  - Objects that M(runbook.stack.s3_restore) kept under C(pre-restore-<backup_id>[.N]/) are not live data
    and are left out, unless O(prefix) itself starts with C(pre-restore-).
extends_documentation_fragment:
  - runbook.stack.s3
  - runbook.stack.backup_set.s3_root
  - runbook.stack._attributes
  - runbook.stack._attributes.operation
  - runbook.stack._attributes.actiongroup_s3
attributes:
  check_mode:
    details: Lists the source and returns how many objects and bytes would be copied; writes nothing.
  idempotent:
    details: Every real run creates a new backup set.
options:
  bucket:
    description:
      - Bucket to snapshot. It is also the source name of the set.
    type: str
    required: true
  prefix:
    description:
      - Only objects whose key starts with this prefix are copied; V("") means the whole bucket.
      - Keys are stored unchanged (the prefix is not removed).
    type: str
    default: ""
  concurrency:
    description:
      - Copy requests in flight at once, from 1 to 256.
    type: int
    default: 32
  multipart_threshold:
    description:
      - Objects of this many bytes or more are copied with a multipart upload; smaller ones with one
        C(CopyObject). From 5 MiB (5242880) to 5 GiB (5368709120, the C(CopyObject) limit).
    type: int
    default: 5368709120
  part_size:
    description:
      - Size of each part of a multipart copy, from 5 MiB to 5 GiB; grown when an object would need more
        than 10,000 parts.
    type: int
    default: 268435456
  record_metadata:
    description:
      - Also send a C(HEAD) request per object and record its content type and user metadata in the
        manifest (C(content_type) and C(metadata) of each C(objects[]) entry).
      - The copies keep content type and metadata either way (they travel with the backup objects, and
        M(runbook.stack.s3_restore) copies them back); without this option the manifest has C(null) for
        them. Costs one more request per object, which roughly doubles the requests for small objects.
    type: bool
    default: false
seealso:
  - module: runbook.stack.s3_restore
  - module: runbook.stack.backup_info
  - module: runbook.stack.backup_prune
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Snapshot the uploads bucket into the backup bucket
  runbook.stack.s3_snapshot:
    endpoint_url: https://minio.internal.example.com:9000
    access_key: backup-admin
    secret_key: "{{ vault_s3_secret_key }}"
    bucket: app-uploads
    backup_root: s3://backups
  register: snapshot

- name: Show the new set
  ansible.builtin.debug:
    msg: "{{ snapshot.objects }} objects, {{ snapshot.bytes }} bytes -> {{ snapshot.location }}"

- name: Snapshot one prefix, backups under backups/s3 in the same bucket
  runbook.stack.s3_snapshot:
    bucket: app-data
    prefix: tenants/
    backup_root: s3://app-data/backups
    concurrency: 64
"""

RETURN = r"""
backup_id:
  description:
    - Id of the new set (its UTC start time). Empty in check mode.
    - Deprecated, use C(backup_set.backup_id); to be removed in runbook.stack 2.0.0.
  type: str
  returned: always
  sample: 20261122T020000Z
location:
  description:
    - The set's URL (in check mode, the prefix it would go under).
    - Deprecated, use C(backup_set.location); to be removed in runbook.stack 2.0.0.
  type: str
  returned: always
  sample: s3://backups/s3/app-uploads/20261122T020000Z
objects:
  description: Objects copied (in check mode, that would be copied).
  type: int
  returned: always
  sample: 5004
bytes:
  description: Total size of those objects.
  type: int
  returned: always
  sample: 309329920
multipart_objects:
  description: Objects copied (or that would be copied) with a multipart upload.
  type: int
  returned: always
  sample: 0
vanished:
  description: Objects listed but deleted before they could be copied (left out of the set).
  type: int
  returned: always
  sample: 0
duration_s:
  description: Seconds the module spent.
  type: float
  returned: always
  sample: 4.87
steps:
  description:
    - What the run did, in order, with the seconds each step took, as every module of this collection returns
      them; a check run lists the source only.
  type: list
  elements: dict
  returned: always
  contains:
    step:
      description: What was done.
      type: str
    duration_s:
      description: Seconds it took.
      type: float
  sample:
    - {"step": "list the source", "duration_s": 0.41}
    - {"step": "server-side copies", "duration_s": 4.12}
    - {"step": "write manifest.json", "duration_s": 0.09}
backup_set:
  description:
    - The set written, in the shape every module that writes sets returns; its C(kind), C(source), C(backup_id)
      and C(root) name it as a component of M(runbook.stack.dr_set).
    - In check mode, what only a real run knows (a new set's id, location, times and size) is null.
  returned: success
  type: dict
  contains:
    kind: {description: Kind of the set., type: str, sample: postgresql}
    source: {description: Its source name., type: str, sample: app}
    backup_id: {description: Its backup id (UTC start time)., type: str, sample: 20261122T020000Z}
    root: {description: "Its backup root, a local directory or C(s3://bucket/prefix).", type: str, sample: /var/backups/runbook}
    location: {description: Its directory or S3 URL., type: str, sample: /var/backups/runbook/postgresql/app/20261122T020000Z}
    started: {description: When the backup started (UTC)., type: str, sample: "2026-11-22T02:00:00.412Z"}
    finished: {description: When it finished (UTC)., type: str, sample: "2026-11-22T02:00:12.905Z"}
    size_bytes: {description: "Bytes of its files (of an S3 snapshot set, its objects).", type: int, sample: 52428800}
    file_count: {description: "Its files (of an S3 snapshot set, its objects), the manifest not counted.", type: int, sample: 42}
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._backup_set.contract import set_reference
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.ids import (
    MANIFEST,
    BackupSetError,
    set_rel,
    source_dirname,
    utcnow,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.manifest import build_manifest, manifest_bytes
from ansible_collections.runbook.stack.plugins.module_utils._common.process import Interrupted, stop_on_signals
from ansible_collections.runbook.stack.plugins.module_utils._common.steps import Steps
from ansible_collections.runbook.stack.plugins.module_utils._s3.connection import client, conn_info, s3_argument_spec
from ansible_collections.runbook.stack.plugins.module_utils._s3.copier import Copier, CopyJob
from ansible_collections.runbook.stack.plugins.module_utils._s3.copy_plan import (
    DEFAULT_MULTIPART_THRESHOLD,
    DEFAULT_PART_SIZE,
    backup_key,
    check_copy_options,
    check_no_overlap,
    deprecated_root_message,
    is_kept_key,
    set_prefix,
    snapshot_entry,
    snapshot_root,
    snapshot_root_spec,
    split_backup_prefix,
)
from ansible_collections.runbook.stack.plugins.module_utils._s3.errors import BOTO3_IMPORT_ERROR, HAS_BOTO3, S3Error
from ansible_collections.runbook.stack.plugins.module_utils._s3.storage import S3Storage


class Snapshot:
    """One run: plan (list the source), then copy and seal; remembers what to clean up on failure."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.p = params
        self.bucket, self.prefix = params["bucket"], params["prefix"]
        self.backup_bucket, self.backup_prefix = snapshot_root(
            params["backup_root"], params["backup_bucket"], params["backup_prefix"]
        )
        self.root, self.kind = split_backup_prefix(self.backup_prefix)
        check_no_overlap(self.bucket, self.prefix, self.backup_bucket, self.backup_prefix)
        check_copy_options(params["concurrency"], params["multipart_threshold"], params["part_size"])
        self.info = conn_info(params)
        self.cli = client(self.info, max_pool_connections=2 * params["concurrency"])
        self.storage = S3Storage(f"s3://{self.backup_bucket}/{self.root}", self.info, self.cli)
        self.copier: Copier | None = None
        self.dest_prefix = ""  # set once copies may have been made
        self.steps = Steps()
        self.result: dict[str, Any] = dict(
            changed=False,
            backup_id="",
            location=f"{self.storage.url}/{self.kind}/{source_dirname(self.bucket)}",
            objects=0,
            bytes=0,
            multipart_objects=0,
            vanished=0,
        )
        self.listed: list[dict[str, Any]] = []
        self.manifest: dict[str, Any] | None = None  # once sealed

    def plan(self) -> None:
        with self.steps.step("list the source"):
            listed = S3Storage.bucket_root(self.bucket, self.info, self.cli).list_objects(self.prefix)
            self.listed = [o for o in listed if not is_kept_key(o["Key"], self.prefix)]  # s3_restore's kept copies
            if not self.storage.exists(""):
                raise S3Error(f"cannot write the snapshot: bucket {self.backup_bucket!r} does not exist")
        threshold = self.p["multipart_threshold"]
        self.result.update(
            changed=True,  # every real run makes a new set
            objects=len(self.listed),
            bytes=sum(int(o.get("Size", 0)) for o in self.listed),
            multipart_objects=sum(1 for o in self.listed if int(o.get("Size", 0)) >= threshold),
        )

    def copy_and_seal(self) -> None:
        p = self.p
        started, backup_id = self.storage.allocate_set(self.kind, self.bucket)
        self.dest_prefix = set_prefix(self.backup_prefix, self.bucket, backup_id)
        self.result.update(backup_id=backup_id, location=f"s3://{self.backup_bucket}/{self.dest_prefix.rstrip('/')}")

        self.steps.mark("allocate the set id")
        self.copier = Copier(self.info, self.cli, p["concurrency"], p["multipart_threshold"], p["part_size"])
        jobs = [
            CopyJob(
                src_bucket=self.bucket,
                src_key=o["Key"],
                dst_bucket=self.backup_bucket,
                dst_key=backup_key(self.dest_prefix, o["Key"]),
                size=int(o.get("Size", 0)),
                etag=str(o.get("ETag") or ""),
                refresh=True,
                want_head=p["record_metadata"],
            )
            for o in self.listed
        ]
        self.copier.run(jobs)
        self.steps.mark("server-side copies")

        entries = []
        for obj, job in zip(self.listed, jobs):
            if job.vanished:
                continue
            if job.head is not None:  # looked up again: record what was copied
                obj = dict(obj, Size=job.size, ETag=job.etag)
            entries.append(snapshot_entry(obj, job.new_etag, job.head if p["record_metadata"] else None))
        entries.sort(key=lambda e: e["key"])
        total = sum(e["size"] for e in entries)
        multipart = sum(1 for j in jobs if j.multipart and not j.vanished)
        manifest = build_manifest(
            kind=self.kind,
            source=self.bucket,
            backup_id=backup_id,
            started=started,
            finished=utcnow(),
            files=[],
            source_identity={"endpoint_url": self.info.endpoint_url, "bucket": self.bucket, "prefix": self.prefix},
            tool={
                "name": "runbook.stack.s3_snapshot",
                "copy": "server-side",
                "concurrency": p["concurrency"],
                "multipart_threshold": p["multipart_threshold"],
                "part_size": p["part_size"],
                "record_metadata": p["record_metadata"],
            },
            facts={
                "bucket": self.bucket,
                "prefix": self.prefix,
                "object_count": len(entries),
                "total_bytes": total,
                "multipart_objects": multipart,
                "objects_dir": "objects",
            },
        )
        manifest["objects"] = entries
        self.storage.write_atomic(f"{set_rel(self.kind, self.bucket, backup_id)}/{MANIFEST}", manifest_bytes(manifest))
        self.manifest = manifest
        self.steps.mark("write manifest.json")
        self.result.update(
            objects=len(entries), bytes=total, multipart_objects=multipart, vanished=sum(1 for j in jobs if j.vanished)
        )

    def backup_set(self) -> dict[str, Any]:
        """The set written (in check mode, the set a run would write), as every set-writing module returns it."""
        return set_reference(self.storage.url, self.manifest, kind=self.kind, source=self.bucket)

    def clean_up(self) -> str:
        """Abort open uploads and delete the copies made so far; a note for the failure message."""
        if self.copier is not None:
            self.copier.stop.set()
            self.copier.abort_all()
        if not self.dest_prefix:
            return ""
        try:
            leftovers = [o["Key"] for o in self.storage.list_objects(self.dest_prefix)]
            self.storage.delete_keys(leftovers)
        except S3Error as exc:
            return f" (the partial set could not be removed, it is an incomplete set, never a backup: {exc})"
        return f" (the partial set was removed: {len(leftovers)} objects)"


def main() -> None:
    argument_spec = s3_argument_spec() | dict(
        bucket=dict(type="str", required=True),
        prefix=dict(type="str", default=""),
        concurrency=dict(type="int", default=32),
        multipart_threshold=dict(type="int", default=DEFAULT_MULTIPART_THRESHOLD),
        part_size=dict(type="int", default=DEFAULT_PART_SIZE),
        record_metadata=dict(type="bool", default=False),
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
    run: Snapshot | None = None
    stop_on_signals()  # SIGTERM, SIGINT, SIGHUP or a vanished controller: clean up as on any failure
    try:
        run = Snapshot(p)
        run.plan()
        if not module.check_mode:
            run.copy_and_seal()
    except (S3Error, BackupSetError, OSError, Interrupted) as exc:
        msg = f"cannot snapshot bucket {module.params['bucket']!r}"
        extra: dict[str, Any] = {}
        if run is not None:
            if run.result["backup_id"]:
                msg += f" into {run.result['location']}"
            msg += f": {exc}{run.clean_up()}"
            extra = dict(run.result, steps=run.steps.items)
        else:
            msg += f": {exc}"
        module.fail_json(msg=msg, **extra, duration_s=round(time.monotonic() - t0, 3))
    module.exit_json(
        **run.result, backup_set=run.backup_set(), duration_s=round(time.monotonic() - t0, 3), steps=run.steps.items
    )


if __name__ == "__main__":
    main()
