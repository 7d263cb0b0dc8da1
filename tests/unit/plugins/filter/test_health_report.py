# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health_check role's filters give what its former Jinja gave for the same input.

Every expected value below is what the role's Jinja (before the filters) produced for the same
hostvars or results, rendered by ansible-core 2.21; key order included, since the report is shown
and written as JSON in that order.
"""

from __future__ import annotations

import json

import pytest
from ansible.errors import AnsibleFilterError
from jinja2 import StrictUndefined

from ansible_collections.runbook.stack.plugins.filter.health_report import FilterModule, health_report, health_s3_facts

ERR = "failed or was unreachable before its check"
T = "2026-12-06T06:30:22Z"


def ok(name, host, **facts):
    return {"name": name, "host": host, "value": {"status": "ok", "host": host, "service": None, "tier": None, **facts}}


def as_json(value) -> str:
    """JSON without sorting, so that a difference in key order fails the comparison."""
    return json.dumps(value)


def test_failed_host_unreachable_duplicates_keyed_by_host_and_empty_hosts():
    hostvars = {
        "h1": {"health_check__results": [ok("postgresql", "h1", version="15"), ok("redis", "h1")]},
        "h2": {
            "health_check_components": [{"name": "app", "service": "http", "tier": "app"}],
            "health_check__results": [
                ok("app", "h2"),
                {"name": "redis", "host": "h2", "value": {"status": "error", "host": "h2", "error": "no"}},
            ],
        },
        # failed before its check: its declared components are unreachable, whatever it recorded
        "h3": {
            "runbook_components": [
                {"name": "s3", "service": "s3", "tier": "storage"},
                {"name": "app", "tier": "app"},
                {"name": "solo"},
            ],
            "health_check__results": [ok("ignored", "h3")],
        },
        "h4": {"health_check__results": []},
        "h5": {},
    }
    report = health_report(hostvars, ["h1", "h2", "h3", "h4", "h5"], ["h1", "h2", "h4", "h5"], T)
    assert as_json(report) == as_json(
        {
            "status": "unhealthy",
            "timestamp": T,
            "components": {
                "postgresql": {"status": "ok", "host": "h1", "service": None, "tier": None, "version": "15"},
                "h1/redis": {"status": "ok", "host": "h1", "service": None, "tier": None},
                "h2/app": {"status": "ok", "host": "h2", "service": None, "tier": None},
                "h2/redis": {"status": "error", "host": "h2", "error": "no"},
                "s3": {
                    "status": "unreachable",
                    "host": "h3",
                    "service": "s3",
                    "tier": "storage",
                    "error": f"host h3 {ERR}",
                },
                "h3/app": {
                    "status": "unreachable",
                    "host": "h3",
                    "service": None,
                    "tier": "app",
                    "error": f"host h3 {ERR}",
                },
                "solo": {
                    "status": "unreachable",
                    "host": "h3",
                    "service": None,
                    "tier": None,
                    "error": f"host h3 {ERR}",
                },
            },
            "hosts_without_components": ["h4", "h5"],
        }
    )


def test_every_component_ok_is_healthy_without_hosts_without_components():
    hostvars = {
        "h1": {"health_check__results": [ok("postgresql", "h1"), ok("redis", "h1")]},
        "h2": {"health_check__results": [ok("app", "h2")]},
    }
    report = health_report(hostvars, ["h1", "h2"], ["h1", "h2"], T)
    assert as_json(report) == as_json(
        {
            "status": "healthy",
            "timestamp": T,
            "components": {
                "postgresql": {"status": "ok", "host": "h1", "service": None, "tier": None},
                "redis": {"status": "ok", "host": "h1", "service": None, "tier": None},
                "app": {"status": "ok", "host": "h2", "service": None, "tier": None},
            },
        }
    )


def test_health_check_components_win_over_runbook_components_of_a_failed_host():
    hostvars = {
        "h1": {"health_check__results": [ok("app", "h1")]},
        "h2": {
            "health_check_components": [{"name": "app", "service": "http", "tier": "app"}],
            "runbook_components": [{"name": "x"}],
        },
    }
    report = health_report(hostvars, ["h1", "h2"], ["h1"], T)
    assert list(report["components"]) == ["h1/app", "h2/app"]
    assert report["components"]["h2/app"] == {
        "status": "unreachable",
        "host": "h2",
        "service": "http",
        "tier": "app",
        "error": f"host h2 {ERR}",
    }
    assert report["status"] == "unhealthy" and "hosts_without_components" not in report


def test_undefined_components_count_as_none():
    """A components variable whose template is undefined is Jinja's default: the next one, else []."""
    hostvars = {"h1": {"health_check__results": [ok("app", "h1")]}, "h6": {"runbook_components": StrictUndefined()}}
    report = health_report(hostvars, ["h1", "h6"], ["h1"], T)
    assert report["components"] == {"app": {"status": "ok", "host": "h1", "service": None, "tier": None}}
    assert report["status"] == "unhealthy" and report["hosts_without_components"] == ["h6"]


def test_a_name_twice_on_one_host_is_keyed_by_host_and_the_last_wins():
    hostvars = {"h1": {"health_check__results": [ok("a", "h1", n=1), ok("a", "h1", n=2), ok("b", "h1")]}}
    report = health_report(hostvars, ["h1"], ["h1"], T)
    assert list(report["components"]) == ["h1/a", "b"]
    assert report["components"]["h1/a"]["n"] == 2 and report["status"] == "healthy"


def test_one_component_down_makes_it_unhealthy():
    down = {"name": "app", "host": "h1", "value": {"status": "down", "host": "h1"}}
    report = health_report({"h1": {"health_check__results": [ok("db", "h1"), down]}}, ["h1"], ["h1"], T)
    assert report["status"] == "unhealthy"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("not hostvars", ["h1"], ["h1"], T), "hostvars"),
        (({"h1": {}}, "h1", ["h1"], T), "hosts_all"),
        (({"h1": {"runbook_components": "app"}}, ["h1"], [], T), "must be a list"),
        (({"h1": {"runbook_components": [{"service": "http"}]}}, ["h1"], [], T), "has no name"),
        (({"h1": {"health_check__results": [{"host": "h1"}]}}, ["h1"], ["h1"], T), "malformed"),
    ],
)
def test_bad_input_names_the_filter(args, match):
    with pytest.raises(AnsibleFilterError, match=f"health_report: .*{match}"):
        health_report(*args)


B = "health_check__bucket"


def reading(bucket, **kw):
    return {B: bucket, "ansible_loop_var": B, **kw}


def test_s3_facts_of_mixed_readings():
    results = [
        reading("a", healthy=True, endpoint="http://x:1", bucket_exists=True, listable=True),
        reading(
            "b",
            healthy=False,
            endpoint="http://x:1",
            bucket_exists=False,
            listable=False,
            error="bucket b does not exist",
        ),
        reading("c", failed=True, msg="access denied"),
        reading("d", healthy=False, error=None),
        reading("e", healthy=False),
        reading("f", healthy=True),
    ]
    assert as_json(health_s3_facts(results)) == as_json(
        {
            "endpoint": "http://x:1",
            "buckets": {
                "a": {"exists": True, "listable": True},
                "b": {"exists": False, "listable": False},
                "d": {"exists": None, "listable": None},
                "e": {"exists": None, "listable": None},
                "f": {"exists": None, "listable": None},
            },
            "error": "bucket b does not exist; access denied; None; no answer",
        }
    )


def test_s3_facts_of_the_endpoint_only_reading():
    results = [reading("", healthy=True, endpoint="http://x:1", reachable=True)]
    assert as_json(health_s3_facts(results)) == as_json({"endpoint": "http://x:1", "buckets": {}})


def test_s3_facts_of_a_failed_endpoint_reading():
    results = [reading("", failed=True, endpoint="http://127.0.0.1:9", msg="connection refused")]
    assert health_s3_facts(results) == {"endpoint": "http://127.0.0.1:9", "buckets": {}, "error": "connection refused"}


def test_s3_facts_with_the_default_loop_var():
    results = [{"item": "a", "healthy": False, "bucket_exists": False, "listable": False, "error": "gone"}]
    assert health_s3_facts(results) == {
        "endpoint": None,
        "buckets": {"a": {"exists": False, "listable": False}},
        "error": "gone",
    }


@pytest.mark.parametrize("bad", [None, "results", [1]])
def test_s3_facts_bad_input_names_the_filter(bad):
    with pytest.raises(AnsibleFilterError, match="health_s3_facts"):
        health_s3_facts(bad)


def test_registered_under_their_names():
    filters = FilterModule().filters()
    assert filters["health_report"] is health_report and filters["health_s3_facts"] is health_s3_facts
