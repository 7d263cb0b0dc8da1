# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""runbook.stack.timeline_phases: the drills' report phases from one timeline."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.stack.plugins.filter.timeline_phases import FilterModule, timeline_phases


def test_each_phase_ends_where_the_next_starts_and_the_last_at_the_end():
    marks = [{"name": "PREPARE", "started_at": "t0"}, {"name": "LOAD", "started_at": "t1"}]
    assert timeline_phases(marks, "t2") == [
        {"name": "PREPARE", "started_at": "t0", "ended_at": "t1"},
        {"name": "LOAD", "started_at": "t1", "ended_at": "t2"},
    ]


def test_a_nested_timeline_is_taken_in_place_prefixed_and_ends_at_its_ended_at():
    restore = [{"name": "(1/6) SELECT", "started_at": "t2"}, {"name": "(6/6) START", "started_at": "t3"}]
    marks = [
        {"name": "LOSS", "started_at": "t1"},
        {"timeline": restore, "prefix": "RESTORE ", "ended_at": "t4"},
        {"name": "VERIFY", "started_at": "t5"},
    ]
    assert timeline_phases(marks, "t6") == [
        {"name": "LOSS", "started_at": "t1", "ended_at": "t2"},
        {"name": "RESTORE (1/6) SELECT", "started_at": "t2", "ended_at": "t3"},
        {"name": "RESTORE (6/6) START", "started_at": "t3", "ended_at": "t4"},
        # t4..t5 belongs to no phase
        {"name": "VERIFY", "started_at": "t5", "ended_at": "t6"},
    ]


def test_a_nameless_mark_ends_a_phase_without_starting_one():
    marks = [{"name": "A", "started_at": "t0"}, {"name": None, "started_at": "t1"}]
    assert timeline_phases(marks, "t9") == [{"name": "A", "started_at": "t0", "ended_at": "t1"}]


@pytest.mark.parametrize(
    ("marks", "end", "message"),
    [
        ("PREPARE", "t1", "timeline must be a list of marks"),
        ([["PREPARE"]], "t1", r"timeline\[0\] must be a dict"),
        ([{"name": "A"}], "t1", r"timeline\[0\]\.started_at must be a time"),
        ([{"timeline": [{"name": "B", "started_at": 5}]}], "t1", r"timeline\[0\]\.timeline\[0\]\.started_at"),
        ([{"name": "A", "started_at": "t0"}], None, "end_at must be a time"),
    ],
)
def test_bad_input_names_the_mark(marks, end, message):
    with pytest.raises(AnsibleFilterError, match=message):
        timeline_phases(marks, end)


def test_registered_under_its_name():
    assert FilterModule().filters()["timeline_phases"] is timeline_phases
