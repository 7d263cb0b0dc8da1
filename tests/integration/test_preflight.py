"""Role preflight on the lab (through tests/integration/playbooks/preflight.yml): every failed
check is listed in one failure naming its path, threshold and actual value; nothing changes."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, fresh_backup, lab_seed, run_on_running_lab, run_playbook

pytestmark = [pytest.mark.playbook]

PLAYBOOK = "../tests/integration/playbooks/preflight.yml"
# every check off; each test turns on the ones it is about
NONE = {
    "preflight_disk_paths": [],
    "preflight_min_free_memory_mb": 0,
    "preflight_required_files": [],
    "preflight_require_running": False,
    "preflight_require_backup": False,
}


@pytest.fixture(scope="module")
def backups(lab, tmp_path_factory) -> Path:
    """A backup root holding a backup of the shop database made now."""
    lab_seed()
    root = tmp_path_factory.mktemp("preflight-backups")
    fresh_backup(lab, root)
    return root


def preflight(tmp_path: Path, steady: bool = False, **checks: Any):
    path = tmp_path / "preflight.json"
    path.write_text(json.dumps({**NONE, **checks}))
    if steady:  # reachability of the lab's own services: retried when another test stopped them
        return run_on_running_lab(PLAYBOOK, "-e", f"@{path}")
    return run_playbook(PLAYBOOK, "-e", f"@{path}")


def failure(run) -> str:
    match = re.search(r'"msg": "(preflight failed on lab: [^"]*)"', run.out)
    assert match, run
    return match.group(1)


def test_every_check_met_passes_and_changes_nothing(lab, tmp_path, backups):
    run = preflight(
        tmp_path,
        steady=True,
        preflight_disk_paths=[{"path": str(ROOT), "min_free_pct": 1, "min_free_mb": 1}],
        preflight_min_free_memory_mb=1,
        preflight_required_files=[str(ROOT / "galaxy.yml")],
        preflight_require_running=True,
        preflight_require_backup=True,
        preflight_backup_root=str(backups),
        preflight_backup_sources=[{"kind": "postgresql", "source": "shop"}],
    )
    assert run.rc == 0, run
    assert run.changed() == 0
    # 2 disk thresholds, memory, 5 lab endpoints, 1 file, 1 backup
    assert "preflight passed on lab: 10 check(s)" in run.out, run


def test_check_mode_runs_the_same_checks(lab, tmp_path):
    run = preflight(tmp_path, preflight_required_files=[str(ROOT / "galaxy.yml")])
    check = run_playbook(PLAYBOOK, "--check", "-e", f"@{tmp_path / 'preflight.json'}")
    assert run.rc == 0 and check.rc == 0, check
    assert check.changed() == 0
    assert "preflight passed on lab: 1 check(s)" in check.out


def test_threshold_that_cannot_be_met_fails_naming_path_threshold_and_value(lab, tmp_path):
    run = preflight(tmp_path, preflight_disk_paths=[{"path": str(ROOT), "min_free_pct": 100, "min_free_mb": 1}])
    assert run.rc != 0, run
    msg = failure(run)
    assert "1 of 2 check(s)" in msg, msg
    assert re.search(
        rf"disk {re.escape(str(ROOT))}: [\d.]+% free \([\d.]+ MB\) on \S+ is below min_free_pct 100", msg
    ), msg
    assert "min_free_mb" not in msg, "the met threshold is not a failure"


def test_missing_required_file_fails_naming_it(lab, tmp_path):
    missing = tmp_path / "etc" / "app.conf"
    run = preflight(tmp_path, preflight_required_files=[str(ROOT / "galaxy.yml"), str(missing)])
    assert run.rc != 0, run
    msg = failure(run)
    assert f"required file {missing} is missing" in msg, msg
    assert "galaxy.yml" not in msg


def test_required_backup_with_none_recent_fails(lab, tmp_path, backups):
    empty = tmp_path / "no-backups"
    empty.mkdir()
    sources = [{"kind": "postgresql", "source": "shop"}]
    run = preflight(
        tmp_path, preflight_require_backup=True, preflight_backup_root=str(empty), preflight_backup_sources=sources
    )
    assert run.rc != 0, run
    assert f"backup postgresql/shop under {empty}: no valid backup set" in failure(run)
    # a valid set older than the limit (0.36 s)
    run = preflight(
        tmp_path,
        preflight_require_backup=True,
        preflight_backup_root=str(backups),
        preflight_backup_sources=sources,
        preflight_backup_max_age_h=0.0001,
    )
    assert run.rc != 0, run
    assert re.search(
        r"newest valid set \d{8}T\d{6}Z is [\d.]+ h old, older than preflight_backup_max_age_h 0.0001", failure(run)
    )


def test_required_backup_without_sources_fails(lab, tmp_path):
    run = preflight(tmp_path, preflight_require_backup=True, preflight_backup_sources=[])
    assert run.rc != 0, run
    assert "preflight_require_backup is true but preflight_backup_sources is empty" in failure(run)


def test_unreachable_endpoint_fails_naming_it(lab, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ghost = {"name": "ghost", "tier": "app", "control": {"type": "command"}, "endpoints": [{"port": port}]}
    run = preflight(tmp_path, preflight_require_running=True, preflight_components=[ghost], preflight_connect_timeout=1)
    assert run.rc != 0, run
    assert f"component ghost: 127.0.0.1:{port} does not accept connections within 1 s" in failure(run)


def test_every_failed_check_is_listed_in_one_failure(lab, tmp_path):
    missing = tmp_path / "missing.pem"
    run = preflight(
        tmp_path,
        preflight_disk_paths=[
            {"path": str(ROOT), "min_free_pct": 100},
            {"path": str(tmp_path / "nowhere"), "min_free_mb": 1},
        ],
        preflight_min_free_memory_mb=10**9,
        preflight_required_files=[str(missing)],
    )
    assert run.rc != 0, run
    msg = failure(run)
    assert "4 of 4 check(s)" in msg, msg
    assert "is below min_free_pct 100" in msg
    assert f"disk {tmp_path / 'nowhere'}: cannot read its free space" in msg
    assert re.search(r"memory: \d+ MB available is below preflight_min_free_memory_mb 1000000000", msg), msg
    assert f"required file {missing} is missing" in msg
    assert run.out.count("fatal: [lab]") == 1, "the role fails once, at the end"
