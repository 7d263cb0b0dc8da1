"""inventories/example is a working start, and a host with no components is never reported healthy.

- health.yml against a host whose runbook_components is empty fails naming the host and the variable
  (it used to say "healthy: 0 component(s) ok").
- Every host of the example inventory has components and the backup settings a deployment needs, and
  no variable that nothing reads.
- health.yml and backup.yml run against the example inventory with its hosts pointed to the lab
  (local connection, the lab's service addresses as extra vars).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, run_playbook

pytestmark = [pytest.mark.playbook]

EXAMPLE = "inventories/example"
VENV = ROOT / ".venv" / "bin"


def _inventory() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "REDIS", "AWS_"))}
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    proc = subprocess.run(
        [str(VENV / "ansible-inventory"), "-i", EXAMPLE, "--list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(proc.stdout)


def _lab_vars(lab, backup_root: Path) -> list[str]:
    """Extra vars that point every example host at the lab, as the issue's check describes."""
    values = {
        "ansible_connection": "local",
        "ansible_python_interpreter": str(VENV / "python"),
        "postgresql_login_host": lab["pg"]["login_host"],
        "postgresql_login_port": lab["pg"]["login_port"],
        "postgresql_login_user": lab["pg"]["login_user"],
        "postgresql_login_password": lab["pg"]["login_password"],
        "redis_login_host": lab["redis"]["login_host"],
        "redis_login_port": lab["redis"]["login_port"],
        "redis_login_password": lab["redis"]["login_password"],
        "s3_endpoint_url": lab["s3"]["endpoint_url"],
        "s3_access_key": lab["s3"]["access_key"],
        "s3_secret_key": lab["s3"]["secret_key"],
        "backup_root": str(backup_root),
    }
    return ["-e", json.dumps(values)]


def test_health_of_a_host_without_components_fails_and_says_why(lab):
    run = run_playbook("health.yml", "-e", '{"runbook_components": []}')
    assert run.rc != 0, run
    assert "runbook_components (health_check_components) is empty or undefined for host lab" in run.out, run
    assert "healthy: 0 component(s) ok" not in run.out


def test_every_example_host_has_components_and_backup_settings():
    inv = _inventory()
    hostvars = inv["_meta"]["hostvars"]
    hosts = sorted(hostvars)
    assert len(hosts) == 6, hosts
    for host in hosts:  # the playbooks target all hosts by default (runbook_hosts), cert_renewal the proxy group
        components = hostvars[host].get("runbook_components")
        assert components, f"{host} has no runbook_components"
        for c in components:
            assert c["name"] and c["tier"] and c["control"]["type"], (host, c)
        for var in ("backup_root", "backup_dr_name", "backup_offsite_root"):
            assert hostvars[host].get(var), f"{host} lacks {var}"
        for dead in ("postgresql_data_dir", "postgresql_socket_dir", "redis_data_dir"):
            assert dead not in hostvars[host], f"{host}: {dead} is read by nothing"
    by_service = {c["service"]: h for h in hosts for c in hostvars[h]["runbook_components"]}
    assert hostvars[by_service["postgresql"]]["backup_postgresql_databases"], by_service
    assert hostvars[by_service["redis"]]["backup_redis"] is True, by_service
    assert hostvars[by_service["s3"]]["backup_s3_buckets"], by_service


@pytest.mark.parametrize("playbook", ["health.yml", "backup.yml", "dr_restore.yml", "startup.yml", "shutdown.yml"])
def test_example_playbooks_pass_syntax_check(playbook):
    run = run_playbook(playbook, "--syntax-check", inventory=EXAMPLE)
    assert run.rc == 0, run


def test_health_on_the_example_reports_every_component(lab, tmp_path):
    # the example's systemd units do not exist here: the report is unhealthy, but it names every
    # component of every host instead of an empty green
    report = tmp_path / "health.json"
    run = run_playbook(
        "health.yml",
        *_lab_vars(lab, tmp_path),
        "-e",
        "health_check_fail_on_unhealthy=false",
        "-e",
        f"health_check_report_path={report}",
        inventory=EXAMPLE,
    )
    assert run.rc == 0, run
    components = json.loads(report.read_text())["components"]
    assert {"proxy", "app1.example.internal/app", "app2.example.internal/app", "postgresql", "redis", "s3"} == set(
        components
    ), components


def test_backup_check_on_the_example_pointed_to_the_lab(lab, tmp_backup_root):
    subprocess.run([str(ROOT / "lab" / "labctl"), "seed"], capture_output=True, timeout=300, check=True)
    run = run_playbook("backup.yml", "--check", *_lab_vars(lab, tmp_backup_root), inventory=EXAMPLE)
    assert run.rc == 0, run
    assert set(run.recap) == set(_inventory()["_meta"]["hostvars"]), run
    assert all(r["failed"] == 0 for r in run.recap.values()), run
