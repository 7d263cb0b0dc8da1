# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DR report as one self-contained HTML page with an SVG timeline (private module_utils)."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._dr_report.formatting import (
    NOTHING_LOST,
    NOTHING_VERIFIED,
    fmt_duration,
    fmt_offset,
    fmt_seconds,
    fmt_tick,
    json_value,
    pass_fail,
    summary_rows,
    time_rows,
)
from ansible_collections.runbook.stack.plugins.module_utils._dr_report.model import parse_timestamp


def esc(value: Any) -> str:
    """HTML/XML text or attribute value."""
    return html.escape(str(value), quote=True)


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
                for name, measured, target, word, ok in summary_rows(report)
            ),
        )
    )
    body.append(
        '<ul class="times">'
        + "".join(f"<li>{esc(label)}: <time>{esc(value)}</time></li>" for label, value in time_rows(report))
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
