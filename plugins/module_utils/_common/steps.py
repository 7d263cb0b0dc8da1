# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The step recorder behind every module's ``steps`` return value (private)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Steps:
    """Ordered record of what a module run did, with durations: ``[{step, duration_s}]``.

    Either around the work (``with steps.step("dump shop"):``) or after it (``steps.mark("dump
    shop")``: the time since the previous step ended, or since the recorder was made)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._since = time.monotonic()

    def _add(self, label: str, started: float) -> None:
        now = time.monotonic()
        self.items.append({"step": label, "duration_s": round(now - started, 3)})
        self._since = now

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self._add(label, started)

    def mark(self, label: str) -> None:
        self._add(label, self._since)
