"""The heartbeat callback's bookkeeping: which tasks are due a line, and how the line reads."""

from __future__ import annotations

import pytest

from ansible_collections.runbook.stack.plugins.callback.heartbeat import Running, elapsed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (42.9, "42s"), (60, "1m00s"), (125.4, "2m05s"), (3600, "1h00m00s"), (3725, "1h02m05s")],
)
def test_elapsed(seconds, text):
    assert elapsed(seconds) == text


def test_only_tasks_running_for_an_interval_get_a_line_longest_first():
    clock = Clock()
    running = Running(clock)
    running.start("db1", "t1", "(3/6) RESTORE: database")
    clock.now += 50
    running.start("cache1", "t2", "(4/6) RESTORE: cache")
    clock.now += 20
    assert running.lines(60) == ["HEARTBEAT [db1] (3/6) RESTORE: database - running for 1m10s"]
    clock.now += 45
    assert running.lines(60) == [
        "HEARTBEAT [db1] (3/6) RESTORE: database - running for 1m55s",
        "HEARTBEAT [cache1] (4/6) RESTORE: cache - running for 1m05s",
    ]


def test_an_ended_task_gets_no_more_lines_and_other_hosts_keep_theirs():
    clock = Clock()
    running = Running(clock)
    running.start("db1", "t1", "dump")
    running.start("db2", "t1", "dump")
    clock.now += 120
    running.end("db1", "t1")
    assert running.lines(60) == ["HEARTBEAT [db2] dump - running for 2m00s"]
    running.end("db2", "t1")
    running.end("db2", "t1")  # a second end (loop results, a rescue) is harmless
    assert running.lines(60) == []


def test_the_same_host_in_the_next_task_starts_from_zero():
    clock = Clock()
    running = Running(clock)
    running.start("db1", "t1", "first")
    clock.now += 100
    running.end("db1", "t1")
    running.start("db1", "t2", "second")
    clock.now += 30
    assert running.lines(60) == []
    clock.now += 30
    assert running.lines(60) == ["HEARTBEAT [db1] second - running for 1m00s"]
