"""The repository as an AWX project, run with ansible-runner the way AWX runs a job (awx_job.py).

- The project sync installs runbook.stack from collections/requirements.yml, and health.yml runs
  with AWX's collection path (not the checkout's .cache link) and publishes runbook_health.
- Without the requirements file the same job cannot resolve the collection.
- backup.yml and dr_restore.yml publish their set_stats artifact on success, verify-only
  (--tags dr_restore_select), refused (no confirmation, or the survey's "false") and failed runs;
  startup.yml and shutdown.yml publish a failure too.
- The credential types of awx/credential_types/, injected as AWX injects them (environment and
  ``-e @file`` extra variables) with the lab's logins, connect the modules on an inventory that holds
  none of them, by either route alone; without them the same job cannot log in.
- A workflow's backup node feeds dr_restore: the backup job's artifact, passed as the next job's
  extra variables, selects that job's DR set even when a newer one exists; an artifact of a backup
  that wrote no DR set stops dr_restore in SELECT.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from awx_job import Credential, private_data_dir, run_job
from conftest import LABCTL, ROOT

pytestmark = [pytest.mark.playbook]

UNKNOWN_ID = "19990101T000000Z"
LAB_VARS = ROOT / "inventories" / "lab" / "group_vars" / "all.yml"
# what a survey for playbooks/dr_restore.yml sends (awx/job_templates.yml): strings, the multiselect as a list
SURVEY_FALSE = {
    "dr_restore_confirm": "false",
    "dr_restore_kinds": ["postgresql", "redis", "s3"],
    "dr_restore_target_time": "",
}


def _seed() -> None:
    subprocess.run([str(LABCTL), "up"], capture_output=True, timeout=300, check=True)
    subprocess.run([str(LABCTL), "seed"], capture_output=True, timeout=300, check=True)


@pytest.fixture(scope="module")
def pdd(tmp_path_factory, lab):
    _seed()
    return private_data_dir(tmp_path_factory.mktemp("awx"))


def lab_credentials(routes: tuple[str, ...] = ("env", "extra_vars")) -> tuple[Credential, ...]:
    """Credentials of the three types holding the lab's logins (inventories/lab/group_vars)."""
    lab = yaml.safe_load(LAB_VARS.read_text())
    return (
        Credential(
            "postgresql",
            {"username": lab["postgresql_login_user"], "password": lab["postgresql_login_password"]},
            routes,
        ),
        Credential(
            "redis", {"username": lab.get("redis_login_user", ""), "password": lab["redis_login_password"]}, routes
        ),
        Credential(
            "s3",
            {
                "endpoint_url": lab["s3_endpoint_url"],
                "region": lab["s3_region"],
                "access_key": lab["s3_access_key"],
                "secret_key": lab["s3_secret_key"],
                "session_token": "",
            },
            routes,
        ),
    )


@pytest.fixture(scope="module")
def bare_inventory(tmp_path_factory) -> Path:
    """The lab inventory without anything the credentials carry (logins, keys, S3 endpoint and region)."""
    carried = {name for credential in lab_credentials() for name in credential.extra_vars}
    lab = yaml.safe_load(LAB_VARS.read_text())
    assert carried <= set(lab) | {"redis_login_user", "s3_session_token"}, carried - set(lab)
    bare = {k: v for k, v in lab.items() if k not in carried}
    bare["runbook_repo_root"] = str(ROOT)  # it was built from inventory_dir
    inventory = tmp_path_factory.mktemp("bare-inventory")
    (inventory / "group_vars").mkdir()
    (inventory / "group_vars" / "all.yml").write_text(yaml.safe_dump(bare, sort_keys=False))
    (inventory / "hosts.yml").write_text((LAB_VARS.parents[1] / "hosts.yml").read_text())
    return inventory


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


@pytest.mark.parametrize(
    "routes",
    [("env", "extra_vars"), ("extra_vars",), ("env",)],
    ids=["as-awx-injects", "extra-vars-alone", "env-alone"],
)
def test_injected_credentials_connect_the_modules(pdd, bare_inventory, routes):
    job = run_job(pdd, "health.yml", inventory=bare_inventory, credentials=lab_credentials(routes))
    assert job.status == "successful", job
    components = job.artifact_data["runbook_health"]["components"]
    for name in ("postgresql", "redis", "s3"):
        assert components[name]["status"] == "ok", components[name]
    # the secrets went to the modules, never into the job's output
    lab = yaml.safe_load(LAB_VARS.read_text())
    for secret in ("postgresql_login_password", "redis_login_password", "s3_secret_key"):
        assert lab[secret] not in job.stdout, secret


def test_without_credentials_the_modules_cannot_log_in(pdd, bare_inventory):
    job = run_job(pdd, "health.yml", inventory=bare_inventory)
    assert job.status == "failed", job
    components = job.artifact_data["runbook_health"]["components"]
    for name in ("postgresql", "redis", "s3"):
        assert components[name]["status"] != "ok", components[name]


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


@pytest.mark.parametrize("answers", [{}, SURVEY_FALSE], ids=["not-confirmed", "survey-false"])
def test_unconfirmed_restore_publishes_the_refusal(pdd, backup_job, answers):
    dr_id = backup_job.artifact_data["runbook_backup"]["dr_set_id"]
    job = run_job(pdd, "dr_restore.yml", {"dr_restore_backup_id": dr_id, **answers})
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


def test_the_backup_artifact_selects_the_dr_set_of_dr_restore(pdd, backup_job):
    """Workflow backup -> dr_restore --check, AWX's way: the backup job's artifacts are the next job's
    extra variables. A later backup made a newer DR set; the first backup's artifact still names its own."""
    artifact = backup_job.artifact_data
    first_id = artifact["runbook_backup"]["dr_set_id"]
    later = run_job(pdd, "backup.yml")
    assert later.status == "successful", later
    assert later.artifact_data["runbook_backup"]["dr_set_id"] > first_id, later.artifact_data

    job = run_job(pdd, "dr_restore.yml", artifact, check=True)
    assert job.status == "successful", job
    stats = job.artifact_data["runbook_dr_restore"]
    assert stats["requested"] == {"backup_id": first_id, "source": "artifact"}, stats
    assert stats["dr_set_id"] == first_id and stats["status"] == "verified" and stats["verify_only"] is True, stats
    assert stats["verified"]["dr_set_valid"] is True and stats["restored"] == [], stats
    assert all(c["valid"] for c in stats["verified"]["components"]), stats


def test_an_artifact_without_a_dr_set_stops_dr_restore(pdd, lab):
    artifact = {
        "runbook_backup": {
            "status": "failed",
            "failed_hosts": ["lab"],
            "message": "lab: cannot back up db 'shop': disk full",
            "check_mode": False,
            "dr_set_id": None,
            "recovery_point": None,
            "components": [],
            "sets": [],
        }
    }
    job = run_job(pdd, "dr_restore.yml", artifact, tags="dr_restore_select")
    assert job.status == "failed", job
    stats = job.artifact_data["runbook_dr_restore"]
    assert stats["status"] == "failed" and stats["failed_phase"] == "(1/6) SELECT", stats
    assert "the backup job before this one published no DR set" in stats["message"], stats
    assert "disk full" in stats["message"] and stats["requested"]["source"] == "artifact", stats
    assert stats["dr_set_id"] is None and stats["restored"] == [], stats


@pytest.mark.parametrize("playbook", ["startup.yml", "shutdown.yml"])
def test_startup_and_shutdown_publish_a_failure(pdd, playbook):
    # a component entry without tier/control fails the role's validation, before anything is touched
    job = run_job(pdd, playbook, {"runbook_components": [{"name": "broken"}]})
    assert job.status == "failed", job
    stats = job.artifact_data["runbook_" + playbook.removesuffix(".yml")]
    assert stats["status"] == "failed" and stats["failed_hosts"] == ["lab"], stats
    assert "broken" in stats["message"], stats
