#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_physical_backup_info
short_description: Report pgBackRest backups, the archived WAL range and the archive lag of PostgreSQL
version_added: 0.1.0
description:
  - Reads C(pgbackrest info --output=json) for a stanza (backups oldest first, WAL archive min/max)
    and, with O(archiver=true), the server's C(pg_stat_archiver) for the archive lag.
  - With O(verify=true) also runs C(pgbackrest verify), which checks every backup file and WAL segment in the repository.
extends_documentation_fragment:
  - runbook.stack.postgresql
  - runbook.stack.pgbackrest
  - runbook.stack._attributes
  - runbook.stack._attributes.info_module
  - runbook.stack._attributes.actiongroup_postgresql
options:
  archiver:
    description: Connect to the server and report C(pg_stat_archiver) and the archive lag.
    type: bool
    default: true
  verify:
    description: Run C(pgbackrest verify) and fail when it finds a problem.
    type: bool
    default: false
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Backups and archive lag of the main cluster
  runbook.stack.postgresql_physical_backup_info:
    login_unix_socket: /var/run/postgresql
    stanza: main
    os_user: postgres
  become: true
  register: pitr

- name: Alert when WAL has not been archived for 5 minutes
  ansible.builtin.assert:
    that: pitr.archiver.lag_s < 300
"""

RETURN = r"""
status:
  description: pgBackRest's status message of the stanza.
  type: str
  returned: always
  sample: ok
status_code:
  description: pgBackRest's status code (0 ok, 1 missing stanza path, 2 no valid backups, 3 missing stanza data, 99 other).
  type: int
  returned: always
backups:
  description:
    - Backups oldest first; each with label, type, prior, error, start, stop (ISO 8601 UTC), duration_s,
      size, delta, repo_size, repo_delta (bytes), wal_start, wal_stop, lsn_start, lsn_stop.
  type: list
  elements: dict
  returned: always
repo_errors:
  description: Repositories pgBackRest could not read, with the reason.
  type: list
  elements: str
  returned: always
archive:
  description: Archived WAL of the current database id (id, min, max) and every range (ranges).
  type: dict
  returned: always
  sample: {"id": "15-1", "min": "000000010000000000000001", "max": "000000010000000000000005", "ranges": []}
archiver:
  description:
    - C(pg_stat_archiver) (archived_count, last_archived_wal, last_archived_time, failed_count,
      last_failed_wal, last_failed_time), C(lag_s) (now minus last_archived_time, null before the first
      archived segment) and C(current_wal) (the segment being written).
  type: dict
  returned: when O(archiver=true)
verify:
  description: Text report of C(pgbackrest verify).
  type: str
  returned: when O(verify=true)
duration_s:
  description: Seconds the module took.
  type: float
  returned: always
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest import (
    elapsed,
    pgbackrest_argument_spec,
    runner_from_params,
    stanza_info,
)
from ansible_collections.runbook.stack.plugins.module_utils._postgresql import (
    DB_ERRORS,
    PostgresError,
    conn_info,
    connect,
    error_text,
    postgres_argument_spec,
    query_dicts,
)

ARCHIVER_SQL = """
SELECT archived_count, last_archived_wal, last_archived_time::text AS last_archived_time, failed_count,
       last_failed_wal, last_failed_time::text AS last_failed_time,
       extract(epoch FROM now() - last_archived_time)::float8 AS lag_s,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END AS current_wal
FROM pg_stat_archiver
"""


def archiver(params: dict[str, Any]) -> dict[str, Any]:
    conn = connect(conn_info(params))
    try:
        row = query_dicts(conn, ARCHIVER_SQL)[0]
    finally:
        conn.close()
    if row["lag_s"] is not None:
        row["lag_s"] = round(row["lag_s"], 3)
    return row


def main() -> None:
    argument_spec = (
        postgres_argument_spec()
        | pgbackrest_argument_spec()
        | dict(archiver=dict(type="bool", default=True), verify=dict(type="bool", default=False))
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    started = time.monotonic()
    try:
        runner = runner_from_params(params, params.get("login_password"))
        info = stanza_info(runner)
        result: dict[str, Any] = {k: info[k] for k in ("status", "status_code", "backups", "archive", "repo_errors")}
        if params["archiver"]:
            result["archiver"] = archiver(params)
        if params["verify"]:
            proc = runner.run(
                "verify", "--output=text", "--verbose", what=f"pgbackrest verify of stanza {params['stanza']!r} failed"
            )
            result["verify"] = proc.stdout.strip()
    except PostgresError as exc:
        module.fail_json(msg=str(exc), duration_s=elapsed(started))
    except DB_ERRORS as exc:
        module.fail_json(msg=f"cannot read pg_stat_archiver for stanza {params['stanza']!r}: {error_text(exc)}")
    module.exit_json(changed=False, duration_s=elapsed(started), **result)


if __name__ == "__main__":
    main()
