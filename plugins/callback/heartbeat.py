# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A line of output every N seconds while a task runs: long steps show they are alive, and AWX's
idle timeout (a job silent for that long is killed) does not end a 40-minute pg_dump."""

from __future__ import annotations

DOCUMENTATION = r"""
name: heartbeat
type: aggregate
short_description: Print a line while a long task runs, so a job is never silent
version_added: 0.1.0
description:
  - "While a task runs on a host, prints one line every O(interval) seconds that names the host, the
    task and how long it has been running, for example
    'HEARTBEAT [db1] 3/6 RESTORE: database - running for 2m00s'."
  - The task names of this collection's roles carry the phase, so the line says which step of a
    restore or a backup is still running.
  - A module reports only when it ends, so a long dump, restore, snapshot or upload is otherwise
    silent. AWX / Automation Controller kills a job whose output stays silent for its idle timeout
    (C(DEFAULT_JOB_IDLE_TIMEOUT), ansible-runner's C(idle_timeout)); the heartbeat keeps such a job
    alive and tells the operator which step is still running.
  - Unlike C(async)/C(poll), the module keeps running under the controller, so cancelling the job
    (or losing the controller) still stops a dump or a restore and runs its clean-up.
  - Enable it with C(callbacks_enabled = runbook.stack.heartbeat) in C(ansible.cfg) (this project's
    C(ansible.cfg) does), or with E(ANSIBLE_CALLBACKS_ENABLED).
requirements:
  - enabled in C(callbacks_enabled)
options:
  interval:
    description:
      - Seconds between two heartbeat lines of a running task; the first comes after one interval,
        so tasks shorter than that print nothing.
      - Keep it well below the AWX idle timeout.
      - V(0) turns the heartbeat off.
    type: float
    default: 60
    env:
      - name: RUNBOOK_HEARTBEAT_INTERVAL
    ini:
      - section: callback_heartbeat
        key: interval
"""

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ansible.plugins.callback import CallbackBase


def elapsed(seconds: float) -> str:
    """``125.4`` -> ``"2m05s"``; ``3725`` -> ``"1h02m05s"``; under a minute ``"42s"``."""
    s = int(seconds)
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class Running:
    """The tasks running now, per host, and the lines a heartbeat prints for them (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._started: dict[tuple[str, str], tuple[str, float]] = {}

    def start(self, host: str, task_id: str, name: str) -> None:
        with self._lock:
            self._started[(host, task_id)] = (name, self._clock())

    def end(self, host: str, task_id: str) -> None:
        with self._lock:
            self._started.pop((host, task_id), None)

    def clear(self) -> None:
        with self._lock:
            self._started.clear()

    def lines(self, at_least: float) -> list[str]:
        """One line per host and task running for ``at_least`` seconds or more, longest first."""
        now = self._clock()
        with self._lock:
            due = [(now - t0, host, name) for (host, _id), (name, t0) in self._started.items() if now - t0 >= at_least]
        due.sort(key=lambda item: (-item[0], item[1]))
        return [f"HEARTBEAT [{host}] {name} - running for {elapsed(age)}" for age, host, name in due]


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "runbook.stack.heartbeat"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.running = Running()
        self.interval = 60.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def set_options(self, *args: Any, **kwargs: Any) -> None:
        super().set_options(*args, **kwargs)
        self.interval = float(self.get_option("interval"))

    # -- the thread that prints
    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            for line in self.running.lines(self.interval):
                self._display.display(line)
            sys.stdout.flush()  # a pipe is block-buffered; the point is output now

    def _ensure_thread(self) -> None:
        if self._thread is None and self.interval > 0:
            self._thread = threading.Thread(target=self._beat, name="runbook-heartbeat", daemon=True)
            self._thread.start()

    # -- task bookkeeping (called from the strategy's threads)
    def v2_runner_on_start(self, host: Any, task: Any) -> None:
        self._ensure_thread()
        self.running.start(host.get_name(), task._uuid, task.get_name().strip())

    def _ended(self, result: Any) -> None:
        self.running.end(result._host.get_name(), result._task._uuid)

    def v2_runner_on_ok(self, result: Any) -> None:
        self._ended(result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._ended(result)

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._ended(result)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._ended(result)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._stop.set()
        self.running.clear()
