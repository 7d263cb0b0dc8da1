"""pgBackRest point-in-time recovery: postgresql_wal_archive, postgresql_physical_backup(_info), postgresql_pitr_restore.

A throwaway PostgreSQL 15 cluster (own port, socket dir, user runbooklab), a throwaway nginx TLS front
(certificate for s3.lab.test and localhost from a throwaway CA) before the lab SeaweedFS, and a bucket
of our own. pgBackRest 2.45 checks the certificate against repo1-storage-host by DNS name only, so the
modules connect to ``localhost`` and send ``s3.lab.test`` as the S3 endpoint.
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shutil
import tempfile
import time
from pathlib import Path

import boto3
import pytest
from conftest import run_module
from pgbackrest_lab import (
    USER,
    base_options,
    chown_to_user,
    free_port,
    initdb,
    make_tls,
    pg_start,
    pg_stop,
    q,
    repo_options,
    start_nginx,
    stop_nginx,
    wait_for,
)

STANZA = "pitr"


@pytest.fixture(scope="module")
def stack(lab):
    if not shutil.which("pgbackrest"):
        pytest.fail("pgbackrest is not installed (scripts/bootstrap installs it)")
    root = Path(tempfile.mkdtemp(prefix="rb-pitr-"))
    root.chmod(0o755)
    for sub in ("tls", "nginx", "run", "log", "lock", "restore"):
        (root / sub).mkdir()
    make_tls(root / "tls")
    s3 = lab["s3"]
    bucket = f"rb-it-pitr-{os.getpid()}"
    client = boto3.client(
        "s3", endpoint_url=s3["endpoint_url"], aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"], region_name="us-east-1",
    )  # fmt: skip
    client.create_bucket(Bucket=bucket)
    s3_port, pg_port = free_port(), free_port()
    start_nginx(root / "nginx", s3_port, s3["endpoint_url"])
    chown_to_user(root, *(root / sub for sub in ("run", "log", "lock", "restore")))
    data = root / "data"
    initdb(data)
    pg_start(data, pg_port, root / "run", root / "pg.log")
    facts = dict(root=root, data=data, port=pg_port, sock=root / "run", bucket=bucket, s3_port=s3_port, s3=s3)
    yield facts
    for d in sorted(root.glob("restore/*")):
        pg_stop(d)
    pg_stop(data)
    stop_nginx(root / "nginx")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    client.delete_bucket(Bucket=bucket)
    shutil.rmtree(root, ignore_errors=True)


def common(st) -> dict:
    return base_options(STANZA, st["root"] / "pgbackrest.conf", st["s3"])


def archive_args(st) -> dict:
    return (
        common(st)
        | repo_options(st["root"], st["bucket"], st["s3_port"])
        | dict(login_unix_socket=str(st["sock"]), login_port=st["port"], login_user="postgres", archive_timeout=2)
    )


def archived(st) -> int:
    return q(st["port"], st["sock"], "SELECT archived_count FROM pg_stat_archiver")[0][0]


def test_pitr_round_trip(stack):
    st = stack
    conf = st["root"] / "pgbackrest.conf"

    # check mode predicts and writes nothing
    res = run_module("postgresql_wal_archive", archive_args(st), check_mode=True)
    assert res["_rc"] == 0 and res["changed"], res
    assert not conf.exists()
    assert q(st["port"], st["sock"], "SHOW archive_mode")[0][0] == "off"

    res = run_module("postgresql_wal_archive", archive_args(st))
    assert res["_rc"] == 0, res
    assert res["changed"] and res["config_changed"] and res["stanza_created"] and res["restart_required"], res
    assert set(res["settings_changed"]) == {"archive_mode", "archive_command", "archive_timeout"}
    assert oct(conf.stat().st_mode & 0o777) == "0o600" and conf.stat().st_uid == pwd.getpwnam(USER).pw_uid
    assert st["s3"]["secret_key"] not in res["_stdout"].replace('"secret_key": "' + st["s3"]["secret_key"], "")

    # the trap: after a restart PostgreSQL 15 may not fire archive_timeout (2 s) until a reload (recorded below)
    pg_stop(st["data"])
    pg_start(st["data"], st["port"], st["sock"], st["root"] / "pg.log")
    q(st["port"], st["sock"], "CREATE TABLE probe(i int); INSERT INTO probe VALUES (1)")
    time.sleep(10)
    trap_seen = archived(st) == 0

    # post-start step: reload, check (a WAL switch that reaches the archive); nothing else changes
    res = run_module("postgresql_wal_archive", archive_args(st))
    assert res["_rc"] == 0, res
    assert not res["changed"] and res["reloaded"] and res["checked"] and not res["restart_required"], res
    before = archived(st)
    q(st["port"], st["sock"], "INSERT INTO probe VALUES (2)")
    wait_for("archive_timeout switching the segment after the reload", lambda: archived(st) > before, 60)

    res = run_module("postgresql_physical_backup", common(st) | dict(type="incr"), check_mode=True)
    assert res["_rc"] == 0 and res["changed"] and res["type"] == "full", res
    res = run_module("postgresql_physical_backup", common(st) | dict(type="full"), timeout=300)
    assert res["_rc"] == 0, res
    assert res["label"].endswith("F") and res["type"] == "full" and res["backup"]["wal_start"], res
    label = res["label"]
    # pgBackRest picks a backup whose stop time (whole seconds) is before the target: write after it
    stop = dt.datetime.fromisoformat(res["backup"]["stop"]) + dt.timedelta(seconds=1)
    wait_for(
        "server clock past the backup's stop second",
        lambda: q(st["port"], st["sock"], "SELECT clock_timestamp()")[0][0] > stop,
        5,
    )

    q(st["port"], st["sock"], "CREATE TABLE t(i int); INSERT INTO t SELECT generate_series(1, 3)")
    t1 = q(st["port"], st["sock"], "SELECT clock_timestamp()")[0][0]
    time.sleep(1.2)
    q(st["port"], st["sock"], "INSERT INTO t SELECT generate_series(4, 6)")
    q(st["port"], st["sock"], "SELECT pg_create_restore_point('after_six')")
    q(st["port"], st["sock"], "INSERT INTO t SELECT generate_series(7, 9)")
    seg = q(st["port"], st["sock"], "SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    q(st["port"], st["sock"], "SELECT pg_switch_wal()")
    wait_for(
        "WAL with the writes archived",
        lambda: (q(st["port"], st["sock"], "SELECT last_archived_wal FROM pg_stat_archiver")[0][0] or "") >= seg,
    )

    info = run_module("postgresql_physical_backup_info", common(st) | dict(
        login_unix_socket=str(st["sock"]), login_port=st["port"], verify=True))  # fmt: skip
    assert info["_rc"] == 0, info
    assert [b["label"] for b in info["backups"]] == [label]
    assert info["archive"]["max"] >= seg and info["archiver"]["last_archived_wal"] >= seg
    assert info["archiver"]["lag_s"] is not None and "status: ok" in info["verify"], info

    def restored_rows(dest: Path, **target) -> list[int]:
        res = run_module(
            "postgresql_pitr_restore", common(st) | dict(dest_data_dir=str(dest), promote=True, **target), timeout=300
        )
        assert res["_rc"] == 0, res.get("msg")
        assert res["current_data_dir"] == str(st["data"])
        port = free_port()
        pg_start(dest, port, st["sock"], st["root"] / f"{dest.name}.log")
        try:
            wait_for("restored cluster promoted", lambda: not q(port, st["sock"], "SELECT pg_is_in_recovery()")[0][0])
            return [r[0] for r in q(port, st["sock"], "SELECT i FROM t ORDER BY i")]
        finally:
            pg_stop(dest)

    dest_time = st["root"] / "restore" / "at_t1"
    assert restored_rows(dest_time, target_time=t1.isoformat()) == [1, 2, 3]
    assert restored_rows(st["root"] / "restore" / "at_name", target_name="after_six") == [1, 2, 3, 4, 5, 6]
    # the current cluster is untouched and still has everything
    assert [r[0] for r in q(st["port"], st["sock"], "SELECT i FROM t ORDER BY i")] == list(range(1, 10))

    # bad input fails clearly
    bad = run_module("postgresql_pitr_restore", common(st) | dict(dest_data_dir=str(dest_time), target="latest"))
    assert bad["failed"] and "is not an empty directory" in bad["msg"], bad
    bad = run_module("postgresql_pitr_restore", common(st) | dict(dest_data_dir=str(st["data"]), target="latest"))
    assert bad["failed"] and "overlaps the current data directory" in bad["msg"], bad
    bad = run_module(
        "postgresql_pitr_restore",
        common(st) | dict(dest_data_dir=str(st["root"] / "x"), target_time="2026-12-05 10:00"),
    )
    assert bad["failed"] and "has no UTC offset" in bad["msg"], bad
    bad = run_module(
        "postgresql_pitr_restore", common(st) | dict(dest_data_dir=str(st["root"] / "x"), target_lsn="nope")
    )
    assert bad["failed"] and "target_lsn 'nope' is not a WAL location" in bad["msg"], bad
    assert not (st["root"] / "x").exists()
    # observed, not asserted: the trap reproduced in 3 of 5 runs here (see docs/pitr.md)
    print(f"archive_timeout trap after restart without reload seen: {trap_seen}")
