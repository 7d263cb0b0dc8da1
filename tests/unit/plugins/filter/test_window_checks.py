# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The maintenance_window role's filters give what its former Jinja gave for the same input.

Every expected value below is what the role's Jinja (before the filters) produced for the same
registered results, rendered by ansible-core 2.21 (real failing loops for the rescue filters); key
order included, since the report is shown as JSON in that order.
"""

from __future__ import annotations

import json

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.stack.plugins.filter.window_checks import (
    FilterModule,
    window_failed_error,
    window_failed_records,
    window_postcheck,
    window_task_records,
)

DEFAULT_REGEX = r"(?i)\b(error|fatal|panic|traceback)\b"


def as_json(value) -> str:
    """JSON without sorting, so that a difference in key order fails the comparison."""
    return json.dumps(value)


# ---- maintenance tasks

PG_RESULTS = [
    {
        "item": "shop",
        "changed": True,
        "tasks": [{"name": "vacuum"}, {"name": "analyze"}],
        "statements": ["a", "b", "c"],
        "duration_s": 1.25,
    },
    {"item": "app", "changed": False, "tasks": [], "statements": [], "duration_s": 0},
]


def test_postgresql_records():
    assert as_json(window_task_records(PG_RESULTS, "postgresql_maintenance")) == as_json(
        [
            {
                "task": "postgresql_maintenance",
                "target": "shop",
                "changed": True,
                "summary": "vacuum, analyze: 3 statement(s) in 1.25 s",
            },
            {"task": "postgresql_maintenance", "target": "app", "changed": False, "summary": ": 0 statement(s) in 0 s"},
        ]
    )


def test_postgresql_records_in_check_mode():
    records = window_task_records(PG_RESULTS, "postgresql_maintenance", True)
    assert [r["summary"] for r in records] == [
        "vacuum, analyze: 3 statement(s) to run (check mode)",
        ": 0 statement(s) to run (check mode)",
    ]


def test_redis_records_default_to_delete():
    results = [
        {"item": {"pattern": "tmp:*", "action": "delete"}, "changed": True, "matched": 3, "affected": 3},
        {"item": {"pattern": "sess:*"}, "changed": False, "matched": 0, "affected": 0},
        {"item": {"pattern": "x:*", "action": "expire", "ttl": 60}, "changed": True, "matched": 5, "affected": 4},
    ]
    assert as_json(window_task_records(results, "redis_keys")) == as_json(
        [
            {
                "task": "redis_keys",
                "target": "tmp:*",
                "changed": True,
                "summary": "delete: 3 key(s) matched, 3 affected",
            },
            {
                "task": "redis_keys",
                "target": "sess:*",
                "changed": False,
                "summary": "delete: 0 key(s) matched, 0 affected",
            },
            {"task": "redis_keys", "target": "x:*", "changed": True, "summary": "expire: 5 key(s) matched, 4 affected"},
        ]
    )


def test_s3_records_with_and_without_prefix():
    results = [
        {
            "item": {"bucket": "b1", "prefix": "exports/", "older_than_days": 30},
            "changed": True,
            "matched": 10,
            "would_delete": 4,
            "deleted": 4,
        },
        {
            "item": {"bucket": "b2", "older_than_days": 0},
            "changed": False,
            "matched": 0,
            "would_delete": 0,
            "deleted": 0,
        },
    ]
    assert as_json(window_task_records(results, "s3_retention", False)) == as_json(
        [
            {
                "task": "s3_retention",
                "target": "b1/exports/",
                "changed": True,
                "summary": "4 of 10 object(s) older than 30 days, 4 deleted",
            },
            {
                "task": "s3_retention",
                "target": "b2/",
                "changed": False,
                "summary": "0 of 0 object(s) older than 0 days, 0 deleted",
            },
        ]
    )


def test_no_results_no_records():
    assert window_task_records([], "redis_keys") == []


@pytest.mark.parametrize(
    ("results", "task", "match"),
    [
        ([], "vacuum", "task must be one of"),
        ("x", "redis_keys", "results list"),
        ([{"item": {"pattern": "a"}, "changed": True}], "redis_keys", "lacks 'matched'"),
    ],
)
def test_task_records_bad_input_names_the_filter(results, task, match):
    with pytest.raises(AnsibleFilterError, match=f"window_task_records: .*{match}"):
        window_task_records(results, task)


# ---- a failed maintenance task (ansible_failed_result of real failing loops)

NOT_ZERO = "The command exited with a non-zero return code."
COMMAND_LOOP = {
    "failed": True,
    "msg": "One or more items failed",
    "results": [
        {"item": "shop", "changed": True, "failed": False, "rc": 0},
        {"item": {"pattern": "p:*"}, "changed": True, "failed": False, "rc": 0},
        {"item": {"pattern": "q:*", "skip": True}, "changed": False, "skipped": True},
        {"item": {"bucket": "bk", "rc": 3}, "changed": True, "failed": True, "rc": 3, "msg": NOT_ZERO},
        {"item": {"other": 1}, "changed": True, "failed": False, "rc": 0},
        {
            "item": {"pattern": "r:*", "rc": 1, "changed": False},
            "changed": False,
            "failed": True,
            "rc": 1,
            "msg": NOT_ZERO,
        },
    ],
}
NO_DIR = "cannot use flag_file /nonexistent/dir/{}: directory /nonexistent/dir does not exist"
MODULE_LOOP = {
    "failed": True,
    "msg": "One or more items failed",
    "results": [
        {"item": {"pattern": "p:*", "path": "/tmp/flagA"}, "changed": True},
        {"item": {"bucket": "bk", "path": "/nonexistent/dir/flag"}, "failed": True, "msg": NO_DIR.format("flag")},
        {"item": {"path": "/nonexistent/dir/flag2"}, "failed": True, "msg": NO_DIR.format("flag2")},
    ],
}


def test_failed_records_of_a_command_loop():
    assert as_json(window_failed_records(COMMAND_LOOP, "ansible.builtin.command")) == as_json(
        [
            {
                "task": "ansible.builtin.command",
                "target": "shop",
                "changed": True,
                "summary": "done before the task failed",
            },
            {
                "task": "ansible.builtin.command",
                "target": "p:*",
                "changed": True,
                "summary": "done before the task failed",
            },
            {
                "task": "ansible.builtin.command",
                "target": {"other": 1},
                "changed": True,
                "summary": "done before the task failed",
            },
        ]
    )


def test_failed_records_drop_the_collection_prefix():
    assert window_failed_records(MODULE_LOOP, "runbook.stack.maintenance_mode") == [
        {"task": "maintenance_mode", "target": "p:*", "changed": True, "summary": "done before the task failed"}
    ]


def test_failed_records_of_a_task_without_loop():
    assert window_failed_records({"failed": True, "msg": "boom single"}, "ansible.builtin.fail") == []


def test_failed_records_without_changed_are_not_changed():
    result = {"results": [{"item": "shop"}]}
    assert window_failed_records(result) == [
        {"task": "", "target": "shop", "changed": False, "summary": "done before the task failed"}
    ]


def test_failed_error_names_each_failed_item():
    assert window_failed_error(COMMAND_LOOP) == f"bk: {NOT_ZERO}; r:*: {NOT_ZERO}"
    assert window_failed_error(MODULE_LOOP) == (
        f"bk: {NO_DIR.format('flag')}; {{'path': '/nonexistent/dir/flag2'}}: {NO_DIR.format('flag2')}"
    )


def test_failed_error_of_the_integration_test_database():
    """The message test_maintenance_window.py looks for when a database does not exist."""
    result = {
        "results": [
            {"item": "shop", "changed": True},
            {"item": "rb_test_no_such_db", "failed": True, "msg": "database 'rb_test_no_such_db' does not exist"},
        ]
    }
    assert window_failed_error(result) == "rb_test_no_such_db: database 'rb_test_no_such_db' does not exist"


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"failed": True, "msg": NOT_ZERO}, NOT_ZERO),
        ({"failed": True, "msg": "boom single"}, "boom single"),
        ({"failed": True}, "unknown error"),
        ({"results": [{"item": "a", "failed": True}]}, "a: unknown error"),
        ({"results": [{"item": "a"}], "msg": "later task"}, "later task"),
    ],
)
def test_failed_error_without_failed_items(result, expected):
    assert window_failed_error(result) == expected


@pytest.mark.parametrize("func", [window_failed_records, window_failed_error])
def test_failed_bad_input_names_the_filter(func):
    with pytest.raises(AnsibleFilterError, match=func.__name__):
        func("not a result")
    with pytest.raises(AnsibleFilterError, match=func.__name__):
        func({"results": ["x"]})


# ---- post-checks


def read(path, rc=0, lines=(), stderr="", **log):
    """One result of the tail loop, looped over the stat results."""
    return {
        "item": {"item": {"path": path, **log}, "stat": {"size": 5}},
        "rc": rc,
        "stdout_lines": list(lines),
        "stderr": stderr,
        "changed": False,
    }


COMPONENTS = {
    "postgresql": {
        "status": "ok",
        "host": "localhost",
        "service": "postgresql",
        "connections": 7,
        "max_connections": 100,
        "connections_percent_used": 7.0,
    },
    "redis": {"status": "ok", "host": "localhost", "service": "redis", "hit_rate": 0.5},
    "redis2": {"status": "ok", "host": "localhost", "service": "redis", "hit_rate": None},
    "redis3": {"status": "ok", "host": "localhost", "service": "redis", "hit_rate": 0.95},
    "other/postgresql": {
        "status": "ok",
        "host": "other",
        "service": "postgresql",
        "connections": 99,
        "max_connections": 100,
        "connections_percent_used": 99.0,
    },
    "pgdown": {"status": "down", "host": "localhost", "service": "postgresql", "error": "x"},
    "app": {"status": "ok", "host": "localhost", "service": "http"},
}
REPORT = {"status": "unhealthy", "components": COMPONENTS}
NO_FILE = "tail: cannot open '/var/log/d.log' for reading: No such file"
READS = [
    read("/var/log/a.log", lines=["ok line", "  ERROR one  ", "Fatal two", "panic 3", "traceback 4"]),
    read("/var/log/b.log", lines=["ERROR x", "error y"], regex="ERROR", max_matches="2"),
    read("/var/log/c.log", lines=["nothing"], max_matches=0),
    read("/var/log/d.log", rc=1, stderr=NO_FILE + "\n"),
    read("/var/log/e.log", lines=["ERROR a", "ERROR b"], regex="ERROR", max_matches=1.7),
    read("/var/log/f.log", lines=[], max_matches="abc"),
]


def since(path, n, regex=DEFAULT_REGEX):
    return f"error log {path}: {n} line(s) matching '{regex}' since the window opened"


def test_postcheck_logs_metrics_and_failures():
    post = window_postcheck(
        REPORT,
        ["pgdown"],
        READS,
        "localhost",
        error_regex=DEFAULT_REGEX,
        error_max=0,
        redis_min_hit_rate=0.8,
        postgresql_max_connections_pct=80,
    )
    error_logs = [
        {
            "path": "/var/log/a.log",
            "ok": False,
            "matches": 4,
            "max_matches": 0,
            "regex": DEFAULT_REGEX,
            "sample": ["  ERROR one  ", "Fatal two", "panic 3"],
            "detail": since("/var/log/a.log", 4) + ", above max_matches 0 (first: ERROR one)",
        },
        {
            "path": "/var/log/b.log",
            "ok": True,
            "matches": 1,
            "max_matches": 2,
            "regex": "ERROR",
            "sample": ["ERROR x"],
            "detail": since("/var/log/b.log", 1, "ERROR") + ", at most 2",
        },
        {
            "path": "/var/log/c.log",
            "ok": True,
            "matches": 0,
            "max_matches": 0,
            "regex": DEFAULT_REGEX,
            "sample": [],
            "detail": since("/var/log/c.log", 0) + ", at most 0",
        },
        {
            "path": "/var/log/d.log",
            "ok": False,
            "matches": None,
            "max_matches": 0,
            "regex": DEFAULT_REGEX,
            "detail": f"error log /var/log/d.log: cannot read it ({NO_FILE})",
        },
        {
            "path": "/var/log/e.log",
            "ok": False,
            "matches": 2,
            "max_matches": 1,
            "regex": "ERROR",
            "sample": ["ERROR a", "ERROR b"],
            "detail": since("/var/log/e.log", 2, "ERROR") + ", above max_matches 1 (first: ERROR a)",
        },
        {
            "path": "/var/log/f.log",
            "ok": True,
            "matches": 0,
            "max_matches": 0,
            "regex": DEFAULT_REGEX,
            "sample": [],
            "detail": since("/var/log/f.log", 0) + ", at most 0",
        },
    ]
    metrics = [
        {
            "metric": "postgresql connections percent used",
            "component": "postgresql",
            "value": 7.0,
            "threshold": 80,
            "ok": True,
            "detail": "metric postgresql connections 7/100 (7.0%), at most maintenance_window_postgresql_max_connections_pct 80",
        },
        {
            "metric": "redis hit rate",
            "component": "redis",
            "value": 0.5,
            "threshold": 0.8,
            "ok": False,
            "detail": "metric redis hit rate 0.5 is below maintenance_window_redis_min_hit_rate 0.8",
        },
        {
            "metric": "redis hit rate",
            "component": "redis3",
            "value": 0.95,
            "threshold": 0.8,
            "ok": True,
            "detail": "metric redis3 hit rate 0.95, at least maintenance_window_redis_min_hit_rate 0.8",
        },
    ]
    assert as_json(post) == as_json(
        {
            "health": "unhealthy",
            "unhealthy": ["pgdown"],
            "error_logs": error_logs,
            "metrics": metrics,
            "failures": [
                "health: 1 component(s) not ok - pgdown",
                error_logs[0]["detail"],
                error_logs[3]["detail"],
                error_logs[4]["detail"],
                metrics[1]["detail"],
            ],
        }
    )


def test_postcheck_thresholds_keep_their_type_and_compare_as_numbers():
    post = window_postcheck(
        REPORT,
        ["pgdown", "x/y"],
        [],
        "localhost",
        error_regex=DEFAULT_REGEX,
        redis_min_hit_rate="0.5",
        postgresql_max_connections_pct=0.1,
    )
    assert post["error_logs"] == []
    assert as_json(post["metrics"]) == as_json(
        [
            {
                "metric": "postgresql connections percent used",
                "component": "postgresql",
                "value": 7.0,
                "threshold": 0.1,
                "ok": False,
                "detail": "metric postgresql connections 7/100 (7.0%) is above maintenance_window_postgresql_max_connections_pct 0.1",
            },
            {
                "metric": "redis hit rate",
                "component": "redis",
                "value": 0.5,
                "threshold": "0.5",
                "ok": True,
                "detail": "metric redis hit rate 0.5, at least maintenance_window_redis_min_hit_rate 0.5",
            },
            {
                "metric": "redis hit rate",
                "component": "redis3",
                "value": 0.95,
                "threshold": "0.5",
                "ok": True,
                "detail": "metric redis3 hit rate 0.95, at least maintenance_window_redis_min_hit_rate 0.5",
            },
        ]
    )
    assert post["failures"] == ["health: 2 component(s) not ok - pgdown, x/y", post["metrics"][0]["detail"]]


def test_postcheck_thresholds_of_zero_are_not_checked():
    post = window_postcheck(REPORT, ["pgdown"], [], "localhost", DEFAULT_REGEX, 0, 0, "0")
    assert post["metrics"] == [] and post["failures"] == ["health: 1 component(s) not ok - pgdown"]


def test_postcheck_healthy_window_has_no_failure():
    report = {"status": "healthy", "components": {k: v for k, v in COMPONENTS.items() if k not in ("pgdown", "redis")}}
    post = window_postcheck(report, [], [read("/l", lines=["fine"])], "localhost", DEFAULT_REGEX, 0, 0.8, 80)
    assert post["health"] == "healthy" and post["unhealthy"] == [] and post["failures"] == []
    assert [m["component"] for m in post["metrics"]] == ["postgresql", "redis3"]
    assert post["error_logs"][0]["matches"] == 0 and post["error_logs"][0]["ok"] is True


def test_postcheck_other_hosts_components_are_not_measured():
    post = window_postcheck(REPORT, [], [], "other", DEFAULT_REGEX, 0, 0.8, 80)
    assert [m["component"] for m in post["metrics"]] == ["other/postgresql"]
    assert post["metrics"][0]["ok"] is False and "99/100 (99.0%) is above" in post["failures"][0]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (({"status": "healthy"}, [], [], "h", DEFAULT_REGEX), "health_check_report"),
        ((REPORT, "pgdown", [], "h", DEFAULT_REGEX), "unhealthy must be a list"),
        ((REPORT, [], [read("/l", lines=["x"])], "h", "("), "bad error log regex"),
        ((REPORT, [], [{"rc": 0}], "h", DEFAULT_REGEX), "lacks"),
    ],
)
def test_postcheck_bad_input_names_the_filter(args, match):
    with pytest.raises(AnsibleFilterError, match=f"window_postcheck: .*{match}"):
        window_postcheck(*args)


def test_registered_under_their_names():
    filters = FilterModule().filters()
    assert filters == {
        "window_task_records": window_task_records,
        "window_failed_records": window_failed_records,
        "window_failed_error": window_failed_error,
        "window_postcheck": window_postcheck,
    }


def test_postcheck_thresholds_are_inclusive():
    """A hit rate equal to the minimum and a connection share equal to the maximum are ok."""
    report = {
        "status": "healthy",
        "components": {
            "db": {
                "status": "ok",
                "host": "h",
                "service": "postgresql",
                "connections": 80,
                "max_connections": 100,
                "connections_percent_used": 80.0,
            },
            "cache": {"status": "ok", "host": "h", "service": "redis", "hit_rate": 0.8},
        },
    }
    post = window_postcheck(report, [], [], "h", DEFAULT_REGEX, 0, 0.8, "80")
    assert [(m["component"], m["ok"]) for m in post["metrics"]] == [("db", True), ("cache", True)]
    assert (
        post["metrics"][0]["detail"]
        == "metric db connections 80/100 (80.0%), at most maintenance_window_postgresql_max_connections_pct 80"
    )


def test_postcheck_max_matches_is_read_like_jinja_int():
    """A string with a fraction is truncated ('1.5' is 1), as Jinja's int filter does."""
    post = window_postcheck(
        REPORT, [], [read("/l", lines=["ERROR a", "ERROR b"], regex="ERROR", max_matches="1.5")], "h", DEFAULT_REGEX
    )
    assert post["error_logs"][0]["max_matches"] == 1 and post["error_logs"][0]["ok"] is False


def test_failed_target_prefers_the_pattern_over_the_bucket():
    result = {"results": [{"item": {"bucket": "bk", "pattern": "p:*"}, "failed": True, "msg": "no"}]}
    assert window_failed_error(result) == "p:*: no"
    assert window_failed_records({"results": [{"item": {"bucket": "bk", "pattern": "p:*"}}]})[0]["target"] == "p:*"
