# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn a role's results into the ``metrics`` of ``runbook.stack.metrics_textfile``.

``runbook.stack.backup_metrics``: the backup role's registered results into one row of samples per
backup set (``kind``, ``source``); ``runbook.stack.health_metrics``: the health_check role's results
into ``runbook_health_up`` per component. Both are pure: the role passes the data in (and the time),
they return plain lists.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError

BACKUP_HELP = {
    "runbook_backup_last_success_timestamp_seconds": (
        "Unix time the newest set written by a successful run finished (kind dr: the DR set of the last complete run)."
    ),
    "runbook_backup_last_run_timestamp_seconds": "Unix time the last backup run that was to write this set ended.",
    "runbook_backup_last_run_success": (
        "1 when the last backup run wrote this set, 0 when it failed or stopped before it "
        "(kind dr: 1 when the whole run completed on this host)."
    ),
    "runbook_backup_size_bytes": "Bytes of the newest set written (kind dr: of all the component sets it names).",
    "runbook_backup_duration_seconds": (
        "Seconds the newest set took to write (kind dr: the whole run on this host, all phases)."
    ),
}
HEALTH_HELP = {
    "runbook_health_up": "1 when the component was ok at the last health check, else 0 (down, error).",
    "runbook_health_check_timestamp_seconds": "Unix time of the last health check of this host's components.",
}


def iso_to_unix(value: Any) -> float | None:
    """Unix seconds of an ISO 8601 UTC time as the backup modules return it (``...Z``); None for none."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise AnsibleFilterError(f"backup_metrics: {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return round(moment.timestamp(), 3)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def written(result: Mapping[str, Any], check_mode: bool) -> bool:
    """Whether the module's result is a set written (in check mode: that would be written)."""
    if not result or result.get("failed") or result.get("skipped"):
        return False
    backup_set = _mapping(result.get("backup_set"))
    return bool(backup_set.get("backup_id")) or (check_mode and bool(backup_set))


def _set_row(
    rows: list[dict[str, Any]],
    kind: str,
    source: str,
    ok: bool,
    now: float,
    last: float | None,
    size: Any,
    seconds: Any,
) -> None:
    rows.append(
        {
            "labels": {"kind": kind, "source": source},
            "ok": ok,
            "now": now,
            "last_success": (last if last is not None else now) if ok else None,
            "size": size if ok else None,
            "duration": seconds if ok else None,
        }
    )


def backup_metrics(
    registered: Mapping[str, Any],
    now: float,
    databases: Sequence[str] = (),
    buckets: Sequence[str] = (),
    redis: bool = False,
    dr_name: str = "",
    started: float | None = None,
    completed: bool = False,
    check_mode: bool = False,
) -> list[dict[str, Any]]:
    """The ``metrics`` of this host's backup run.

    ``registered``: the role's registered results, ``postgresql`` and ``s3`` (loops: their
    ``results``, matched to ``databases`` and ``buckets`` by item), ``redis`` (the snapshot, or the
    read-only look-up of its name when the run did not reach it) and ``dr`` (the DR set). A set is
    written when its module returned a ``backup_set`` with a ``backup_id``; in check mode, when its
    module would write one. ``dr_name`` (only on the host that writes the DR set) adds the row of
    kind ``dr``: 1 when the run ``completed`` and wrote the DR set.
    """
    if not isinstance(registered, Mapping):
        raise AnsibleFilterError(f"backup_metrics: expected a dict of registered results, got {registered!r}")
    try:
        now = round(float(now), 3)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"backup_metrics: now must be unix seconds, got {now!r}") from None
    rows: list[dict[str, Any]] = []

    def loop_results(name: str) -> list[Mapping[str, Any]]:
        return [r for r in _mapping(registered.get(name)).get("results") or [] if isinstance(r, Mapping)]

    def add(kind: str, source: str, result: Mapping[str, Any]) -> None:
        ok = written(result, check_mode)
        backup_set = _mapping(result.get("backup_set"))
        _set_row(
            rows,
            kind,
            source,
            ok,
            now,
            iso_to_unix(backup_set.get("finished")),
            backup_set.get("size_bytes"),
            None if check_mode else result.get("duration_s"),
        )

    by_database = {r.get("item"): r for r in loop_results("postgresql")}
    for database in databases:
        add("postgresql", str(database), by_database.get(database, {}))

    redis_result = _mapping(registered.get("redis"))
    if redis:
        source = _mapping(redis_result.get("backup_set")).get("source")
        if not source:  # not reached: the read-only look-up named it
            source = _mapping(_mapping(registered.get("redis_name")).get("backup_set")).get("source")
        if source:
            add("redis", str(source), redis_result)

    by_bucket = {_mapping(r.get("item")).get("bucket"): r for r in loop_results("s3")}
    for bucket in buckets:
        add("s3", str(bucket), by_bucket.get(bucket, {}))

    if dr_name:
        dr = _mapping(registered.get("dr"))
        ok = bool(completed) and (check_mode or written(dr, False))
        sizes = [c.get("size_bytes") for c in dr.get("components") or [] if isinstance(c, Mapping)]
        total = sum(s for s in sizes if isinstance(s, (int, float))) if sizes else None
        seconds = round(now - float(started), 3) if started not in (None, "") and not check_mode else None
        dr_set = _mapping(dr.get("backup_set"))
        _set_row(rows, "dr", str(dr_name), ok, now, iso_to_unix(dr_set.get("finished")), total, seconds)

    def samples(field: str) -> list[dict[str, Any]]:
        return [{"labels": r["labels"], "value": r[field]} for r in rows if r[field] is not None]

    metrics = [
        ("runbook_backup_last_success_timestamp_seconds", samples("last_success")),
        ("runbook_backup_last_run_timestamp_seconds", samples("now")),
        ("runbook_backup_last_run_success", [{"labels": r["labels"], "value": int(r["ok"])} for r in rows]),
        ("runbook_backup_size_bytes", samples("size")),
        ("runbook_backup_duration_seconds", samples("duration")),
    ]
    return [{"name": name, "help": BACKUP_HELP[name], "samples": s} for name, s in metrics if s]


def health_metrics(results: Sequence[Any], now: float) -> list[dict[str, Any]]:
    """The ``metrics`` of this host's health check: ``runbook_health_up`` per component (replacing the
    file's other components: a component no longer checked leaves the metric) and the time of the check.

    ``results``: the health_check role's ``health_check__results`` of this host, entries
    ``{name, host, value: {status, service, tier, ...}}``."""
    if isinstance(results, (str, bytes)) or not isinstance(results, Sequence):
        raise AnsibleFilterError(f"health_metrics: expected the list of component results, got {results!r}")
    up = []
    for entry in results:
        if not isinstance(entry, Mapping) or "name" not in entry:
            raise AnsibleFilterError(f"health_metrics: a result has no name: {entry!r}")
        value = _mapping(entry.get("value"))
        labels = {"component": str(entry["name"])}
        for label in ("service", "tier"):
            if value.get(label) not in (None, ""):
                labels[label] = str(value[label])
        up.append({"labels": labels, "value": 1 if value.get("status") == "ok" else 0})
    return [
        {"name": "runbook_health_up", "help": HEALTH_HELP["runbook_health_up"], "replace": True, "samples": up},
        {
            "name": "runbook_health_check_timestamp_seconds",
            "help": HEALTH_HELP["runbook_health_check_timestamp_seconds"],
            "samples": [{"labels": {}, "value": round(float(now), 3)}],
        },
    ]


class FilterModule:
    """runbook.stack filters."""

    def filters(self):
        return {"backup_metrics": backup_metrics, "health_metrics": health_metrics}
