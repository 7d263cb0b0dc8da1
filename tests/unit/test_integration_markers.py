"""The integration tests carry the markers that select them: ``playbook`` on every file that runs
ansible-playbook, ``destructive`` on every file that stops, kills or restores the lab's own services
(``pytest -m "not destructive"`` must never touch the running lab)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
FILES = sorted(INTEGRATION.glob("test_*.py"))

RUNS_A_PLAYBOOK = re.compile(r"\brun_playbook\(|\brun_on_running_lab\(|\brun_job\(|ansible-playbook")
# labctl down/crash/reset, the playbooks that stop or restore the lab's services, a maintenance window
DESTROYS = re.compile(
    r'LABCTL\), "(?:down|crash|reset)"|"(?:shutdown|dr_drill|dr_drill_backup|maintenance_window)\.yml"'
    r'|"dr_restore\.yml", "-e", "dr_restore_confirm=true"(?!.*dr_restore_select)|dr_restore_target_time'
)


def marks(text: str) -> set[str]:
    found = re.search(r"^pytestmark = \[(.*)\]$", text, re.M)
    return set(re.findall(r"pytest\.mark\.(\w+)", found.group(1))) if found else set()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_files_that_run_playbooks_are_marked_playbook(path):
    text = path.read_text()
    if RUNS_A_PLAYBOOK.search(text):
        assert "playbook" in marks(text), f"{path.name} runs ansible-playbook: add pytestmark = [pytest.mark.playbook]"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_files_that_stop_or_restore_the_lab_are_marked_destructive(path):
    text = path.read_text()
    hit = DESTROYS.search(text)
    if hit and path.name not in SAFE_DESPITE_THE_PATTERN:
        assert "destructive" in marks(text), f"{path.name} ({hit.group(0)}): add pytest.mark.destructive"


# they name those playbooks without stopping the lab: a syntax check, a run refused or stopped in
# SELECT, a shutdown whose component list fails validation before anything is touched
SAFE_DESPITE_THE_PATTERN = {"test_example_inventory.py", "test_awx_runner.py", "test_dr_restore_select.py"}


def test_the_markers_select_something():
    marked = {p.name: marks(p.read_text()) for p in FILES}
    assert any("destructive" in m for m in marked.values())
    assert sum("playbook" in m for m in marked.values()) >= 10
