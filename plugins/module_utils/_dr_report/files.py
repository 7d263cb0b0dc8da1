# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DR report's files (private module_utils): ``<dest>/<name>.json``, ``.md`` and ``.html``,
each written atomically and only where its content differs (:func:`write_report`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._common.files import atomic_write
from ansible_collections.runbook.stack.plugins.module_utils._dr_report.model import DrReportError, check_name
from ansible_collections.runbook.stack.plugins.module_utils._dr_report.render_html import render_html
from ansible_collections.runbook.stack.plugins.module_utils._dr_report.render_markdown import render_markdown

FORMATS = ("json", "md", "html")
FILE_MODE = 0o644
DIR_MODE = 0o755


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"


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
