"""The DR-set drill (playbooks/dr_drill_backup.yml) and the guard rails of playbooks/dr_restore.yml on the lab.

The drill makes a fresh DR set and exercises backup -> disaster -> restore -> verify -> report; the
other tests use that DR set to show that a restore refuses without confirmation, refuses a damaged
component before anything is replaced, and changes nothing in check mode.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from conftest import LABCTL, ROOT, run_playbook
from test_s3_modules import _s3 as lab_client

pytestmark = [pytest.mark.playbook, pytest.mark.destructive]

REPORTS = ROOT / "reports"
FLAG = ROOT / ".lab" / "app" / "maintenance.flag"
SERVICES = ("postgresql", "redis", "s3", "app", "proxy")


def fingerprint() -> dict:
    out = subprocess.run([str(LABCTL), "fingerprint"], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def all_up() -> bool:
    return subprocess.run([str(LABCTL), "status"], capture_output=True, timeout=60, check=False).returncode == 0


@pytest.fixture(scope="module")
def drill(lab):
    subprocess.run([str(LABCTL), "up"], capture_output=True, timeout=300, check=True)
    FLAG.unlink(missing_ok=True)
    run = run_playbook("dr_drill_backup.yml", timeout=900)
    # a fresh DR set for the guard-rail tests: the drill's own set has been restored already (its
    # pre-restore copies exist), and a second restore of one set is refused by design
    fresh = run_playbook("backup.yml", timeout=600)
    assert fresh.rc == 0, fresh
    yield run
    subprocess.run([str(LABCTL), "up"], capture_output=True, timeout=300, check=False)
    FLAG.unlink(missing_ok=True)


def test_drill_restores_everything_and_reports_rto_rpo(drill):
    assert drill.rc == 0, drill
    report = json.loads((REPORTS / "dr-drill-backup.json").read_text())
    assert report["overall"]["passed"] is True, report["overall"]
    assert report["rto"]["met"] and 0 < report["rto"]["seconds"] < report["rto"]["target_s"]
    assert report["rpo"]["met"] and 0 < report["rpo"]["seconds"] < report["rpo"]["target_s"]
    names = [v["name"] for v in report["verifications"]]
    assert "every table of the shop database identical (rows and md5)" in names
    assert "every Redis key identical (names, types, values, expiry)" in names
    assert "every receipt identical (keys, sizes, ETags)" in names
    assert all(v["passed"] for v in report["verifications"]), report["verifications"]
    assert report["lost_writes_total"] == 3, report["lost_writes"]
    phases = [p["name"] for p in report["phases"]]
    for expected in ("BACKUP", "DISASTER declared", "RESTORE (3/6) RESTORE: database", "RESTORE (6/6) START"):
        assert expected in phases, phases
    html = (REPORTS / "dr-drill-backup.html").read_text()
    assert "<svg" in html and "<script" not in html
    assert "RTO" in (REPORTS / "dr-drill-backup.md").read_text()
    assert all_up() and not FLAG.exists()


def test_restore_without_confirmation_refuses_and_changes_nothing(drill):
    before = fingerprint()
    run = run_playbook("dr_restore.yml")
    assert run.rc != 0, run
    assert "refusing to restore without confirmation" in run.out, run
    assert "Nothing was changed" in run.out
    assert fingerprint() == before
    assert all_up() and not FLAG.exists()


def test_sets_of_another_host_are_not_restored_here(drill):
    # the backup role records the host of each PostgreSQL and Redis set ("lab"): a host told that it
    # replaces another host restores none of them, and says so before anything is replaced
    before = fingerprint()
    run = run_playbook("dr_restore.yml", "-e", "dr_restore_confirm=true", "-e", "dr_restore_source_host=db-old")
    assert run.rc != 0, run
    assert re.search(
        r"lab runs postgresql and redis, but DR set \d{8}T\d{6}Z holds such\s+sets only for lab\.", run.out
    ), run
    assert "Nothing was changed" in run.out and "dr_restore_source_host=<that host>" in run.out, run
    assert fingerprint() == before
    assert all_up() and not FLAG.exists()


def test_check_mode_changes_nothing(drill):
    before = fingerprint()
    run = run_playbook("dr_restore.yml", "--check", "-e", "dr_restore_confirm=true")
    assert run.rc == 0, run
    assert run.changed() > 0, "check mode must predict the restore"
    assert fingerprint() == before
    assert all_up() and not FLAG.exists()


def test_damaged_component_stops_the_restore_before_anything_is_replaced(lab, drill):
    cli = lab_client(lab)
    keys = [
        o["Key"]
        for o in cli.list_objects_v2(Bucket="shop-offsite", Prefix="runbook/redis/").get("Contents", [])
        if o["Key"].endswith("/dump.rdb")
    ]
    assert keys, "the drill uploaded no Redis set"
    key = sorted(keys)[-1]
    original = cli.get_object(Bucket="shop-offsite", Key=key)["Body"].read()
    before = fingerprint()
    try:
        damaged = original[:-1] + bytes([original[-1] ^ 0xFF])
        cli.put_object(Bucket="shop-offsite", Key=key, Body=damaged)
        run = run_playbook("dr_restore.yml", "-e", "dr_restore_confirm=true")
    finally:
        cli.put_object(Bucket="shop-offsite", Key=key, Body=original)
    assert run.rc != 0, run
    assert re.search(r"DR set \d{8}T\d{6}Z of shop is damaged, nothing was changed", run.out), run
    assert "redis set" in run.out and "dump.rdb" in run.out, run
    assert fingerprint() == before
    assert all_up() and not FLAG.exists()


def test_backup_check_mode_writes_no_set(lab, drill):
    cli = lab_client(lab)

    def state() -> tuple[int, int, int]:
        local = len(list((ROOT / ".lab" / "backups").rglob("manifest.json")))
        offsite = sum(
            len(p.get("Contents", [])) for p in cli.get_paginator("list_objects_v2").paginate(Bucket="shop-offsite")
        )
        snapshots = sum(
            len(p.get("Contents", [])) for p in cli.get_paginator("list_objects_v2").paginate(Bucket="shop-backups")
        )
        return local, offsite, snapshots

    before = state()
    run = run_playbook("backup.yml", "--check")
    assert run.rc == 0, run
    assert run.changed() >= 3, "check mode must predict the three backups"
    assert state() == before
