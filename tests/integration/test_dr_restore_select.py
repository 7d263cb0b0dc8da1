"""playbooks/dr_restore.yml refuses, in SELECT and before anything stops, a DR set whose own
manifest was edited after it was written (issue 10, point 3): a component repointed to an older
backup set, or a row count changed. Every store's fingerprint stays as it was."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from conftest import LABCTL, ROOT, custom_stats, psql, run_playbook
from test_s3_modules import _s3 as lab_client

pytestmark = [pytest.mark.playbook]

FLAG = ROOT / ".lab" / "app" / "maintenance.flag"
OFFSITE, PREFIX = "shop-offsite", "runbook/dr/shop"


def fingerprint() -> dict:
    out = subprocess.run([str(LABCTL), "fingerprint"], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def all_up() -> bool:
    return subprocess.run([str(LABCTL), "status"], capture_output=True, timeout=60, check=False).returncode == 0


def dr_manifest(cli, backup_id: str) -> dict:
    return json.loads(cli.get_object(Bucket=OFFSITE, Key=f"{PREFIX}/{backup_id}/manifest.json")["Body"].read())


def pg_component(manifest: dict) -> dict:
    return next(c for c in manifest["facts"]["components"] if c["kind"] == "postgresql")


@pytest.fixture(scope="module")
def two_dr_sets(lab):
    """Two DR sets from playbooks/backup.yml, the shop database changed in between; yields their ids
    (older, newer). The lab is brought back up afterwards, whatever a test left."""
    subprocess.run([str(LABCTL), "up"], capture_output=True, timeout=300, check=True)
    FLAG.unlink(missing_ok=True)
    ids = []
    for _run_no in range(2):
        # the id this run's set_stats publish: other tests write DR sets to the same root meanwhile
        # (the newest one there need not be ours)
        os.environ["ANSIBLE_SHOW_CUSTOM_STATS"] = "true"
        try:
            run = run_playbook("backup.yml", timeout=600)
        finally:
            del os.environ["ANSIBLE_SHOW_CUSTOM_STATS"]
        assert run.rc == 0, run
        ids.append(custom_stats(run.out)["runbook_backup"]["dr_set_id"])
        assert lab_client(lab).head_object(Bucket=OFFSITE, Key=f"{PREFIX}/{ids[-1]}/manifest.json")
        # a change after the first backup, so that a restore of the older set changes the fingerprint
        psql(
            lab,
            "CREATE TABLE IF NOT EXISTS rb_dr_select_marker (n int); INSERT INTO rb_dr_select_marker VALUES (1)",
            db="shop",
        )
    assert ids[0] != ids[1], ids
    yield ids
    subprocess.run([str(LABCTL), "up"], capture_output=True, timeout=300, check=False)
    FLAG.unlink(missing_ok=True)
    psql(lab, "DROP TABLE IF EXISTS rb_dr_select_marker", db="shop")


@pytest.fixture
def edited(lab, two_dr_sets):
    """edit(fn): apply fn to the newer DR set's manifest on the off-site root; put back afterwards."""
    cli = lab_client(lab)
    key = f"{PREFIX}/{two_dr_sets[1]}/manifest.json"
    original = cli.get_object(Bucket=OFFSITE, Key=key)["Body"].read()

    def edit(fn):
        manifest = json.loads(original)
        fn(manifest)
        cli.put_object(Bucket=OFFSITE, Key=key, Body=json.dumps(manifest, indent=2, sort_keys=True).encode())

    yield edit
    cli.put_object(Bucket=OFFSITE, Key=key, Body=original)


def assert_refused_in_select(run, before: dict, dr_id: str) -> None:
    assert run.rc != 0, run
    assert re.search(rf"DR restore stopped in phase \(1/6\) SELECT: DR set {dr_id} of shop is damaged", run.out), run
    assert "nothing was changed" in run.out, run
    assert fingerprint() == before, "a store was replaced"
    assert all_up() and not FLAG.exists()


def test_component_repointed_to_an_older_set_stops_in_select(lab, two_dr_sets, edited):
    older, newer = two_dr_sets
    cli = lab_client(lab)
    old_pg = pg_component(dr_manifest(cli, older))
    new_pg = pg_component(dr_manifest(cli, newer))
    assert old_pg["backup_id"] != new_pg["backup_id"]
    # every recorded figure of the older set, with its pinned manifest hash
    edited(lambda m: pg_component(m).update(old_pg))
    before = fingerprint()
    run = run_playbook("dr_restore.yml", "-e", "dr_restore_confirm=true")
    assert_refused_in_select(run, before, newer)
    assert f"postgresql set {new_pg['backup_id']} of 'shop'" in run.out, run
    assert "manifest.json was changed after the set was written" in run.out, run


def test_edited_row_count_stops_in_select(lab, two_dr_sets, edited):
    _older, newer = two_dr_sets

    def bump(manifest):
        tables = pg_component(manifest)["facts"]["tables"]
        table = sorted(tables)[0]
        tables[table] += 1

    edited(bump)
    before = fingerprint()
    run = run_playbook("dr_restore.yml", "-e", "dr_restore_confirm=true")
    assert_refused_in_select(run, before, newer)
    assert "postgresql set" in run.out and "in the DR set" in run.out and "in its manifest" in run.out, run
