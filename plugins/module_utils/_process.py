# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Process helpers for modules that drive long-running tools (private).

- ``die_with_parent`` (a ``preexec_fn``): the child tool gets SIGTERM when the module process dies,
  even by SIGKILL, so no orphaned pg_dump keeps writing into a set that was abandoned.
- ``terminate_on_signals``: SIGTERM / SIGHUP / SIGINT raise SystemExit inside the block, so the
  module's cleanup (removing a partial backup set, dropping a temporary database) runs when Ansible
  or an operator stops it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import signal
import sys
from collections.abc import Iterator

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: ask the kernel to send SIGTERM to this child when its parent exits (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Interrupted(SystemExit):
    """Raised inside terminate_on_signals() when the process is asked to stop."""


@contextlib.contextmanager
def terminate_on_signals() -> Iterator[None]:
    def _raise(signum: int, _frame: object) -> None:
        raise Interrupted(f"interrupted by signal {signal.Signals(signum).name}")

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        previous[sig] = signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
