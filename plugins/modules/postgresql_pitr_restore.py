#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_pitr_restore
short_description: Restore a PostgreSQL cluster to a point in time with pgBackRest, into a new directory or in place
version_added: 0.1.0
description:
  - Runs C(pgbackrest restore) with a recovery target (time, LSN, named restore point, the end of the
    archive or the backup's consistent point).
  - With O(replace_current=false) (default) the restore goes into O(dest_data_dir), a new or empty
    directory. The stanza's current data directory (C(pg1-path) in O(config_file)) is never touched;
    tablespaces go to C(<dest_data_dir>.tablespaces) instead of their original paths. The module does
    not start the restored cluster. Start it (on another port when the current server runs) and
    PostgreSQL replays archived WAL up to the target, then pauses or, with O(promote=true), promotes.
    With O(archive_mode=off) (default there) the restored cluster does not archive into the same repository.
  - With O(replace_current=true) the module restores the cluster in place, the step of a disaster
    recovery. pgBackRest restores into a staging directory next to the current data directory
    (C(<pg1-path>.pitr-<UTC stamp>), or O(dest_data_dir) on the same filesystem) while the current
    server may still run, with the archive settings kept (the restored cluster goes on archiving into
    the repository on its new timeline) and C(target-action=promote). Then the module stops the current
    server when it runs (O(stop_command)), renames the current data directory to
    C(<pg1-path>.pre-restore-<stamp>) when there is one (never removed), renames the staging directory
    into place, starts the server (O(start_command)), waits until recovery reached the target and the
    server was promoted (pg_is_in_recovery() false, through the login options) and runs
    SELECT pg_reload_conf(), because PostgreSQL 15 may not fire C(archive_timeout) after a start until a reload.
  - A server that is already dead is the main case of O(replace_current=true). A data directory that is
    gone or half deleted and a stale C(postmaster.pid) (its process killed) are handled; a server that
    still answers at the login address while the data directory has no running postmaster is refused
    before anything is changed.
  - Any failure after the rename (the start fails, the server stops during recovery, for example with
    FATAL C(recovery ended before configured recovery target was reached) when the target lies past the
    end of the archive, the O(timeout) passes) rolls back. The restored directory is kept as
    C(<pg1-path>.pitr-failed-<stamp>), the previous directory is renamed back and its server started
    again when it ran before. The message says what was restored, what was put back and quotes the last
    lines of the server log.
  - A failure before the rename (the restore, the stop) removes the staging copy and changes nothing else.
extends_documentation_fragment:
  - runbook.stack.postgresql
  - runbook.stack.pgbackrest
  - runbook.stack._attributes
  - runbook.stack._attributes.operation
  - runbook.stack._attributes.actiongroup_postgresql
attributes:
  check_mode:
    details:
      - Validates the target and the directories and returns the plan (directories, commands, whether
        the server runs); restores, stops and moves nothing. With O(replace_current=true) and a running
        server it connects once to check that the login options reach that server.
  idempotent:
    details:
      - Into a new directory a second run fails because O(dest_data_dir) is no longer empty.
      - In place every run restores again and reports a change.
options:
  dest_data_dir:
    description:
      - New data directory to restore into; must not exist or be empty, and must not be the current one.
      - Required unless O(replace_current=true). There it is the staging directory (default
        C(<pg1-path>.pitr-<UTC stamp>)) and must be on the filesystem of the data directory.
    type: path
  replace_current:
    description:
      - Restore in place, replacing the stanza's current data directory (see the description).
      - Needs the module on the database host, as root with O(os_user) (or as O(os_user)).
    type: bool
    default: false
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
    description: Recovery target restore point, created with pg_create_restore_point().
    type: str
  target_exclusive:
    description: Stop just before the target instead of just after it.
    type: bool
    default: false
  promote:
    description:
      - Promote when the target is reached (C(target-action=promote)); otherwise recovery pauses there.
      - Default V(false), and V(true) with O(replace_current=true), which refuses V(false).
    type: bool
  backup_set:
    description: Label of the backup to start from. Default is the newest one that fits the target.
    type: str
  archive_mode:
    description:
      - V(off) disables archiving in the restored cluster; V(preserve) keeps the source's settings.
      - Default V(off), and V(preserve) with O(replace_current=true), which refuses V(off).
    type: str
    choices: ["off", preserve]
  stop_command:
    description:
      - Command (argv list, no shell) that stops the current server, run as the module's user, for example
        V([systemctl, stop, postgresql@15-main]). Only run when the server runs (a live C(postmaster.pid)).
      - Default C(pg_ctl stop -m fast -w -t <timeout> -D <pg1-path>), run as O(os_user).
      - Requires O(start_command). Only with O(replace_current=true).
    type: list
    elements: str
  start_command:
    description:
      - Command (argv list, no shell) that starts the server and returns, run as the module's user, for
        example V([systemctl, start, postgresql@15-main]).
      - Default C(pg_ctl start -w -t <timeout> -D <pg1-path> -l <log_file>), run as O(os_user).
      - Requires O(stop_command). Only with O(replace_current=true).
    type: list
    elements: str
  log_file:
    description:
      - Server log of the default O(start_command) (C(pg_ctl -l)), and the log the failure message quotes.
        When it has nothing new, the newest file of C(<pg1-path>/log) (the logging collector's) is quoted.
      - Default C(<pg1-path>.log).
    type: path
  pg_bin_dir:
    description:
      - Directory of C(pg_ctl) for the default commands. Default is the one of the cluster's major version
        (C(/usr/lib/postgresql/<major>/bin), C(/usr/pgsql-<major>/bin)), else E(PATH).
    type: path
  timeout:
    description:
      - Seconds to wait for each of the stop, the start, and recovery up to the promotion
        (O(replace_current=true) only). The restore itself is bounded by O(command_timeout).
    type: int
    default: 1800
notes:
  - With O(replace_current=true) tablespaces are restored to C(<staging directory>.tablespaces) and stay
    there after the rename (the links in C(pg_tblspc) point to it).
  - The login options (O(login_host), O(login_unix_socket), O(login_port), ...) must reach the restored
    server where it will listen; the module checks C(data_directory) when the role may read it.
  - A module killed with SIGKILL while the server is stopped can leave it stopped, with the previous data
    directory kept as C(<pg1-path>.pre-restore-<stamp>).
seealso:
  - module: runbook.stack.postgresql_wal_archive
  - module: runbook.stack.postgresql_physical_backup_info
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

- name: Bring the lost main cluster back in place, as of 10:42 UTC
  runbook.stack.postgresql_pitr_restore:
    stanza: main
    os_user: postgres
    login_unix_socket: /var/run/postgresql
    replace_current: true
    target_time: "2026-12-05T10:42:00+00:00"
    stop_command: [systemctl, stop, postgresql@15-main]
    start_command: [systemctl, start, postgresql@15-main]
    log_file: /var/log/postgresql/postgresql-15-main.log
  become: true
  register: pitr

- name: Show what was recovered
  ansible.builtin.debug:
    msg: "recovered up to {{ pitr.recovery_point }} on timeline {{ pitr.timeline }}; previous data in {{ pitr.previous_data_dir }}"
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
  description: The restored data directory; with O(replace_current=true) the staging directory.
  type: str
  returned: always
current_data_dir:
  description: The stanza's data directory (C(pg1-path)); left untouched unless O(replace_current=true).
  type: str
  returned: always
data_dir:
  description: The data directory the restored server runs from (C(pg1-path)).
  type: str
  returned: when O(replace_current=true)
previous_data_dir:
  description:
    - Where the data directory that was replaced is kept (C(<pg1-path>.pre-restore-<stamp>)); null when
      there was none (it had been removed). In check mode the name it would get.
  type: str
  returned: when O(replace_current=true)
server_running:
  description: Whether the current server ran before the restore (a live C(postmaster.pid)).
  type: bool
  returned: when O(replace_current=true)
server_state:
  description: What was found in the data directory, e.g. C(stale postmaster.pid (process 4242 is not running)).
  type: str
  returned: when O(replace_current=true)
stop_command:
  description: The stop command (null when the server was not running).
  type: str
  returned: when O(replace_current=true)
start_command:
  description: The start command.
  type: str
  returned: when O(replace_current=true)
log_file:
  description: The server log the module reads on failure.
  type: str
  returned: when O(replace_current=true)
recovery_point:
  description:
    - Commit time of the last transaction replayed (pg_last_xact_replay_timestamp() after the promotion),
      ISO 8601 UTC; null when no transaction was replayed after the backup.
  type: str
  returned: when O(replace_current=true) and not in check mode
  sample: "2026-12-05T10:41:59.871203+00:00"
recovery_point_source:
  description: How RV(recovery_point) was obtained.
  type: str
  returned: when O(replace_current=true) and not in check mode
timeline:
  description: Timeline of the restored server after its promotion.
  type: int
  returned: when O(replace_current=true) and not in check mode
  sample: 2
commands:
  description: Every command run (or, in check mode, planned), in order; no secrets.
  type: list
  elements: str
  returned: when O(replace_current=true)
steps:
  description: Steps with their durations (C(step), C(duration_s)); in check mode the planned steps.
  type: list
  elements: dict
  returned: when O(replace_current=true)
duration_s:
  description: Seconds the module took.
  type: float
  returned: always
"""

import os
import pwd
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._common.process import Interrupted, terminate_on_signals
from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest import (
    PgBackRestError,
    elapsed,
    pgbackrest_argument_spec,
    run,
    runner_from_params,
    shown,
    stanza_data_dir,
)
from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest_target import restore_argv, restore_target
from ansible_collections.runbook.stack.plugins.module_utils._postgresql import (
    HAS_PSYCOPG2,
    PSYCOPG2_IMPORT_ERROR,
    PostgresError,
    conn_info,
    postgres_argument_spec,
)
from ansible_collections.runbook.stack.plugins.module_utils._postgresql.in_place_restore import run_in_place

IN_PLACE_ONLY = ("stop_command", "start_command", "log_file", "pg_bin_dir")


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


def check_options(params: dict) -> None:
    if params["replace_current"]:
        if params["promote"] is False:
            raise PgBackRestError(
                "promote=false cannot be combined with replace_current=true (the module waits for the promotion)"
            )
        if params["archive_mode"] == "off":
            raise PgBackRestError(
                "archive_mode=off cannot be combined with replace_current=true (the restored cluster must go on archiving)"
            )
        if params["timeout"] < 1:
            raise PgBackRestError(f"timeout must be a positive number of seconds, got {params['timeout']}")
        for name in ("stop_command", "start_command"):
            if params[name] is not None and not [a for a in params[name] if a]:
                raise PgBackRestError(f"{name} must be a non-empty list (argv)")
        return
    given = [name for name in IN_PLACE_ONLY if params.get(name)]
    if given:
        raise PgBackRestError(f"{', '.join(given)} only apply with replace_current=true")


def restore_new_dir(params: dict, runner, kind: str, target: str | None, check_mode: bool, result: dict) -> None:
    """Restore into dest_data_dir, leaving the current data directory alone (no start)."""
    dest = params["dest_data_dir"].rstrip(os.sep) or os.sep
    current = stanza_data_dir(params["config_file"], params["stanza"])
    result.update(dest_data_dir=dest, current_data_dir=current)
    check_dest(dest, current)
    argv = restore_argv(
        runner, dest, kind, target, params.get("backup_set"), bool(params["promote"]),
        params["target_exclusive"], params["archive_mode"] or "off",
    )  # fmt: skip
    result["command"] = shown(argv)
    if check_mode:
        return
    os.makedirs(dest, mode=0o700, exist_ok=True)
    if runner.os_user and os.geteuid() == 0:
        entry = pwd.getpwnam(runner.os_user)
        os.chown(dest, entry.pw_uid, entry.pw_gid)
    run(argv, runner.env(), runner.os_user, f"cannot restore stanza {params['stanza']!r} into {dest}",
        runner.timeout, True, runner.secrets)  # fmt: skip


def main() -> None:
    argument_spec = (
        postgres_argument_spec()
        | pgbackrest_argument_spec()
        | dict(
            dest_data_dir=dict(type="path"),
            replace_current=dict(type="bool", default=False),
            target=dict(type="str", choices=["latest", "immediate"]),
            target_time=dict(type="str"),
            target_lsn=dict(type="str"),
            target_name=dict(type="str"),
            target_exclusive=dict(type="bool", default=False),
            promote=dict(type="bool"),
            backup_set=dict(type="str"),
            archive_mode=dict(type="str", choices=["off", "preserve"]),
            stop_command=dict(type="list", elements="str"),
            start_command=dict(type="list", elements="str"),
            log_file=dict(type="path"),
            pg_bin_dir=dict(type="path"),
            timeout=dict(type="int", default=1800),
        )
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("replace_current", False, ("dest_data_dir",))],
        required_together=[("stop_command", "start_command")],
    )
    params = module.params
    if params["replace_current"] and not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    started = time.monotonic()
    result: dict = dict(dest_data_dir=params["dest_data_dir"], command="", recovery_type=None, target=None,
                        current_data_dir=None)  # fmt: skip
    where = "in place" if params["replace_current"] else f"into {params['dest_data_dir']}"
    try:
        check_options(params)
        kind, target = restore_target(params)
        result.update(recovery_type=kind, target=target)
        runner = runner_from_params(params)
        with terminate_on_signals():
            if params["replace_current"]:
                run_in_place(params, runner, conn_info(params), kind, target, module.check_mode, result)
            else:
                restore_new_dir(params, runner, kind, target, module.check_mode, result)
    except PostgresError as exc:
        prefix = f"in-place restore of stanza {params['stanza']!r} failed: " if params["replace_current"] else ""
        module.fail_json(msg=f"{prefix}{exc}", duration_s=elapsed(started), **result)
    except Interrupted as exc:
        module.fail_json(msg=f"restore of stanza {params['stanza']!r} {where} {exc}", **result)
    module.exit_json(changed=True, duration_s=elapsed(started), **result)


if __name__ == "__main__":
    main()
