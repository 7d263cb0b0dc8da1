#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: redis_aof_archive_info
short_description: Show which times an archive of Redis AOF generations can restore to
version_added: 0.1.0
description:
  - Reads the archives written by M(runbook.stack.redis_aof_archive) under O(archive_root)
    (C(<archive_root>/redis-aof/<source>/index.json)) and returns, per server, the time range a
    M(runbook.stack.redis_restore_to_time) can restore to, the gaps in it (writes an AOF rewrite
    dropped before they were archived) and the generations with their files.
  - O(verify=true) also re-computes the SHA-256 of every archived file and compares it and the size
    with the index.
  - O(archive_root) can be an S3 prefix C(s3://bucket/prefix); the S3 connection options are only used
    for it, and boto3 is only needed for it. Without O(verify) an S3 archive is checked by listing its
    objects (every part there with its size); with O(verify) every part is streamed through the hash,
    nothing is stored locally.
  - This module only reads; it does not connect to Redis.
author:
  - runbook.stack maintainers (@runbook-stack)
extends_documentation_fragment:
  - runbook.stack.s3
  - runbook.stack._attributes
  - runbook.stack._attributes.info_module
  - runbook.stack._attributes.actiongroup_s3
options:
  archive_root:
    description:
      - The O(runbook.stack.redis_aof_archive#module:dest) of the archive runs, a directory or V(s3://bucket/prefix).
    type: path
    required: true
  source:
    description:
      - Only this server (C(<host>:<port>) by default in the archive module). All servers when omitted.
    type: str
  verify:
    description:
      - Re-compute the SHA-256 of every archived file and report files that differ from the index.
    type: bool
    default: false
seealso:
  - module: runbook.stack.redis_aof_archive
  - module: runbook.stack.redis_restore_to_time
"""

EXAMPLES = r"""
- name: Which times can the local Redis be restored to
  runbook.stack.redis_aof_archive_info:
    archive_root: /mnt/backup/runbook
    source: "127.0.0.1:6379"
    verify: true
  register: aof_archive

- name: The same for an archive on S3
  runbook.stack.redis_aof_archive_info:
    archive_root: s3://redis-pitr/prod
    endpoint_url: https://s3.internal.example.com
    source: "127.0.0.1:6379"

- name: Stop when the archive is damaged
  ansible.builtin.assert:
    that: aof_archive.archives[0].problems == []
"""

RETURN = r"""
archives:
  description: One entry per archived server, sorted by source.
  returned: always
  type: list
  elements: dict
  contains:
    source:
      description: The server's name in the archive.
      type: str
      sample: "127.0.0.1:6379"
    path:
      description: Its archive directory (or S3 URL).
      type: str
      sample: /mnt/backup/runbook/redis-aof/127.0.0.1%3A6379
    held:
      description:
        - C(oldest) and C(newest) (unix seconds, and C(oldest_utc), C(newest_utc)) are the first and last
          second a restore can go to; C(gaps) lists the ranges inside that cannot be restored.
      type: dict
      sample: {"oldest": 1796507550, "newest": 1796507610, "oldest_utc": "2026-12-05T21:52:30Z",
               "newest_utc": "2026-12-05T21:53:30Z", "last_write": 1796507602, "gaps": [], "generations": 2}
    generations:
      description: The archived generations, oldest first (base file, incr files, covered_until, sealed).
      type: list
      elements: dict
    size_bytes:
      description: Total size of the archived AOF files.
      type: int
      sample: 1048576
    problems:
      description: Files missing or differing from the index (sizes always; SHA-256 with O(verify)).
      type: list
      elements: str
      sample: []
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils import _s3
from ansible_collections.runbook.stack.plugins.module_utils._backup_set import BackupSetError
from ansible_collections.runbook.stack.plugins.module_utils._redis import RedisError
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof_archive_read import describe_archive
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof_archive_store import (
    is_s3,
    list_sources,
    open_store,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=_s3.s3_argument_spec()
        | dict(
            archive_root=dict(type="path", required=True),
            source=dict(type="str"),
            verify=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    root = p["archive_root"]
    if is_s3(root) and not _s3.HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=_s3.BOTO3_IMPORT_ERROR)
    try:
        s3 = _s3.conn_info(p) if is_s3(root) else None
        sources = [p["source"]] if p["source"] is not None else list_sources(root, s3)
        archives = []
        for source in sources:
            store = open_store(root, source, s3)
            if not store.exists():
                raise RedisError(f"no AOF archive of {source} under {root}")
            archives.append(describe_archive(store, p["verify"]))
    except (RedisError, BackupSetError, _s3.S3Error) as exc:
        module.fail_json(msg=f"cannot read the AOF archive under {root}: {exc}")
    except OSError as exc:
        module.fail_json(msg=f"cannot read the AOF archive under {root}: {exc.strerror or exc}")
    module.exit_json(changed=False, archives=archives)


if __name__ == "__main__":
    main()
