# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DR report's model (private module_utils): the drill's measured facts in, validated, and the
report dict out, with RTO, RPO and the verdicts (:func:`build_report`). Stdlib only.

Every problem with the input raises :class:`DrReportError` naming the option and the cause.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._dr_report.formatting import fmt_duration

DEFAULT_RTO_S = 3600.0
DEFAULT_RPO_S = 900.0
STATUSES = ("ok", "failed", "skipped")
NAME_RE = re.compile(r"^[A-Za-z0-9._-]+\Z")
# ISO-8601 date and time with a mandatory UTC offset ('Z' or +HH:MM / +HHMM / +HH); 'T' or one space
TIMESTAMP_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)\Z"
)


class DrReportError(Exception):
    """The drill's facts are incomplete or contradictory, or the report cannot be written."""


# --------------------------------------------------------------------------------------------
# input
# --------------------------------------------------------------------------------------------


def parse_timestamp(value: Any, where: str) -> _dt.datetime:
    """An aware UTC datetime from an ISO-8601 string with 'Z' or an offset (``where`` names the option)."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise DrReportError(f"timestamp '{value.isoformat()}' in {where} has no UTC offset (add Z or +HH:MM)")
        return value.astimezone(_dt.timezone.utc)
    if not isinstance(value, str):
        raise DrReportError(f"unparseable timestamp {value!r} in {where}: expected an ISO-8601 string")
    text = value.strip()
    match = TIMESTAMP_RE.match(text)
    if not match:
        if re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?\Z", text):
            raise DrReportError(f"timestamp '{value}' in {where} has no UTC offset (add Z or +HH:MM)")
        raise DrReportError(f"unparseable timestamp '{value}' in {where}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        offset = _dt.timedelta(0)
        if not zulu:
            offset = _dt.timedelta(hours=int(off_h), minutes=int(off_m or 0))
            if offset >= _dt.timedelta(hours=24):
                raise ValueError("UTC offset out of range")
            offset = -offset if sign == "-" else offset
        micro = int((fraction or "0").ljust(6, "0")[:6])
        when = _dt.datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            micro,
            tzinfo=_dt.timezone(offset),
        )
    except ValueError as exc:
        raise DrReportError(f"unparseable timestamp '{value}' in {where}: {exc}") from None
    return when.astimezone(_dt.timezone.utc)


def format_timestamp(when: _dt.datetime) -> str:
    """UTC ISO-8601 with 'Z', fractions only as far as they are non-zero (ms, else µs)."""
    when = when.astimezone(_dt.timezone.utc)
    if when.microsecond == 0:
        spec = "seconds"
    elif when.microsecond % 1000 == 0:
        spec = "milliseconds"
    else:
        spec = "microseconds"
    return when.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def seconds_between(start: _dt.datetime, end: _dt.datetime) -> float:
    return round((end - start).total_seconds(), 3)


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise DrReportError(f"name {name!r} is not a plain file name: use letters, digits, '.', '_' and '-' only")
    return name


def _text(value: Any, where: str, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise DrReportError(f"{where} must be a non-empty string, got {value!r}")
    return value


def _target(value: Any, where: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool):
        raise DrReportError(f"{where} must be a positive number of seconds, got {value!r}")
    if not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise DrReportError(f"{where} must be a positive number of seconds, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise DrReportError(f"{where} must be a positive number of seconds, got {value!r}")
    return float(value)


def _items(value: Any, where: str) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise DrReportError(f"{where} must be a list of dicts")
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise DrReportError(f"{where}[{index}] must be a dict, got {item!r}")
    return list(value)


def _phases(raw: Any) -> list[dict[str, Any]]:
    items = _items(raw, "phases")
    if not items:
        raise DrReportError("phases must list at least one phase")
    parsed = []
    for index, item in enumerate(items):
        where = f"phases[{index}]"
        name = _text(item.get("name"), f"{where}.name")
        start = parse_timestamp(item.get("started_at"), f"{where}.started_at")
        end = parse_timestamp(item.get("ended_at"), f"{where}.ended_at")
        if end < start:
            raise DrReportError(
                f"{where}.ended_at is before started_at ({format_timestamp(end)} < {format_timestamp(start)})"
            )
        status = item.get("status") or "ok"
        if status not in STATUSES:
            raise DrReportError(f"{where}.status must be one of {', '.join(STATUSES)}, got {status!r}")
        detail = _text(item.get("detail"), f"{where}.detail", required=False)
        parsed.append({"name": name, "start": start, "end": end, "status": status, "detail": detail})
    parsed.sort(key=lambda phase: phase["start"])  # stable: ties keep the input order
    origin = parsed[0]["start"]
    return [
        {
            "name": phase["name"],
            "status": phase["status"],
            "started_at": format_timestamp(phase["start"]),
            "ended_at": format_timestamp(phase["end"]),
            "offset_s": seconds_between(origin, phase["start"]),
            "duration_s": seconds_between(phase["start"], phase["end"]),
            "detail": phase["detail"],
        }
        for phase in parsed
    ]


def _verifications(raw: Any) -> list[dict[str, Any]]:
    result = []
    for index, item in enumerate(_items(raw, "verifications")):
        where = f"verifications[{index}]"
        passed = item.get("passed")
        if not isinstance(passed, bool):
            raise DrReportError(f"{where}.passed must be true or false, got {passed!r}")
        result.append(
            {
                "name": _text(item.get("name"), f"{where}.name"),
                "component": _text(item.get("component"), f"{where}.component"),
                "passed": passed,
                "expected": item.get("expected"),
                "actual": item.get("actual"),
                "detail": _text(item.get("detail"), f"{where}.detail", required=False),
            }
        )
    return result


def _lost_writes(raw: Any) -> list[dict[str, Any]]:
    result = []
    for index, item in enumerate(_items(raw, "lost_writes")):
        where = f"lost_writes[{index}]"
        count = item.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise DrReportError(f"{where}.count must be a whole number >= 0, got {count!r}")
        result.append(
            {
                "component": _text(item.get("component"), f"{where}.component"),
                "description": _text(item.get("description"), f"{where}.description"),
                "count": count,
                "detail": _text(item.get("detail"), f"{where}.detail", required=False),
            }
        )
    return result


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------


def build_report(
    *,
    disaster_declared_at: Any,
    healthy_at: Any,
    recovery_point: Any,
    phases: Any,
    title: str = "Disaster recovery drill",
    targets: Mapping[str, Any] | None = None,
    verifications: Any = None,
    lost_writes: Any = None,
    facts: Mapping[str, Any] | None = None,
    generated_at: Any = None,
    last_write_at: Any = None,
) -> dict[str, Any]:
    """The report dict (what the JSON file holds) from the drill's measured facts.

    The RPO is ``disaster_declared_at - recovery_point``, or, when the last write made before the loss
    is known (``last_write_at``), ``last_write_at - recovery_point``: the span of writes actually lost."""
    title = _text(title, "title")
    targets = targets or {}
    if not isinstance(targets, Mapping):
        raise DrReportError("targets must be a dict with rto_s and/or rpo_s")
    rto_target = _target(targets.get("rto_s"), "targets.rto_s", DEFAULT_RTO_S)
    rpo_target = _target(targets.get("rpo_s"), "targets.rpo_s", DEFAULT_RPO_S)
    declared = parse_timestamp(disaster_declared_at, "disaster_declared_at")
    healthy = parse_timestamp(healthy_at, "healthy_at")
    point = parse_timestamp(recovery_point, "recovery_point")
    generated = parse_timestamp(generated_at, "generated_at") if generated_at is not None else healthy
    if healthy < declared:
        raise DrReportError(
            f"healthy_at ({format_timestamp(healthy)}) is before disaster_declared_at ({format_timestamp(declared)})"
        )
    if point > declared:
        raise DrReportError(
            f"recovery_point ({format_timestamp(point)}) is after disaster_declared_at ({format_timestamp(declared)}):"
            " the RPO would be negative"
        )
    last_write = parse_timestamp(last_write_at, "last_write_at") if last_write_at is not None else None
    if last_write is not None and point > last_write:
        raise DrReportError(
            f"recovery_point ({format_timestamp(point)}) is after last_write_at ({format_timestamp(last_write)}):"
            " the RPO would be negative"
        )
    if facts is not None and not isinstance(facts, Mapping):
        raise DrReportError("facts must be a dict")

    phase_list = _phases(phases)
    checks = _verifications(verifications)
    losses = _lost_writes(lost_writes)
    rto_s = seconds_between(declared, healthy)
    rpo_s = seconds_between(point, last_write if last_write is not None else declared)
    rto = {"seconds": rto_s, "target_s": rto_target, "met": rto_s <= rto_target}
    rpo = {"seconds": rpo_s, "target_s": rpo_target, "met": rpo_s <= rpo_target}
    passed_count = sum(1 for check in checks if check["passed"])
    verified = bool(checks) and passed_count == len(checks)
    failed_phases = [phase["name"] for phase in phase_list if phase["status"] == "failed"]

    reasons = []
    if not rto["met"]:
        reasons.append(f"RTO {fmt_duration(rto_s)} exceeds the target {fmt_duration(rto_target)}")
    if not rpo["met"]:
        reasons.append(f"RPO {fmt_duration(rpo_s)} exceeds the target {fmt_duration(rpo_target)}")
    if not checks:
        reasons.append("nothing was verified")
    elif not verified:
        reasons.append(f"{len(checks) - passed_count} of {len(checks)} verifications failed")
    reasons.extend(f"phase {name!r} failed" for name in failed_phases)

    return {
        "title": title,
        "generated_at": format_timestamp(generated),
        "disaster_declared_at": format_timestamp(declared),
        "healthy_at": format_timestamp(healthy),
        "recovery_point": format_timestamp(point),
        "last_write_at": format_timestamp(last_write) if last_write is not None else None,
        "rto": rto,
        "rpo": rpo,
        "phases": phase_list,
        "verifications": checks,
        "verifications_passed": verified,
        "verification_counts": {"total": len(checks), "passed": passed_count, "failed": len(checks) - passed_count},
        "lost_writes": losses,
        "lost_writes_total": sum(loss["count"] for loss in losses),
        "facts": dict(facts or {}),
        "overall": {
            "passed": not reasons,
            "rto_met": rto["met"],
            "rpo_met": rpo["met"],
            "verified": verified,
            "failed_phases": failed_phases,
            "reasons": reasons,
        },
    }
