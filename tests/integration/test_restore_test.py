"""playbooks/restore_test.yml, the non-destructive restore test for production (issue 13).

One backup.yml run makes the DR set every test here restores (its id from set_stats: other tests
write DR sets to the same root meanwhile).

- A real run restores the database, the cache and the bucket into scratch targets, verifies each
  against the set, removes the scratch targets and writes a passing report; the live stores are only
  read (their fingerprint is unchanged, the live Redis was not restarted).
- Check mode verifies the DR set and creates nothing, writes no report.
- A scratch bucket that is a bucket of the DR set is refused in SELECT, before anything is restored.
- A failure in a later phase (the scratch Redis server cannot start) still removes what earlier
  phases restored, and publishes the failed phase.
- A missed target (an RPO smaller than the set's age) fails the run and the report says why.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest
import redis
from conftest import LABCTL, custom_stats, pg_query, run_playbook
from prometheus_client.parser import text_string_to_metric_families
from test_s3_modules import _s3 as lab_client

pytestmark = [pytest.mark.playbook]

SCRATCH_DB = "shop_restore_test"
SCRATCH_BUCKET, SCRATCH_PREFIX = "shop-restore-test", "restore-test/"
SCRATCH_REDIS_PORT = 56399


def fingerprint() -> dict:
    out = subprocess.run([str(LABCTL), "fingerprint"], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def run_with_stats(playbook: str, *args: str):
    os.environ["ANSIBLE_SHOW_CUSTOM_STATS"] = "true"
    try:
        return run_playbook(playbook, *args)
    finally:
        del os.environ["ANSIBLE_SHOW_CUSTOM_STATS"]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def scratch_db_exists(lab) -> bool:
    return bool(pg_query(lab, "SELECT 1 FROM pg_database WHERE datname = %s", args=(SCRATCH_DB,)))


def scratch_objects(lab) -> list[str]:
    listed = lab_client(lab).list_objects_v2(Bucket=SCRATCH_BUCKET, Prefix=SCRATCH_PREFIX)
    return [o["Key"] for o in listed.get("Contents", [])]


def live_redis_run_id(lab) -> str:
    r = redis.Redis(
        host=lab["redis"]["login_host"], port=lab["redis"]["login_port"], password=lab["redis"]["login_password"]
    )
    try:
        return r.info("server")["run_id"]
    finally:
        r.close()


def metrics(directory) -> dict[str, float]:
    text = (directory / "runbook_restore_test.prom").read_text()
    return {
        s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if s.labels == {"name": "shop"}
    }


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("restore-test-metrics")


def assert_no_scratch_left(lab) -> None:
    assert not scratch_db_exists(lab), f"scratch database {SCRATCH_DB} left behind"
    assert not port_open(SCRATCH_REDIS_PORT), "scratch Redis server left running"
    assert scratch_objects(lab) == [], "scratch objects left behind"
    assert not (lab["backup_root"] / "restore-test").exists(), "work root left behind"


@pytest.fixture(scope="module")
def dr_set_id(lab):
    subprocess.run([str(LABCTL), "up"], capture_output=True, timeout=300, check=True)
    run = run_with_stats("backup.yml")
    assert run.rc == 0, run
    return custom_stats(run.out)["runbook_backup"]["dr_set_id"]


def test_restore_test_restores_into_scratch_targets_verifies_and_removes_them(lab, dr_set_id, tmp_path, metrics_dir):
    before, run_id = fingerprint(), live_redis_run_id(lab)
    t0 = time.time()
    run = run_with_stats(
        "restore_test.yml",
        "-e",
        f"restore_test_backup_id={dr_set_id}",
        "-e",
        f"restore_test_report_dir={tmp_path}",
        "-e",
        f"restore_test_metrics_dir={metrics_dir}",
    )
    assert run.rc == 0, run
    stats = custom_stats(run.out)["runbook_restore_test"]
    assert stats["status"] == "passed", stats
    assert stats["dr_set_id"] == dr_set_id
    checks = {v["component"]: v for v in stats["verifications"]}
    assert sorted(checks) == ["postgresql", "redis", "s3"], stats["verifications"]
    for v in checks.values():
        assert v["passed"] and v["expected"] == v["actual"] and v["expected"] > 0, v
    assert [m["name"] for m in stats["timeline"]] == [
        "(1/5) SELECT",
        "(2/5) RESTORE: database",
        "(3/5) RESTORE: cache",
        "(4/5) RESTORE: object storage",
        "(5/5) CLEAN UP",
    ]
    report = json.loads((tmp_path / "restore-test.json").read_text())
    assert report["overall"]["passed"] is True, report["overall"]
    assert report["verification_counts"] == {"total": 3, "passed": 3, "failed": 0}
    assert 0 < stats["rto_s"] < 3600 and 0 < stats["rpo_s"] < 93600
    prom = metrics(metrics_dir)
    assert prom["runbook_restore_test_last_run_success"] == 1
    assert t0 <= prom["runbook_restore_test_last_success_timestamp_seconds"] <= time.time()
    assert prom["runbook_restore_test_rto_seconds"] == pytest.approx(stats["rto_s"])
    assert prom["runbook_restore_test_rpo_seconds"] == pytest.approx(stats["rpo_s"])
    # the live stores were only read
    assert fingerprint() == before
    assert live_redis_run_id(lab) == run_id, "the live Redis server was restarted"
    assert_no_scratch_left(lab)


def test_check_mode_verifies_the_set_and_creates_nothing(lab, dr_set_id, tmp_path):
    run = run_with_stats(
        "restore_test.yml",
        "--check",
        "-e",
        f"restore_test_backup_id={dr_set_id}",
        "-e",
        f"restore_test_report_dir={tmp_path}",
    )
    assert run.rc == 0, run
    stats = custom_stats(run.out)["runbook_restore_test"]
    assert stats["status"] == "checked" and stats["dr_set_id"] == dr_set_id, stats
    assert list(tmp_path.iterdir()) == []
    assert_no_scratch_left(lab)


def test_a_scratch_bucket_of_the_dr_set_is_refused_before_anything_is_restored(lab, dr_set_id):
    run = run_with_stats(
        "restore_test.yml", "-e", f"restore_test_backup_id={dr_set_id}", "-e", "restore_test_s3_bucket=shop-receipts"
    )
    assert run.rc != 0, run
    stats = custom_stats(run.out)["runbook_restore_test"]
    assert stats["status"] == "failed" and stats["failed_phase"] == "(1/5) SELECT", stats
    assert "set restore_test_s3_bucket to a scratch bucket" in stats["message"], stats["message"]
    assert "shop-receipts" in stats["message"]
    assert stats["verifications"] == []
    assert_no_scratch_left(lab)


def test_a_failure_in_a_later_phase_still_removes_the_scratch_database(lab, dr_set_id, metrics_dir):
    passed_at = metrics(metrics_dir)["runbook_restore_test_last_success_timestamp_seconds"]
    run = run_with_stats(
        "restore_test.yml",
        "-e",
        f"restore_test_backup_id={dr_set_id}",
        "-e",
        "restore_test_redis_server=/bin/false",
        "-e",
        f"restore_test_metrics_dir={metrics_dir}",
    )
    assert run.rc != 0, run
    stats = custom_stats(run.out)["runbook_restore_test"]
    assert stats["status"] == "failed" and stats["failed_phase"] == "(3/5) RESTORE: cache", stats
    # the database was restored and verified before the failure, then dropped by the clean-up
    assert [v["component"] for v in stats["verifications"]] == ["postgresql"], stats["verifications"]
    assert "(5/5) CLEAN UP" in [m["name"] for m in stats["timeline"]]
    assert_no_scratch_left(lab)
    # the failed run is recorded; the last pass (the first test's) is kept
    prom = metrics(metrics_dir)
    assert prom["runbook_restore_test_last_run_success"] == 0
    assert prom["runbook_restore_test_last_success_timestamp_seconds"] == passed_at
    assert prom["runbook_restore_test_last_run_timestamp_seconds"] > passed_at


def test_a_missed_target_fails_the_run_and_the_report_says_why(lab, dr_set_id, tmp_path):
    run = run_with_stats(
        "restore_test.yml",
        "-e",
        f"restore_test_backup_id={dr_set_id}",
        "-e",
        f"restore_test_report_dir={tmp_path}",
        "-e",
        '{"restore_test_kinds": ["s3"], "restore_test_targets": {"rto_s": 3600, "rpo_s": 1}}',
    )
    assert run.rc != 0, run
    stats = custom_stats(run.out)["runbook_restore_test"]
    assert stats["status"] == "failed", stats
    assert "RPO" in stats["message"], stats["message"]
    report = json.loads((tmp_path / "restore-test.json").read_text())
    assert report["overall"]["rpo_met"] is False and report["overall"]["verified"] is True, report["overall"]
    assert_no_scratch_left(lab)
