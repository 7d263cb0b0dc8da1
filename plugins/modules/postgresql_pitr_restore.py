#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_pitr_restore
short_description: Restore a PostgreSQL cluster to a point in time into a new data directory with pgBackRest
version_added: 0.1.0
description:
  - Runs C(pgbackrest restore) with a recovery target (time, LSN, named restore point, the end of the
    archive or the backup's consistent point) into O(dest_data_dir), a new or empty directory.
  - The stanza's current data directory (C(pg1-path) in O(config_file)) is never touched; tablespaces
    go to C(<dest_data_dir>.tablespaces) instead of their original paths.
  - The module does not start the restored cluster. Start it (on another port when the current server
    runs) and PostgreSQL replays archived WAL up to the target, then pauses or, with O(promote=true), promotes.
  - With O(archive_mode=off) (default) the restored cluster does not archive into the same repository.
extends_documentation_fragment:
  - runbook.stack.pgbackrest
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Validates the target and the directories, returns the command; restores nothing.
  diff_mode:
    support: none
  idempotent:
    description: Running the module twice against an unchanged system reports no change.
    support: none
    details: A second run fails because O(dest_data_dir) is no longer empty.
  platform:
    platforms: posix
options:
  dest_data_dir:
    description: New data directory to restore into; must not exist or be empty, and must not be the current one.
    type: path
    required: true
  target:
    description:
      - V(latest) replays all archived WAL; V(immediate) stops at the backup's consistent point.
      - Used when none of O(target_time), O(target_lsn), O(target_name) is set.
    type: str
    choices: [latest, immediate]
  target_time:
    description: Recovery target time, ISO 8601 with a UTC offset (V(2026-12-05T21:57:19.68+00:00)).
    type: str
  target_lsn:
    description: Recovery target WAL location (V(0/3000060)).
    type: str
  target_name:
    description: Recovery target restore point, created with C(pg_create_restore_point()).
    type: str
  target_exclusive:
    description: Stop just before the target instead of just after it.
    type: bool
    default: false
  promote:
    description: Promote when the target is reached (C(target-action=promote)); otherwise recovery pauses there.
    type: bool
    default: false
  backup_set:
    description: Label of the backup to start from. Default is the newest one that fits the target.
    type: str
  archive_mode:
    description: V(off) disables archiving in the restored cluster; V(preserve) keeps the source's settings.
    type: str
    default: "off"
    choices: ["off", preserve]
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Restore the main cluster as of 10:42 UTC into a new directory
  runbook.stack.postgresql_pitr_restore:
    stanza: main
    os_user: postgres
    dest_data_dir: /var/lib/postgresql/15/pitr
    target_time: "2026-12-05T10:42:00+00:00"
    promote: true
  become: true
"""

RETURN = r"""
command:
  description: The pgbackrest command (no secrets).
  type: str
  returned: always
recovery_type:
  description: pgBackRest's recovery type (time, lsn, name, immediate or default for latest).
  type: str
  returned: always
  sample: time
target:
  description: The normalised recovery target (null for latest and immediate).
  type: str
  returned: always
  sample: "2026-12-05 21:57:19.680000+00:00"
dest_data_dir:
  description: The restored data directory.
  type: str
  returned: always
current_data_dir:
  description: The stanza's current data directory, left untouched.
  type: str
  returned: always
duration_s:
  description: Seconds the module took.
  type: float
  returned: always
"""

import os
import pwd
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest import (
    PgBackRestError,
    elapsed,
    pgbackrest_argument_spec,
    restore_argv,
    restore_target,
    run,
    runner_from_params,
    shown,
    stanza_data_dir,
)
from ansible_collections.runbook.stack.plugins.module_utils._postgresql import PostgresError
from ansible_collections.runbook.stack.plugins.module_utils._process import Interrupted, terminate_on_signals


def check_dest(dest: str, current: str) -> None:
    real, cur = os.path.realpath(dest), os.path.realpath(current)
    if real == cur or real.startswith(cur + os.sep) or cur.startswith(real + os.sep):
        raise PgBackRestError(
            f"dest_data_dir {dest} overlaps the current data directory {current}; choose a new directory"
        )
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise PgBackRestError(f"dest_data_dir {dest} is not an empty directory; the module never overwrites one")
    if not os.path.isdir(os.path.dirname(real.rstrip(os.sep)) or "/"):
        raise PgBackRestError(f"dest_data_dir {dest}: the parent directory does not exist")


def main() -> None:
    argument_spec = pgbackrest_argument_spec() | dict(
        dest_data_dir=dict(type="path", required=True),
        target=dict(type="str", choices=["latest", "immediate"]),
        target_time=dict(type="str"),
        target_lsn=dict(type="str"),
        target_name=dict(type="str"),
        target_exclusive=dict(type="bool", default=False),
        promote=dict(type="bool", default=False),
        backup_set=dict(type="str"),
        archive_mode=dict(type="str", default="off", choices=["off", "preserve"]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    started = time.monotonic()
    dest = params["dest_data_dir"].rstrip(os.sep) or os.sep
    result = dict(dest_data_dir=dest, command="", recovery_type=None, target=None, current_data_dir=None)
    try:
        kind, target = restore_target(params)
        result.update(recovery_type=kind, target=target)
        runner = runner_from_params(params)
        current = stanza_data_dir(params["config_file"], params["stanza"])
        result["current_data_dir"] = current
        check_dest(dest, current)
        argv = restore_argv(
            runner,
            dest,
            kind,
            target,
            params.get("backup_set"),
            params["promote"],
            params["target_exclusive"],
            params["archive_mode"],
        )
        result["command"] = shown(argv)
        if module.check_mode:
            module.exit_json(changed=True, duration_s=elapsed(started), **result)
        with terminate_on_signals():
            os.makedirs(dest, mode=0o700, exist_ok=True)
            if runner.os_user and os.geteuid() == 0:
                entry = pwd.getpwnam(runner.os_user)
                os.chown(dest, entry.pw_uid, entry.pw_gid)
            run(
                argv,
                runner.env(),
                runner.os_user,
                f"cannot restore stanza {params['stanza']!r} into {dest}",
                runner.timeout,
                True,
                runner.secrets,
            )
    except PostgresError as exc:
        module.fail_json(msg=str(exc), duration_s=elapsed(started), **result)
    except Interrupted as exc:
        module.fail_json(msg=f"restore of stanza {params['stanza']!r} into {dest} {exc}", **result)
    module.exit_json(changed=True, duration_s=elapsed(started), **result)


if __name__ == "__main__":
    main()
