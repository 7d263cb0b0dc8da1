"""A long module stops, and cleans up, when its controller goes away (issue 10, point 8).

ansible-playbook (local connection, as in the lab inventory) runs postgresql_backup of a database
whose partitioned table another session holds in ACCESS EXCLUSIVE mode: pg_dump waits on that lock
for as long as the test wants, at no cost. Once pg_dump runs, the test stops ansible-playbook the way
an operator or AWX does and checks that within 15 s the module, its pg_dump and the Ansible worker
are gone and the partial backup set was removed.

- SIGKILL: what ansible-runner (AWX cancel, job timeout) sends to ansible-playbook's process group.
  The worker is a process group of its own and survives; before the controller watch of
  terminate_on_signals() the module ran on until the lock went away and sealed the set.
- SIGTERM to ansible-playbook, SIGINT to its process group (Ctrl-C): ansible-core passes them on to
  its workers, which signal the module (kept here so that the watch does not break them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import test_backup_upload_download as transfer
from conftest import COLLECTIONS_PATH, PYTHON, ROOT, module_env, pg_connect, psql

from ansible_collections.runbook.stack.plugins.module_utils._common.process import parent_pid

pytestmark = [pytest.mark.playbook]

STOP_WITHIN = 15  # seconds
s3cli = transfer.s3cli  # fixtures: the lab's S3 client and a fresh bucket
bucket = transfer.bucket


def processes_with(text: str) -> dict[int, str]:
    """{pid: command line} of every process whose command line contains ``text``."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found[int(entry.name)] = cmdline
    return found


def wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.fixture
def locked_db(lab):
    """A database whose pg_dump blocks: its partitioned table is locked by another session (the
    row counts of the module read only the partition, so only pg_dump waits)."""
    name = f"rb_gone_{uuid.uuid4().hex[:8]}"
    psql(lab, f"CREATE DATABASE {name}")
    psql(
        lab,
        "CREATE TABLE parted (id int) PARTITION BY RANGE (id);"
        "CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (1000);"
        "INSERT INTO parted SELECT generate_series(0, 999);",
        db=name,
    )
    locker = pg_connect(lab, name, autocommit=False, app="rb-it-locker")
    with locker.cursor() as cur:
        cur.execute("LOCK TABLE ONLY parted IN ACCESS EXCLUSIVE MODE")
    try:
        yield name
    finally:
        locker.close()  # releases the lock: a module left running would finish now
        psql(
            lab,
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
            f"DROP DATABASE IF EXISTS {name}",
        )


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGINT to the process group"])
def test_stopping_ansible_playbook_stops_the_backup_and_removes_the_partial_set(
    lab, locked_db, tmp_backup_root, tmp_path, how
):
    pg = lab["pg"]
    playbook = tmp_path / "long_backup.yml"
    playbook.write_text(
        f"""- name: A backup that waits on a lock
  hosts: lab
  gather_facts: false
  tasks:
    - name: Back up {locked_db}
      runbook.stack.postgresql_backup:
        login_host: {pg["login_host"]}
        login_port: {pg["login_port"]}
        login_user: {pg["login_user"]}
        login_password: {pg["login_password"]}
        name: {locked_db}
        dest: {tmp_backup_root}
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "REDIS", "AWS_"))}
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_PATH),
        ANSIBLE_NOCOLOR="1",
    )
    log = (tmp_path / "ansible.log").open("w")
    controller = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", "inventories/lab", str(playbook)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a process group of its own, as a terminal's foreground job
    )
    set_dir = tmp_backup_root / "postgresql" / locked_db
    dump_marker = f"--file={set_dir}/"
    module: dict[int, str] = {}
    left: dict[int, str] = {}

    def everything_stopped() -> bool:
        left.clear()
        left.update(processes_with(dump_marker) | processes_with(str(playbook)))
        left.update({pid: cmd for pid, cmd in module.items() if Path(f"/proc/{pid}").exists()})
        return not left

    try:
        assert wait_until(lambda: processes_with(dump_marker), 60), "pg_dump did not start"
        time.sleep(1)  # pg_dump waits on the lock
        dumps = processes_with(dump_marker)
        module.update({ppid: "the module (parent of pg_dump)" for ppid in map(parent_pid, dumps) if ppid})
        assert module and dumps, "the backup is not running any more"
        assert controller.poll() is None
        assert list(set_dir.iterdir()), "the set being written is in place"

        if how == "SIGINT to the process group":
            os.killpg(controller.pid, signal.SIGINT)
        else:
            controller.send_signal(getattr(signal, how))
        assert wait_until(everything_stopped, STOP_WITHIN), (
            f"{how} to ansible-playbook: still running after {STOP_WITHIN} s: {left}"
        )
        assert not list(set_dir.iterdir()), f"the partial backup set was not removed: {list(set_dir.iterdir())}"
    finally:
        everything_stopped()
        for pid in left:  # a module left behind by a failing run: do not let it finish the backup
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if controller.poll() is None:
            os.killpg(controller.pid, signal.SIGKILL)
        controller.wait()
        log.close()


def test_download_stops_and_removes_its_partial_directory_when_nobody_reads_its_output(
    lab, module, s3cli, bucket, tmp_path
):
    """The module's output pipe loses its reader (a worker that died, an ssh session that dropped):
    backup_download stops within a second or two and leaves neither the set nor its .partial-*."""
    files = {f"data/{n}.bin": os.urandom(2 * transfer.MIB) for n in range(60)}
    writer = transfer.make_set(tmp_path / "src", files)
    src = f"s3://{bucket}/p"
    assert (
        module("backup_upload", transfer.conn(lab, path=writer.path, dest=src) | transfer.tuning())["changed"] is True
    )
    dest_root = tmp_path / "dst"
    source_dir = dest_root / "postgresql" / "app"
    work = tmp_path / "work"
    work.mkdir()
    args_file = work / "args.json"
    args = transfer.conn(lab, src=src, kind="postgresql", source="app", dest_root=str(dest_root))
    args |= transfer.tuning(concurrency=1)
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": False}}))
    args_file.chmod(0o600)
    proc = subprocess.Popen(
        [str(PYTHON), "-m", "ansible_collections.runbook.stack.plugins.modules.backup_download", str(args_file)],
        cwd=work,
        env=module_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: source_dir.is_dir() and any(source_dir.glob("*.partial-*/data/*.bin")), 60), (
            "the download did not start"
        )
        proc.stdout.close()  # the controller is gone: nobody will read the result
        t0 = time.monotonic()
        proc.wait(timeout=STOP_WITHIN)
        stopped_s = time.monotonic() - t0
        assert list(source_dir.iterdir()) == [], (
            f"the download went on for {stopped_s:.1f} s without a reader: {list(source_dir.iterdir())}"
        )
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
