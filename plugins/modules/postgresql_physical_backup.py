#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_physical_backup
short_description: Take a full, differential or incremental physical backup of PostgreSQL with pgBackRest
version_added: 0.1.0
description:
  - Runs C(pgbackrest backup) for a stanza configured by M(runbook.stack.postgresql_wal_archive) and
    returns the new backup's label, sizes, duration and WAL / LSN range.
  - A V(diff) or V(incr) backup without a prior full backup is taken as a full one (pgBackRest's rule);
    RV(type) reports what was taken.
  - pgBackRest expires backups beyond C(repo1-retention-full) after each backup; RV(expired) lists them.
extends_documentation_fragment:
  - runbook.stack.postgresql
  - runbook.stack.pgbackrest
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.ACTIONGROUPS
attributes:
  check_mode:
    support: full
    details: Reads the repository and predicts a change; takes no backup.
  diff_mode:
    support: none
  idempotent:
    description: Running the module twice against an unchanged system reports no change.
    support: none
    details: Every run takes a new backup.
  platform:
    platforms: posix
  action_group:
    membership: [runbook.stack.postgresql]
options:
  type:
    description: Backup type.
    type: str
    default: incr
    choices: [full, diff, incr]
  start_fast:
    description: Force an immediate checkpoint instead of waiting for a spread one.
    type: bool
    default: true
notes:
  - Only O(login_password) of the connection options is used (as E(PGPASSWORD) for pgBackRest); the
    server is reached through the C(pg1-*) settings of O(config_file).
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Weekly full backup
  runbook.stack.postgresql_physical_backup:
    stanza: main
    os_user: postgres
    type: full
  become: true
  register: backup
"""

RETURN = r"""
label:
  description: Label of the new backup.
  type: str
  returned: success, not in check mode
  sample: 20261205-215734F
type:
  description: Type of the backup taken (or wanted, in check mode).
  type: str
  returned: always
  sample: full
backup:
  description: The new backup as RV(runbook.stack.postgresql_physical_backup_info#module:backups) lists it
    (label, type, prior, start, stop, duration_s, size, delta, repo_size, repo_delta, wal_start, wal_stop, lsn_start, lsn_stop).
  type: dict
  returned: success, not in check mode
expired:
  description: Labels of backups expired by this run.
  type: list
  elements: str
  returned: success, not in check mode
command:
  description: The command that ran (no secrets).
  type: str
  returned: always
duration_s:
  description: Seconds the module took.
  type: float
  returned: always
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest import (
    elapsed,
    pgbackrest_argument_spec,
    runner_from_params,
    shown,
    stanza_info,
    stanza_unreachable,
)
from ansible_collections.runbook.stack.plugins.module_utils._postgresql import PostgresError, postgres_argument_spec
from ansible_collections.runbook.stack.plugins.module_utils._process import Interrupted, terminate_on_signals


def main() -> None:
    argument_spec = (
        postgres_argument_spec()
        | pgbackrest_argument_spec()
        | dict(
            type=dict(type="str", default="incr", choices=["full", "diff", "incr"]),
            start_fast=dict(type="bool", default=True),
        )
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    started = time.monotonic()
    stanza = params["stanza"]
    opts = [f"--type={params['type']}", f"--start-fast={'y' if params['start_fast'] else 'n'}"]
    result = dict(type=params["type"], command="")
    try:
        runner = runner_from_params(params, params.get("login_password"))
        result["command"] = shown(runner.argv("backup", *opts))
        before = stanza_info(runner)
        cause = stanza_unreachable(before)
        if cause:
            raise PostgresError(f"cannot back up stanza {stanza!r}: {cause}")
        if not before["backups"] and params["type"] != "full":
            result["type"] = "full"
        if module.check_mode:
            module.exit_json(changed=True, duration_s=elapsed(started), **result)
        with terminate_on_signals():
            runner.run("backup", *opts, what=f"cannot back up stanza {stanza!r}")
        after = stanza_info(runner)
    except PostgresError as exc:
        module.fail_json(msg=str(exc), duration_s=elapsed(started), **result)
    except Interrupted as exc:
        module.fail_json(msg=f"backup of stanza {stanza!r} {exc}", duration_s=elapsed(started), **result)
    old = {b["label"] for b in before["backups"]}
    new = [b for b in after["backups"] if b["label"] not in old]
    if not new:
        module.fail_json(msg=f"pgbackrest backup of stanza {stanza!r} finished but no new backup is listed", **result)
    backup = new[-1]
    now = {b["label"] for b in after["backups"]}
    result.update(label=backup["label"], type=backup["type"], backup=backup, expired=sorted(old - now))
    module.exit_json(changed=True, duration_s=elapsed(started), **result)


if __name__ == "__main__":
    main()
