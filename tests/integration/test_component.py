"""Role component on its own (through tests/integration/playbooks/component.yml): entry points, pid-file stops.

The startup/shutdown tests drive the role through the lab's services; these cover the pid-file
cases the lab does not have: a process whose parent does not reap it (a zombie counts as stopped,
so the stop neither times out nor falls back to SIGKILL), and a component with a status command
and a pid file but no stop command (the pid file says which process to signal). They also call each
entry point (tasks_from start, stop, probe, validate) and the deprecated main with component_action.
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

import pytest
from conftest import run_playbook

pytestmark = [pytest.mark.playbook]

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


def component_play(action: str, component: dict, *args: str, main: bool = False) -> tuple:
    """Runs the entry point `action` (include_role tasks_from), or with ``main`` the deprecated main
    entry point with ``component_action``; returns the run and the facts the role set."""
    key = "test_component_action" if main else "test_entry_point"
    run = run_playbook(PLAYBOOK, "-e", json.dumps({key: action, "test_component": component}), *args)
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


def alive(pid: int) -> bool:
    """The process exists and is neither a zombie nor dead."""
    try:
        return proc_state(pid) not in ("Z", "X")
    except FileNotFoundError:
        return False


def entry_point_ran(run, entry: str) -> bool:
    """The role was entered at `entry`: its argument spec (meta/argument_specs.yml) was checked."""
    return f"Validating arguments against arg spec '{entry}'" in run.out


def test_each_entry_point_with_tasks_from(tmp_path: Path):
    pidfile = tmp_path / "sleeper.pid"
    component = {
        "name": "sleeper",
        "tier": "app",
        "control": {
            "type": "command",
            # the shell exits at once; the sleep it leaves behind is the component's process
            "start": ["sh", "-c", f"sleep 300 >/dev/null 2>&1 & echo $! > {pidfile}"],
            "pidfile": str(pidfile),
            "stop_timeout": 5,
        },
    }
    pid = 0
    try:
        run, facts = component_play("probe", component)
        assert run.rc == 0 and entry_point_ran(run, "probe"), run
        assert facts == {"running": False, "changed": None, "pid": ""}, run

        run, facts = component_play("start", component, "--check")
        assert run.rc == 0 and entry_point_ran(run, "start"), run
        assert facts["running"] is False and facts["changed"] is True, run
        assert "sleeper is not running: a real run starts it" in run.out, run
        assert not pidfile.exists(), "check mode ran the start command"

        run, facts = component_play("start", component)
        assert run.rc == 0 and entry_point_ran(run, "start"), run
        assert "Run the start command of sleeper" in run.out, run
        assert facts["running"] is False and facts["changed"] is True, run
        pid = int(pidfile.read_text())
        assert alive(pid), "start did not leave the process running"

        run, facts = component_play("start", component)
        assert run.rc == 0 and run.changed() == 0, run
        assert facts == {"running": True, "changed": False, "pid": str(pid)}, run

        run, facts = component_play("probe", component)
        assert run.rc == 0 and run.changed() == 0 and entry_point_ran(run, "probe"), run
        assert facts["running"] is True and facts["pid"] == str(pid), run

        run, facts = component_play("stop", component, "--check")
        assert run.rc == 0 and entry_point_ran(run, "stop"), run
        assert facts["running"] is True and facts["changed"] is True, run
        assert "sleeper is running: a real run stops it" in run.out, run
        assert alive(pid), "check mode stopped the process"

        run, facts = component_play("stop", component)
        assert run.rc == 0 and entry_point_ran(run, "stop"), run
        assert facts == {"running": True, "changed": True, "pid": str(pid)}, run
        assert not alive(pid), "stop left the process running"

        run, facts = component_play("stop", component)
        assert run.rc == 0 and run.changed() == 0, run
        assert facts["running"] is False and facts["changed"] is False, run

        run = run_playbook(
            PLAYBOOK, "-e", json.dumps({"test_entry_point": "validate", "test_component_list": [component]})
        )
        assert run.rc == 0 and entry_point_ran(run, "validate"), run
        assert "Every component has a name, a known tier and a control type" in run.out, run
    finally:
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_main_with_component_action_still_works(tmp_path: Path):
    proc = subprocess.Popen(["sleep", "300"])
    try:
        pidfile = tmp_path / "sleep.pid"
        pidfile.write_text(f"{proc.pid}\n")
        component = {"name": "old-style", "tier": "app", "control": {"type": "command", "pidfile": str(pidfile)}}
        run, facts = component_play("probe", component, main=True)
        assert run.rc == 0 and entry_point_ran(run, "main"), run
        assert facts["running"] is True and facts["pid"] == str(proc.pid), run
        run, facts = component_play("stop", component, main=True)
        assert run.rc == 0 and entry_point_ran(run, "main"), run
        assert facts["running"] is True and facts["changed"] is True, run
        assert proc.wait(10) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_validate_rejects_bad_entries_with_the_startup_message():
    good = {"name": "fine", "tier": "cache", "control": {"type": "systemd", "unit": "redis-server"}}
    ghost = {"name": "ghost", "tier": "middleware", "control": {"type": "command", "start": ["/bin/true"]}}
    nameless = {"tier": "app", "control": {"type": "docker", "container": "shop"}}
    untyped = {"name": "untyped", "tier": "proxy", "control": {"type": "k8s"}}
    run = run_playbook(
        PLAYBOOK,
        "-e",
        json.dumps({"test_entry_point": "validate", "test_component_list": [good, ghost, nameless, untyped]}),
    )
    # a compose component without its project directory (the list is otherwise fine)
    projectless = {"name": "cache", "tier": "cache", "control": {"type": "compose", "service": "redis"}}
    run_compose = run_playbook(
        PLAYBOOK, "-e", json.dumps({"test_entry_point": "validate", "test_component_list": [good, projectless]})
    )
    assert run_compose.rc != 0, run_compose
    assert (
        "runbook_components entry cache: control type compose needs control.project_src (the directory of the"
        " compose project) and control.service (the service in it); got project_src (none), service redis"
    ) in run_compose.out, run_compose
    assert run.rc != 0, run
    # the message startup's and shutdown's own validate.yml gave, word for word
    expected = [
        "runbook_components entry ghost: needs name, tier (storage, database, cache, app or proxy) and"
        " control.type (systemd, docker, compose or command); got tier middleware, control.type command",
        "runbook_components entry {'tier': 'app', 'control': {'type': 'docker', 'container': 'shop'}}: needs name,"
        " tier (storage, database, cache, app or proxy) and control.type (systemd, docker, compose or command); got tier"
        " app, control.type docker",
        "runbook_components entry untyped: needs name, tier (storage, database, cache, app or proxy) and"
        " control.type (systemd, docker, compose or command); got tier proxy, control.type k8s",
    ]
    for message in expected:
        assert message in run.out, (message, run)
    assert "ok: [lab] => (item=fine)" in run.out, run
