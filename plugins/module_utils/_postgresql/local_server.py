# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL server of a data directory on this host, for the in-place restore (private): is it
running (``postmaster.pid``), stop and start it with the given commands, wait until it accepts
connections or was promoted, reload its configuration and read its log. Faults are PgBackRestError."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._common.process import run_detached
from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest import PgBackRestError, _ids, shown, user_home
from ansible_collections.runbook.stack.plugins.module_utils._postgresql.connection import (
    DB_ERRORS,
    ConnInfo,
    PostgresError,
    connect,
    error_text,
    query,
)

STOP_GRACE_S = 5.0  # a stop command that failed gets this long for the postmaster to end anyway
GONE_GRACE_S = 10.0  # after a start, how long no postmaster may be seen before the start counts as failed
LOG_LINES = 8
POLL_S = 0.5


@dataclass
class Plan:
    """What an in-place restore does: directories, whether the server runs, the commands."""

    data_dir: str
    staging: str
    previous: str | None
    running_pid: int | None
    pid_note: str
    stop_argv: list[str]
    start_argv: list[str]
    command_user: str | None
    log_file: str
    timeout: float
    stamp: str
    commands: list[str] = field(default_factory=list)

    def as_result(self) -> dict[str, Any]:
        return dict(
            data_dir=self.data_dir,
            dest_data_dir=self.staging,
            previous_data_dir=self.previous,
            server_running=self.running_pid is not None,
            server_state=self.pid_note,
            stop_command=shown(self.stop_argv) if self.running_pid is not None else None,
            start_command=shown(self.start_argv),
            log_file=self.log_file,
        )


# ---------------------------------------------------------------------------------------------
# the server: is it running, stop, start, wait
# ---------------------------------------------------------------------------------------------


def postmaster_pid(data_dir: str) -> tuple[int | None, str]:
    """(pid of the live postmaster of ``data_dir`` or None, what was found), from ``postmaster.pid``.
    A pid file whose process is gone (kill -9) or is no PostgreSQL process (pid reused) is stale."""
    path = os.path.join(data_dir, "postmaster.pid")
    if not os.path.isdir(data_dir):
        return None, f"{data_dir} does not exist"
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline().strip()
    except FileNotFoundError:
        return None, "not running (no postmaster.pid)"
    except OSError as exc:
        raise PgBackRestError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not first.lstrip("-").isdigit():
        return None, f"stale postmaster.pid (no process id in {path})"
    pid = abs(int(first))
    if not process_alive(pid):
        return None, f"stale postmaster.pid (process {pid} is not running)"
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as f:
            comm = f.read().strip()
    except OSError:
        comm = "postgres"  # no /proc: trust the pid file, as pg_ctl does
    if comm not in ("postgres", "postmaster"):
        return None, f"stale postmaster.pid (process {pid} is {comm!r}, not PostgreSQL)"
    return pid, f"running (postmaster pid {pid})"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own child that ended) is gone for our purpose
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def server_answers(info: ConnInfo) -> bool:
    """True when something accepts connections where the module connects (socket or TCP port)."""
    host = info.host or "/var/run/postgresql"
    try:
        if host.startswith("/"):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(3)
                s.connect(os.path.join(host, f".s.PGSQL.{info.port}"))
        else:
            with socket.create_connection((host, info.port), timeout=3):
                pass
    except OSError:
        return False
    return True


def control_env(user: str | None) -> dict[str, str]:
    """Environment of the stop/start commands: no PG*, PGBACKREST_* or AWS_* variables (no secrets
    reach the server's environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_"))}
    env["LC_ALL"] = "C.UTF-8"
    if user:
        env["HOME"] = user_home(user)
    return env


def run_control(argv: list[str], user: str | None, timeout: float) -> tuple[int, str]:
    """Run a stop/start command (argv, no shell) as ``user``; (rc, output tail)."""
    return run_detached(argv, control_env(user), timeout, ids=_ids(user), cwd="/")


def poll(check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(POLL_S)


def stop_server(plan: Plan, pid: int) -> None:
    """Run the stop command and wait until postmaster ``pid`` has ended."""
    plan.commands.append(shown(plan.stop_argv))
    rc, output = run_control(plan.stop_argv, plan.command_user, plan.timeout)
    wait = plan.timeout if rc == 0 else min(plan.timeout, STOP_GRACE_S)
    if not poll(lambda: not process_alive(pid), wait):
        raise PgBackRestError(
            f"the server of {plan.data_dir} (postmaster pid {pid}) still runs after {shown(plan.stop_argv)} "
            f"(rc {rc}: {output or 'no output'})"
        )


def start_server(plan: Plan) -> None:
    plan.commands.append(shown(plan.start_argv))
    rc, output = run_control(plan.start_argv, plan.command_user, plan.timeout)
    if rc != 0:
        raise PgBackRestError(f"the start command {shown(plan.start_argv)} failed (rc {rc}): {output or 'no output'}")


def server_facts(conn: Any) -> dict[str, Any]:
    row = query(conn, "SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp()")[0]
    facts: dict[str, Any] = dict(in_recovery=row[0], replay_timestamp=row[1], data_directory=None)
    try:
        facts["data_directory"] = query(conn, "SELECT current_setting('data_directory')")[0][0]
    except DB_ERRORS:  # a role without pg_read_all_settings: the check below is skipped
        pass
    if not facts["in_recovery"]:
        facts["walfile"] = query(conn, "SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    return facts


def wait_ready(info: ConnInfo, data_dir: str, timeout: float, promoted: bool) -> dict[str, Any]:
    """Wait until the server of ``data_dir`` accepts connections (``promoted``: and is out of recovery);
    its facts. PgBackRestError when its postmaster ends (recovery failed) or the time is up."""
    started = time.monotonic()
    deadline = started + timeout
    seen_postmaster, last = False, "no connection attempt yet"
    while True:
        pid, state = postmaster_pid(data_dir)
        seen_postmaster = seen_postmaster or pid is not None
        try:
            conn = connect(info)
            try:
                facts = server_facts(conn)
            finally:
                conn.close()
        except PostgresError as exc:
            last = str(exc)
        except DB_ERRORS as exc:
            last = error_text(exc)
        else:
            where = facts["data_directory"]
            if where and os.path.realpath(where) != os.path.realpath(data_dir):
                raise PgBackRestError(
                    f"the login options reach the server of {where} at {info.where}, not the one of {data_dir}"
                )
            if not promoted or not facts["in_recovery"]:
                return facts
            last = "the server is still in recovery"
        if pid is None and seen_postmaster:
            raise PgBackRestError(f"the server of {data_dir} stopped ({state})")
        if pid is None and time.monotonic() - started > GONE_GRACE_S:
            raise PgBackRestError(f"no server runs from {data_dir} ({state}); last connection attempt: {last}")
        if time.monotonic() >= deadline:
            what = "was promoted" if promoted else "accepted connections"
            raise PgBackRestError(f"the server of {data_dir} never {what} within {timeout:g} s (timeout): {last}")
        time.sleep(POLL_S)


def reload_conf(info: ConnInfo) -> None:
    """pg_reload_conf(): PostgreSQL 15 may not fire archive_timeout after a start until a reload."""
    conn = connect(info)
    try:
        query(conn, "SELECT pg_reload_conf()")
    except DB_ERRORS as exc:
        raise PgBackRestError(f"pg_reload_conf() failed: {error_text(exc)}") from None
    finally:
        conn.close()


def log_offset(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def log_tail(path: str, offset: int, data_dir: str, since: float, lines: int = LOG_LINES) -> list[str]:
    """The last lines the server logged since the start: ``path`` (pg_ctl -l) from ``offset``, else the
    newest file of the logging collector (``<data_dir>/log``) written since ``since`` (epoch)."""
    candidates = [(path, offset)]
    logdir = os.path.join(data_dir, "log")
    if os.path.isdir(logdir):
        files = [os.path.join(logdir, n) for n in os.listdir(logdir)]
        recent = [p for p in files if os.path.isfile(p) and os.path.getmtime(p) >= since - 1]
        candidates += [(p, 0) for p in sorted(recent, key=os.path.getmtime)[-1:]]
    for name, start in candidates:
        try:
            with open(name, "rb") as f:
                f.seek(start)
                text = f.read()[-64 * 1024 :].decode("utf-8", "replace")
        except OSError:
            continue
        kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if kept:
            return kept[-lines:]
    return []
