#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_download
short_description: Copy a backup set from an S3 backup root to a local backup root, verified
version_added: 0.1.0
description:
  - Copies one valid backup set of any kind from the S3 backup root O(src) to the local backup root
    O(dest_root), at C(<dest_root>/<kind>/<source>/<backup_id>/), where the restore modules and
    M(runbook.stack.backup_info) find it.
  - The files are downloaded in parallel (O(concurrency) requests at a time through one client; files
    of O(multipart_threshold) bytes and more as ranged GETs of O(part_size) bytes) into a temporary
    directory C(<backup_id>.partial-*) next to the final one. No reader takes that name for a set.
  - Every file is hashed and compared with the SHA-256 of the manifest. On a mismatch the module fails
    naming the file and removes the temporary directory. Then the files get mode 0600 and the
    directories 0700, everything is fsynced, the manifest is written last (byte for byte as at the
    source) and the directory is renamed into place. A set therefore appears complete or not at all.
  - If the same set (identical manifest, all files at their sizes) is already there, nothing is
    downloaded. A different set, or an invalid directory, with the same backup id is never replaced;
    the module fails.
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
    details: Finds the set and inspects the destination like a real run, returns the files and bytes that
      would be downloaded and C(changed) predicted, and writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A second run finds the identical set locally and reports C(changed=false). With
      O(backup_id=latest), a newer set uploaded in between is downloaded.
options:
  src:
    description:
      - The S3 backup root, C(s3://bucket/prefix) (the O(runbook.stack.backup_upload#module:dest) of
        M(runbook.stack.backup_upload)).
    type: str
    required: true
    aliases: [backup_root]
  kind:
    description:
      - Kind of backup, for example V(postgresql) or V(redis).
    type: str
    required: true
  source:
    description:
      - Source name as given to the backup module (database name, Redis instance, ...).
    type: str
    required: true
  backup_id:
    description:
      - Backup id C(YYYYMMDDTHHMMSSZ) of the set, or V(latest) for the newest valid set of O(source) at O(src).
    type: str
    default: latest
  dest_root:
    description:
      - The local backup root. It, the C(<kind>) and the C(<source>) directory are created with mode
        0700 when missing (directories that already exist keep their mode); the downloaded files are
        0600 from the start, also in the temporary directory an interrupted download leaves.
    type: path
    required: true
  concurrency:
    description:
      - Number of requests (whole small files or ranges of large ones) in flight at a time, from 1 to 256.
    type: int
    default: 8
  multipart_threshold:
    description:
      - Files of this size and more are fetched as ranged GETs of O(part_size) bytes in parallel.
      - A size with an optional unit (V(64MB) is 64 x 1024 x 1024 bytes), from 5 MB to 5 GB.
    type: bytes
    default: 64MB
  part_size:
    description:
      - Size of each ranged GET, from 5 MB to 5 GB.
    type: bytes
    default: 64MB
notes:
  - A download that is killed (or a host that crashes) leaves its C(<backup_id>.partial-*) directory.
    No module takes it for a set; remove it by hand.
seealso:
  - module: runbook.stack.backup_upload
  - module: runbook.stack.backup_info
  - module: runbook.stack.postgresql_restore
"""

EXAMPLES = r"""
- name: Fetch the newest off-host backup of the application database
  runbook.stack.backup_download:
    endpoint_url: https://minio.internal.example.com:9000
    access_key: backup-reader
    secret_key: "{{ vault_s3_secret_key }}"
    src: s3://offsite-backups/runbook
    kind: postgresql
    source: app
    dest_root: /var/backups/restore
  register: fetched

- name: Restore it
  runbook.stack.postgresql_restore:
    name: app
    path: "{{ fetched.location }}"
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
    - The local directory of the set.
    - Deprecated, use C(backup_set.location); to be removed in runbook.stack 2.0.0.
  returned: always
  type: str
  sample: /var/backups/restore/postgresql/app/20261122T020000Z
files:
  description: Number of files downloaded (in check mode, that would be downloaded); the manifest is not counted.
  returned: always
  type: int
  sample: 42
bytes:
  description: Bytes of the files in RV(files).
  returned: always
  type: int
  sample: 734003200
multipart_files:
  description: How many of RV(files) are fetched as several ranged GETs.
  returned: always
  type: int
  sample: 3
skipped_files:
  description: Files not downloaded because the identical set is already there.
  returned: always
  type: int
  sample: 0
found:
  description: What the destination held for this backup id before the run, V(absent) or V(identical).
  returned: always
  type: str
  sample: absent
duration_s:
  description: Seconds the module spent.
  returned: always
  type: float
  sample: 6.2
steps:
  description: Phases of the run with their durations in seconds.
  returned: always
  type: list
  elements: dict
  sample:
    - {"step": "download 42 files (734003200 bytes)", "duration_s": 4.9}
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

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import BackupSetError
from ansible_collections.runbook.stack.plugins.module_utils._common.process import Interrupted, stop_on_signals
from ansible_collections.runbook.stack.plugins.module_utils._s3 import (
    BOTO3_IMPORT_ERROR,
    HAS_BOTO3,
    TRANSFER_CONCURRENCY,
    S3Error,
    conn_info,
    download_set,
    open_s3_root,
    s3_argument_spec,
)


def main() -> None:
    argument_spec = s3_argument_spec() | dict(
        src=dict(type="str", required=True, aliases=["backup_root"]),
        kind=dict(type="str", required=True),
        source=dict(type="str", required=True),
        backup_id=dict(type="str", default="latest"),
        dest_root=dict(type="path", required=True),
        concurrency=dict(type="int", default=TRANSFER_CONCURRENCY),
        multipart_threshold=dict(type="bytes", default="64MB"),
        part_size=dict(type="bytes", default="64MB"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=BOTO3_IMPORT_ERROR)
    p = module.params
    stop_on_signals()  # SIGTERM, SIGINT, SIGHUP or a vanished controller: clean up as on any failure
    try:
        src = open_s3_root(p["src"], conn_info(p), p["concurrency"])
        result = download_set(
            src,
            p["kind"],
            p["source"],
            p["backup_id"],
            p["dest_root"],
            concurrency=p["concurrency"],
            multipart_threshold=p["multipart_threshold"],
            part_size=p["part_size"],
            check_mode=module.check_mode,
        )
    except (BackupSetError, S3Error, OSError, Interrupted) as exc:
        module.fail_json(
            msg=f"cannot download {p['kind']} backup {p['backup_id']} of {p['source']!r} from {p['src']}: {exc}"
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
