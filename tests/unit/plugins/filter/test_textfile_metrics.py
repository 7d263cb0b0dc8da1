# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_metrics and health_metrics: the roles' results into metrics_textfile's ``metrics``.

The results below have the shape the backup modules return (a written set, a check-mode plan, a
loop item that failed, a task skipped); every metrics list is also put through the module's own
checks (``specs``), so a list the module would refuse fails here."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.stack.plugins.filter.textfile_metrics import (
    FilterModule,
    backup_metrics,
    health_metrics,
    iso_to_unix,
)
from ansible_collections.runbook.stack.plugins.module_utils._metrics import specs

NOW = 1796620000.0
FINISHED = "2026-12-07T05:21:54.642Z"
FINISHED_UNIX = 1796620914.642


def written_set(kind, source, size, finished=FINISHED, **extra):
    return {
        "changed": True,
        "duration_s": 1.5,
        "backup_set": {"kind": kind, "source": source, "backup_id": "20261207T052153Z", "root": "/b",
                       "finished": finished, "size_bytes": size},
        **extra,
    }  # fmt: skip


def planned_set(kind, source, **extra):
    """What a backup module returns in check mode: the set it would write, nothing only a run knows."""
    return {"changed": True, "duration_s": 0.2, "backup_set": {"kind": kind, "source": source, "backup_id": None,
            "root": "/b", "finished": None, "size_bytes": None}, **extra}  # fmt: skip


def failed_item(item, msg="cannot back up"):
    return {"failed": True, "item": item, "msg": msg}


def table(metrics) -> dict[tuple[str, str, str], float]:
    """{(metric, kind, source): value}, after the module's own checks."""
    specs(metrics)
    return {(m["name"], s["labels"]["kind"], s["labels"]["source"]): s["value"] for m in metrics for s in m["samples"]}


def test_unix_time_of_the_modules_iso_times():
    assert iso_to_unix(FINISHED) == FINISHED_UNIX
    assert iso_to_unix("2026-12-07T05:21:54Z") == 1796620914.0
    assert iso_to_unix("2026-12-07T06:21:54.642+01:00") == FINISHED_UNIX
    assert iso_to_unix(None) is None
    with pytest.raises(AnsibleFilterError, match="is not an ISO 8601 time"):
        iso_to_unix("yesterday")


def test_a_run_that_wrote_every_set():
    registered = {
        "postgresql": {"results": [written_set("postgresql", "shop", 3853447, item="shop")]},
        "redis": written_set("redis", "127.0.0.1:6379", 36186),
        "s3": {"results": [written_set("s3", "receipts", 32510, item={"bucket": "receipts", "backup_bucket": "b"})]},
        "dr": {**written_set("dr", "shop", 2563, finished="2026-12-07T05:22:03Z"),
               "components": [{"size_bytes": 3853447}, {"size_bytes": 36186}, {"size_bytes": 32510}]},
    }  # fmt: skip
    got = table(
        backup_metrics(
            registered, NOW + 0.4567, databases=["shop"], buckets=["receipts"], redis=True, dr_name="shop",
            started=NOW - 60, completed=True,
        )
    )  # fmt: skip
    now = round(NOW + 0.4567, 3)
    for kind, source in (("postgresql", "shop"), ("redis", "127.0.0.1:6379"), ("s3", "receipts")):
        assert got["runbook_backup_last_run_success", kind, source] == 1
        assert got["runbook_backup_last_run_timestamp_seconds", kind, source] == now
        assert got["runbook_backup_last_success_timestamp_seconds", kind, source] == FINISHED_UNIX
        assert got["runbook_backup_duration_seconds", kind, source] == 1.5
    assert got["runbook_backup_size_bytes", "postgresql", "shop"] == 3853447
    assert got["runbook_backup_size_bytes", "s3", "receipts"] == 32510
    # the DR row stands for the whole run: its sets' total size, the run's duration
    assert got["runbook_backup_last_run_success", "dr", "shop"] == 1
    assert got["runbook_backup_last_success_timestamp_seconds", "dr", "shop"] == 1796620923.0
    assert got["runbook_backup_size_bytes", "dr", "shop"] == 3853447 + 36186 + 32510
    assert got["runbook_backup_duration_seconds", "dr", "shop"] == round(now - (NOW - 60), 3)
    assert len(got) == 4 * 5


def test_a_failed_run_sets_success_0_and_leaves_the_last_success_size_and_duration_alone():
    # PostgreSQL: one database dumped, one failed; the task failed, so Redis and S3 were not reached
    # (the read-only look-up named Redis); the DR set was not written
    registered = {
        "postgresql": {
            "failed": True,
            "results": [written_set("postgresql", "shop", 100, item="shop"), failed_item("gone_db")],
        },
        "redis_name": {"failed": True, "msg": "cannot connect", "backup_set": {"kind": "redis", "source": "r:1"}},
    }
    metrics = backup_metrics(
        registered, NOW, databases=["shop", "gone_db"], buckets=["receipts"], redis=True, dr_name="shop",
        started=NOW - 5, completed=False,
    )  # fmt: skip
    got = table(metrics)
    success = {(k, s): v for (name, k, s), v in got.items() if name == "runbook_backup_last_run_success"}
    assert success == {
        ("postgresql", "shop"): 1,
        ("postgresql", "gone_db"): 0,
        ("redis", "r:1"): 0,
        ("s3", "receipts"): 0,
        ("dr", "shop"): 0,
    }
    assert {(k, s) for (name, k, s) in got if name == "runbook_backup_last_run_timestamp_seconds"} == set(success)
    for name in (
        "runbook_backup_last_success_timestamp_seconds",
        "runbook_backup_size_bytes",
        "runbook_backup_duration_seconds",
    ):
        assert {(k, s) for (n, k, s) in got if n == name} == {("postgresql", "shop")}, name


def test_a_redis_snapshot_that_failed_is_named_by_its_failure():
    registered = {"redis": {"failed": True, "msg": "refused", "backup_set": {"kind": "redis", "source": "c:6379"}}}
    got = table(backup_metrics(registered, NOW, redis=True))
    assert got == {
        ("runbook_backup_last_run_timestamp_seconds", "redis", "c:6379"): NOW,
        ("runbook_backup_last_run_success", "redis", "c:6379"): 0,
    }


def test_a_redis_that_cannot_be_named_gets_no_row():
    assert backup_metrics({"redis": {"failed": True, "msg": "bad port"}}, NOW, redis=True) == []


def test_a_dr_set_written_by_a_run_that_failed_later_is_no_success():
    registered = {"dr": written_set("dr", "shop", 1)}
    got = table(backup_metrics(registered, NOW, dr_name="shop", started=NOW - 1, completed=False))
    assert got["runbook_backup_last_run_success", "dr", "shop"] == 0
    got = table(backup_metrics(registered, NOW, dr_name="shop", started=NOW - 1, completed=True))
    assert got["runbook_backup_last_run_success", "dr", "shop"] == 1


def test_check_mode_predicts_success_with_the_time_of_the_run_and_no_size_or_duration():
    registered = {
        "postgresql": {"results": [planned_set("postgresql", "shop", item="shop")]},
        "redis": planned_set("redis", "r:1"),
        "s3": {"results": [planned_set("s3", "receipts", item={"bucket": "receipts"})]},
        "dr": {"skipped": True},
    }
    got = table(
        backup_metrics(
            registered, NOW, databases=["shop"], buckets=["receipts"], redis=True, dr_name="shop",
            started=NOW - 9, completed=True, check_mode=True,
        )
    )  # fmt: skip
    sets = [("postgresql", "shop"), ("redis", "r:1"), ("s3", "receipts"), ("dr", "shop")]
    assert {(k, s): v for (n, k, s), v in got.items() if n == "runbook_backup_last_run_success"} == dict.fromkeys(
        sets, 1
    )
    assert {(k, s): v for (n, k, s), v in got.items() if n == "runbook_backup_last_success_timestamp_seconds"} == (
        dict.fromkeys(sets, NOW)
    )
    assert not any(n in ("runbook_backup_size_bytes", "runbook_backup_duration_seconds") for n, _k, _s in got)


def test_a_real_run_never_counts_a_plan_as_written():
    registered = {"postgresql": {"results": [planned_set("postgresql", "shop", item="shop")]}}
    got = table(backup_metrics(registered, NOW, databases=["shop"]))
    assert got["runbook_backup_last_run_success", "postgresql", "shop"] == 0


def test_skipped_and_missing_results_are_not_written_sets():
    registered = {"postgresql": {"skipped": True, "results": []}}
    got = table(backup_metrics(registered, NOW, databases=["shop"], buckets=["b"]))
    assert got["runbook_backup_last_run_success", "postgresql", "shop"] == 0
    assert got["runbook_backup_last_run_success", "s3", "b"] == 0


def test_nothing_to_back_up_gives_no_metric():
    assert backup_metrics({}, NOW) == []


def test_bad_input_fails_clearly():
    with pytest.raises(AnsibleFilterError, match="expected a dict of registered results"):
        backup_metrics([], NOW)
    with pytest.raises(AnsibleFilterError, match="now must be unix seconds"):
        backup_metrics({}, "soon")


# ---------------------------------------------------------------- health
def result(name, status, service="postgresql", tier="database"):
    return {"name": name, "host": "lab", "value": {"status": status, "host": "lab", "service": service, "tier": tier}}


def test_health_up_per_component_replacing_the_others_and_the_time_of_the_check():
    metrics = health_metrics(
        [result("postgresql", "ok"), result("ghost", "down", "http", "app"), result("redis", "error", None, None)],
        NOW + 0.12345,
    )
    specs(metrics)
    up, stamp = metrics
    assert up["name"] == "runbook_health_up" and up["replace"] is True
    assert up["samples"] == [
        {"labels": {"component": "postgresql", "service": "postgresql", "tier": "database"}, "value": 1},
        {"labels": {"component": "ghost", "service": "http", "tier": "app"}, "value": 0},
        {"labels": {"component": "redis"}, "value": 0},
    ]
    assert stamp["name"] == "runbook_health_check_timestamp_seconds"
    assert stamp["samples"] == [{"labels": {}, "value": round(NOW + 0.12345, 3)}]


def test_health_metrics_refuses_what_is_not_a_result_list():
    with pytest.raises(AnsibleFilterError, match="expected the list of component results"):
        health_metrics("postgresql", NOW)
    with pytest.raises(AnsibleFilterError, match="a result has no name"):
        health_metrics([{"value": {}}], NOW)


def test_the_filters_are_registered():
    assert set(FilterModule().filters()) == {"backup_metrics", "health_metrics"}
