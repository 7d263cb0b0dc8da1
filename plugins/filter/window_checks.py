# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the maintenance_window role: what the maintenance tasks did, and the post-checks.

``window_task_records`` turns a maintenance task's loop results into report records;
``window_failed_records`` and ``window_failed_error`` say what a failed loop did and why it failed;
``window_postcheck`` judges the error logs read since the window opened and the health report's
metrics against their thresholds. All are pure: the role passes the data in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

TASKS = ("postgresql_maintenance", "redis_keys", "s3_retention")


def _as_int(value: Any, default: int = 0) -> int:
    """Jinja's ``int`` filter: int, else int of a float, else ``default``."""
    try:
        if isinstance(value, str):
            return int(value, 10)
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            return default


def _as_float(value: Any, default: float = 0.0) -> float:
    """Jinja's ``float`` filter: float, else ``default``."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _results_of(name: str, results: Any) -> list[Mapping[str, Any]]:
    if not isinstance(results, Sequence) or isinstance(results, (str, bytes)):
        raise AnsibleFilterError(f"{name}: expected the results list of a loop, got {results!r}")
    for result in results:
        if not isinstance(result, Mapping):
            raise AnsibleFilterError(f"{name}: expected a registered result, got {result!r}")
    return list(results)


def _target(item: Any) -> Any:
    """What a loop item names: a Redis pattern, else an S3 bucket, else the item (a database)."""
    if isinstance(item, Mapping):
        return item.get("pattern", item.get("bucket", item))
    return item


# ---- maintenance tasks


def _postgresql_record(result: Mapping[str, Any], check_mode: bool) -> dict[str, Any]:
    names = ", ".join(str(task["name"]) for task in result["tasks"])
    summary = f"{names}: {len(result['statements'])} statement(s)"
    summary += " to run (check mode)" if check_mode else f" in {result['duration_s']} s"
    return {
        "task": "postgresql_maintenance",
        "target": result["item"],
        "changed": result["changed"],
        "summary": summary,
    }


def _redis_record(result: Mapping[str, Any], check_mode: bool) -> dict[str, Any]:
    item = result["item"]
    summary = f"{item.get('action', 'delete')}: {result['matched']} key(s) matched, {result['affected']} affected"
    return {"task": "redis_keys", "target": item["pattern"], "changed": result["changed"], "summary": summary}


def _s3_record(result: Mapping[str, Any], check_mode: bool) -> dict[str, Any]:
    item = result["item"]
    summary = (
        f"{result['would_delete']} of {result['matched']} object(s) older than {item['older_than_days']} days, "
        f"{result['deleted']} deleted"
    )
    return {
        "task": "s3_retention",
        "target": f"{item['bucket']}/{item.get('prefix', '')}",
        "changed": result["changed"],
        "summary": summary,
    }


_RECORDS: dict[str, Callable[[Mapping[str, Any], bool], dict[str, Any]]] = {
    "postgresql_maintenance": _postgresql_record,
    "redis_keys": _redis_record,
    "s3_retention": _s3_record,
}


def window_task_records(results: Any, task: str, check_mode: bool = False) -> list[dict[str, Any]]:
    """One report record ({task, target, changed, summary}) per item of a maintenance task's loop."""
    if task not in _RECORDS:
        raise AnsibleFilterError(f"window_task_records: task must be one of {', '.join(TASKS)}, got {task!r}")
    record = _RECORDS[task]
    try:
        return [record(result, bool(check_mode)) for result in _results_of("window_task_records", results)]
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError(f"window_task_records: a result of {task} lacks {exc}") from exc


def window_failed_records(failed_result: Any, action: str = "") -> list[dict[str, Any]]:
    """The records of the items a failed loop ran before it failed (neither failed nor skipped)."""
    if not isinstance(failed_result, Mapping):
        raise AnsibleFilterError(f"window_failed_records: expected ansible_failed_result, got {failed_result!r}")
    task = re.sub(r"^runbook[.]stack[.]", "", str(action or ""))
    return [
        {
            "task": task,
            "target": _target(r.get("item")),
            "changed": r.get("changed", False),
            "summary": "done before the task failed",
        }
        for r in _results_of("window_failed_records", failed_result.get("results", []))
        if not r.get("failed", False) and not r.get("skipped", False)
    ]


def window_failed_error(failed_result: Any) -> Any:
    """Why a task failed: each failed loop item (``<target>: <msg>``, ``; ``-joined), else its msg."""
    if not isinstance(failed_result, Mapping):
        raise AnsibleFilterError(f"window_failed_error: expected ansible_failed_result, got {failed_result!r}")
    items = [
        f"{_target(r.get('item'))}: {r.get('msg', 'unknown error')}"
        for r in _results_of("window_failed_error", failed_result.get("results", []))
        if r.get("failed", False)
    ]
    return "; ".join(items) if items else failed_result.get("msg", "unknown error")


# ---- post-checks


def log_checks(reads: Sequence[Mapping[str, Any]], error_regex: str, error_max: Any) -> list[dict[str, Any]]:
    """One check per error log read since the window opened (``tail`` results looped over stat results)."""
    checks = []
    for read in reads:
        log = read["item"]["item"]
        path = log["path"]
        regex = log.get("regex", error_regex)
        limit = _as_int(log.get("max_matches", error_max))
        if read.get("rc") != 0:
            detail = f"error log {path}: cannot read it ({str(read.get('stderr', '')).strip()})"
            checks.append(
                {"path": path, "ok": False, "matches": None, "max_matches": limit, "regex": regex, "detail": detail}
            )
            continue
        pattern = re.compile(regex)
        hits = [
            line for line in read.get("stdout_lines", []) if pattern.search(to_text(line, errors="surrogate_or_strict"))
        ]
        ok = len(hits) <= limit
        detail = f"error log {path}: {len(hits)} line(s) matching '{regex}' since the window opened"
        if ok:
            detail += f", at most {limit}"
        else:
            first = str(hits[0]).strip() if hits else ""
            detail += f", above max_matches {limit} (first: {first})"
        checks.append(
            {
                "path": path,
                "ok": ok,
                "matches": len(hits),
                "max_matches": limit,
                "regex": regex,
                "sample": hits[:3],
                "detail": detail,
            }
        )
    return checks


def metric_checks(
    report: Mapping[str, Any], host: str, redis_min_hit_rate: Any, postgresql_max_connections_pct: Any
) -> list[dict[str, Any]]:
    """Threshold checks of this host's ok components in the health report (a threshold 0 is not checked)."""
    checks = []
    min_hit_rate = _as_float(redis_min_hit_rate)
    max_pct = _as_float(postgresql_max_connections_pct)
    for name, comp in report["components"].items():
        if comp.get("host") != host or comp.get("status") != "ok":
            continue
        service = comp.get("service")
        if service == "redis" and min_hit_rate > 0 and comp.get("hit_rate") is not None:
            ok = _as_float(comp["hit_rate"]) >= min_hit_rate
            detail = (
                f"metric {name} hit rate {comp['hit_rate']}{', at least' if ok else ' is below'}"
                f" maintenance_window_redis_min_hit_rate {redis_min_hit_rate}"
            )
            checks.append(
                {
                    "metric": "redis hit rate",
                    "component": name,
                    "value": comp["hit_rate"],
                    "threshold": redis_min_hit_rate,
                    "ok": ok,
                    "detail": detail,
                }
            )
        elif service == "postgresql" and max_pct > 0:
            used = comp["connections_percent_used"]
            ok = _as_float(used) <= max_pct
            detail = (
                f"metric {name} connections {comp['connections']}/{comp['max_connections']} ({used}%)"
                f"{', at most' if ok else ' is above'} maintenance_window_postgresql_max_connections_pct {postgresql_max_connections_pct}"
            )
            checks.append(
                {
                    "metric": "postgresql connections percent used",
                    "component": name,
                    "value": used,
                    "threshold": postgresql_max_connections_pct,
                    "ok": ok,
                    "detail": detail,
                }
            )
    return checks


def postcheck_failures(
    unhealthy: Sequence[str], logs: Sequence[Mapping[str, Any]], metrics: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Every failed post-check as one line: health first, then the logs, then the metrics."""
    failures = (
        [f"health: {len(unhealthy)} component(s) not ok - {', '.join(str(n) for n in unhealthy)}"] if unhealthy else []
    )
    failures += [check["detail"] for check in logs if not check["ok"]]
    failures += [check["detail"] for check in metrics if not check["ok"]]
    return failures


def window_postcheck(
    health_report: Any,
    unhealthy: Any,
    log_reads: Any,
    host: str,
    error_regex: str,
    error_max: Any = 0,
    redis_min_hit_rate: Any = 0,
    postgresql_max_connections_pct: Any = 0,
) -> dict[str, Any]:
    """The post-check section of maintenance_window_report: {health, unhealthy, error_logs, metrics, failures}."""
    if not isinstance(health_report, Mapping) or not isinstance(health_report.get("components"), Mapping):
        raise AnsibleFilterError(f"window_postcheck: expected health_check_report, got {health_report!r}")
    if not isinstance(unhealthy, Sequence) or isinstance(unhealthy, (str, bytes)):
        raise AnsibleFilterError(f"window_postcheck: unhealthy must be a list of component names, got {unhealthy!r}")
    reads = _results_of("window_postcheck", log_reads)
    try:
        logs = log_checks(reads, error_regex, error_max)
        metrics = metric_checks(health_report, host, redis_min_hit_rate, postgresql_max_connections_pct)
    except re.error as exc:
        raise AnsibleFilterError(f"window_postcheck: bad error log regex: {exc}") from exc
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError(f"window_postcheck: a log read or a component lacks {exc}") from exc
    return {
        "health": health_report.get("status"),
        "unhealthy": list(unhealthy),
        "error_logs": logs,
        "metrics": metrics,
        "failures": postcheck_failures(unhealthy, logs, metrics),
    }


class FilterModule:
    """runbook.stack filters of the maintenance_window role."""

    def filters(self):
        return {
            "window_task_records": window_task_records,
            "window_failed_records": window_failed_records,
            "window_failed_error": window_failed_error,
            "window_postcheck": window_postcheck,
        }
