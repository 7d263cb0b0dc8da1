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
  - This module only reads; it does not connect to Redis.
author:
  - runbook.stack maintainers (@runbook-stack)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module is read-only and runs unchanged in check mode.
  diff_mode:
    support: none
  idempotent:
    description: Running the module again with the same options against the same state gives the same result.
    support: full
  platform:
    platforms: posix
options:
  archive_root:
    description:
      - The O(runbook.stack.redis_aof_archive#module:dest) of the archive runs.
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
      description: Its archive directory.
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

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import BackupSetError, source_dirname
from ansible_collections.runbook.stack.plugins.module_utils._redis import RedisError
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof import describe_archive, list_sources


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            archive_root=dict(type="path", required=True),
            source=dict(type="str"),
            verify=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        if p["source"] is not None:
            if not os.path.isdir(os.path.join(p["archive_root"], "redis-aof", source_dirname(p["source"]))):
                raise RedisError(f"no AOF archive of {p['source']} under {p['archive_root']}")
            sources = [p["source"]]
        else:
            sources = list_sources(p["archive_root"])
        archives = [describe_archive(p["archive_root"], s, p["verify"]) for s in sources]
    except (RedisError, BackupSetError) as exc:
        module.fail_json(msg=f"cannot read the AOF archive under {p['archive_root']}: {exc}")
    except OSError as exc:
        module.fail_json(msg=f"cannot read the AOF archive under {p['archive_root']}: {exc.strerror or exc}")
    module.exit_json(changed=False, archives=archives)


if __name__ == "__main__":
    main()
