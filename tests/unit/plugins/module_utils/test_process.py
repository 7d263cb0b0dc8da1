"""The controller watch of _process: a pipe whose reader left, a reader that lost its parent.

Real pipes, sockets and processes (no mocks): the children are small Python programs that run
``terminate_on_signals()`` the way a module does and write what stopped them into a file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.runbook.stack.plugins.module_utils._common import process
from ansible_collections.runbook.stack.plugins.module_utils._common.process import (
    BoundedChild,
    ChildTimeout,
    ControllerWatch,
    parent_pid,
    pipe_reader,
    reader_gone,
    run_detached,
    terminate_on_signals,
    watchable,
)

# the children import the collection from where this run found it: the directory that holds
# ansible_collections/ (.cache/collections here, the tree ansible-test set up under ansible-test units)
COLLECTIONS = Path(process.__file__).parents[6]
ENV = {**os.environ, "PYTHONPATH": str(COLLECTIONS)}

# A "module": inside terminate_on_signals() it waits a minute, unless it is interrupted; it writes
# what happened into the file named by argv[1].
MODULE = """
import os, sys, time
from ansible_collections.runbook.stack.plugins.module_utils._common.process import Interrupted, terminate_on_signals
out = sys.argv[1]
try:
    with terminate_on_signals(interval=0.1):
        open(out + ".started", "w").write(str(os.getpid()))
        time.sleep(60)
    open(out, "w").write("finished")
except Interrupted as exc:
    open(out, "w").write(str(exc))
"""

# The reader of the module's output (an Ansible worker): runs MODULE with stdout on a pipe and waits.
READER = """
import subprocess, sys
subprocess.run([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, check=False)
"""

# What starts the reader (ansible-playbook): starts it and waits; the test kills it with SIGKILL.
LAUNCHER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3]], stdout=subprocess.DEVNULL)
time.sleep(120)
"""


def wait_started(out: Path) -> int:
    """The pid of the MODULE writing ``out``, once it is inside its terminate_on_signals() block."""
    pid = wait_for(Path(f"{out}.started"), 15)
    assert pid, "the module did not start"
    return int(pid)


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_for(path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size:
            return path.read_text()
        time.sleep(0.05)
    return ""


def test_reader_gone_on_a_pipe():
    r, w = os.pipe()
    try:
        assert watchable(w)
        assert not reader_gone(w)
        os.close(r)
        assert reader_gone(w)
    finally:
        os.close(w)


def test_reader_gone_on_a_socket():
    a, b = socket.socketpair()
    try:
        assert watchable(a.fileno())
        assert not reader_gone(a.fileno())
        b.close()
        assert reader_gone(a.fileno())
    finally:
        a.close()


def test_files_are_not_watched(tmp_path):
    with open(tmp_path / "f", "w") as f:
        assert not watchable(f.fileno())


def test_parent_pid():
    assert parent_pid(os.getpid()) == os.getppid()
    child = subprocess.Popen(["sleep", "0"])
    child.wait()
    assert parent_pid(child.pid) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_pipe_reader_is_the_ancestor_holding_the_read_end():
    code = (
        "import os\n"
        "from ansible_collections.runbook.stack.plugins.module_utils._common.process import pipe_reader\n"
        "print(pipe_reader(1, os.getppid()))\n"
    )
    # directly, and through two shells that hold the write end (as Ansible's /bin/sh -c does)
    direct = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, check=True)
    assert direct.stdout.strip() == str(os.getpid())
    r, w = os.pipe()
    try:
        assert pipe_reader(w, os.getpid()) == os.getpid()
        os.close(r)
        r = -1
        assert pipe_reader(w, os.getpid()) is None, "no ancestor reads it"
    finally:
        os.close(w)
        if r >= 0:
            os.close(r)
    inner = f"{sys.executable} -c '{code}'"
    shells = subprocess.run(
        ["/bin/sh", "-c", f'/bin/sh -c "{inner}" && true'], env=ENV, capture_output=True, text=True, check=True
    )
    assert shells.stdout.strip() == str(os.getpid())


def test_watch_stops_cleanly_and_sees_the_reader_leave():
    r, w = os.pipe()
    try:
        watch = ControllerWatch(w, interval=0.05).start()
        assert watch._thread is not None and watch._thread.is_alive()
        watch.stop()
        assert not watch._thread.is_alive()
        assert watch.check() == ""
        os.close(r)
        r = -1
        assert "controller went away" in watch.check()
        assert watch.reason == "", "a stopped watch signals nothing"
    finally:
        os.close(w)
        if r >= 0:
            os.close(r)


def test_handlers_are_restored_after_the_block():
    before = signal.getsignal(signal.SIGTERM)
    with terminate_on_signals():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_module_stops_when_the_reader_of_its_output_leaves(tmp_path):
    out = tmp_path / "result"
    proc = subprocess.Popen([sys.executable, "-c", MODULE, str(out)], env=ENV, stdout=subprocess.PIPE)
    try:
        wait_started(out)
        time.sleep(0.3)
        assert not out.exists(), "the module stopped while its controller was there"
        proc.stdout.close()  # the controller is gone: nobody reads the module's result
        message = wait_for(out, 5)
        assert "interrupted: the controller went away (nobody reads" in message
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
        proc.wait()


def test_module_stops_when_its_reader_is_orphaned(tmp_path):
    out = tmp_path / "result"
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, READER, MODULE, str(out)], env=ENV, stdout=subprocess.DEVNULL
    )
    module_pid = 0
    try:
        module_pid = wait_started(out)
        time.sleep(0.3)
        assert not out.exists(), "the module stopped while its controller was there"
        launcher.send_signal(signal.SIGKILL)  # ansible-playbook killed: the reader (worker) lives on
        launcher.wait()
        message = wait_for(out, 5)
        assert "interrupted: the controller went away (process" in message
    finally:
        launcher.kill()
        launcher.wait()
        if module_pid:
            kill_quietly(module_pid)


def test_run_detached_returns_rc_and_the_masked_output_tail():
    rc, out = run_detached(
        [sys.executable, "-c", "import sys; print('starting  with\\n s3cr3t'); sys.exit(3)"],
        dict(os.environ),
        10,
        secret="s3cr3t",
    )
    assert rc == 3
    assert out == "starting with ********"


def test_run_detached_does_not_wait_for_a_server_it_started_in_the_background(tmp_path):
    # a start command that forks a server which keeps stdout open: returns at once, and the server
    # lives on in its own session (no die-with-parent)
    pidfile = tmp_path / "pid"
    script = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        f"    open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(30); os._exit(0)\n"
        "print('forked')\n"
    )
    started = time.monotonic()
    rc, out = run_detached([sys.executable, "-c", script], dict(os.environ), 20)
    assert (rc, out) == (0, "forked")
    assert time.monotonic() - started < 10
    for _attempt in range(100):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.05)
    pid = int(pidfile.read_text())
    try:
        assert os.getsid(pid) != os.getsid(0), "the started server shares the caller's session"
    finally:
        os.kill(pid, signal.SIGKILL)


def test_run_detached_reports_what_cannot_run_and_what_hangs(tmp_path):
    assert run_detached([str(tmp_path / "missing")], dict(os.environ), 5) == (
        127,
        f"cannot run {tmp_path / 'missing'}: No such file or directory",
    )
    rc, out = run_detached([sys.executable, "-c", "import time; time.sleep(30)"], dict(os.environ), 0.5)
    assert (rc, out) == (-1, "did not return within 0.5 s")


def test_bounded_child_returns_the_exit_code_and_the_tail_of_its_output():
    script = "import sys; sys.stdout.write('o' * 5000); sys.stdout.flush(); sys.stderr.write('the end'); sys.exit(4)"
    with BoundedChild([sys.executable, "-c", script], dict(os.environ)) as child:
        assert child.wait(20) == 4
        assert child.output(10) == b"ooothe end"
    with BoundedChild([sys.executable, "-c", script], dict(os.environ), capture="stderr") as child:
        child.wait(20)
        assert child.output() == b"the end"


def test_bounded_child_is_killed_past_its_bound_and_when_the_block_fails():
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    with BoundedChild(sleeper, dict(os.environ)) as child:
        with pytest.raises(ChildTimeout, match=r"did not finish within 0\.3 s"):
            child.wait(0.3)
        assert child._proc.poll() is not None, "the child outlived its bound"
    with pytest.raises(RuntimeError), BoundedChild(sleeper, dict(os.environ)) as child:
        raise RuntimeError("a failed step while the tool runs")
    assert child._proc.poll() is not None, "the child outlived the failed block"
