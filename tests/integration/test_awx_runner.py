"""The repository as an AWX project, run with ansible-runner the way AWX runs a job (awx_job.py).

- The project sync installs runbook.stack from collections/requirements.yml, and health.yml runs
  with AWX's collection path (not the checkout's .cache link) and publishes runbook_health.
- Without the requirements file the same job cannot resolve the collection.
- backup.yml and dr_restore.yml publish their set_stats artifact on success, verify-only
  (--tags dr_restore_select), refused (no confirmation) and failed runs; startup.yml and shutdown.yml
  publish a failure too.
"""

from __future__ import annotations

import subprocess

import pytest
from awx_job import private_data_dir, run_job
from conftest import LABCTL

pytestmark = [pytest.mark.playbook]

UNKNOWN_ID = "19990101T000000Z"


def _seed() -> None:
    subprocess.run([str(LABCTL), "up"], capture_output=True, timeout=300, check=True)
    subprocess.run([str(LABCTL), "seed"], capture_output=True, timeout=300, check=True)


@pytest.fixture(scope="module")
def pdd(tmp_path_factory, lab):
    _seed()
    return private_data_dir(tmp_path_factory.mktemp("awx"))


@pytest.fixture(scope="module")
def backup_job(pdd):
    """One real backup.yml job: the DR set the dr_restore jobs below verify."""
    job = run_job(pdd, "backup.yml")
    yield job
    _seed()


def test_project_sync_installs_the_collection_and_health_runs(pdd):
    installed = pdd / "requirements_collections" / "ansible_collections" / "runbook" / "stack"
    assert (installed / "MANIFEST.json").is_file()
    job = run_job(pdd, "health.yml")
    assert job.status == "successful", job
    # the roles came from the job's collections directory, not from the checkout
    assert str(installed / "roles" / "health_check") in job.stdout, job
    report = job.artifact_data["runbook_health"]
    assert report["status"] == "healthy", report
    assert {"postgresql", "redis", "s3", "app", "proxy"} <= set(report["components"]), report


def test_without_requirements_file_the_job_cannot_find_the_collection(tmp_path, lab):
    bare = private_data_dir(tmp_path, requirements=False)
    assert not any((bare / "requirements_collections").iterdir())
    job = run_job(bare, "health.yml")
    assert job.status == "failed", job
    assert "could not resolve the module_defaults group runbook.stack" in job.stdout, job


def test_backup_publishes_its_dr_set(backup_job):
    assert backup_job.status == "successful", backup_job
    stats = backup_job.artifact_data["runbook_backup"]
    assert stats["status"] == "succeeded", stats
    assert stats["failed_hosts"] == [] and stats["message"] == ""
    assert stats["dr_set_id"], stats
    assert sorted(stats["components"]) == ["postgresql", "redis", "s3"], stats
    assert {s["kind"] for s in stats["sets"]} == {"postgresql", "redis", "s3"}, stats


def test_verify_only_restore_publishes_what_was_verified(pdd, backup_job):
    dr_id = backup_job.artifact_data["runbook_backup"]["dr_set_id"]
    job = run_job(pdd, "dr_restore.yml", {"dr_restore_backup_id": dr_id}, tags="dr_restore_select")
    assert job.status == "successful", job
    stats = job.artifact_data["runbook_dr_restore"]
    assert stats["status"] == "verified" and stats["verify_only"] is True, stats
    assert stats["dr_set_id"] == dr_id and stats["failed_phase"] is None, stats
    assert stats["verified"]["dr_set_valid"] is True, stats
    assert sorted(c["kind"] for c in stats["verified"]["components"]) == ["postgresql", "redis", "s3"], stats
    assert all(c["valid"] for c in stats["verified"]["components"]), stats
    assert stats["restored"] == [], stats


def test_unconfirmed_restore_publishes_the_refusal(pdd, backup_job):
    dr_id = backup_job.artifact_data["runbook_backup"]["dr_set_id"]
    job = run_job(pdd, "dr_restore.yml", {"dr_restore_backup_id": dr_id})
    assert job.status == "failed", job
    stats = job.artifact_data["runbook_dr_restore"]
    assert stats["status"] == "refused", stats
    assert stats["failed_phase"] == "(1/6) SELECT" and stats["failed_hosts"] == ["lab"], stats
    assert "refusing to restore without confirmation" in stats["message"], stats
    assert stats["verified"]["dr_set_valid"] is True and stats["restored"] == [], stats


def test_restore_of_an_unknown_backup_id_publishes_the_failure(pdd, lab):
    job = run_job(pdd, "dr_restore.yml", {"dr_restore_backup_id": UNKNOWN_ID, "dr_restore_confirm": "true"})
    assert job.status == "failed", job
    stats = job.artifact_data["runbook_dr_restore"]
    assert stats["status"] == "failed", stats
    assert stats["failed_phase"] == "(1/6) SELECT", stats
    assert UNKNOWN_ID in stats["message"] and stats["dr_set_id"] == UNKNOWN_ID, stats
    assert stats["verified"]["dr_set_valid"] is False and stats["restored"] == [], stats


@pytest.mark.parametrize("playbook", ["startup.yml", "shutdown.yml"])
def test_startup_and_shutdown_publish_a_failure(pdd, playbook):
    # a component entry without tier/control fails the role's validation, before anything is touched
    job = run_job(pdd, playbook, {"runbook_components": [{"name": "broken"}]})
    assert job.status == "failed", job
    stats = job.artifact_data["runbook_" + playbook.removesuffix(".yml")]
    assert stats["status"] == "failed" and stats["failed_hosts"] == ["lab"], stats
    assert "broken" in stats["message"], stats
