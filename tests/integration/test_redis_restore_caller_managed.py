"""redis_restore with manage_service false: the caller stops and starts the server (as the dr_restore
role does through runbook.stack.component) and the module runs as three steps, install, verify and
roll_back, against throwaway redis-server processes (own port and directory, killed at the end)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import module_env
from test_redis_snapshot_restore import (  # noqa: F401  # pylint: disable=unused-import
    PASSWORD,
    Server,
    _alive,
    assert_same_state,
    damage,
    kept_files,
    no_traceback,
    redis_server,
    seed,
    state,
)


def stop(server: Server) -> None:
    """What the caller does before install and roll_back: stop the server (SHUTDOWN SAVE)."""
    pid = server.pid
    subprocess.run(server.stop_command, env=module_env({"REDISCLI_AUTH": PASSWORD}), check=False, timeout=30)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def caller_args(server: Server, **extra) -> dict:
    return server.args(manage_service=False, timeout=30, **extra)


def journals(server: Server) -> list[str]:
    return sorted(p.name for p in server.dir.iterdir() if p.name.startswith(".runbook-redis-restore-"))


@pytest.fixture
def snapped(module, redis_server, tmp_backup_root, request):  # noqa: F811
    """A seeded server (AOF on or off) with one snapshot, then damaged."""
    server = redis_server(aof=getattr(request, "param", False))
    seed(server)
    original = state(server)
    snap = module("redis_snapshot", server.args(dest=str(tmp_backup_root)))
    assert snap["_rc"] == 0, (snap.get("msg"), server.log_tail(), snap)
    damage(server)
    return server, snap, original, state(server)


@pytest.mark.parametrize("snapped", [False, True], indirect=True, ids=["rdb", "aof"])
def test_install_verify_round_trip(module, snapped):
    server, snap, original, damaged = snapped
    pid = server.pid

    # check mode while the server runs: the plan and where the server keeps its data; nothing changes
    plan = module("redis_restore", caller_args(server, path=snap["path"], step="install"), check_mode=True)
    assert plan["_rc"] == 0, plan
    assert plan["step"] == "install" and plan["backup_id"] == snap["backup_id"]
    paths = plan["data_paths"]
    assert paths["dir"] == str(server.dir) and paths["dbfilename"] == "dump.rdb"
    assert paths["appendonly"] is (server.conf.read_text().count("appendonly yes") == 1)
    assert server.pid == pid and kept_files(server) == [] and journals(server) == []
    assert_same_state(damaged, state(server))

    # install refuses a server that still runs
    refused = module("redis_restore", caller_args(server, path=snap["path"], step="install", data_paths=paths))
    assert refused["_rc"] != 0 and "still answers" in refused["msg"] and "nothing was changed" in refused["msg"]
    no_traceback(refused)
    assert server.pid == pid and kept_files(server) == [] and journals(server) == []

    stop(server)
    done = module("redis_restore", caller_args(server, path=snap["path"], step="install", data_paths=paths))
    assert done["_rc"] == 0, done
    assert done["previous_file"] == str(server.dir / f"dump.rdb.pre-restore-{snap['backup_id']}")
    assert Path(done["data_file"]).read_bytes()[:5] == b"REDIS"
    assert journals(server), "the journal stays until step verify"
    if paths["appendonly"]:
        assert done["previous_aof"] and Path(done["previous_aof"]).is_dir()
    assert not _alive(pid)  # the module did not start it

    server.start()
    checked = module("redis_restore", caller_args(server, path=snap["path"], step="verify"))
    assert checked["_rc"] == 0, checked
    assert checked["dbsize"] == checked["dbsize_expected"] == 416
    assert checked["changed"] is True and journals(server) == []
    assert_same_state(original, state(server))


def test_verify_mismatch_then_roll_back_puts_the_previous_data_back(module, snapped):
    server, snap, _original, damaged = snapped
    manifest_path = Path(snap["path"], "manifest.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["facts"]["keyspace"]["db1"]["keys"] += 5  # not hashed: still a valid set, with a wrong count
    manifest_path.write_text(json.dumps(manifest))
    plan = module("redis_restore", caller_args(server, path=snap["path"], step="install"), check_mode=True)
    stop(server)
    done = module(
        "redis_restore", caller_args(server, path=snap["path"], step="install", data_paths=plan["data_paths"])
    )
    assert done["_rc"] == 0, done
    server.start()

    bad = module("redis_restore", caller_args(server, path=snap["path"], step="verify"))
    assert bad["_rc"] != 0 and "db1 has 208 keys, the snapshot had 213" in bad["msg"], bad["msg"]
    assert "step roll_back" in bad["msg"]
    no_traceback(bad)

    # roll_back refuses a running server, then puts back what install set aside
    running = module("redis_restore", caller_args(server, path=snap["path"], step="roll_back"))
    assert running["_rc"] != 0 and "still answers" in running["msg"], running
    stop(server)
    back = module("redis_restore", caller_args(server, path=snap["path"], step="roll_back", data_dir=str(server.dir)))
    assert back["_rc"] == 0, back
    assert back["restored_files"] == [done["previous_file"]]
    assert kept_files(server) == [] and journals(server) == []
    server.start()
    assert_same_state(damaged, state(server))

    # nothing left to roll back: no change, and a warning that says so
    stop(server)
    nothing = module(
        "redis_restore", caller_args(server, path=snap["path"], step="roll_back", data_dir=str(server.dir))
    )
    assert nothing["_rc"] == 0 and nothing["changed"] is False, nothing
    assert "nothing to roll back" in json.dumps(nothing.get("warnings", [])), nothing


def test_install_without_data_paths_on_a_stopped_server_changes_nothing(module, snapped):
    server, snap, _original, _damaged = snapped
    stop(server)
    before = sorted(p.name for p in server.dir.iterdir())
    res = module("redis_restore", caller_args(server, path=snap["path"], step="install"))
    assert res["_rc"] != 0 and "data_paths is not set" in res["msg"] and "nothing was changed" in res["msg"], res
    no_traceback(res)
    assert sorted(p.name for p in server.dir.iterdir()) == before


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"manage_service": False, "step": "install", "service": "redis"}, "must not be set"),
        ({"manage_service": False}, "step"),
        ({"step": "verify", "service": "redis"}, "step verify is for manage_service false"),
        ({}, "service, stop_command"),
    ],
)
def test_bad_combinations_fail_clearly(module, snapped, extra, needle):
    server, snap, _original, damaged = snapped
    res = module("redis_restore", server.args(path=snap["path"], **extra))
    assert res["_rc"] != 0 and needle in res["msg"], res["msg"]
    no_traceback(res)
    assert_same_state(damaged, state(server))
