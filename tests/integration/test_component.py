"""Role component on its own (through tests/integration/playbooks/component.yml): pid-file stops.

The startup/shutdown tests drive the role through the lab's services; these cover the pid-file
cases the lab does not have: a process whose parent does not reap it (a zombie counts as stopped,
so the stop neither times out nor falls back to SIGKILL), and a component with a status command
and a pid file but no stop command (the pid file says which process to signal).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import run_playbook

PLAYBOOK = "../tests/integration/playbooks/component.yml"

# The parent forks a child that runs until signalled, writes the child's pid to argv[1] and does not
# wait for it: once signalled, the child stays a zombie. On SIGUSR1 the parent reaps it and prints
# the signal that ended it.
NON_REAPING_PARENT = textwrap.dedent(
    """
    import os, signal, sys, time
    child = os.fork()
    if child == 0:
        while True:
            time.sleep(1)
    reap = []
    signal.signal(signal.SIGUSR1, lambda *_: reap.append(1))
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(f"{child}\\n")
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    while not reap:
        time.sleep(0.05)
    _, status = os.waitpid(child, 0)
    print(os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1, flush=True)
    """
)


def component_play(action: str, component: dict) -> tuple:
    run = run_playbook(PLAYBOOK, "-e", json.dumps({"component_action": action, "test_component": component}))
    facts = None
    for line in run.out.splitlines():
        if "COMPONENT_FACTS " in line:
            facts = json.loads(line.split("COMPONENT_FACTS ", 1)[1].rstrip('"').replace('\\"', '"'))
    return run, facts


def wait_for_file(path: Path, seconds: float = 10) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written within {seconds}s")


def proc_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def test_stop_counts_an_unreaped_child_as_stopped(tmp_path: Path):
    pidfile = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", NON_REAPING_PARENT, str(pidfile)], stdout=subprocess.PIPE, text=True
    )
    try:
        child = int(wait_for_file(pidfile))
        component = {
            "name": "zombie-maker",
            "tier": "app",
            "control": {"type": "command", "pidfile": str(pidfile), "stop_timeout": 5},
        }
        run, facts = component_play("stop", component)
        assert run.rc == 0, run
        assert facts and facts["running"] is True and facts["changed"] is True and facts["pid"] == str(child), run
        # stopped by the graceful signal alone: the zombie was not waited on until SIGKILL
        assert proc_state(child) == "Z", "the child should still be an unreaped zombie here"
        run, facts = component_play("probe", component)
        assert run.rc == 0 and facts and facts["running"] is False, run
        parent.send_signal(signal.SIGUSR1)
        assert parent.wait(10) == 0
        assert int(parent.stdout.read().strip()) == signal.SIGTERM, "the child was not ended by SIGTERM"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)


def test_stop_signals_the_pidfile_process_of_a_component_with_a_status_command(tmp_path: Path):
    proc = subprocess.Popen(["sleep", "300"])
    try:
        pidfile = tmp_path / "sleep.pid"
        pidfile.write_text(f"{proc.pid}\n")
        component = {
            "name": "status-and-pidfile",
            "tier": "app",
            "control": {
                "type": "command",
                "status": ["test", "-d", f"/proc/{proc.pid}/fd"],
                "pidfile": str(pidfile),
                "stop_timeout": 5,
            },
        }
        run, facts = component_play("stop", component)
        assert run.rc == 0, run
        assert facts and facts["changed"] is True and facts["pid"] == str(proc.pid), run
        assert proc.wait(10) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
