# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""runbook.stack.metrics_textfile run as Ansible runs it: check mode (predicted, nothing written) ->
real run (written, read back by Prometheus' parser) -> rerun (no change) -> merge of a failed run ->
bad input and unreadable files (clear failure, file untouched). No lab service needed."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import assert_clean_failure, run_module
from prometheus_client.parser import text_string_to_metric_families

LABELS = {"kind": "postgresql", "source": "shop"}


def prom(path: Path) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def backup_metrics(success: int, last_success: float | None, run_at: float) -> list[dict]:
    metrics = [
        {"name": "runbook_backup_last_run_success", "help": "1 when the last run wrote the set.",
         "samples": [{"labels": LABELS, "value": success}]},
        {"name": "runbook_backup_last_run_timestamp_seconds", "samples": [{"labels": LABELS, "value": run_at}]},
    ]  # fmt: skip
    if last_success is not None:
        metrics.append(
            {
                "name": "runbook_backup_last_success_timestamp_seconds",
                "samples": [{"labels": LABELS, "value": last_success}],
            }
        )
    return metrics


def key(name: str, **labels: str) -> tuple[str, tuple]:
    return name, tuple(sorted(labels.items()))


def test_check_mode_then_write_then_no_change_then_merge_of_a_failure(tmp_path):
    path = tmp_path / "runbook_backup.prom"
    args = {"path": str(path), "metrics": backup_metrics(1, 1700000000.5, 1700000000.5)}

    check = run_module("metrics_textfile", args, check_mode=True, diff=True)
    assert check["_rc"] == 0 and check["changed"] is True, check
    assert not path.exists(), "check mode must write nothing"
    assert len(check["added"]) == 3
    assert check["diff"][0]["before"] == "" and "runbook_backup_last_run_success" in check["diff"][0]["after"]

    real = run_module("metrics_textfile", args, diff=True)
    assert real["changed"] is True and real["samples"] == 3, real
    assert path.read_text() == check["diff"][0]["after"], "check mode predicted the text the real run wrote"
    assert path.stat().st_mode & 0o777 == 0o644
    assert prom(path) == {
        key("runbook_backup_last_run_success", **LABELS): 1.0,
        key("runbook_backup_last_run_timestamp_seconds", **LABELS): 1700000000.5,
        key("runbook_backup_last_success_timestamp_seconds", **LABELS): 1700000000.5,
    }
    assert sorted(os.listdir(tmp_path)) == ["runbook_backup.prom"], "no temporary file left"

    again = run_module("metrics_textfile", args, check_mode=True)
    assert again["changed"] is False and again["added"] == again["updated"] == []
    again = run_module("metrics_textfile", args)
    assert again["changed"] is False, again

    failed = run_module("metrics_textfile", {"path": str(path), "metrics": backup_metrics(0, None, 1700086400)})
    assert failed["changed"] is True
    assert sorted(failed["updated"]) == [
        'runbook_backup_last_run_success{kind="postgresql",source="shop"}',
        'runbook_backup_last_run_timestamp_seconds{kind="postgresql",source="shop"}',
    ]
    assert prom(path) == {
        key("runbook_backup_last_run_success", **LABELS): 0.0,
        key("runbook_backup_last_run_timestamp_seconds", **LABELS): 1700086400.0,
        key("runbook_backup_last_success_timestamp_seconds", **LABELS): 1700000000.5,  # kept
    }


def test_mode_is_enforced_and_reported(tmp_path):
    path = tmp_path / "m.prom"
    args = {"path": str(path), "metrics": [{"name": "m", "samples": [{"value": 1}]}]}
    assert run_module("metrics_textfile", args)["changed"] is True
    os.chmod(path, 0o600)
    check = run_module("metrics_textfile", args, check_mode=True, diff=True)
    assert check["changed"] is True and check["diff"][1] == {"before": {"mode": "0600"}, "after": {"mode": "0644"}}
    assert path.stat().st_mode & 0o777 == 0o600
    assert run_module("metrics_textfile", {**args, "mode": "0640"})["changed"] is True
    assert path.stat().st_mode & 0o777 == 0o640
    assert run_module("metrics_textfile", {**args, "mode": "0640"})["changed"] is False


def test_an_unparsable_file_is_never_overwritten(tmp_path):
    path = tmp_path / "other_job.prom"
    original = "# TYPE good gauge\ngood 1\nthis is not a sample\n"
    path.write_text(original)
    res = run_module("metrics_textfile", {"path": str(path), "metrics": [{"name": "m", "samples": [{"value": 1}]}]})
    assert_clean_failure(res, f"{path} line 3: ")
    assert path.read_text() == original


def test_bad_names_and_paths_fail_clearly_and_write_nothing(tmp_path):
    path = tmp_path / "m.prom"
    bad_metric = run_module("metrics_textfile", {"path": str(path), "metrics": [{"name": "bad-name", "samples": []}]})
    assert_clean_failure(bad_metric, "metric name 'bad-name' is not a valid Prometheus metric name")
    bad_label = run_module(
        "metrics_textfile",
        {
            "path": str(path),
            "metrics": [{"name": "runbook_health_up", "samples": [{"labels": {"com-ponent": "db"}, "value": 1}]}],
        },
    )
    assert_clean_failure(bad_label, "metric runbook_health_up", "label name 'com-ponent'")
    not_prom = run_module("metrics_textfile", {"path": str(tmp_path / "m.txt"), "metrics": []})
    assert_clean_failure(not_prom, "must end in .prom")
    no_dir = run_module(
        "metrics_textfile", {"path": str(tmp_path / "missing" / "m.prom"), "metrics": []}, check_mode=True
    )
    assert_clean_failure(no_dir, f"directory {tmp_path / 'missing'} does not exist")
    assert not path.exists()
