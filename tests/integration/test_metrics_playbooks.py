# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus textfile metrics of playbooks/backup.yml and playbooks/health.yml on the lab (issue 13).

Backup, in order on one metrics directory: a run that backs up everything (every set 1, its figures
those the modules reported), a run that fails (its sets 0, the last success of the others kept, the
run still failed with its own cause), a check run (nothing written). Then the metrics failing
themselves, with and without a backup failure. Health: a component at a closed port is 0, the lab's
are 1; a check run writes nothing. Every file is read with Prometheus' own parser (prometheus_client).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import custom_stats, free_port, lab_seed, run_module, run_on_running_lab, run_playbook
from prometheus_client.parser import text_string_to_metric_families

from ansible_collections.runbook.stack.plugins.filter.textfile_metrics import iso_to_unix

pytestmark = [pytest.mark.playbook]

LAB_COMPONENTS = ("s3", "postgresql", "redis", "app", "proxy")
SUCCESS = "runbook_backup_last_success_timestamp_seconds"
LAST_RUN = "runbook_backup_last_run_timestamp_seconds"
RUN_OK = "runbook_backup_last_run_success"
SIZE = "runbook_backup_size_bytes"
DURATION = "runbook_backup_duration_seconds"


def read_prom(path: Path) -> dict[str, dict[tuple, float]]:
    """{metric: {sorted label items: value}} as Prometheus' parser reads the file."""
    assert path.exists(), f"no metrics file {path}"
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            series = out.setdefault(sample.name, {})
            key = tuple(sorted(sample.labels.items()))
            assert key not in series, f"duplicate sample {sample.name}{key}"
            series[key] = sample.value
    return out


def row(kind: str, source: str) -> tuple:
    return (("kind", kind), ("source", source))


class Run:
    """A playbook run with the times around it and the metrics file after it."""

    def __init__(self, playbook: str, metrics: Path, *args: str) -> None:
        self.started = time.time()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("ANSIBLE_SHOW_CUSTOM_STATS", "true")
            self.run = run_playbook(playbook, *args)
        self.ended = time.time()
        self.stats = custom_stats(self.run.out) or {}
        self.file = metrics
        self.text = metrics.read_text() if metrics.exists() else None
        self.prom = read_prom(metrics) if metrics.exists() else {}


# ---------------------------------------------------------------- backup.yml
@pytest.fixture(scope="module")
def backup_dirs(lab, tmp_path_factory) -> dict[str, Path]:
    lab_seed()
    top = tmp_path_factory.mktemp("backup-metrics")
    (top / "metrics").mkdir()
    return {"root": top / "backups", "metrics": top / "metrics", "file": top / "metrics" / "runbook_backup.prom"}


def backup_args(dirs: dict[str, Path], *extra: str) -> list[str]:
    return ["-e", f"backup_root={dirs['root']}", "-e", f"backup_metrics_dir={dirs['metrics']}", *extra]


@pytest.fixture(scope="module")
def good_run(backup_dirs) -> Run:
    return Run("backup.yml", backup_dirs["file"], *backup_args(backup_dirs))


@pytest.fixture(scope="module")
def failed_run(backup_dirs, good_run) -> Run:
    # the second database does not exist: its dump fails, the task fails after dumping shop, so the
    # run stops before Redis, S3 and the DR set
    return Run(
        "backup.yml",
        backup_dirs["file"],
        *backup_args(backup_dirs, "-e", '{"backup_postgresql_databases": ["shop", "rb_no_such_db"]}'),
    )


def test_a_backup_run_writes_every_set_with_the_figures_the_modules_reported(good_run, backup_dirs):
    assert good_run.run.rc == 0, good_run.run
    assert backup_dirs["file"].stat().st_mode & 0o777 == 0o644
    sets = good_run.stats["runbook_backup"]["sets"]
    assert {(s["kind"], s["source"]) for s in sets} == {
        ("postgresql", "shop"),
        ("redis", "127.0.0.1:56379"),
        ("s3", "shop-receipts"),
    }
    prom = good_run.prom
    for s in sets:
        key = row(s["kind"], s["source"])
        assert prom[RUN_OK][key] == 1, s
        assert prom[SUCCESS][key] == pytest.approx(iso_to_unix(s["finished"]), abs=0.001), s
        assert good_run.started - 1 <= prom[SUCCESS][key] <= good_run.ended + 1
        assert good_run.started <= prom[LAST_RUN][key] <= good_run.ended
        assert prom[SIZE][key] == s["size_bytes"] > 0, s
        assert 0 < prom[DURATION][key] < good_run.ended - good_run.started
    # the DR set of the run: its row stands for the whole run
    dr = row("dr", "shop")
    assert prom[RUN_OK][dr] == 1
    dr_id = good_run.stats["runbook_backup"]["dr_set_id"]
    manifest = json.loads((backup_dirs["root"] / "dr" / "shop" / dr_id / "manifest.json").read_text())
    assert prom[SIZE][dr] == sum(c["size_bytes"] for c in manifest["facts"]["components"]) > 0
    assert prom[SUCCESS][dr] == pytest.approx(iso_to_unix(manifest["finished"]), abs=0.001)
    assert prom[DURATION][dr] >= max(prom[DURATION][row(s["kind"], s["source"])] for s in sets)
    assert {len(series) for series in prom.values()} == {4}, prom


def test_a_failed_backup_run_fails_and_keeps_the_last_success_of_every_set(good_run, failed_run):
    assert failed_run.run.rc != 0, failed_run.run
    assert "backup failed on lab: cannot back up database 'rb_no_such_db'" in failed_run.run.out, failed_run.run
    before, after = good_run.prom, failed_run.prom
    shop, gone = row("postgresql", "shop"), row("postgresql", "rb_no_such_db")
    not_written = [row("redis", "127.0.0.1:56379"), row("s3", "shop-receipts"), row("dr", "shop"), gone]
    for key in not_written:
        assert after[RUN_OK][key] == 0, key
        assert failed_run.started <= after[LAST_RUN][key] <= failed_run.ended, key
    for key in not_written[:3]:  # written by the first run: its figures stay
        for metric in (SUCCESS, SIZE, DURATION):
            assert after[metric][key] == before[metric][key], (metric, key)
    for metric in (SUCCESS, SIZE, DURATION):
        assert gone not in after[metric], "a set never written has no success figures"
    # shop was dumped before the failure: a success of its own
    assert after[RUN_OK][shop] == 1
    assert failed_run.started - 1 <= after[SUCCESS][shop] <= failed_run.ended


def test_check_mode_writes_no_metrics(backup_dirs, failed_run):
    path = backup_dirs["file"]
    mtime = path.stat().st_mtime_ns
    check = Run("backup.yml", path, "--check", *backup_args(backup_dirs))
    assert check.run.rc == 0, check.run
    assert check.text == failed_run.text and path.stat().st_mtime_ns == mtime, "check mode must not write the file"
    assert "TASK [runbook.stack.backup : Write the metrics of the run]" in check.run.out, (
        "the metrics were not predicted"
    )
    assert [p.name for p in backup_dirs["metrics"].iterdir()] == ["runbook_backup.prom"], "no temporary file left"


def test_metrics_that_cannot_be_written_fail_a_good_run_and_never_hide_a_failed_one(lab, tmp_path):
    missing = tmp_path / "no-such-dir"
    small = ["-e", f"backup_root={tmp_path / 'b'}", "-e", f"backup_metrics_dir={missing}", "-e", "backup_offsite_root="]
    only_redis = '{"backup_postgresql_databases": [], "backup_s3_buckets": []}'
    good = run_playbook("backup.yml", *small, "-e", only_redis)
    assert good.rc != 0, good
    assert f"directory {missing} does not exist" in good.out, good

    only_bad_db = '{"backup_postgresql_databases": ["rb_no_such_db"], "backup_redis": false, "backup_s3_buckets": []}'
    bad = run_playbook("backup.yml", *small, "-e", only_bad_db)
    assert bad.rc != 0, bad
    assert "backup failed on lab: cannot back up database 'rb_no_such_db'" in bad.out, bad
    assert f"the backup metrics were not written to {missing}/runbook_backup.prom" in bad.out, bad
    assert not missing.exists()


def test_a_failed_redis_snapshot_names_the_set_it_was_to_write(tmp_path):
    """What the backup metrics name a Redis by when its snapshot failed."""
    port = free_port()
    res = run_module("redis_snapshot", {"dest": str(tmp_path), "login_host": "127.0.0.1", "login_port": port})
    assert res.get("failed") is True, res
    assert res["backup_set"]["kind"] == "redis" and res["backup_set"]["source"] == f"127.0.0.1:{port}"
    assert res["backup_set"]["backup_id"] is None


# ---------------------------------------------------------------- health.yml
def test_health_metrics_up_per_component_and_check_mode_writes_nothing(lab, tmp_path, ghost):
    lab_seed()
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    path = metrics / "runbook_health.prom"
    started = time.time()
    run = run_on_running_lab("health.yml", "-e", f"@{ghost}", "-e", f"health_check_metrics_dir={metrics}")
    ended = time.time()
    assert run.rc != 0, "the ghost makes the check fail"
    assert "ghost (down: not running" in run.out, run
    prom = read_prom(path)
    up = {dict(k)["component"]: v for k, v in prom["runbook_health_up"].items()}
    assert up == {**dict.fromkeys(LAB_COMPONENTS, 1.0), "ghost": 0.0}
    assert (
        prom["runbook_health_up"][(("component", "postgresql"), ("service", "postgresql"), ("tier", "database"))] == 1
    )
    assert started <= prom["runbook_health_check_timestamp_seconds"][()] <= ended
    assert os.listdir(metrics) == ["runbook_health.prom"]

    text, mtime = path.read_text(), path.stat().st_mtime_ns
    check = run_on_running_lab("health.yml", "--check", "--diff", "-e", f"health_check_metrics_dir={metrics}")
    assert check.rc == 0, check
    assert path.read_text() == text and path.stat().st_mtime_ns == mtime, "check mode must not write the file"
    # predicted: the ghost, no longer a component, leaves the metric
    assert '-runbook_health_up{component="ghost",service="http",tier="app"} 0' in check.out, check
