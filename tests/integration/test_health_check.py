"""playbooks/health.yml on the lab (role health_check): one report of every component."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import free_port, lab_seed, run_on_running_lab, run_playbook

# the lab inventory's components (inventories/lab)
LAB_COMPONENTS = ("s3", "postgresql", "redis", "app", "proxy")

pytestmark = [pytest.mark.playbook]

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture(scope="module", autouse=True)
def seeded(lab):
    """The app's /health reads the shop database: it must exist (a fresh lab has none until seeded)."""
    lab_seed()


def report_of(path: Path) -> dict:
    assert path.exists(), f"no report written to {path}"
    return json.loads(path.read_text())


def check_lab_components(report: dict) -> None:
    comps = report["components"]
    for name in LAB_COMPONENTS:
        assert comps[name]["status"] == "ok", f"{name}: {comps[name]}"
        assert comps[name]["host"] == "lab"
    pg, rd, s3 = comps["postgresql"], comps["redis"], comps["s3"]
    assert pg["version"].startswith("15") and pg["in_recovery"] is False
    assert pg["connections"] >= 1 and pg["max_connections"] > 0
    assert rd["role"] == "master" and rd["memory_used_mb"] > 0 and "hit_rate" in rd
    assert s3["buckets"] == {"shop-receipts": {"exists": True, "listable": True}}
    assert comps["app"]["http_status"] in (200, 503) and comps["app"]["url"].endswith("/health")


def test_healthy_report_of_every_lab_component(lab, tmp_path):
    out = tmp_path / "health.json"
    run = run_on_running_lab("health.yml", "-e", f"health_check_report_path={out}")
    assert run.rc == 0, run
    assert run.changed() == 0, "a health check changes nothing"
    report = report_of(out)
    assert report["status"] == "healthy"
    assert ISO_UTC.match(report["timestamp"]), report["timestamp"]
    assert set(report["components"]) == set(LAB_COMPONENTS)
    check_lab_components(report)
    assert "healthy: 5 component(s) ok" in run.out


def test_check_mode_gives_the_same_report(lab, tmp_path):
    out = tmp_path / "health.json"
    run = run_on_running_lab("health.yml", "--check", "-e", f"health_check_report_path={out}")
    assert run.rc == 0, run
    assert run.changed() == 0
    report = report_of(out)
    assert report["status"] == "healthy"
    check_lab_components(report)


def test_unreachable_component_makes_the_report_unhealthy_and_fails_naming_it(lab, tmp_path, ghost):
    out = tmp_path / "health.json"
    run = run_on_running_lab("health.yml", "-e", f"@{ghost}", "-e", f"health_check_report_path={out}")
    assert run.rc != 0, run
    assert run.changed() == 0
    assert re.search(r"unhealthy: 1 component\(s\) not ok - ghost \(down: not running", run.out), run
    report = report_of(out)
    assert report["status"] == "unhealthy"
    assert report["components"]["ghost"]["status"] == "down"
    check_lab_components(report)


def test_unhealthy_report_without_failing(lab, tmp_path, ghost):
    out = tmp_path / "health.json"
    run = run_on_running_lab(
        "health.yml",
        "-e",
        f"@{ghost}",
        "-e",
        f"health_check_report_path={out}",
        "-e",
        "health_check_fail_on_unhealthy=false",
    )
    assert run.rc == 0, run
    assert report_of(out)["status"] == "unhealthy"


def test_missing_bucket_is_an_error_of_the_s3_component(lab, tmp_path):
    out = tmp_path / "health.json"
    run = run_on_running_lab(
        "health.yml",
        "-e",
        '{"health_check_s3_buckets": ["shop-receipts", "rb-no-such-bucket"]}',
        "-e",
        f"health_check_report_path={out}",
    )
    assert run.rc != 0, run
    s3 = report_of(out)["components"]["s3"]
    assert s3["status"] == "error"
    assert s3["buckets"]["rb-no-such-bucket"]["exists"] is False
    assert "rb-no-such-bucket" in s3["error"]
    assert "s3 (error: " in run.out


def test_running_component_whose_service_does_not_answer_is_an_error(lab, tmp_path):
    """Each service check on its own: the probe says running (status command), the service is silent."""
    port = free_port()
    running = {"type": "command", "status": ["true"]}
    comps = [
        {"name": f"fake-{svc}", "tier": tier, "service": svc, "control": running, "endpoints": [{"port": port}]}
        for svc, tier in (("postgresql", "database"), ("redis", "cache"), ("s3", "storage"), ("http", "app"))
    ]
    comps[-1]["health"] = {"url": f"http://127.0.0.1:{port}/health"}
    extra = tmp_path / "silent.json"
    extra.write_text(json.dumps({"health_check_components": comps, "s3_endpoint_url": f"http://127.0.0.1:{port}"}))
    out = tmp_path / "health.json"
    run = run_playbook("health.yml", "-e", f"@{extra}", "-e", f"health_check_report_path={out}")
    assert run.rc != 0, run
    report = report_of(out)
    assert report["status"] == "unhealthy"
    for comp in comps:
        entry = report["components"][comp["name"]]
        assert entry["status"] == "error", entry
        assert "refused" in entry["error"] or "unreachable" in entry["error"], entry
    assert "unhealthy: 4 component(s) not ok" in run.out
