"""Point-in-time recovery on the lab (issue 11).

playbooks/protect.yml sets up continuous protection on the lab: pgBackRest archives the lab's
PostgreSQL into SeaweedFS over its HTTPS port (with a restart for archive_mode and a first full
backup), Redis writes an AOF with timestamps that is archived, and the bucket shop-receipts keeps
every version. Then playbooks/dr_restore.yml -e dr_restore_target_time=T puts all three back to the
second T: what was written up to T is there again, what was written after it is gone, and the report
(set_stats) names the second each store went to and the skew between them. Bad targets are refused
before anything stops.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time

import pytest
import redis
from conftest import LABCTL, ROOT, custom_stats, pg_query, psql, run_playbook
from test_s3_modules import _s3 as lab_client
from test_s3_point_in_time import iso, next_second

pytestmark = [pytest.mark.playbook, pytest.mark.destructive]

FLAG = ROOT / ".lab" / "app" / "maintenance.flag"
BUCKET, PREFIX = "shop-receipts", "rb-pitr/"
KEY_BEFORE, KEY_AFTER = "rb:pitr:before", "rb:pitr:after"


def fingerprint() -> dict:
    out = subprocess.run([str(LABCTL), "fingerprint"], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def lab_redis(lab) -> redis.Redis:
    r = lab["redis"]
    return redis.Redis(host=r["login_host"], port=r["login_port"], password=r["login_password"], socket_timeout=10)


def objects(cli) -> dict[str, bytes]:
    listed = cli.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX).get("Contents") or []
    return {o["Key"]: cli.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def archive_wal(lab) -> None:
    """Switch the WAL segment and wait until PostgreSQL reports it archived (pgBackRest archive-push)."""
    wal = pg_query(lab, "SELECT pg_walfile_name(pg_switch_wal())")[0][0]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        row = pg_query(lab, "SELECT last_archived_wal, failed_count, last_failed_wal FROM pg_stat_archiver")[0]
        if row[0] and row[0][8:] >= wal[8:]:
            return
        time.sleep(0.5)
    pytest.fail(f"WAL segment {wal} was not archived within 120 s (pg_stat_archiver: {row})")


def run(*args: str):
    done = run_playbook(*args, timeout=900)
    done.stats = custom_stats(done.out)
    return done


@pytest.fixture(scope="module")
def protected(lab):
    """The lab under continuous protection (playbooks/protect.yml); afterwards the lab is up again,
    maintenance off, and the markers of these tests are gone."""
    subprocess.run([str(LABCTL), "up"], capture_output=True, timeout=300, check=True)
    FLAG.unlink(missing_ok=True)
    prot = run_playbook("protect.yml", timeout=900)
    assert prot.rc == 0, prot
    yield prot
    subprocess.run([str(LABCTL), "up"], capture_output=True, timeout=300, check=False)
    FLAG.unlink(missing_ok=True)
    psql(lab, "DROP TABLE IF EXISTS rb_pitr_marker", db="shop")
    lab_redis(lab).delete(KEY_BEFORE, KEY_AFTER)
    cli = lab_client(lab)
    for key in objects(cli):
        cli.delete_object(Bucket=BUCKET, Key=key)


def test_protect_sets_up_archiving_aof_and_versioning(lab, protected, monkeypatch):
    settings = dict(pg_query(lab, "SELECT name, setting FROM pg_settings WHERE name LIKE 'archive_%'"))
    assert settings["archive_mode"] == "on", settings
    assert "pgbackrest" in settings["archive_command"] and "archive-push" in settings["archive_command"], settings
    assert settings["archive_timeout"] == "5", settings
    config = lab_redis(lab).config_get("a*")
    assert (config["appendonly"], config["aof-timestamp-enabled"]) == ("yes", "yes"), config
    cli = lab_client(lab)
    assert cli.get_bucket_versioning(Bucket=BUCKET).get("Status") == "Enabled"
    # a second run finds everything in place: no restart needed, no new full backup
    monkeypatch.setenv("ANSIBLE_SHOW_CUSTOM_STATS", "true")
    again = run("protect.yml", "-e", "continuous_protection_restart=false")
    assert again.rc == 0, again
    report = again.stats["runbook_protect"]
    assert report["status"] == "protected", report
    pg = report["hosts"]["lab"]["postgresql"]
    assert (pg["restarted"], pg["full_backup"]) == (False, None), pg
    assert pg["backups"] >= 1, pg
    assert report["hosts"]["lab"]["s3"]["versioned"] == [BUCKET], report


def test_restore_all_three_to_one_second(lab, protected, monkeypatch):
    monkeypatch.setenv("ANSIBLE_SHOW_CUSTOM_STATS", "true")
    cli = lab_client(lab)
    cache = lab_redis(lab)
    psql(lab, "DROP TABLE IF EXISTS rb_pitr_marker; CREATE TABLE rb_pitr_marker (n int)", db="shop")

    # up to T: row 1, key "before", object before
    psql(lab, "INSERT INTO rb_pitr_marker VALUES (1)", db="shop")
    cache.set(KEY_BEFORE, b"1")
    cli.put_object(Bucket=BUCKET, Key=f"{PREFIX}before", Body=b"before")
    target = next_second()
    # after T: row 2, key "after", object after, and "before" changed in all three
    psql(lab, "INSERT INTO rb_pitr_marker VALUES (2); UPDATE rb_pitr_marker SET n = 10 WHERE n = 1", db="shop")
    cache.set(KEY_AFTER, b"2")
    cache.set(KEY_BEFORE, b"changed")
    cli.put_object(Bucket=BUCKET, Key=f"{PREFIX}after", Body=b"after")
    cli.put_object(Bucket=BUCKET, Key=f"{PREFIX}before", Body=b"changed")
    # everything after T reaches the archives too (a restore must cut it, not miss it)
    archive_wal(lab)
    archived = run_playbook("protect.yml", "--tags", "continuous_protection_redis", timeout=300)
    assert archived.rc == 0, archived

    done = run("dr_restore.yml", "-e", "dr_restore_confirm=true", "-e", f"dr_restore_target_time={iso(target)}")
    assert done.rc == 0, done

    assert pg_query(lab, "SELECT n FROM rb_pitr_marker ORDER BY n", dbname="shop") == [(1,)]
    assert (cache.get(KEY_BEFORE), cache.get(KEY_AFTER)) == (b"1", None)
    assert objects(cli) == {f"{PREFIX}before": b"before"}
    assert not FLAG.exists()

    stats = done.stats["runbook_dr_restore"]
    assert (stats["status"], stats["target_time"], stats["skew_s"]) == ("restored", iso(target), 0), stats
    points = {p["component"]: p for p in stats["recovery_points"]}
    assert set(points) == {"postgresql", "redis", "s3"}, stats["recovery_points"]
    assert {p["restored_to"] for p in points.values()} == {iso(target)}, points
    # what was restored, one entry per store: kind, source, host and the second it went to
    assert sorted((r["kind"], r["restored_to"], r["host"]) for r in stats["restored"]) == [
        ("postgresql", iso(target), "lab"),
        ("redis", iso(target), "lab"),
        ("s3", iso(target), "lab"),
    ], stats["restored"]
    # the newest write each store got back lies at or before T (whole seconds)
    for component, point in points.items():
        assert point["last_write"] is not None and point["last_write"][:19] <= iso(target)[:19], (component, point)
    assert points["postgresql"]["previous"], points  # the data directory it replaced is kept


def test_bad_targets_are_refused_before_anything_stops(lab, protected):
    before = fingerprint()
    future = iso(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    for target, why in (
        (future, "not in the future"),
        ("2026-12-06 03:10:00", "whole second in UTC"),
        ("2001-01-01T00:00:00Z", "no usable backup"),
    ):
        done = run_playbook(
            "dr_restore.yml", "-e", "dr_restore_confirm=true", "-e", f"dr_restore_target_time={target}", timeout=600
        )
        assert done.rc != 0, done
        assert why in done.out and "Nothing was changed" in done.out, (target, done)
        assert "(1/6) SELECT" in done.out, done
    assert fingerprint() == before
    assert not FLAG.exists()
