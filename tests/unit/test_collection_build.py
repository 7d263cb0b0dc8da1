# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tarball `ansible-galaxy collection build` makes from this checkout holds the collection and
nothing of the development set-up: no lab (and its inventory with the lab passwords), benchmarks,
Molecule scenarios, dev scripts, local configuration or caches (galaxy.yml ``build_ignore``)."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

# Directories whose content must not ship, and files (at any depth for the caches) that must not.
EXCLUDED_DIRS = (
    "lab/",
    "bench/",
    "scripts/",
    "molecule/",
    "inventories/lab/",
    ".venv/",
    ".cache/",
    ".lab/",
    ".ci/",
    ".config/",
    "reports/",
    "tests/output/",
)
EXCLUDED_FILES = ("Makefile", "ansible.cfg", "requirements-dev.txt", ".ansible-lint", "ruff.toml", ".gitignore")
EXCLUDED_ANYWHERE = (".ruff_cache", ".pytest_cache", "__pycache__")


def _ansible_galaxy() -> str:
    beside = Path(sys.executable).with_name("ansible-galaxy")
    found = str(beside) if beside.exists() else shutil.which("ansible-galaxy")
    if not found:
        pytest.skip("ansible-galaxy is not installed")
    return found


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list[str]:
    """Paths of the files (not directories) in a tarball built from the checkout."""
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    out = tmp_path_factory.mktemp("build")
    run = subprocess.run(
        [_ansible_galaxy(), "collection", "build", "--output-path", str(out), "--force", str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, f"ansible-galaxy collection build failed:\n{run.stdout}\n{run.stderr}"
    tarball = out / f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"
    with tarfile.open(tarball) as tar:
        return sorted(m.name for m in tar.getmembers() if m.isfile())


def test_no_development_or_lab_material(members):
    shipped = [
        name
        for name in members
        if name.startswith(EXCLUDED_DIRS)
        or name in EXCLUDED_FILES
        or fnmatch.fnmatch(name, "*.py[co]")
        or any(part in EXCLUDED_ANYWHERE for part in name.split("/"))
    ]
    assert not shipped, f"the built collection ships files it must leave out: {shipped}"


def test_collection_content_is_shipped(members):
    expected = {"COPYING", "README.md", "meta/runtime.yml", "requirements.txt", "bindep.txt"}
    expected |= {"meta/execution-environment.yml", "meta/ee-requirements.txt", "meta/ee-bindep.txt"}
    expected |= {str(p.relative_to(ROOT)) for p in (ROOT / "plugins" / "modules").glob("*.py")}
    expected |= {str(p.relative_to(ROOT)) for p in (ROOT / "roles").glob("*/meta/argument_specs.yml")}
    expected |= {str(p.relative_to(ROOT)) for p in (ROOT / "playbooks").glob("*.yml")}
    # the documented example inventory ships, the lab one does not
    expected.add("inventories/example/hosts.yml")
    assert len(expected) > 30, "the checkout looks incomplete: too few modules, roles or playbooks found"
    missing = sorted(expected - set(members))
    assert not missing, f"the built collection lacks: {missing}"


def test_license_file_is_the_gpl():
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    assert galaxy.get("license_file") == "COPYING"
    assert "license" not in galaxy, "galaxy.yml: license and license_file are mutually exclusive"
    text = (ROOT / "COPYING").read_text()
    assert text.lstrip().startswith("GNU GENERAL PUBLIC LICENSE")
    assert "Version 3, 29 June 2007" in text
    assert "END OF TERMS AND CONDITIONS" in text
