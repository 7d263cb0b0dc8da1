# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""In-place point-in-time restore of a PostgreSQL cluster with pgBackRest (private).

``postgresql_pitr_restore`` with ``replace_current: true``: pgBackRest restores into a staging
directory next to the stanza's data directory (``pg1-path``) while the current server may still run,
then the current server is stopped (when it runs), its directory is kept as
``<pg1-path>.pre-restore-<stamp>`` (when there is one), the staging directory is renamed into place,
the server is started and the module waits until recovery reached the target and the server was
promoted, then reloads the configuration (PostgreSQL 15 may not fire ``archive_timeout`` after a
start until a reload, docs/pitr.md).

Any failure after the rename rolls back: the restored directory is kept as
``<pg1-path>.pitr-failed-<stamp>``, the previous directory is renamed back and its server started
again when it ran before. The previous directory is only ever renamed, never removed.

The plan and the run are here; stopping, starting and watching the server are in local_server.py.
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shlex
import time
from collections.abc import Callable
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    format_backup_id,
    keep_name,
    remove_tree,
    utcnow,
)
from ansible_collections.runbook.stack.plugins.module_utils._common.files import fsync_dir
from ansible_collections.runbook.stack.plugins.module_utils._common.steps import Steps
from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line
from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest import (
    PgBackRestError,
    Runner,
    run,
    shown,
    stanza_data_dir,
    stanza_info,
)
from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest_target import restore_argv
from ansible_collections.runbook.stack.plugins.module_utils._postgresql.connection import (
    DB_ERRORS,
    ConnInfo,
    PostgresError,
    connect,
    error_text,
)
from ansible_collections.runbook.stack.plugins.module_utils._postgresql.local_server import (
    Plan,
    log_offset,
    log_tail,
    postmaster_pid,
    reload_conf,
    server_answers,
    server_facts,
    start_server,
    stop_server,
    wait_ready,
)
from ansible_collections.runbook.stack.plugins.module_utils._postgresql.tools import find_tool

RECOVERY_POINT_SOURCE = "pg_last_xact_replay_timestamp() of the restored server after its promotion"


# ---------------------------------------------------------------------------------------------
# plan
# ---------------------------------------------------------------------------------------------


def pg_major(data_dir: str, read_info: Callable[[], dict[str, Any]]) -> int:
    """Major version from ``<data_dir>/PG_VERSION``, else from the stanza (pgbackrest info)."""
    try:
        with open(os.path.join(data_dir, "PG_VERSION"), encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        pass
    version = str(read_info().get("pg_version") or "")
    try:
        return int(version.split(".", maxsplit=1)[0])
    except ValueError:
        raise PgBackRestError(
            f"cannot tell the PostgreSQL version of {data_dir} (no PG_VERSION, none in the stanza)"
        ) from None


def check_placement(data_dir: str, staging: str) -> None:
    """The data directory can be renamed (no symlink, no mount point) and the staging directory is a new
    or empty directory on the same filesystem, outside the data directory."""
    parent = os.path.dirname(data_dir.rstrip(os.sep))
    if not os.path.isdir(parent):
        raise PgBackRestError(f"the parent directory {parent} of the data directory {data_dir} does not exist")
    if os.path.islink(data_dir):
        raise PgBackRestError(f"the data directory {data_dir} is a symbolic link; set pg1-path to its target")
    if os.path.isdir(data_dir) and os.path.ismount(data_dir):
        raise PgBackRestError(
            f"the data directory {data_dir} is a mount point and cannot be renamed; use a subdirectory of it as data directory"
        )
    real, cur = os.path.realpath(staging), os.path.realpath(data_dir)
    if real == cur or real.startswith(cur + os.sep) or cur.startswith(real + os.sep):
        raise PgBackRestError(f"dest_data_dir {staging} overlaps the data directory {data_dir}")
    if os.path.exists(staging) and (not os.path.isdir(staging) or os.listdir(staging)):
        raise PgBackRestError(f"dest_data_dir {staging} is not an empty directory; the module never overwrites one")
    staging_parent = os.path.dirname(real.rstrip(os.sep)) or os.sep
    if not os.path.isdir(staging_parent):
        raise PgBackRestError(f"dest_data_dir {staging}: the parent directory does not exist")
    if os.stat(staging_parent).st_dev != os.stat(parent).st_dev:
        raise PgBackRestError(
            f"dest_data_dir {staging} is on another filesystem than {data_dir}; it must be renamed into place"
        )


def make_plan(params: dict[str, Any], runner: Runner, data_dir: str, info: ConnInfo, read_info: Callable) -> Plan:
    data_dir = data_dir.rstrip(os.sep) or os.sep
    stamp = format_backup_id(utcnow())
    if params.get("dest_data_dir"):
        staging = params["dest_data_dir"].rstrip(os.sep) or os.sep
    else:
        staging, last = keep_name(lambda more: f"{data_dir}.pitr-{stamp}{more}", os.path.lexists, ".", 99)
        if last:
            raise PgBackRestError(f"{staging} to {last} all exist; remove old staging directories")
    check_placement(data_dir, staging)
    previous = None
    if os.path.lexists(data_dir):
        previous, last = keep_name(lambda more: f"{data_dir}.pre-restore-{stamp}{more}", os.path.lexists, ".", 99)
        if last:
            raise PgBackRestError(f"{previous} to {last} all exist; nothing was changed")
    pid, note = postmaster_pid(data_dir)
    if pid is None and server_answers(info):
        raise PgBackRestError(
            f"a server answers at {info.where} but {data_dir} has no running postmaster ({note}); "
            "stop that server first (or fix the login options); nothing was changed"
        )
    user = runner.os_user
    log_file = params.get("log_file") or f"{data_dir}.log"
    stop_argv, start_argv = params.get("stop_command"), params.get("start_command")
    if not stop_argv or not start_argv:
        if os.geteuid() == 0 and not user:
            raise PgBackRestError("set os_user (or stop_command and start_command): pg_ctl refuses to run as root")
        pg_ctl, _text = find_tool("pg_ctl", pg_major(data_dir, read_info), params.get("pg_bin_dir"))
        t = str(int(params["timeout"]))
        stop_argv = stop_argv or [pg_ctl, "stop", "-m", "fast", "-w", "-t", t, "-D", data_dir]
        start_argv = start_argv or [pg_ctl, "start", "-w", "-t", t, "-D", data_dir, "-l", log_file]
    # the default commands run as os_user; given ones as the module's user (systemctl, pg_ctlcluster)
    command_user = user if not params.get("stop_command") else None
    return Plan(data_dir, staging, previous, pid, note, list(stop_argv), list(start_argv), command_user, log_file,
                float(params["timeout"]), stamp)  # fmt: skip


def in_place_restore_argv(
    runner: Runner, plan: Plan, kind: str, target: str | None, params: dict[str, Any]
) -> list[str]:
    """pgbackrest restore into the staging directory: promote, archive settings kept, and a
    restore_command without ``--pg1-path=<staging>`` (pgBackRest would write that one, and
    archive-get reads pg_control from pg1-path, which is the data directory once the copy is in place)."""
    argv = restore_argv(
        runner, plan.staging, kind, target, params.get("backup_set"), True, params["target_exclusive"], "preserve"
    )
    binary, config = shlex.quote(runner.binary), shlex.quote(f"--config={runner.config_file}")
    restore_command = f'{binary} {config} --stanza={runner.stanza} archive-get %f "%p"'
    return [*argv[:-1], f"--recovery-option=restore_command={restore_command}", argv[-1]]


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


def utc_iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).isoformat()


def clear_staging(staging: str, existed: bool) -> None:
    """Remove what the restore wrote: the directory when the module made it, else its content."""
    if not existed:
        remove_tree(staging)
        remove_tree(f"{staging}.tablespaces")
        return
    for name in os.listdir(staging):
        remove_tree(os.path.join(staging, name))


def restore_in_place(
    plan: Plan, runner: Runner, argv: list[str], info: ConnInfo, what: str, steps: Steps
) -> dict[str, Any]:
    """Restore into staging, stop, swap, start, wait for the promotion, reload. Returns the result keys."""
    existed = os.path.isdir(plan.staging)
    os.makedirs(plan.staging, mode=0o700, exist_ok=True)
    if runner.os_user and os.geteuid() == 0:
        entry = pwd.getpwnam(runner.os_user)
        os.chown(plan.staging, entry.pw_uid, entry.pw_gid)
    os.chmod(plan.staging, 0o700)
    try:
        with steps.step("restore into the staging directory"):
            plan.commands.append(shown(argv))
            run(argv, runner.env(), runner.os_user, f"cannot restore {what} into {plan.staging}", runner.timeout, True,
                runner.secrets)  # fmt: skip
        pid, note = postmaster_pid(plan.data_dir)  # again: it may have died or been started meanwhile
        plan.running_pid, plan.pid_note = pid, note
        if pid is not None:
            with steps.step("stop the current server"):
                stop_server(plan, pid)
    except BaseException as exc:
        clear_staging(plan.staging, existed)
        cause = str(exc) or type(exc).__name__
        raise PgBackRestError(
            f"{cause}; nothing was changed (the partial restore in {plan.staging} was removed)"
        ) from None
    moved = swapped = False
    since, offset = time.time(), log_offset(plan.log_file)
    try:
        with steps.step("move the data directory aside and the restored one into place"):
            if plan.previous:
                os.rename(plan.data_dir, plan.previous)
                moved = True
            os.rename(plan.staging, plan.data_dir)
            swapped = True
            fsync_dir(os.path.dirname(plan.data_dir))
        with steps.step("start the restored server"):
            start_server(plan)
        with steps.step("wait for recovery to reach the target and the promotion"):
            facts = wait_ready(info, plan.data_dir, plan.timeout, promoted=True)
        with steps.step("pg_reload_conf()"):
            reload_conf(info)
    except BaseException as exc:
        cause = one_line(str(exc) or type(exc).__name__, info.password)
        log = log_tail(plan.log_file, offset, plan.data_dir if swapped else plan.staging, since)
        back = roll_back(plan, info, moved, swapped)
        where = f"restored {what} into {plan.staging}" + (f" and moved it to {plan.data_dir}" if swapped else "")
        logged = f" Server log: {' | '.join(log)}." if log else f" Nothing in the server log {plan.log_file}."
        raise PgBackRestError(f"{where}, then: {cause}.{logged} Rolled back: {back}") from None
    walfile = facts.get("walfile") or ""
    return dict(
        recovery_point=utc_iso(facts["replay_timestamp"]),
        recovery_point_source=RECOVERY_POINT_SOURCE
        + ("" if facts["replay_timestamp"] else " (null: no transaction was replayed after the backup)"),
        timeline=int(walfile[:8], 16) if len(walfile) >= 8 else None,
        previous_data_dir=plan.previous if moved else None,
    )


def roll_back(plan: Plan, info: ConnInfo, moved: bool, swapped: bool) -> str:
    """Stop the restored server, keep its directory as .pitr-failed-<stamp>, put the previous one back
    and start it when it ran before; a sentence saying how that went. Never removes the previous one."""
    done: list[str] = []
    try:
        restored = plan.data_dir if swapped else plan.staging
        if swapped:
            pid, _note = postmaster_pid(plan.data_dir)
            if pid is not None:
                stop_server(plan, pid)
        failed, last = keep_name(
            lambda more: f"{plan.data_dir}.pitr-failed-{plan.stamp}{more}", os.path.lexists, ".", 99
        )
        if last:
            raise PgBackRestError(f"{failed} to {last} all exist")
        os.rename(restored, failed)
        done.append(f"the restored directory is kept as {failed}")
        if moved:
            os.rename(plan.previous, plan.data_dir)
            done.append(f"the previous data directory is back at {plan.data_dir}")
        elif plan.previous is None:
            done.append(f"there was no previous data directory at {plan.data_dir}")
        fsync_dir(os.path.dirname(plan.data_dir))
    except (PgBackRestError, OSError) as exc:
        kept = (
            f"the previous data directory is kept as {plan.previous}"
            if moved
            else "the previous data directory was not moved"
        )
        return "; ".join([*done, f"then the roll-back failed ({one_line(exc)}); {kept}"])
    if plan.running_pid is None:
        return "; ".join([*done, "its server was not running before and stays stopped"])
    try:
        start_server(plan)
        wait_ready(info, plan.data_dir, plan.timeout, promoted=False)
        reload_conf(info)
    except (PgBackRestError, PostgresError) as exc:
        return "; ".join([*done, f"but its server did not start again: {one_line(exc, info.password)}"])
    return "; ".join([*done, "its server is running again"])


def check_current(info: ConnInfo, data_dir: str) -> None:
    """The running server answers the login options and is the one of ``data_dir``."""
    try:
        conn = connect(info)
        try:
            facts = server_facts(conn)
        finally:
            conn.close()
    except DB_ERRORS as exc:
        raise PgBackRestError(f"cannot query the running server at {info.where}: {error_text(exc)}") from None
    where = facts["data_directory"]
    if where and os.path.realpath(where) != os.path.realpath(data_dir):
        raise PgBackRestError(
            f"the login options reach the server of {where} at {info.where}, not the one of {data_dir}; nothing was changed"
        )


def run_in_place(
    params: dict[str, Any],
    runner: Runner,
    info: ConnInfo,
    kind: str,
    target: str | None,
    check_mode: bool,
    result: dict[str, Any],
) -> None:
    """The whole in-place restore (or, in check mode, its plan); fills the module's ``result`` as it goes,
    so a failure still returns the plan."""
    data_dir = stanza_data_dir(params["config_file"], params["stanza"])
    result["current_data_dir"] = data_dir
    plan = make_plan(params, runner, data_dir, info, lambda: stanza_info(runner))
    result.update(plan.as_result())
    if plan.running_pid is not None:
        check_current(info, plan.data_dir)
    argv = in_place_restore_argv(runner, plan, kind, target, params)
    result.update(command=shown(argv), commands=plan.commands)
    if check_mode:
        running = plan.running_pid is not None
        planned = [f"pgbackrest restore into {plan.staging}"]
        planned += [f"stop the server (postmaster pid {plan.running_pid})"] if running else []
        planned += [f"rename {plan.data_dir} to {plan.previous}"] if plan.previous else []
        planned += [f"rename {plan.staging} to {plan.data_dir}", "start the restored server"]
        planned += ["wait for recovery to reach the target and the promotion", "pg_reload_conf()"]
        commands = [shown(argv)] + ([shown(plan.stop_argv)] if running else []) + [shown(plan.start_argv)]
        result.update(commands=commands, steps=[{"step": s} for s in planned])
        return
    steps = Steps()
    result["steps"] = steps.items
    what = f"stanza {runner.stanza!r} ({kind}{' ' + target if target else ''})"
    try:
        done = restore_in_place(plan, runner, argv, info, what, steps)
    finally:
        result.update(plan.as_result(), previous_data_dir=None)
    result.update(done)
