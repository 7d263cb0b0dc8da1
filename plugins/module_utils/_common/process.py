# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Process helpers for modules that drive long-running tools (private).

- ``die_with_parent`` (a ``preexec_fn``): the child tool gets SIGTERM when the module process dies,
  even by SIGKILL, so no orphaned pg_dump keeps writing into a set that was abandoned.
- ``BoundedChild``: a tool (pg_dump, redis-cli --rdb) run as a child that dies with the module, is
  killed when the block it runs in fails, and is waited on with a bound; its output goes to a file.
- ``run_detached``: a stop/start command of a server (argv, no shell), in its own session and
  without ``die_with_parent``: the server it starts must outlive the module.
- ``terminate_on_signals`` (a block) / ``stop_on_signals`` (from now on): SIGTERM / SIGHUP / SIGINT
  raise ``Interrupted`` (a SystemExit), so the module's cleanup (removing a partial backup set,
  dropping a temporary database) runs when Ansible or an operator stops it. It also watches the controller (``ControllerWatch``): when nobody can
  read the module's result any more, the module stops the same way, within about a second.

Why the watch: killing ansible-playbook with SIGKILL (what ansible-runner, hence AWX, does on cancel)
signals neither its workers (each is a process group of its own) nor the modules they run, and over
ssh a lost session sends no SIGHUP to a module without a pty. The module's stdout is a pipe to
whoever reads its result (the local worker, sshd); two things mean that reader is gone:

- the pipe has no reader any more: ``poll()`` reports POLLERR (POLLHUP for a socket);
- the reader lost its parent (it was re-parented): the ansible-playbook process that started the
  worker died, and the worker would only wait for a result that no one collects.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line

_PR_SET_PDEATHSIG = 1
WATCH_INTERVAL = 0.5  # seconds between two looks at the controller


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


def watchable(fd: int) -> bool:
    """True when ``fd`` is a pipe or a socket (a reader that can go away); not a tty or a file."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def reader_gone(fd: int) -> bool:
    """True when nobody reads the pipe or socket ``fd`` any more (POLLERR / POLLHUP, no waiting)."""
    poller = select.poll()
    poller.register(fd, select.POLLERR | select.POLLHUP)
    return any(revents & (select.POLLERR | select.POLLHUP) for _fd, revents in poller.poll(0))


def parent_pid(pid: int) -> int | None:
    """The parent of process ``pid`` from /proc, or None when it is gone (or there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
    fields = raw[raw.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def _reads_pipe(pid: int, target: str) -> bool:
    """True when process ``pid`` holds ``target`` (a /proc fd link, ``pipe:[inode]``) open for reading."""
    fd_dir = f"/proc/{pid}/fd"
    for name in os.listdir(fd_dir):
        try:
            if os.readlink(f"{fd_dir}/{name}") != target:
                continue
            with open(f"/proc/{pid}/fdinfo/{name}", encoding="ascii") as f:
                flags = next((line.split()[1] for line in f if line.startswith("flags:")), "1")
        except OSError:
            continue
        if (int(flags, 8) & os.O_ACCMODE) in (os.O_RDONLY, os.O_RDWR):
            return True
    return False


def pipe_reader(fd: int, start: int, depth: int = 8) -> int | None:
    """The nearest ancestor (``start``, its parent, ...) that holds the read end of pipe ``fd``.

    Linux only; None when it cannot be told (no /proc, the reader's files are not readable by this
    user, the reader is no ancestor, ``fd`` is not a pipe)."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    if not target.startswith("pipe:"):
        return None
    pid: int | None = start
    for _level in range(depth):
        if pid is None or pid <= 1:
            return None
        try:
            if _reads_pipe(pid, target):
                return pid
        except OSError:  # another user's process (sshd), or it is gone
            return None
        pid = parent_pid(pid)
    return None


class ControllerWatch:
    """A daemon thread that looks at the reader of ``fd`` every ``interval`` seconds and, once it is
    gone (see the module docstring), records why in ``reason`` and sends SIGTERM to the main thread."""

    def __init__(self, fd: int = 1, interval: float = WATCH_INTERVAL) -> None:
        self.fd = fd
        self.interval = interval
        self.reason = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: int | None = None
        self._reader_parent: int | None = None

    def check(self) -> str:
        """Why the controller is gone, or "" while it is there."""
        if reader_gone(self.fd):
            return "the controller went away (nobody reads the module's output any more)"
        if self._reader is not None and parent_pid(self._reader) != self._reader_parent:
            return f"the controller went away (process {self._reader_parent}, which started the reader of the module's output, ended)"
        return ""

    def start(self) -> ControllerWatch:
        if not watchable(self.fd):
            return self
        self._reader = pipe_reader(self.fd, os.getppid())
        self._reader_parent = parent_pid(self._reader) if self._reader is not None else None
        if self._reader_parent is None:
            self._reader = None
        main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._run, args=(main,), name="controller-watch", daemon=True)
        self._thread.start()
        return self

    def _run(self, main: int | None) -> None:
        while not self._stop.wait(self.interval):
            reason = self.check()
            if reason:
                self.reason = reason
                if main is not None:
                    signal.pthread_kill(main, signal.SIGTERM)
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


def stop_on_signals(watch_controller: bool = True, interval: float = WATCH_INTERVAL) -> Callable[[], None]:
    """From now on SIGTERM / SIGHUP / SIGINT raise ``Interrupted`` (main thread only); returns the
    function that puts the previous handlers back and ends the watch.

    With ``watch_controller`` a ``ControllerWatch`` on stdout turns the loss of the controller into
    the same SIGTERM, so the module stops within about ``interval`` seconds after it. A module whose
    work is one long ``try`` block in main() calls this before it and catches ``Interrupted``."""
    watch = ControllerWatch(1, interval)

    def _raise(signum: int, _frame: object) -> None:
        if watch.reason:
            raise Interrupted(f"interrupted: {watch.reason}")
        raise Interrupted(f"interrupted by signal {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, _raise) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    if watch_controller:
        watch.start()

    def restore() -> None:
        watch.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


@contextlib.contextmanager
def terminate_on_signals(watch_controller: bool = True, interval: float = WATCH_INTERVAL) -> Iterator[None]:
    """``stop_on_signals()`` for the block only."""
    restore = stop_on_signals(watch_controller, interval)
    try:
        yield
    finally:
        restore()


def run_detached(
    argv: list[str],
    env: dict[str, str],
    timeout: float,
    ids: dict[str, Any] | None = None,
    cwd: str | None = None,
    secret: str | None = None,
) -> tuple[int, str]:
    """Run a server's stop/start command (argv, no shell); (rc, the output's tail on one line, with
    ``secret`` masked). rc 127: it could not run; -1: it did not return within ``timeout`` s (killed).

    The output goes to a file, not a pipe: a server that forks into the background would keep a pipe
    open. Own session and no ``die_with_parent``: the started server must outlive the module.
    ``ids``: Popen's ``user``/``group``/``extra_groups`` to run it as another user (root only)."""
    with tempfile.TemporaryFile() as out:
        try:
            # helpers take values, not the module; the child may run as another user and must outlive us
            proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **(ids or {}),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return 127, f"cannot run {argv[0]}: {getattr(exc, 'strerror', None) or exc}"
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -1, f"did not return within {timeout:g} s"
        out.seek(0)
        return rc, one_line(out.read()[-1000:].decode("utf-8", "replace"), secret)


class ChildTimeout(Exception):
    """A BoundedChild did not finish within its bound (it has been killed)."""


class BoundedChild:
    """A tool run as a child of the module, in a ``with`` block:

        with BoundedChild(argv, env) as child:
            ...                       # work while the tool runs (counting rows in its snapshot)
            rc = child.wait(timeout)  # ChildTimeout when it runs longer (then it is killed)
            output = child.output()

    It gets SIGTERM when the module dies (``die_with_parent``), and SIGKILL when the block is left by
    an exception (an interrupt, a failed step) while it still runs. Its output (``stderr`` only, or
    ``all``: stdout and stderr) goes to a temporary file, not a pipe: nothing to drain while it runs.
    """

    def __init__(self, argv: list[str], env: dict[str, str], capture: str = "all", cwd: str | None = None) -> None:
        self.argv = list(argv)
        self.env = env
        self.capture = capture
        self.cwd = cwd
        self.returncode: int | None = None
        self._out: Any = None
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> BoundedChild:
        self._out = tempfile.TemporaryFile()
        try:
            # helpers take values, not the module; the child must die with the module (PR_SET_PDEATHSIG)
            self._proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL if self.capture == "stderr" else self._out,
                stderr=self._out if self.capture == "stderr" else subprocess.STDOUT,
                preexec_fn=die_with_parent,  # pylint: disable=subprocess-popen-preexec-fn
            )
        except BaseException:
            self._out.close()
            raise
        return self

    def wait(self, timeout: float | None) -> int:
        """The exit code; ChildTimeout (the child killed) when it runs longer than ``timeout`` s."""
        if self._proc is None:
            raise RuntimeError("BoundedChild.wait() outside its with block")
        try:
            self.returncode = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            raise ChildTimeout(f"{os.path.basename(self.argv[0])} did not finish within {timeout:g} s") from None
        return self.returncode

    def output(self, limit: int = 2000) -> bytes:
        """The last ``limit`` bytes of what it wrote."""
        self._out.seek(0, os.SEEK_END)
        size = self._out.tell()
        self._out.seek(max(0, size - limit))
        return self._out.read()

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def __exit__(self, *exc: object) -> None:
        try:
            self._kill()
        finally:
            self._out.close()
