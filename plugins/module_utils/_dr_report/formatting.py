# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the DR report words numbers and verdicts (private module_utils): durations, offsets, axis
ticks and the summary rows, shared by the Markdown and HTML renderings.
"""

from __future__ import annotations

import json
from typing import Any

NOTHING_VERIFIED = "Nothing was verified: no verifications were recorded, so the drill cannot pass."
NOTHING_LOST = "Nothing lost: no lost writes were recorded."


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


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str, bool]]:
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


def time_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("Disaster declared", report["disaster_declared_at"]),
        ("Healthy again", report["healthy_at"]),
        ("Recovery point", report["recovery_point"]),
        *([("Last write before the loss", report["last_write_at"])] if report.get("last_write_at") else []),
        ("Generated", report["generated_at"]),
    ]
