# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/backup.yml on the lab, the first things an adopting operator runs (issue 10):

- check mode before the first backup, with a backup root that does not exist yet (point 12);
- a negative retention value stops the run before anything is written (point 7);
- ``--tags backup_retention`` runs on its own, without the phases that record the sets (point 7).

Each run uses a backup root of its own under tmp_path; the S3 side is the lab's (the snapshot bucket
shop-backups and the off-host root s3://shop-offsite/runbook of inventories/lab).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from conftest import lab_seed, run_playbook
from test_s3_modules import _keys
from test_s3_modules import _s3 as lab_client

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import LocalSetWriter, utcnow

pytestmark = [pytest.mark.playbook]

S3_BUCKETS = ("shop-backups", "shop-offsite")
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def seeded(lab: dict[str, Any]) -> dict[str, Any]:
    """The lab with its demo data and buckets (a fresh lab has none until seeded)."""
    lab_seed()
    return lab


def s3_state(lab: dict[str, Any]) -> dict[str, set[str]]:
    cli = lab_client(lab)
    return {bucket: _keys(cli, bucket) for bucket in S3_BUCKETS}


def test_check_mode_on_a_fresh_root_predicts_the_backups_and_creates_nothing(seeded, tmp_path):
    fresh = tmp_path / "fresh"
    before = s3_state(seeded)
    run = run_playbook("backup.yml", "--check", "-e", f"backup_root={fresh / 'backups'}")
    assert run.rc == 0, run
    assert "cannot prune" not in run.out, run
    assert run.changed() >= 3, "check mode must predict the PostgreSQL, Redis and S3 backups"
    assert not fresh.exists(), "check mode must not create the backup root"
    assert s3_state(seeded) == before, "check mode must not write to S3"


@pytest.mark.parametrize("variable", ["backup_keep_last", "backup_keep_days"])
def test_negative_retention_fails_before_any_set_is_written(seeded, tmp_path, variable):
    root = tmp_path / "backups"
    before = s3_state(seeded)
    run = run_playbook("backup.yml", "-e", f"backup_root={root}", "-e", f"{variable}=-1")
    assert run.rc != 0, run
    assert f"{variable} must be" in run.out and "got -1" in run.out, run
    assert "Dump the PostgreSQL databases" not in run.out, "the run must stop before the first backup"
    assert not root.exists(), "no set may be written"
    assert s3_state(seeded) == before, "no snapshot or off-host copy may be written"


def make_sets(root: Path, kind: str, source: str, ages_days: list[int]) -> list[str]:
    """Sealed sets whose backup ids lie that many days back; their ids, newest first."""
    ids = []
    for age in ages_days:
        when = utcnow() - age * DAY
        writer = LocalSetWriter(str(root), kind, source, now=lambda when=when: when).create()
        Path(writer.path, "payload").write_bytes(b"x" * 64)
        writer.seal(tool={"name": "test"})
        ids.append(writer.backup_id)
    return sorted(ids, reverse=True)


def test_retention_tag_runs_on_its_own(seeded, tmp_path):
    root = tmp_path / "backups"
    redis_source = f"{seeded['redis']['login_host']}:{seeded['redis']['login_port']}"
    ages = list(range(20, 29))  # nine sets older than backup_keep_days (14): the newest 7 are kept
    sets = {
        ("postgresql", "shop"): make_sets(root, "postgresql", "shop", ages),
        ("redis", redis_source): make_sets(root, "redis", redis_source, ages),
        ("dr", "shop"): make_sets(root, "dr", "shop", ages),
    }
    other = make_sets(root, "postgresql", "not-backed-up-here", ages)

    run = run_playbook("backup.yml", "--tags", "backup_retention", "-e", f"backup_root={root}")
    assert run.rc == 0, run
    assert "is undefined" not in run.out, run
    for (kind, source), ids in sets.items():
        left = sorted(
            (p.name for p in root.glob(f"{kind}/*/*") if p.parent.name == source.replace(":", "%3A")), reverse=True
        )
        assert left == ids[:7], f"{kind}/{source}: kept {left}, expected the newest 7 of {ids}"
    assert sorted((p.name for p in root.glob("postgresql/not-backed-up-here/*")), reverse=True) == other, (
        "a source this host does not back up is not touched"
    )
    assert len(list(root.glob("*/*/*/manifest.json"))) == 3 * 7 + len(other), "retention alone writes no set"
