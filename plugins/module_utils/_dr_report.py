# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disaster-recovery report: measured facts in, a JSON / Markdown / HTML report out (private).

Pure functions (stdlib only): :func:`build_report` validates the facts and computes RTO, RPO and the
verdicts; :func:`render_markdown` and :func:`render_html` turn that report into text;
:func:`write_report` writes the three files atomically, only where the content differs.
Every problem with the input raises :class:`DrReportError` naming the option and the cause.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._common.files import atomic_write

DEFAULT_RTO_S = 3600.0
DEFAULT_RPO_S = 900.0
STATUSES = ("ok", "failed", "skipped")
FORMATS = ("json", "md", "html")
FILE_MODE = 0o644
DIR_MODE = 0o755
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


# --------------------------------------------------------------------------------------------
# text helpers
# --------------------------------------------------------------------------------------------


def fmt_seconds(seconds: float) -> str:
    """3252.0 -> '3252', 5.25 -> '5.25' (at most 3 decimals)."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def fmt_duration(seconds: float) -> str:
    """A duration for people: '5.25s', '54m 12s', '1h 02m 03s'."""
    if seconds < 60:
        return f"{fmt_seconds(seconds)}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s"


def fmt_offset(seconds: float) -> str:
    return ("-" if seconds < 0 else "+") + fmt_duration(abs(seconds))


def fmt_tick(seconds: float) -> str:
    """Compact axis label: '0', '+30s', '+45m', '+1h 30m'."""
    if seconds == 0:
        return "0"
    sign = "-" if seconds < 0 else "+"
    rest = round(abs(seconds))
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return sign + (" ".join(part for part in parts if part) or fmt_seconds(abs(seconds)) + "s")


def json_value(value: Any) -> str:
    """How an expected/actual/fact value is shown: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def pass_fail(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|&~])")


def md(value: Any) -> str:
    """Inline Markdown text: whitespace folded to one line, punctuation that could start markup,
    raw HTML or a table cell boundary backslash-escaped (CommonMark renders it literally)."""
    text = " ".join(str(value).split())
    return _MD_SPECIAL.sub(r"\\\1", text)


def esc(value: Any) -> str:
    """HTML/XML text or attribute value."""
    return html.escape(str(value), quote=True)


def _summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str, bool]]:
    """(measure, measured, target, verdict, good) rows shared by the Markdown and HTML summaries."""
    rto, rpo, counts = report["rto"], report["rpo"], report["verification_counts"]
    return [
        (
            "RTO (declared to healthy)",
            f"{fmt_duration(rto['seconds'])} ({fmt_seconds(rto['seconds'])} s)",
            f"{fmt_duration(rto['target_s'])} ({fmt_seconds(rto['target_s'])} s)",
            verdict(rto["met"]),
            rto["met"],
        ),
        (
            "RPO (last write to recovery point)" if report.get("last_write_at") else "RPO (recovery point age)",
            f"{fmt_duration(rpo['seconds'])} ({fmt_seconds(rpo['seconds'])} s)",
            f"{fmt_duration(rpo['target_s'])} ({fmt_seconds(rpo['target_s'])} s)",
            verdict(rpo["met"]),
            rpo["met"],
        ),
        (
            "Verification",
            f"{counts['passed']}/{counts['total']} passed",
            "all pass (at least one)",
            pass_fail(report["verifications_passed"]),
            report["verifications_passed"],
        ),
        ("Overall", "", "", pass_fail(report["overall"]["passed"]), report["overall"]["passed"]),
    ]


def _times(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("Disaster declared", report["disaster_declared_at"]),
        ("Healthy again", report["healthy_at"]),
        ("Recovery point", report["recovery_point"]),
        *([("Last write before the loss", report["last_write_at"])] if report.get("last_write_at") else []),
        ("Generated", report["generated_at"]),
    ]


NOTHING_VERIFIED = "Nothing was verified: no verifications were recorded, so the drill cannot pass."
NOTHING_LOST = "Nothing lost: no lost writes were recorded."


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def _md_table(head: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(head)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _column in head) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    overall = report["overall"]
    out = [f"# {md(report['title'])}", ""]
    line = f"**Overall: {pass_fail(overall['passed'])}**"
    if overall["reasons"]:
        line += " - " + md("; ".join(overall["reasons"]))
    out += [line, ""]
    out += _md_table(
        ("Measure", "Measured", "Target", "Verdict"),
        ((name, measured, target, f"**{word}**") for name, measured, target, word, _css in _summary_rows(report)),
    )
    out.append("")
    out += [f"- {label}: {value}" for label, value in _times(report)]

    out += ["", "## Phases", ""]
    out += _md_table(
        ("#", "Phase", "Start offset", "Duration", "Status", "Detail"),
        (
            (
                str(index),
                md(phase["name"]),
                fmt_offset(phase["offset_s"]),
                fmt_duration(phase["duration_s"]),
                "**failed**" if phase["status"] == "failed" else phase["status"],
                md(phase["detail"] or ""),
            )
            for index, phase in enumerate(report["phases"], 1)
        ),
    )

    out += ["", "## Verifications", ""]
    if report["verifications"]:
        counts = report["verification_counts"]
        out += [f"{counts['passed']}/{counts['total']} passed.", ""]
        out += _md_table(
            ("Component", "Check", "Expected", "Actual", "Result", "Detail"),
            (
                (
                    md(check["component"]),
                    md(check["name"]),
                    md(json_value(check["expected"])) if check["expected"] is not None else "",
                    md(json_value(check["actual"])) if check["actual"] is not None else "",
                    "pass" if check["passed"] else "**FAIL**",
                    md(check["detail"] or ""),
                )
                for check in report["verifications"]
            ),
        )
    else:
        out.append(NOTHING_VERIFIED)

    out += ["", "## Lost writes", ""]
    if report["lost_writes"]:
        out += [f"Total lost: {report['lost_writes_total']}.", ""]
        out += _md_table(
            ("Component", "Description", "Count", "Detail"),
            (
                (md(loss["component"]), md(loss["description"]), str(loss["count"]), md(loss["detail"] or ""))
                for loss in report["lost_writes"]
            ),
        )
    else:
        out.append(NOTHING_LOST)

    out += ["", "## Facts", ""]
    if report["facts"]:
        out += _md_table(
            ("Fact", "Value"), ((md(key), md(json_value(value))) for key, value in report["facts"].items())
        )
    else:
        out.append("No further facts recorded.")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# HTML with an SVG timeline
# --------------------------------------------------------------------------------------------

SVG_WIDTH = 900
LABEL_W = 200  # phase names, left of the plot
DURATION_W = 90  # duration text, right of the plot
PLOT_X = LABEL_W
PLOT_W = SVG_WIDTH - LABEL_W - DURATION_W
HEADER_H = 40  # two lines of marker labels
ROW_H = 26
BAR_H = 16
AXIS_H = 28
COLOURS = {"ok": "#2e7d32", "failed": "#c62828", "skipped": "#9e9e9e"}
TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
MAX_TICKS = 8


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _tick_step(span: float) -> float:
    for step in TICK_STEPS:
        if span / step <= MAX_TICKS:
            return float(step)
    return float(math.ceil(span / MAX_TICKS / 86400) * 86400)


def timeline_svg(report: dict[str, Any]) -> str:
    """A horizontal bar per phase on one time axis, with markers for 'disaster declared' and 'healthy'.

    The axis runs from the earliest of the first phase start and the declaration to the latest of the
    last phase end and healthy_at; offsets are labelled from the first phase start, as in the tables.
    """
    phases = report["phases"]
    origin = parse_timestamp(phases[0]["started_at"], "phases[0].started_at")

    def offset(stamp: str) -> float:
        return (parse_timestamp(stamp, "report") - origin).total_seconds()

    declared = offset(report["disaster_declared_at"])
    healthy = offset(report["healthy_at"])
    lo = min(0.0, declared)
    hi = max([healthy, *(phase["offset_s"] + phase["duration_s"] for phase in phases)])
    span = hi - lo if hi > lo else 1.0
    scale = PLOT_W / span

    def x_at(seconds: float) -> float:
        return PLOT_X + (seconds - lo) * scale

    rows_h = ROW_H * len(phases)
    axis_y = HEADER_H + rows_h
    height = axis_y + AXIS_H
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{SVG_WIDTH}" height="{height}" '
        f'viewBox="0 0 {SVG_WIDTH} {height}" role="img" aria-label="Timeline of the recovery phases">',
        f'<rect class="plot" x="{PLOT_X}" y="{HEADER_H}" width="{PLOT_W}" height="{rows_h}" fill="#fafafa"/>',
    ]
    step = _tick_step(span)
    tick = math.ceil(lo / step) * step
    while tick <= hi + 1e-9:
        x = _num(x_at(tick))
        parts.append(
            f'<line class="tick" x1="{x}" y1="{HEADER_H}" x2="{x}" y2="{axis_y + 4}" stroke="#ddd"/>'
            f'<text class="tick-label" x="{x}" y="{axis_y + 18}" text-anchor="middle">{esc(fmt_tick(tick))}</text>'
        )
        tick += step
    parts.append(f'<line class="axis" x1="{PLOT_X}" y1="{axis_y}" x2="{PLOT_X + PLOT_W}" y2="{axis_y}" stroke="#555"/>')
    for index, phase in enumerate(phases):
        y = HEADER_H + index * ROW_H
        bar_y = y + (ROW_H - BAR_H) / 2
        text_y = y + ROW_H / 2 + 4
        colour = COLOURS[phase["status"]]
        label = f"{phase['name']}: {fmt_duration(phase['duration_s'])} ({phase['status']})"
        parts.append(
            f'<text class="phase-label" x="{PLOT_X - 8}" y="{_num(text_y)}" text-anchor="end">'
            f"{esc(_clip(phase['name'], 28))}</text>"
            f'<rect class="bar bar-{phase["status"]}" x="{_num(x_at(phase["offset_s"]))}" y="{_num(bar_y)}" '
            f'width="{_num(phase["duration_s"] * scale)}" height="{BAR_H}" fill="{colour}" stroke="{colour}" '
            f'stroke-width="1" data-duration-s="{fmt_seconds(phase["duration_s"])}"><title>{esc(label)}</title></rect>'
            f'<text class="duration" x="{SVG_WIDTH - 4}" y="{_num(text_y)}" text-anchor="end">'
            f"{esc(fmt_duration(phase['duration_s']))}</text>"
        )
    for css, seconds, text, line_y in (
        ("marker-declared", declared, "disaster declared", 14),
        ("marker-healthy", healthy, "healthy", 30),
    ):
        x = x_at(seconds)
        anchor, text_x = ("end", x - 4) if x > PLOT_X + PLOT_W / 2 else ("start", x + 4)
        parts.append(
            f'<line class="marker {css}" x1="{_num(x)}" y1="{line_y - 10}" x2="{_num(x)}" y2="{axis_y}" '
            f'stroke="#1565c0" stroke-width="2" stroke-dasharray="5 3"/>'
            f'<text class="marker-label" x="{_num(text_x)}" y="{line_y}" text-anchor="{anchor}">{esc(text)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 2rem auto;
  max-width: 960px; padding: 0 1rem; }
h1 { font-size: 1.7rem; margin-bottom: .3rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
table { border-collapse: collapse; width: 100%; margin: .6rem 0; }
th, td { border: 1px solid #ddd; padding: .35rem .55rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: .15rem .6rem; border-radius: .3rem; font-weight: 700; color: #fff; }
.good { background: #2e7d32; } .bad { background: #c62828; }
.status-ok { color: #2e7d32; } .status-failed { color: #c62828; font-weight: 700; } .status-skipped { color: #757575; }
.verdict-good { color: #2e7d32; font-weight: 700; } .verdict-bad { color: #c62828; font-weight: 700; }
.reasons { color: #c62828; }
.times { color: #555; padding-left: 1.2rem; }
.chart { overflow-x: auto; margin: .6rem 0; }
.timeline text { font: 12px system-ui, sans-serif; fill: #333; }
.timeline .marker-label { fill: #1565c0; font-weight: 600; }
.timeline .tick-label { fill: #666; }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; white-space: pre-wrap; word-break: break-all; }
footer { margin-top: 2.5rem; color: #777; font-size: .85rem; }
""".strip()


def _html_table(head: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """Table from already-escaped cell HTML (a cell may start with '<td' to carry its own attributes)."""
    lines = ["<table>", "<tr>" + "".join(f"<th>{esc(cell)}</th>" for cell in head) + "</tr>"]
    for row in rows:
        cells = (cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in row)
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _code(value: Any) -> str:
    return "" if value is None else f"<code>{esc(json_value(value))}</code>"


def render_html(report: dict[str, Any]) -> str:
    overall = report["overall"]
    good = "good" if overall["passed"] else "bad"
    body = [
        f"<h1>{esc(report['title'])}</h1>",
        f'<p><span class="badge {good}">{pass_fail(overall["passed"])}</span></p>',
    ]
    if overall["reasons"]:
        body.append('<p class="reasons">' + esc("; ".join(overall["reasons"])) + "</p>")
    body.append(
        _html_table(
            ("Measure", "Measured", "Target", "Verdict"),
            (
                (
                    esc(name),
                    esc(measured),
                    esc(target),
                    f'<td class="verdict-{"good" if ok else "bad"}">{esc(word)}</td>',
                )
                for name, measured, target, word, ok in _summary_rows(report)
            ),
        )
    )
    body.append(
        '<ul class="times">'
        + "".join(f"<li>{esc(label)}: <time>{esc(value)}</time></li>" for label, value in _times(report))
        + "</ul>"
    )

    body += ["<h2>Timeline</h2>", f'<div class="chart">{timeline_svg(report)}</div>']
    body += ["<h2>Phases</h2>"]
    body.append(
        _html_table(
            ("#", "Phase", "Started (UTC)", "Start offset", "Duration", "Status", "Detail"),
            (
                (
                    f'<td class="num">{index}</td>',
                    esc(phase["name"]),
                    esc(phase["started_at"]),
                    f'<td class="num">{esc(fmt_offset(phase["offset_s"]))}</td>',
                    f'<td class="num">{esc(fmt_duration(phase["duration_s"]))}</td>',
                    f'<td class="status-{phase["status"]}">{esc(phase["status"])}</td>',
                    esc(phase["detail"] or ""),
                )
                for index, phase in enumerate(report["phases"], 1)
            ),
        )
    )

    body.append("<h2>Verifications</h2>")
    if report["verifications"]:
        counts = report["verification_counts"]
        body.append(f"<p>{counts['passed']}/{counts['total']} passed.</p>")
        body.append(
            _html_table(
                ("Component", "Check", "Expected", "Actual", "Result", "Detail"),
                (
                    (
                        esc(check["component"]),
                        esc(check["name"]),
                        _code(check["expected"]),
                        _code(check["actual"]),
                        f'<td class="verdict-{"good" if check["passed"] else "bad"}">'
                        f"{'pass' if check['passed'] else 'FAIL'}</td>",
                        esc(check["detail"] or ""),
                    )
                    for check in report["verifications"]
                ),
            )
        )
    else:
        body.append(f'<p class="reasons">{esc(NOTHING_VERIFIED)}</p>')

    body.append("<h2>Lost writes</h2>")
    if report["lost_writes"]:
        body.append(f"<p>Total lost: {report['lost_writes_total']}.</p>")
        body.append(
            _html_table(
                ("Component", "Description", "Count", "Detail"),
                (
                    (
                        esc(loss["component"]),
                        esc(loss["description"]),
                        f'<td class="num">{loss["count"]}</td>',
                        esc(loss["detail"] or ""),
                    )
                    for loss in report["lost_writes"]
                ),
            )
        )
    else:
        body.append(f"<p>{esc(NOTHING_LOST)}</p>")

    body.append("<h2>Facts</h2>")
    if report["facts"]:
        body.append(
            _html_table(("Fact", "Value"), ((esc(key), _code(value)) for key, value in report["facts"].items()))
        )
    else:
        body.append("<p>No further facts recorded.</p>")
    body.append(f"<footer>Generated {esc(report['generated_at'])} by runbook.stack.dr_report.</footer>")

    head = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(report['title'])}</title>",
        f"<style>\n{CSS}\n</style>",
        "</head>",
        "<body>",
    ]
    return "\n".join([*head, *body, "</body>", "</html>"]) + "\n"


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def render_files(report: dict[str, Any]) -> dict[str, bytes]:
    """The three files' content, by format (json, md, html)."""
    return {
        "json": render_json(report).encode(),
        "md": render_markdown(report).encode(),
        "html": render_html(report).encode(),
    }


def report_paths(dest: str, name: str) -> dict[str, str]:
    base = os.path.join(os.path.abspath(dest), check_name(name))
    return {fmt: f"{base}.{fmt}" for fmt in FORMATS}


def _differs(path: str, data: bytes) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(data) + 1) != data
    except FileNotFoundError:
        return True
    except IsADirectoryError:
        raise DrReportError(f"cannot write {path}: it is a directory") from None
    except OSError as exc:
        raise DrReportError(f"cannot read {path}: {exc.strerror or exc}") from None


def write_report(
    dest: str, name: str, report: dict[str, Any], check_mode: bool = False
) -> tuple[list[str], dict[str, str]]:
    """Write the report files whose content differs from what is on disk.

    Returns (formats that were, or in check mode would be, written; absolute path per format).
    ``dest`` is created (mode 0755) when missing; each file is written atomically with mode 0644.
    """
    paths = report_paths(dest, name)
    contents = render_files(report)
    directory = os.path.dirname(paths["json"])
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise DrReportError(f"dest {directory} exists and is not a directory")
    missing = not os.path.isdir(directory)
    outdated = [fmt for fmt in FORMATS if missing or _differs(paths[fmt], contents[fmt])]
    if check_mode or not outdated:
        return outdated, paths
    try:
        if missing:
            os.makedirs(directory, mode=DIR_MODE)
            os.chmod(directory, DIR_MODE)  # makedirs' mode is filtered by the umask
        for fmt in outdated:
            atomic_write(paths[fmt], contents[fmt], FILE_MODE)
    except OSError as exc:
        where = exc.filename or directory
        raise DrReportError(f"cannot write the report under dest {directory}: {where}: {exc.strerror or exc}") from None
    return outdated, paths
