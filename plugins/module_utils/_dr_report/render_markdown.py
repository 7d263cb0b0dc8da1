# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DR report as Markdown (private module_utils)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._dr_report.formatting import (
    NOTHING_LOST,
    NOTHING_VERIFIED,
    fmt_duration,
    fmt_offset,
    json_value,
    pass_fail,
    summary_rows,
    time_rows,
)

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|&~])")


def md(value: Any) -> str:
    """Inline Markdown text: whitespace folded to one line, punctuation that could start markup,
    raw HTML or a table cell boundary backslash-escaped (CommonMark renders it literally)."""
    text = " ".join(str(value).split())
    return _MD_SPECIAL.sub(r"\\\1", text)


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
        ((name, measured, target, f"**{word}**") for name, measured, target, word, _css in summary_rows(report)),
    )
    out.append("")
    out += [f"- {label}: {value}" for label, value in time_rows(report)]

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
