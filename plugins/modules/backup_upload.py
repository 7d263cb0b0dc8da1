#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_upload
short_description: Copy a local backup set to an S3 backup root, verified on arrival
version_added: 0.1.0
description:
  - Copies one complete, valid local backup set of any kind (PostgreSQL, Redis, ...) to the S3 backup
    root O(dest). The set lands at C(<dest>/<kind>/<source>/<backup_id>/), the same layout as on disk,
    so M(runbook.stack.backup_info), M(runbook.stack.backup_prune) and M(runbook.stack.backup_download)
    read it there.
  - With O(verify_local=true) every file is first re-hashed against the manifest; a damaged set is
    refused, naming the file.
  - Files are uploaded in parallel (O(concurrency) requests at a time through one client), files of
    O(multipart_threshold) bytes and more as multipart uploads of O(part_size) parts. Every request
    carries C(Content-MD5), and every object gets the user metadata C(sha256) (its manifest digest).
  - Checksums are verified on arrival. The size, the ETag and the C(sha256) metadata of every object
    must match what was sent (for multipart objects, the MD5 of the part MD5s followed by C(-N),
    computed with the part size used). On any mismatch the module fails naming the file, and the
    manifest is not written.
  - The manifest is uploaded last, byte for byte. Until it is there, the destination holds no valid
    set for any reader; an interrupted upload shows up as an incomplete set in
    M(runbook.stack.backup_info).
  - If the destination already holds the set with the identical manifest and all its files at their
    sizes, nothing is uploaded. If it holds a different manifest for that backup id, the module fails
    and overwrites nothing. If it holds objects but no manifest (an interrupted upload), the upload is
    done again; objects already there with the right size and ETag are not sent again
    (RV(skipped_files)), and multipart uploads the interrupted run left open are aborted.
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
    details: Inspects the destination and (with O(verify_local=true)) verifies the local set like a real
      run, returns the files and bytes that would be uploaded and C(changed) predicted, and writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A second run finds the identical set at the destination and reports C(changed=false).
options:
  src_root:
    description:
      - The local backup root (the O(runbook.stack.postgresql_backup#module:dest) of the backup modules).
      - The set is chosen with O(kind), O(source) and O(backup_id).
      - Exactly one of O(src_root) and O(path) is required.
    type: path
    aliases: [backup_root]
  path:
    description:
      - The local set directory itself, C(<root>/<kind>/<source>/<backup_id>), for example the
        C(backup.path) a backup module returned.
      - Exactly one of O(src_root) and O(path) is required. When O(kind), O(source) or O(backup_id) are
        given as well, the set must match them.
    type: path
  kind:
    description:
      - Kind of backup, for example V(postgresql) or V(redis). Required with O(src_root).
    type: str
  source:
    description:
      - Source name as given to the backup module (database name, Redis instance, ...). Required with O(src_root).
    type: str
  backup_id:
    description:
      - Backup id C(YYYYMMDDTHHMMSSZ) of the set, or V(latest) for the newest valid set of O(source).
    type: str
    default: latest
  dest:
    description:
      - The S3 backup root, C(s3://bucket/prefix). The bucket must exist.
    type: str
    required: true
  concurrency:
    description:
      - Number of requests (whole small files or parts of large ones) in flight at a time, from 1 to 256.
      - The hashing with O(verify_local=true) uses at most as many threads as there are CPUs.
    type: int
    default: 8
  multipart_threshold:
    description:
      - Files of this size and more are uploaded as multipart uploads; smaller ones with one PUT.
      - A size with an optional unit (V(64MB) is 64 x 1024 x 1024 bytes), from 5 MB to 5 GB.
    type: bytes
    default: 64MB
  part_size:
    description:
      - Size of each part of a multipart upload (the last one is shorter), from 5 MB to 5 GB. It grows
        when a file would need more than 10,000 parts.
      - The module holds up to O(concurrency) parts (or small files) in memory at a time.
    type: bytes
    default: 64MB
  verify_local:
    description:
      - Re-compute the SHA-256 of every file of the local set and compare it with the manifest before
        uploading anything; a damaged set is refused, naming the file.
      - The same read records the MD5 of every part, so bytes that change between this check and their
        upload stop the upload, and objects of an interrupted earlier upload can be recognised and skipped.
      - With V(false) each file is read once, while it is uploaded; the ETag check then proves only
        that the server stored the bytes that were read.
    type: bool
    default: true
notes:
  - The ETag check needs a server whose ETags are MD5 based (AWS S3 without SSE-KMS or SSE-C, MinIO,
    SeaweedFS, Ceph RGW).
  - The set stays a set in the collection's format at the destination; restore it from there after
    copying it back with M(runbook.stack.backup_download).
seealso:
  - module: runbook.stack.backup_download
  - module: runbook.stack.backup_info
  - module: runbook.stack.backup_prune
  - module: runbook.stack.postgresql_backup
"""

EXAMPLES = r"""
- name: Back up the application database
  runbook.stack.postgresql_backup:
    name: app
    dest: /var/backups/runbook
  register: nightly

- name: Copy that backup off the host
  runbook.stack.backup_upload:
    endpoint_url: https://minio.internal.example.com:9000
    access_key: backup-writer
    secret_key: "{{ vault_s3_secret_key }}"
    path: "{{ nightly.backup.path }}"
    dest: s3://offsite-backups/runbook

- name: Copy the newest Redis snapshot, with S3 options from the action group
  runbook.stack.backup_upload:
    src_root: /var/backups/runbook
    kind: redis
    source: cache
    dest: s3://offsite-backups/runbook
    concurrency: 16
    part_size: 128MB
  register: copied
"""

RETURN = r"""
backup_id:
  description:
    - Backup id of the set.
    - Deprecated, use C(backup_set.backup_id); to be removed in runbook.stack 2.0.0.
  returned: always
  type: str
  sample: "20261122T020000Z"
kind:
  description:
    - Kind of the set.
    - Deprecated, use C(backup_set.kind); to be removed in runbook.stack 2.0.0.
  returned: always
  type: str
  sample: postgresql
source:
  description:
    - Source name of the set.
    - Deprecated, use C(backup_set.source); to be removed in runbook.stack 2.0.0.
  returned: always
  type: str
  sample: app
location:
  description:
    - Where the set is at the destination.
    - Deprecated, use C(backup_set.location); to be removed in runbook.stack 2.0.0.
  returned: always
  type: str
  sample: s3://offsite-backups/runbook/postgresql/app/20261122T020000Z
files:
  description: Number of files uploaded (in check mode, that would be uploaded); the manifest is not counted.
  returned: always
  type: int
  sample: 42
bytes:
  description: Bytes of the files in RV(files).
  returned: always
  type: int
  sample: 734003200
multipart_files:
  description: How many of RV(files) go as multipart uploads.
  returned: always
  type: int
  sample: 3
skipped_files:
  description: Files already at the destination with the right size and ETag, not uploaded again.
  returned: always
  type: int
  sample: 0
found:
  description:
    - What the destination held for this backup id before the run.
    - V(absent) nothing; V(incomplete) objects without a manifest (an interrupted upload, now
      completed); V(damaged) the same manifest with files missing or of the wrong size (manifest removed
      first, then uploaded again); V(identical) the complete set (nothing to do).
  returned: always
  type: str
  sample: absent
duration_s:
  description: Seconds the module spent.
  returned: always
  type: float
  sample: 8.31
steps:
  description: Phases of the run with their durations in seconds.
  returned: always
  type: list
  elements: dict
  sample:
    - {"step": "inspect the destination (absent)", "duration_s": 0.021}
    - {"step": "verify the local set (SHA-256 and part MD5 of 42 files)", "duration_s": 2.4}
    - {"step": "upload 42 files (734003200 bytes), 0 already there", "duration_s": 5.6}
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

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    BackupSet,
    BackupSetError,
    LocalStorage,
    find_set,
    open_set_path,
)
from ansible_collections.runbook.stack.plugins.module_utils._common.process import Interrupted, stop_on_signals
from ansible_collections.runbook.stack.plugins.module_utils._s3 import (
    BOTO3_IMPORT_ERROR,
    HAS_BOTO3,
    TRANSFER_CONCURRENCY,
    S3Error,
    conn_info,
    open_s3_root,
    s3_argument_spec,
    upload_set,
)


def local_set(params: dict) -> BackupSet:
    """The valid local set the options name."""
    if params["path"]:
        found = open_set_path(params["path"], kind=params["kind"])
        if params["source"] is not None and found.source != params["source"]:
            raise BackupSetError(f"{found.location} is a set of source {found.source!r}, not {params['source']!r}")
        if params["backup_id"] not in ("latest", found.backup_id):
            raise BackupSetError(f"{found.location} is set {found.backup_id}, not {params['backup_id']}")
        return found
    return find_set(LocalStorage(params["src_root"]), params["kind"], params["source"], params["backup_id"])


def main() -> None:
    argument_spec = s3_argument_spec() | dict(
        src_root=dict(type="path", aliases=["backup_root"]),
        path=dict(type="path"),
        kind=dict(type="str"),
        source=dict(type="str"),
        backup_id=dict(type="str", default="latest"),
        dest=dict(type="str", required=True),
        concurrency=dict(type="int", default=TRANSFER_CONCURRENCY),
        multipart_threshold=dict(type="bytes", default="64MB"),
        part_size=dict(type="bytes", default="64MB"),
        verify_local=dict(type="bool", default=True),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[("src_root", "path")],
        required_one_of=[("src_root", "path")],
        required_by={"src_root": ("kind", "source")},
        supports_check_mode=True,
    )
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=BOTO3_IMPORT_ERROR)
    p = module.params
    what = p["path"] or f"{p['kind']} backup {p['backup_id']} of {p['source']!r} under {p['src_root']}"
    stop_on_signals()  # SIGTERM, SIGINT, SIGHUP or a vanished controller: clean up as on any failure
    try:
        backup_set = local_set(p)
        what = f"backup set {backup_set.location}"
        dest = open_s3_root(p["dest"], conn_info(p), p["concurrency"])
        result = upload_set(
            backup_set,
            dest,
            concurrency=p["concurrency"],
            multipart_threshold=p["multipart_threshold"],
            part_size=p["part_size"],
            verify_local=p["verify_local"],
            check_mode=module.check_mode,
        )
    except (BackupSetError, S3Error, OSError, Interrupted) as exc:
        module.fail_json(msg=f"cannot upload {what} to {p['dest']}: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
