"""Every play that runs modules of the collection's action groups gets its connection options from
playbooks/vars/connection_defaults.yml, and that file maps every connection option of each group."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
SHARED = "vars/connection_defaults.yml"
GROUPS = ("postgresql", "redis", "s3")


def _action_groups() -> dict[str, set[str]]:
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    return {group: set(members) for group, members in runtime["action_groups"].items()}


def _role_modules(role: str, seen: set[str] | None = None) -> set[str]:
    """Modules of runbook.stack a role calls, through the roles it includes too."""
    seen = seen if seen is not None else set()
    if role in seen:
        return set()
    seen.add(role)
    text = "".join(p.read_text() for p in (ROOT / "roles" / role / "tasks").glob("*.yml"))
    found = set(re.findall(r"^\s*runbook\.stack\.(\w+):", text, re.M))
    for included in set(re.findall(r"name:\s*runbook\.stack\.(\w+)", text)):
        if (ROOT / "roles" / included).is_dir():
            found |= _role_modules(included, seen)
    return found


def _play_modules(play: dict) -> set[str]:
    text = yaml.safe_dump({k: play.get(k) for k in ("tasks", "pre_tasks", "post_tasks", "roles")})
    found = set(re.findall(r"runbook\.stack\.(\w+):", text))
    for role in set(re.findall(r"runbook\.stack\.(\w+)", text)):
        if (ROOT / "roles" / role).is_dir():
            found |= _role_modules(role)
    return found


def _plays() -> list[tuple[str, dict]]:
    plays = []
    for path in sorted(PLAYBOOKS.glob("*.yml")):
        for play in yaml.safe_load(path.read_text()):
            if "import_playbook" not in play:
                plays.append((f"{path.name}: {play.get('name')}", play))
    return plays


@pytest.mark.parametrize(("label", "play"), _plays(), ids=[label for label, _play in _plays()])
def test_play_uses_the_shared_connection_defaults(label, play):
    groups = _action_groups()
    used = {g for g in GROUPS if _play_modules(play) & groups[g]}
    if not used:
        pytest.skip(f"{label} runs no module of the postgresql, redis or s3 action groups")
    assert SHARED in (play.get("vars_files") or []), f"{label}: vars_files lacks {SHARED}"
    defaults = play.get("module_defaults") or {}
    for group in GROUPS:  # all three: roles reach modules of every group (startup's maintenance_mode is in redis)
        assert defaults.get(f"group/runbook.stack.{group}") == f"{{{{ runbook__{group}_defaults }}}}", (
            f"{label}: group/runbook.stack.{group} must be runbook__{group}_defaults from {SHARED}"
        )


def test_shared_defaults_map_every_connection_option():
    shared = yaml.safe_load((PLAYBOOKS / SHARED).read_text())
    # the options of each group's argument spec (plugins/module_utils), minus per-call tuning
    expected = {
        "postgresql": {"login_host", "login_port", "login_user", "login_password", "ssl_mode", "ca_cert"},
        "redis": {"login_host", "login_port", "login_user", "login_password", "tls", "validate_certs", "ca_certs"},
        "s3": {"endpoint_url", "access_key", "secret_key", "session_token", "region", "validate_certs", "ca_bundle"},
    }
    for group, options in expected.items():
        assert set(shared[f"runbook__{group}_defaults"]) == options, group


def test_every_play_with_a_group_module_was_checked():
    # guard against the scan above finding nothing (a play list that skips everything proves nothing)
    groups = _action_groups()
    members = set().union(*groups.values())
    checked = [label for label, play in _plays() if _play_modules(play) & members]
    assert any(label.startswith("backup.yml") for label in checked), checked
    assert any(label.startswith("dr_restore.yml") for label in checked), checked
