# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The execution environment's requirements (meta/ee-*.txt, what ansible-builder reads through
meta/execution-environment.yml) stay separate from the managed hosts' (requirements.txt, bindep.txt)
and agree with them: same floors, same package names."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _lines(path: Path) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in path.read_text().splitlines() if line.split("#", 1)[0].strip()]


def _floors(path: Path) -> dict[str, str]:
    floors = {}
    for line in _lines(path):
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", line)
        assert match, f"{path.name}: expected 'name>=version', got {line!r}"
        floors[match.group(1).lower()] = match.group(2)
    return floors


def test_ee_definition_points_at_the_controller_side_files():
    ee = yaml.safe_load((ROOT / "meta" / "execution-environment.yml").read_text())
    assert ee["version"] == 1
    assert ee["dependencies"] == {"python": "meta/ee-requirements.txt", "system": "meta/ee-bindep.txt"}
    for name in ee["dependencies"].values():
        assert _lines(ROOT / name), f"{name} lists nothing"


def test_ee_python_floors_match_the_managed_hosts():
    ee = _floors(ROOT / "meta" / "ee-requirements.txt")
    hosts = _floors(ROOT / "requirements.txt")
    differing = {name: (floor, hosts.get(name)) for name, floor in ee.items() if hosts.get(name) != floor}
    assert not differing, f"meta/ee-requirements.txt floors differ from requirements.txt (ee, hosts): {differing}"


def test_ee_system_packages_are_those_of_the_managed_hosts():
    hosts = set(_lines(ROOT / "bindep.txt"))
    unknown = [line for line in _lines(ROOT / "meta" / "ee-bindep.txt") if line not in hosts]
    assert not unknown, f"meta/ee-bindep.txt lists packages bindep.txt does not (name or platform differ): {unknown}"
