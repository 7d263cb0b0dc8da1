"""postgresql_pitr_restore with replace_current: a cluster restored in place to a point in time.

Reuses the fixture of test_postgresql_pitr (throwaway nginx TLS front before the lab SeaweedFS, a
bucket of its own) and adds a throwaway cluster of its own (stanza ``inplace``) whose port and socket
directory are in postgresql.conf, so the module's default ``pg_ctl start`` brings it back where it was.
The cluster runs as runbooklab and logs to ``<data>.log`` (the module's default log_file).
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shutil
import signal
import time
from pathlib import Path

import psycopg2
import pytest
from conftest import run_module
from pgbackrest_lab import BIN, USER, as_user, free_port, pg_stop, q, wait_for
from test_postgresql_pitr import (  # noqa: F401  # pylint: disable=unused-import
    archive_args,
    common,
    stack,
)

STANZA = "inplace"


def start(data: Path, *extra: str) -> None:
    argv = [str(BIN / "pg_ctl"), "-D", str(data), "-l", f"{data}.log", "-w", "-t", "120"]
    if extra:
        argv += ["-o", " ".join(extra)]
    as_user(*argv, "start")


def pid_of(data: Path) -> int:
    return int((data / "postmaster.pid").read_text().splitlines()[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"


@pytest.fixture(scope="module")
def cluster(stack):  # noqa: F811
    st = stack
    root = st["root"] / "inplace"
    root.mkdir()
    entry = pwd.getpwnam(USER)
    os.chown(root, entry.pw_uid, entry.pw_gid)
    data, port = root / "data", free_port()
    as_user(str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
    with (data / "postgresql.conf").open("a") as fh:
        fh.write(f"port = {port}\nunix_socket_directories = '{st['sock']}'\nlisten_addresses = ''\n")
    start(data)
    c = dict(st, data=data, port=port, conf=root / "pgbackrest.conf", dir=root)
    try:
        args = archive_args(st) | dict(config_file=str(c["conf"]), stanza=STANZA, login_port=port)
        res = run_module("postgresql_wal_archive", args)
        assert res["_rc"] == 0 and res["restart_required"], res
        as_user(str(BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        start(data)
        res = run_module("postgresql_wal_archive", args)
        assert res["_rc"] == 0 and res["checked"], res
        res = run_module("postgresql_physical_backup", base(c) | dict(type="full"), timeout=300)
        assert res["_rc"] == 0, res
        # pgBackRest needs a backup that stopped (whole seconds) before the target time
        stop = dt.datetime.fromisoformat(res["backup"]["stop"]) + dt.timedelta(seconds=1)
        wait_for("server clock past the backup's stop second", lambda: now(c) > stop, 5)
        sql(c, "CREATE TABLE t(i int, phase text)")
        yield c
    finally:
        for d in [data, *root.glob("data.*")]:
            if d.is_dir():
                pg_stop(d)


def base(c) -> dict:
    return common(c) | dict(config_file=str(c["conf"]), stanza=STANZA)


def in_place(c, **extra) -> dict:
    return (
        base(c)
        | dict(replace_current=True, login_unix_socket=str(c["sock"]), login_port=c["port"], timeout=300)
        | extra
    )


def sql(c, statement: str, port: int | None = None) -> list:
    return q(port or c["port"], c["sock"], statement)


def now(c) -> dt.datetime:
    return sql(c, "SELECT clock_timestamp()")[0][0]


def rows(c, port: int | None = None) -> list[tuple[int, str]]:
    return [tuple(r) for r in sql(c, "SELECT i, phase FROM t ORDER BY i", port)]


def archive_through(c) -> None:
    """Switch the WAL segment and wait until it is in the repository."""
    seg = sql(c, "SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    sql(c, "SELECT pg_switch_wal()")
    wait_for(
        f"WAL segment {seg} archived",
        lambda: (sql(c, "SELECT last_archived_wal FROM pg_stat_archiver")[0][0] or "") >= seg,
    )


def siblings(c, pattern: str) -> list[Path]:
    return sorted(c["dir"].glob(f"data.{pattern}"))


def answers(c, port: int | None = None) -> bool:
    try:
        sql(c, "SELECT 1", port)
    except psycopg2.OperationalError:
        return False
    return True


def test_check_mode_changes_nothing(cluster):
    c = cluster
    pid, listing = pid_of(c["data"]), sorted(p.name for p in c["dir"].iterdir())
    res = run_module("postgresql_pitr_restore", in_place(c, target="latest"), check_mode=True)
    assert res["_rc"] == 0 and res["changed"], res
    assert res["server_running"] and res["data_dir"] == str(c["data"]) and res["current_data_dir"] == str(c["data"])
    assert res["previous_data_dir"].startswith(f"{c['data']}.pre-restore-"), res
    assert res["dest_data_dir"].startswith(f"{c['data']}.pitr-"), res
    assert "pg_ctl stop -m fast" in res["stop_command"] and f"-l {c['data']}.log" in res["start_command"], res
    assert len(res["commands"]) == 3 and "--archive-mode=preserve" in res["command"], res
    assert "--target-action" not in res["command"] and "restore_command=" in res["command"], res
    assert [s["step"] for s in res["steps"]][-1] == "pg_reload_conf()", res
    assert pid_of(c["data"]) == pid and alive(pid)
    assert sorted(p.name for p in c["dir"].iterdir()) == listing

    # bad input fails clearly and touches nothing
    bad = run_module("postgresql_pitr_restore", in_place(c, target="latest", promote=False))
    assert bad["failed"] and "promote=false cannot be combined with replace_current=true" in bad["msg"], bad
    bad = run_module("postgresql_pitr_restore", in_place(c, target="latest", archive_mode="off"))
    assert bad["failed"] and "archive_mode=off cannot be combined" in bad["msg"], bad
    bad = run_module(
        "postgresql_pitr_restore",
        base(c) | dict(dest_data_dir=str(c["dir"] / "x"), stop_command=["true"], start_command=["true"]),
    )
    assert bad["failed"] and "only apply with replace_current=true" in bad["msg"], bad
    bad = run_module("postgresql_pitr_restore", in_place(c, target="latest", login_port=free_port()), check_mode=True)
    assert bad["failed"] and "cannot connect to PostgreSQL" in bad["msg"], bad
    assert pid_of(c["data"]) == pid and sorted(p.name for p in c["dir"].iterdir()) == listing


def test_killed_server_and_removed_data_dir(cluster):
    c = cluster
    before_t0 = now(c)
    sql(c, "INSERT INTO t SELECT g, 't0' FROM generate_series(1, 3) g")
    time.sleep(1.1)
    target = now(c)
    time.sleep(1.1)
    before_t1 = now(c)
    sql(c, "INSERT INTO t SELECT g, 't1' FROM generate_series(4, 6) g")
    archive_through(c)

    pid = pid_of(c["data"])
    os.kill(pid, signal.SIGKILL)
    wait_for("postmaster gone after SIGKILL", lambda: not alive(pid), 30)
    shutil.rmtree(c["data"])

    res = run_module("postgresql_pitr_restore", in_place(c, target_time=target.isoformat()), timeout=600)
    assert res["_rc"] == 0 and res["changed"], res.get("msg")
    assert not res["server_running"] and "does not exist" in res["server_state"], res
    assert res["previous_data_dir"] is None and res["stop_command"] is None and not siblings(c, "pre-restore-*")
    assert res["data_dir"] == str(c["data"]) and not Path(res["dest_data_dir"]).exists()
    # the server runs on its port again, promoted, with the T0 rows and not the T1 rows
    assert not sql(c, "SELECT pg_is_in_recovery()")[0][0]
    assert rows(c) == [(1, "t0"), (2, "t0"), (3, "t0")]
    point = dt.datetime.fromisoformat(res["recovery_point"])
    assert before_t0 <= point <= target < before_t1, res["recovery_point"]
    assert point.utcoffset() == dt.timedelta(0) and "pg_last_xact_replay_timestamp()" in res["recovery_point_source"]
    assert res["timeline"] >= 2
    assert [s["step"] for s in res["steps"]] == [
        "restore into the staging directory",
        "move the data directory aside and the restored one into place",
        "start the restored server",
        "wait for recovery to reach the target and the promotion",
        "pg_reload_conf()",
    ]
    # archiving goes on, on the new timeline
    sql(c, "INSERT INTO t VALUES (7, 'after')")
    archive_through(c)
    assert sql(c, "SELECT last_archived_wal FROM pg_stat_archiver")[0][0].startswith(f"{res['timeline']:08X}")


def test_half_deleted_data_dir_with_stale_pid(cluster):
    c = cluster
    sql(c, "INSERT INTO t VALUES (8, 'before-crash')")
    archive_through(c)
    pid = pid_of(c["data"])
    os.kill(pid, signal.SIGKILL)
    wait_for("postmaster gone after SIGKILL", lambda: not alive(pid), 30)
    shutil.rmtree(c["data"] / "base")

    res = run_module("postgresql_pitr_restore", in_place(c, target="latest"), timeout=600)
    assert res["_rc"] == 0, res.get("msg")
    assert res["server_state"] == f"stale postmaster.pid (process {pid} is not running)", res
    previous = Path(res["previous_data_dir"])
    assert previous.parent == c["dir"] and previous.name.startswith("data.pre-restore-"), res
    # the damaged directory is kept as it was, stale pid file included
    assert pid_of(previous) == pid and not (previous / "base").exists() and (previous / "global").is_dir()
    assert rows(c)[-2:] == [(7, "after"), (8, "before-crash")]


def test_live_server_keeps_previous_directory(cluster):
    c = cluster
    sql(c, "INSERT INTO t VALUES (10, 'a')")
    time.sleep(1.1)
    target = now(c)
    time.sleep(1.1)
    sql(c, "INSERT INTO t VALUES (11, 'b')")
    archive_through(c)
    pid, before = pid_of(c["data"]), rows(c)

    res = run_module("postgresql_pitr_restore", in_place(c, target_time=target.isoformat()), timeout=600)
    assert res["_rc"] == 0, res.get("msg")
    assert res["server_running"] and res["server_state"] == f"running (postmaster pid {pid})", res
    assert "pg_ctl stop -m fast" in res["stop_command"] and not alive(pid)
    assert [s["step"] for s in res["steps"]][1] == "stop the current server"
    assert rows(c) == before[:-1] and before[-1] == (11, "b")

    previous = Path(res["previous_data_dir"])
    assert previous.name.startswith("data.pre-restore-") and not (previous / "postmaster.pid").exists()
    # the previous directory is intact: it starts (not archiving) and has every row, (11, 'b') included
    port = free_port()
    start(previous, f"-p {port}", "-c archive_mode=off")
    try:
        assert rows(c, port) == before
    finally:
        as_user(str(BIN / "pg_ctl"), "-D", str(previous), "-m", "fast", "-w", "stop")


def test_target_past_archive_rolls_back(cluster):
    c = cluster
    sql(c, "INSERT INTO t VALUES (20, 'kept')")
    pid, before = pid_of(c["data"]), rows(c)
    kept_before = siblings(c, "pre-restore-*")
    future = (now(c) + dt.timedelta(days=1)).isoformat()

    res = run_module("postgresql_pitr_restore", in_place(c, target_time=future), timeout=600)
    assert res["_rc"] != 0 and res["failed"], res
    msg = res["msg"]
    assert "FATAL:  recovery ended before configured recovery target was reached" in msg, msg
    assert f"moved it to {c['data']}" in msg and "Rolled back:" in msg, msg
    failed = siblings(c, "pitr-failed-*")
    assert len(failed) == 1 and f"the restored directory is kept as {failed[0]}" in msg, msg
    assert f"the previous data directory is back at {c['data']}; its server is running again" in msg, msg
    assert (failed[0] / "recovery.signal").exists() and (failed[0] / "PG_VERSION").exists()
    # the previous cluster runs again on its port, with its data, and archives again
    assert pid_of(c["data"]) != pid and rows(c) == before
    assert not sql(c, "SELECT pg_is_in_recovery()")[0][0]
    archive_through(c)
    # nothing else was left: no new kept directory, no staging directory
    assert siblings(c, "pre-restore-*") == kept_before
    assert not [p for p in siblings(c, "pitr-*") if "failed" not in p.name and not p.name.endswith(".tablespaces")]
