"""playbooks/maintenance_window.yml on the lab (roles maintenance_window, preflight, health_check).

The real runs use maintenance signals of their own (a flag file under tmp_path and a Redis key
``rb-test-mw:<id>:maintenance``): the lab's flag and key belong to whichever test runs a shutdown
or a startup at the same time. Check mode runs with the lab's own signals, tagged by a reason
unique to the run, and shows that neither was written.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from conftest import ROOT, fresh_backup, lab_seed, pg_query, run_on_running_lab, run_playbook, task_json

pytestmark = [pytest.mark.playbook, pytest.mark.destructive]

PLAYBOOK = "maintenance_window.yml"
LAB_FLAG = ROOT / ".lab" / "app" / "maintenance.flag"
BUCKET = "shop-receipts"
LAST_RUN = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture(scope="module")
def env(lab, tmp_path_factory) -> dict[str, Any]:
    """The seeded lab, a fresh backup of the shop database, and clients for checking state."""
    lab_seed()
    root = tmp_path_factory.mktemp("window-backups")
    fresh_backup(lab, root)
    r = lab["redis"]
    s3 = lab["s3"]
    return {
        "lab": lab,
        "backup_root": root,
        "redis": redis.Redis(host=r["login_host"], port=r["login_port"], password=r["login_password"]),
        "s3": boto3.client(
            "s3",
            endpoint_url=s3["endpoint_url"],
            aws_access_key_id=s3["access_key"],
            aws_secret_access_key=s3["secret_key"],
            region_name=s3["region"],
        ),
    }


@pytest.fixture
def window(env, tmp_path):
    """Test data under a unique prefix (Redis keys, S3 objects) and this test's maintenance signals."""
    tag = f"rb-test-mw:{uuid.uuid4().hex[:8]}"
    prefix = tag.replace(":", "-") + "/"
    w = {
        **env,
        "tag": tag,
        "prefix": prefix,
        "flag": tmp_path / "maintenance.flag",
        "key": f"{tag}:maintenance",
        "tmp_keys": [f"{tag}:tmp:{i}" for i in range(3)],
        "keep_key": f"{tag}:keep",
        "objects": [f"{prefix}export-{i}.json" for i in range(2)],
        "log": tmp_path / "app-errors.log",
    }
    for k in [*w["tmp_keys"], w["keep_key"]]:
        env["redis"].set(k, "x")
    for key in w["objects"]:
        env["s3"].put_object(Bucket=BUCKET, Key=key, Body=b"{}")
    w["log"].write_text("".join(f"2026-01-01 ERROR old failure {i}\n" for i in range(20)))
    yield w
    env["redis"].delete(*w["tmp_keys"], w["keep_key"], w["key"])
    for key in w["objects"]:
        env["s3"].delete_object(Bucket=BUCKET, Key=key)
    w["flag"].unlink(missing_ok=True)


def extra_vars(w: dict[str, Any], lab_signals: bool = False, **over: Any) -> Path:
    """Extra vars of a run: this test's data, signals and backup; ``over`` replaces any of them."""
    doc = {
        "maintenance_window_backup_root": str(w["backup_root"]),
        "maintenance_window_backup_sources": [{"kind": "postgresql", "source": "shop"}],
        "maintenance_window_reason": f"{w['tag']} test window",
        "maintenance_window_databases": ["shop"],
        "maintenance_window_redis_patterns": [{"pattern": f"{w['tag']}:tmp:*", "action": "delete"}],
        "maintenance_window_s3_retention": [{"bucket": BUCKET, "prefix": w["prefix"], "older_than_days": 0}],
        "maintenance_window_error_logs": [{"path": str(w["log"]), "regex": "ERROR", "max_matches": 0}],
        **(
            {}
            if lab_signals
            else {"maintenance_window_maintenance": {"flag_file": str(w["flag"]), "redis_key": w["key"]}}
        ),
        **over,
    }
    path = w["log"].parent / f"window-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(doc))
    return path


def report(run, failed: bool = False) -> dict[str, Any]:
    title = "Show the report of the failed window" if failed else "Show the report, maintenance"
    return task_json(run, title)["maintenance_window_report"]


def last_maintenance(lab) -> tuple[Any, Any]:
    rows = pg_query(lab, "SELECT max(last_vacuum), max(last_analyze) FROM pg_stat_user_tables", dbname="shop")
    return rows[0]


def s3_keys(w) -> list[str]:
    listing = w["s3"].list_objects_v2(Bucket=BUCKET, Prefix=w["prefix"])
    return sorted(o["Key"] for o in listing.get("Contents", []))


class Watch(threading.Thread):
    """Runs ``step`` every 0.2 s until stopped (in the background of a playbook run)."""

    def __init__(self, step) -> None:
        super().__init__(daemon=True)
        self.step = step
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.2):
            self.step()

    def __enter__(self) -> Watch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        self.join()


def ours(raw: bytes | str | None, tag: str) -> bool:
    """Whether a maintenance signal's JSON content carries this test's reason."""
    if not raw:
        return False
    try:
        return tag in json.loads(raw).get("reason", "")
    except ValueError:
        return False


def test_check_mode_changes_nothing(window):
    w = window
    before = last_maintenance(w["lab"])
    run = run_on_running_lab(PLAYBOOK, "--check", "-e", f"@{extra_vars(w, lab_signals=True)}")
    assert run.rc == 0, run
    rep = report(run)
    assert rep["status"] == "completed" and rep["check_mode"] is True
    assert rep["phases"] == ["precheck", "maintenance_on", "tasks", "postcheck", "maintenance_off"]
    by_task = {t["task"]: t for t in rep["tasks"]}
    assert "to run (check mode)" in by_task["postgresql_maintenance"]["summary"]
    assert by_task["redis_keys"]["summary"] == "delete: 3 key(s) matched, 0 affected"
    assert by_task["s3_retention"]["summary"].startswith("2 of 2 object(s) older than 0")
    # nothing was written: the lab's maintenance signals carry no flag of this run, data is all there
    flag = LAB_FLAG.read_text() if LAB_FLAG.exists() else None
    assert not ours(flag, w["tag"]), "check mode wrote the lab's maintenance flag file"
    assert not ours(w["redis"].get("maintenance"), w["tag"]), "check mode wrote the lab's maintenance key"
    assert all(w["redis"].exists(k) for k in w["tmp_keys"]), "check mode deleted Redis keys"
    assert s3_keys(w) == w["objects"], "check mode deleted S3 objects"
    after = last_maintenance(w["lab"])
    assert after[0] is None or (before[0] is not None and after[0] <= before[0]), "check mode ran VACUUM"


def test_full_window_does_every_task_and_ends_with_maintenance_off(window):
    w = window
    started = dt.datetime.now(dt.timezone.utc)
    seen_on = []
    with Watch(lambda: seen_on.append(w["flag"].exists() and w["redis"].exists(w["key"]) == 1)):
        run = run_on_running_lab(PLAYBOOK, "-e", f"@{extra_vars(w)}")
    assert run.rc == 0, run
    assert any(seen_on), "maintenance was never on during the window"
    assert not w["flag"].exists() and not w["redis"].exists(w["key"]), "maintenance still on after the window"
    rep = report(run)
    assert rep["status"] == "completed" and rep["maintenance"] == "off" and rep["failed"] is None
    assert rep["phases"] == ["precheck", "maintenance_on", "tasks", "postcheck", "maintenance_off"]
    assert LAST_RUN.match(rep["started"]) and LAST_RUN.match(rep["finished"])
    by_task = {t["task"]: t for t in rep["tasks"]}
    assert set(by_task) == {"postgresql_maintenance", "redis_keys", "s3_retention"}
    assert all(t["changed"] for t in rep["tasks"])
    assert by_task["postgresql_maintenance"]["target"] == "shop"
    assert by_task["postgresql_maintenance"]["summary"].startswith("vacuum, analyze, reindex: ")
    assert by_task["redis_keys"]["summary"] == "delete: 3 key(s) matched, 3 affected"
    assert by_task["s3_retention"]["summary"] == "2 of 2 object(s) older than 0 days, 2 deleted"
    # the state behind the report
    assert not any(w["redis"].exists(k) for k in w["tmp_keys"]) and w["redis"].exists(w["keep_key"])
    assert s3_keys(w) == []
    last_vacuum, last_analyze = last_maintenance(w["lab"])
    assert last_vacuum is not None and last_vacuum >= started - dt.timedelta(seconds=2), last_vacuum
    assert last_analyze >= started - dt.timedelta(seconds=2)
    # post-checks: every component healthy; the 20 error lines from before the window are not counted
    post = rep["postcheck"]
    assert post["health"] == "healthy" and post["failures"] == []
    assert post["error_logs"][0]["matches"] == 0, post["error_logs"]
    assert [m["metric"] for m in post["metrics"]] == ["postgresql connections percent used"]


def test_failing_task_leaves_maintenance_on_and_the_off_tag_ends_it(window):
    w = window
    vars_file = extra_vars(w, maintenance_window_databases=["shop", "rb_test_no_such_db"])
    run = run_on_running_lab(PLAYBOOK, "-e", f"@{vars_file}")
    assert run.rc != 0, run
    assert (
        "failed in maintenance tasks, task 'VACUUM, ANALYZE and REINDEX each database': "
        "rb_test_no_such_db: database 'rb_test_no_such_db' does not exist"
    ) in run.out, run
    assert "Maintenance is still ON" in run.out and "--tags maintenance_window_off" in run.out
    assert w["flag"].exists() and w["redis"].exists(w["key"]), "maintenance must stay on after a failed task"
    assert ours(w["flag"].read_text(), w["tag"])
    rep = report(run, failed=True)
    assert rep["status"] == "failed" and rep["maintenance"] == "on"
    assert rep["failed"]["phase"] == "maintenance tasks"
    assert rep["failed"]["task"] == "VACUUM, ANALYZE and REINDEX each database"
    assert rep["tasks"] == [
        {"task": "postgresql_maintenance", "target": "shop", "changed": True, "summary": "done before the task failed"}
    ]
    assert "postcheck" not in rep["phases"], "nothing after the failed task ran"
    assert all(w["redis"].exists(k) for k in w["tmp_keys"]), "the tasks after the failed one ran"
    # the operator ends the window without the rest
    off = run_playbook(PLAYBOOK, "-e", f"@{vars_file}", "--tags", "maintenance_window_off")
    assert off.rc == 0, off
    assert not w["flag"].exists() and not w["redis"].exists(w["key"])
    assert all(w["redis"].exists(k) for k in w["tmp_keys"]), "--tags maintenance_window_off ran the tasks"


def test_failed_post_checks_leave_maintenance_on_and_list_every_failure(window):
    w = window
    vars_file = extra_vars(
        w,
        maintenance_window_databases=[],
        maintenance_window_redis_patterns=[],
        maintenance_window_s3_retention=[],
        maintenance_window_postgresql_max_connections_pct=0.1,
    )

    def log_error() -> None:
        with w["log"].open("a") as log:
            log.write(f"{time.time():.1f} ERROR during the window\n")

    with Watch(log_error):
        run = run_on_running_lab(PLAYBOOK, "-e", f"@{vars_file}")
    assert run.rc != 0, run
    rep = report(run, failed=True)
    assert rep["status"] == "failed" and rep["failed"]["phase"] == "post-checks" and rep["maintenance"] == "on"
    assert rep["tasks"] == [], "every task list was empty: nothing ran"
    failures = rep["postcheck"]["failures"]
    assert len(failures) == 2, failures
    assert re.match(
        rf"error log {re.escape(str(w['log']))}: \d+ line\(s\) matching 'ERROR' since the window opened, "
        r"above max_matches 0 \(first: [\d.]+ ERROR during the window\)",
        failures[0],
    ), failures[0]
    assert re.match(
        r"metric postgresql connections \d+/\d+ \([\d.]+%\) is above maintenance_window_postgresql_max_connections_pct 0.1",
        failures[1],
    ), failures[1]
    matched = rep["postcheck"]["error_logs"][0]["matches"]
    assert 0 < matched < w["log"].read_text().count("ERROR") - 20 + 1, "only the lines of the window count"
    assert w["flag"].exists() and w["redis"].exists(w["key"]), "maintenance must stay on after failed post-checks"
    assert "failed in post-checks" in run.out and "Maintenance is still ON" in run.out


def test_missing_fresh_backup_stops_before_anything_changes(window, tmp_path):
    w = window
    empty = tmp_path / "no-backups"
    empty.mkdir()
    run = run_on_running_lab(PLAYBOOK, "-e", f"@{extra_vars(w, maintenance_window_backup_root=str(empty))}")
    assert run.rc != 0, run
    assert f"backup postgresql/shop under {empty}: no valid backup set" in run.out, run
    assert "failed in pre-checklist" in run.out and "This run changed nothing" in run.out
    rep = report(run, failed=True)
    assert rep["failed"]["phase"] == "pre-checklist" and rep["maintenance"] == "unchanged"
    assert not w["flag"].exists() and not w["redis"].exists(w["key"])
    assert all(w["redis"].exists(k) for k in w["tmp_keys"]) and s3_keys(w) == w["objects"]
    assert run.changed() == 0
