# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``runbook.stack.timeline_phases``: the phases of a run from one timeline of marks (the
drills' reports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError


def _flatten(marks, where="timeline"):
    """(name or None, started_at) in order; a nested timeline gives its marks, prefixed, then a nameless
    mark at its ``ended_at``."""
    if isinstance(marks, (str, bytes)) or not isinstance(marks, Sequence):
        raise AnsibleFilterError(f"timeline_phases: {where} must be a list of marks, got {marks!r}")
    out = []
    for i, mark in enumerate(marks):
        at = f"{where}[{i}]"
        if not isinstance(mark, Mapping):
            raise AnsibleFilterError(f"timeline_phases: {at} must be a dict, got {mark!r}")
        if "timeline" in mark:
            prefix = mark.get("prefix") or ""
            out += [(f"{prefix}{name}", started) for name, started in _flatten(mark["timeline"], f"{at}.timeline")]
            if mark.get("ended_at"):
                out.append((None, _time(mark["ended_at"], f"{at}.ended_at")))
            continue
        name = mark.get("name")
        out.append((str(name) if name else None, _time(mark.get("started_at"), f"{at}.started_at")))
    return out


def _time(value, where):
    if not isinstance(value, str) or not value:
        raise AnsibleFilterError(f"timeline_phases: {where} must be a time (ISO 8601 text), got {value!r}")
    return value


def timeline_phases(marks, end_at):
    """``[{name, started_at, ended_at}]`` from marks ``[{name, started_at}]`` in the order they were
    made: each phase ends where the next mark starts, the last one at ``end_at``. A mark without a name
    ends the phase before it and starts none (time not given to any phase). A mark may be a nested
    timeline, ``{timeline: [marks], prefix: 'RESTORE ', ended_at: <time>}``, such as the one the
    runbook.stack.dr_restore role records: its marks are taken in place, their names prefixed, and its
    ``ended_at`` ends its last phase."""
    flat = _flatten(marks)
    end = _time(end_at, "end_at")
    phases = []
    for i, (name, started) in enumerate(flat):
        if name is None:
            continue
        ended = flat[i + 1][1] if i + 1 < len(flat) else end
        phases.append({"name": name, "started_at": started, "ended_at": ended})
    return phases


class FilterModule:
    """runbook.stack filters."""

    def filters(self):
        return {"timeline_phases": timeline_phases}
