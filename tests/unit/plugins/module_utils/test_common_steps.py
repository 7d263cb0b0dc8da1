"""_common.steps.Steps: the ``steps`` return value of every module (around the work, or after it)."""

from __future__ import annotations

import time

from ansible_collections.runbook.stack.plugins.module_utils._common.steps import Steps


def test_step_records_the_work_it_wraps_in_order():
    steps = Steps()
    with steps.step("first"):
        time.sleep(0.05)
    with steps.step("second"):
        pass
    assert [s["step"] for s in steps.items] == ["first", "second"]
    assert steps.items[0]["duration_s"] >= 0.05
    assert steps.items[1]["duration_s"] < steps.items[0]["duration_s"]


def test_a_failed_step_is_not_recorded():
    steps = Steps()
    try:
        with steps.step("boom"):
            raise ValueError("x")
    except ValueError:
        pass
    assert steps.items == []


def test_mark_counts_from_the_previous_step():
    steps = Steps()
    time.sleep(0.05)
    steps.mark("inspect")
    steps.mark("nothing more")
    with steps.step("wrapped"):
        pass
    steps.mark("after the wrapped step")
    assert [s["step"] for s in steps.items] == ["inspect", "nothing more", "wrapped", "after the wrapped step"]
    assert steps.items[0]["duration_s"] >= 0.05
    assert steps.items[1]["duration_s"] < 0.05
    assert steps.items[3]["duration_s"] < 0.05
