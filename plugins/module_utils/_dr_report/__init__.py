# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disaster-recovery report: measured facts in, a JSON / Markdown / HTML report out (private package).

Pure functions (stdlib only):

- ``model``: :func:`build_report` validates the facts and computes RTO, RPO and the verdicts; every
  problem with the input raises :class:`DrReportError` naming the option and the cause
- ``formatting``: durations, offsets and the summary rows both renderings share
- ``render_markdown`` and ``render_html`` (with the SVG timeline) turn the report into text
- ``files``: :func:`write_report` writes the three files atomically, only where the content differs

This ``__init__`` is a one-release shim: it re-exports every name of the former ``_dr_report.py``, so
``from ...module_utils._dr_report import X`` keeps working. New code imports from the submodules;
the shim goes in the next release.
"""

from __future__ import annotations

from ansible_collections.runbook.stack.plugins.module_utils._dr_report.files import (
    DIR_MODE,
    FILE_MODE,
    FORMATS,
    render_files,
    render_json,
    report_paths,
    write_report,
)
from ansible_collections.runbook.stack.plugins.module_utils._dr_report.formatting import (
    NOTHING_LOST,
    NOTHING_VERIFIED,
    fmt_duration,
    fmt_offset,
    fmt_seconds,
    fmt_tick,
    json_value,
    pass_fail,
    verdict,
)
from ansible_collections.runbook.stack.plugins.module_utils._dr_report.model import (
    DEFAULT_RPO_S,
    DEFAULT_RTO_S,
    NAME_RE,
    STATUSES,
    TIMESTAMP_RE,
    DrReportError,
    build_report,
    check_name,
    format_timestamp,
    parse_timestamp,
    seconds_between,
)
from ansible_collections.runbook.stack.plugins.module_utils._dr_report.render_html import (
    AXIS_H,
    BAR_H,
    COLOURS,
    CSS,
    DURATION_W,
    HEADER_H,
    LABEL_W,
    MAX_TICKS,
    PLOT_W,
    PLOT_X,
    ROW_H,
    SVG_WIDTH,
    TICK_STEPS,
    esc,
    render_html,
    timeline_svg,
)
from ansible_collections.runbook.stack.plugins.module_utils._dr_report.render_markdown import (
    md,
    render_markdown,
)

__all__ = [
    "AXIS_H",
    "BAR_H",
    "COLOURS",
    "CSS",
    "DEFAULT_RPO_S",
    "DEFAULT_RTO_S",
    "DIR_MODE",
    "DURATION_W",
    "FILE_MODE",
    "FORMATS",
    "HEADER_H",
    "LABEL_W",
    "MAX_TICKS",
    "NAME_RE",
    "NOTHING_LOST",
    "NOTHING_VERIFIED",
    "PLOT_W",
    "PLOT_X",
    "ROW_H",
    "STATUSES",
    "SVG_WIDTH",
    "TICK_STEPS",
    "TIMESTAMP_RE",
    "DrReportError",
    "build_report",
    "check_name",
    "esc",
    "fmt_duration",
    "fmt_offset",
    "fmt_seconds",
    "fmt_tick",
    "format_timestamp",
    "json_value",
    "md",
    "parse_timestamp",
    "pass_fail",
    "render_files",
    "render_html",
    "render_json",
    "render_markdown",
    "report_paths",
    "seconds_between",
    "timeline_svg",
    "verdict",
    "write_report",
]
