# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers of _pgbackrest_swap: postmaster.pid states, placement checks, restore argv, log tail."""

from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest import PgBackRestError, Runner
from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest_swap import (
    Plan,
    check_placement,
    in_place_restore_argv,
    log_tail,
    postmaster_pid,
)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_postmaster_pid_states(tmp_path):
    data = tmp_path / "data"
    assert postmaster_pid(str(data)) == (None, f"{data} does not exist")
    data.mkdir()
    assert postmaster_pid(str(data)) == (None, "not running (no postmaster.pid)")
    pid = dead_pid()
    (data / "postmaster.pid").write_text(f"{pid}\n{data}\n")
    assert postmaster_pid(str(data)) == (None, f"stale postmaster.pid (process {pid} is not running)")
    (data / "postmaster.pid").write_text(f"{os.getpid()}\n")  # alive, but python, not postgres
    found, note = postmaster_pid(str(data))
    assert found is None and "not PostgreSQL" in note
    (data / "postmaster.pid").write_text("")
    assert postmaster_pid(str(data))[0] is None


def test_check_placement(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    check_placement(str(data), f"{data}.pitr-1")
    check_placement(str(tmp_path / "gone"), str(tmp_path / "gone.pitr-1"))  # a removed data directory is fine
    with pytest.raises(PgBackRestError, match="overlaps the data directory"):
        check_placement(str(data), str(data / "sub"))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "f").write_text("x")
    with pytest.raises(PgBackRestError, match="is not an empty directory"):
        check_placement(str(data), str(busy))
    link = tmp_path / "link"
    link.symlink_to(data)
    with pytest.raises(PgBackRestError, match="is a symbolic link"):
        check_placement(str(link), f"{link}.pitr-1")
    with pytest.raises(PgBackRestError, match=r"parent directory .* does not exist"):
        check_placement(str(tmp_path / "no" / "data"), str(tmp_path / "x"))


def test_in_place_restore_argv():
    runner = Runner("/usr/bin/pgbackrest", "/etc/pgbackrest/pgbackrest.conf", "main", access_key="AK", secret_key="SK")
    plan = Plan("/srv/pg/main", "/srv/pg/main.pitr-1", None, None, "", [], [], None, "/srv/pg/main.log", 60, "1")
    params = {"backup_set": None, "target_exclusive": False}
    argv = in_place_restore_argv(runner, plan, "time", "2026-12-05 10:00:00+00:00", params)
    assert argv[-1] == "restore" and "--pg1-path=/srv/pg/main.pitr-1" in argv
    assert "--archive-mode=preserve" in argv and "--target-action=promote" in argv
    # archive-get must read pg_control from the final data directory, not from the staging one
    restore_command = next(a for a in argv if a.startswith("--recovery-option=restore_command="))
    assert "--pg1-path" not in restore_command and "--stanza=main archive-get %f" in restore_command
    assert not any("SK" in a for a in argv)


def test_log_tail(tmp_path):
    log = tmp_path / "pg.log"
    log.write_text("old line\n")
    offset = log.stat().st_size
    with log.open("a") as fh:
        fh.write("".join(f"line {i}\n" for i in range(20)))
        fh.write("FATAL:  recovery ended before configured recovery target was reached\n")
    tail = log_tail(str(log), offset, str(tmp_path / "data"), 0)
    assert len(tail) == 8 and tail[-1].startswith("FATAL:") and "old line" not in tail
    assert log_tail(str(tmp_path / "missing.log"), 0, str(tmp_path / "data"), 0) == []
