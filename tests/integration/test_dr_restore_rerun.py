"""playbooks/dr_restore.yml killed in its cache phase, then rerun as an operator would (issue 10, point 2).

The whole controller goes down with SIGKILL (ansible-playbook, its workers and the redis_restore
module: a crashed or rebooted control node) while redis_restore copies the snapshot into the lab's
Redis data directory. That leaves Redis stopped, its dump.rdb set aside as
``dump.rdb.pre-restore-<id>`` and a partial copy beside it. The prescribed rerun
(``-e dr_restore_confirm=true``) must find that state, put the data in place, say that Redis was
down, and complete: every store equal to the backup, the application up, maintenance off.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
import yaml
from conftest import ROOT, custom_stats, playbook_env, run_playbook
from test_dr_drill_restore import FLAG, all_up, fingerprint

pytestmark = [pytest.mark.playbook, pytest.mark.destructive]

REDIS_DIR = ROOT / ".lab" / "redis"
BIG_DB = 3  # the lab app and the fingerprint use db 0
BIG_KEYS = 160  # 160 MiB of random values: the copy into the data directory takes a while


def lab_redis(lab, db: int = 0) -> redis.Redis:
    r = lab["redis"]
    return redis.Redis(
        host=r["login_host"], port=r["login_port"], password=r["login_password"], db=db, socket_timeout=10
    )


def partial_copies() -> list[Path]:
    return sorted(REDIS_DIR.glob(".dump.rdb.restore-*"))


def kept_files() -> set[str]:
    return {p.name for p in REDIS_DIR.glob("dump.rdb.pre-restore-*")}


def redis_down(lab) -> bool:
    try:
        lab_redis(lab).ping()
    except redis.ConnectionError:
        return True
    return False


def process_tree(pid: int) -> list[int]:
    """pid and every descendant (read from /proc), parents first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def crash(proc: subprocess.Popen) -> None:
    """SIGKILL the playbook run and everything it started, at once (stopped first, so none reacts)."""
    tree = process_tree(proc.pid)
    for pid in tree:
        with _gone():
            os.kill(pid, signal.SIGSTOP)
    tree = process_tree(proc.pid)  # anything forked meanwhile
    for pid in tree:
        with _gone():
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)


class _gone:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return exc_type is ProcessLookupError


@pytest.fixture
def big_cache(lab):
    """160 MiB in the lab Redis (db 3), removed again afterwards with the copies the restores kept."""
    kept_before = kept_files()
    c = lab_redis(lab, BIG_DB)
    pipe = c.pipeline(transaction=False)
    for i in range(BIG_KEYS):
        pipe.set(f"rerun:big:{i}", os.urandom(1 << 20))
    pipe.execute()
    digest = hashlib.sha256(c.get("rerun:big:7")).hexdigest()
    FLAG.unlink(missing_ok=True)
    yield digest, kept_before
    # a failed test may leave the crash's state behind: put the set-aside file back before the lab starts
    new_kept = sorted(kept_files() - kept_before)
    if not (REDIS_DIR / "dump.rdb").exists() and new_kept and redis_down(lab):
        (REDIS_DIR / new_kept[-1]).rename(REDIS_DIR / "dump.rdb")
    for partial in partial_copies():
        partial.unlink(missing_ok=True)
    subprocess.run([str(ROOT / "lab" / "labctl"), "up"], capture_output=True, timeout=300, check=False)
    lab_redis(lab, BIG_DB).flushdb()
    for name in kept_files() - kept_before:
        (REDIS_DIR / name).unlink(missing_ok=True)
    FLAG.unlink(missing_ok=True)


def test_dr_restore_killed_in_the_cache_phase_is_finished_by_a_rerun(lab, big_cache, monkeypatch):
    digest, kept_before = big_cache
    backup = run_playbook("backup.yml", timeout=900)
    assert backup.rc == 0, backup
    backed_up = fingerprint()
    lab_redis(lab).set("rerun:late", "written after the backup")  # the restore must undo it
    assert fingerprint() != backed_up

    argv = [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", "inventories/lab", "playbooks/dr_restore.yml"]
    proc = subprocess.Popen(
        [*argv, "-e", "dr_restore_confirm=true"],
        env=playbook_env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        while not partial_copies():
            assert proc.poll() is None, "dr_restore.yml ended before its cache phase copied the snapshot"
            assert time.monotonic() < deadline, "dr_restore.yml never reached the cache copy"
            time.sleep(0.002)
        crash(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    # the state the crash leaves: Redis stopped, no dump.rdb, the live file set aside, a partial copy
    assert redis_down(lab)
    assert not (REDIS_DIR / "dump.rdb").exists(), "the kill came too late: the copy was already in place"
    assert len(kept_files() - kept_before) == 1, sorted(p.name for p in REDIS_DIR.iterdir())
    assert len(partial_copies()) == 1
    assert FLAG.exists(), "maintenance was on when the run was killed"

    # the rerun an operator runs: same command
    monkeypatch.setenv("ANSIBLE_SHOW_CUSTOM_STATS", "true")  # the set_stats data, printed at the end
    rerun = run_playbook("dr_restore.yml", "-e", "dr_restore_confirm=true", timeout=900)
    assert rerun.rc == 0, rerun
    stats = custom_stats(rerun.out)["runbook_dr_restore"]
    # what the rerun restored, one entry per set: kind, source, backup id, root and the host
    assert stats["status"] == "restored" and {r["kind"] for r in stats["restored"]} == {"postgresql", "redis", "s3"}
    pinned = {(c["kind"], c["source"], c["backup_id"]) for c in stats["verified"]["components"]}
    assert {(r["kind"], r["source"], r["backup_id"]) for r in stats["restored"]} <= pinned, stats
    assert all(r["root"] and r["host"] == "lab" for r in stats["restored"]), stats["restored"]
    words = " ".join(rerun.out.split())  # warnings are wrapped at the terminal width
    assert "is down: finishing the restore of set" in words, rerun.out[-4000:]
    assert not redis_down(lab)
    assert fingerprint() == backed_up  # every store as backed up, the late write gone
    assert hashlib.sha256(lab_redis(lab, BIG_DB).get("rerun:big:7")).hexdigest() == digest
    assert partial_copies() == []
    assert all_up() and not FLAG.exists()


def test_cache_whose_start_fails_gets_its_previous_data_back(lab, tmp_path):
    """The cache does not start with the restored snapshot (its start command fails once, as a broken
    unit would): dr_restore stops it again, puts the previous data back, starts it and fails, saying
    so. The data written after the backup is still there and no kept file is left behind."""
    backup = run_playbook("backup.yml", timeout=900)
    assert backup.rc == 0, backup
    lab_redis(lab).set("rerun:after-backup", "kept by the roll-back")
    before = kept_files()
    flag = tmp_path / "fail-once"
    flag.write_text("1")
    components = yaml.safe_load((ROOT / "inventories" / "lab" / "group_vars" / "all.yml").read_text())
    components = components["runbook_components"]
    cache = next(c for c in components if c["name"] == "redis")
    cache["control"]["start"] = [
        "sh",
        "-c",
        f'if [ -e "{flag}" ]; then rm -f "{flag}"; echo boom >&2; exit 3; fi; exec "$0" up redis',
        "{{ runbook_lab_labctl }}",
    ]
    extra = tmp_path / "components.json"
    extra.write_text(json.dumps({"runbook_components": components, "dr_restore_kinds": ["redis"]}))
    try:
        run = run_playbook("dr_restore.yml", "-e", "dr_restore_confirm=true", "-e", f"@{extra}", timeout=900)
        assert run.rc != 0, run
        words = " ".join(run.out.split())
        assert "(4/6) RESTORE: cache" in words, run
        assert "the previous data is back in place and the cache is running" in words, run
        assert not flag.exists()
        assert lab_redis(lab).get("rerun:after-backup") == b"kept by the roll-back"
        assert kept_files() == before and partial_copies() == []
    finally:
        subprocess.run([str(ROOT / "lab" / "labctl"), "up"], capture_output=True, timeout=300, check=False)
        FLAG.unlink(missing_ok=True)  # maintenance, which the failed restore left on
        lab_redis(lab).delete("rerun:after-backup", "maintenance")
