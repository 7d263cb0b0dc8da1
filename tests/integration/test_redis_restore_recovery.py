"""redis_restore when things go wrong half-way, against real redis-server processes.

- A restore killed with SIGKILL while it copies the snapshot in place leaves the server stopped, its
  RDB file renamed to ``dump.rdb.pre-restore-<id>`` and a partial temporary copy beside it: a rerun
  finishes the restore; a server that is simply down is reported as down.
- A start command that fails does not make the roll-back claim that the data could not be put back,
  and the server is started as it ran before when that is possible.
- A stop command that cannot run fails at once instead of waiting out the timeout.

Every server is a throwaway one (own port, own directory), killed by the fixture at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
from conftest import module_env
from test_redis_snapshot_restore import (  # noqa: F401  (fixtures)  # pylint: disable=unused-import
    PASSWORD,
    Server,
    _alive,
    assert_same_state,
    damage,
    kept_files,
    module_argv,
    no_traceback,
    redis_server,
    seed,
    snapped,
    state,
)

BIG_DB = 2
BIG_KEYS = 160  # 160 MiB of random values: the copy into the data directory takes a while


@pytest.fixture
def restore(module, tmp_path):
    """redis_restore with its own state directory ($XDG_STATE_HOME), not the user's."""
    state_dir = tmp_path / "state"

    def run(args: dict, **kwargs) -> dict:
        return module("redis_restore", args, env={"XDG_STATE_HOME": str(state_dir)}, **kwargs)

    run.state_dir = state_dir
    return run


def locator(restore, server: Server) -> Path:
    return restore.state_dir / "runbook.stack" / f"redis-restore-127.0.0.1-{server.port}.json"


def journal(server: Server) -> Path:
    return server.dir / f".runbook-redis-restore-{server.port}.json"


def partial_files(server: Server) -> list[str]:
    return sorted(p.name for p in server.dir.iterdir() if p.name.startswith(".dump.rdb.restore-"))


def port_closed(server: Server) -> bool:
    try:
        server.client().ping()
    except redis.ConnectionError:
        return True
    return False


def seed_big(server: Server) -> str:
    """BIG_KEYS random 1 MiB values in db BIG_DB (incompressible); returns the digest of one."""
    c = server.client(BIG_DB)
    pipe = c.pipeline(transaction=False)
    for i in range(BIG_KEYS):
        pipe.set(f"big:{i}", os.urandom(1 << 20))
    pipe.execute()
    digest = hashlib.sha256(c.get("big:7")).hexdigest()
    c.close()
    return digest


def test_restore_killed_while_copying_is_finished_by_a_rerun(
    module,
    restore,
    module_argv,  # noqa: F811
    redis_server,  # noqa: F811
    tmp_backup_root,
):
    server = redis_server()
    seed(server)
    big = seed_big(server)
    original = state(server)
    snap = module("redis_snapshot", server.args(dest=str(tmp_backup_root)), timeout=300)
    assert snap["_rc"] == 0, (snap.get("msg"), server.log_tail(), snap)
    damage(server)
    server.client().set("damaged:marker", "written after the snapshot")

    # the restore, killed with SIGKILL as soon as its temporary copy of the snapshot appears
    argv = module_argv("redis_restore", server.restore_args(path=snap["path"], timeout=60))
    env = module_env({"XDG_STATE_HOME": str(restore.state_dir)})
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not partial_files(server):
            assert proc.poll() is None, "the restore ended before it was killed"
            assert time.monotonic() < deadline, "the restore never started copying"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # the state the kill leaves: server stopped, no dump.rdb, the previous one kept, a partial copy
    kept = server.dir / f"dump.rdb.pre-restore-{snap['backup_id']}"
    assert port_closed(server)
    assert not (server.dir / "dump.rdb").exists(), "the kill came too late: the copy was already in place"
    assert kept.exists() and b"damaged:marker" in kept.read_bytes()
    partial = partial_files(server)
    assert len(partial) == 1
    assert (server.dir / partial[0]).stat().st_size < Path(snap["path"], "dump.rdb").stat().st_size
    assert journal(server).exists() and locator(restore, server).exists()

    # run as another user (no note of the restore in its state directory) and without data_dir, the
    # module cannot find the interrupted restore: it says that Redis is down
    res = module("redis_restore", server.restore_args(path=snap["path"], connect_timeout=2))
    assert res["_rc"] != 0 and res.get("failed")
    assert f"Redis at 127.0.0.1:{server.port} is down" in res["msg"] and "data_dir" in res["msg"], res["msg"]
    no_traceback(res)
    assert partial_files(server) == partial and not (server.dir / "dump.rdb").exists()

    # with data_dir, check mode predicts the finish and changes nothing
    plan = module("redis_restore", server.restore_args(path=snap["path"], data_dir=str(server.dir)), check_mode=True)
    assert plan["_rc"] == 0, plan
    assert plan["resumed"] is True and plan["changed"] is True
    assert plan["removed_leftovers"] == [str(server.dir / partial[0])]
    assert plan["previous_file"] == str(kept)
    assert port_closed(server) and partial_files(server) == partial and not (server.dir / "dump.rdb").exists()

    # the same rerun as the killed run (the restore is noted in its state directory) finishes it
    res = restore(server.restore_args(path=snap["path"]), timeout=300)
    assert res["_rc"] == 0, res
    assert res["resumed"] is True and res["changed"] is True
    assert f"Redis at 127.0.0.1:{server.port} is down" in json.dumps(res.get("warnings")), res
    assert res["previous_file"] == str(kept)
    assert res["dbsize"] == res["dbsize_expected"] == 416 + BIG_KEYS
    assert not port_closed(server)
    assert_same_state(original, state(server))
    assert hashlib.sha256(server.client(BIG_DB).get("big:7")).hexdigest() == big
    assert server.client().get("damaged:marker") is None
    assert partial_files(server) == []
    assert kept.exists() and b"damaged:marker" in kept.read_bytes()  # the previous data is still kept
    assert kept_files(server) == [kept.name]
    assert not journal(server).exists() and not locator(restore, server).exists()


def test_server_that_is_down_is_reported_as_down(restore, snapped):  # noqa: F811
    server, snap, _damaged = snapped
    server.client().shutdown(save=True)
    deadline = time.monotonic() + 10
    while not port_closed(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    dump = (server.dir / "dump.rdb").read_bytes()
    for extra, found in (
        ({}, "no restore of it that was interrupted is known here"),
        ({"data_dir": str(server.dir)}, f"no interrupted restore of it was found in {server.dir}"),
    ):
        res = restore(server.restore_args(path=snap["path"], connect_timeout=2, **extra))
        assert res["_rc"] != 0 and res.get("failed")
        assert f"Redis at 127.0.0.1:{server.port} is down" in res["msg"], res["msg"]
        assert found in res["msg"], res["msg"]
        assert f"Start it ({' '.join(server.start_command)})" in res["msg"], res["msg"]  # how to go on
        no_traceback(res)
    assert port_closed(server)
    assert (server.dir / "dump.rdb").read_bytes() == dump and kept_files(server) == []


# ------------------------------------------------------------------------------------------------
# start and stop commands that fail
# ------------------------------------------------------------------------------------------------


def test_failing_start_command_says_the_data_is_back_and_starts_the_server_as_it_ran(restore, snapped):  # noqa: F811
    server, snap, damaged = snapped
    res = restore(server.restore_args(path=snap["path"], start_command=["false"]))
    assert res["_rc"] != 0 and res.get("failed")
    assert "the start command false failed (rc 1)" in res["msg"], res["msg"]
    assert "the previous data is back in place" in res["msg"], res["msg"]
    assert "failed too" not in res["msg"], res["msg"]
    binary = shutil.which("redis-server")
    assert f"started as it ran before the restore ({binary} {server.conf} --daemonize yes)" in res["msg"], res["msg"]
    assert "is running" in res["msg"]
    no_traceback(res)
    assert not port_closed(server) and _alive(server.pid)
    assert_same_state(damaged, state(server))
    assert kept_files(server) == [] and not journal(server).exists()


class ArgvServer(Server):
    """A server started with command-line options only (no config file to start it from again)."""

    @property
    def start_command(self) -> list[str]:
        argv = ["redis-server"]
        for line in self.conf.read_text().splitlines():
            name, _sep, value = line.partition(" ")
            argv += [f"--{name}", value.strip('"')]
        return argv


def test_failing_start_command_without_a_way_back_says_the_server_is_stopped(
    module, restore, tmp_path, tmp_backup_root
):
    server = ArgvServer(tmp_path, aof=False)
    try:
        seed(server)
        snap = module("redis_snapshot", server.args(dest=str(tmp_backup_root)))
        assert snap["_rc"] == 0, (snap.get("msg"), server.log_tail(), snap)
        damage(server)
        damaged = state(server)
        res = restore(server.restore_args(path=snap["path"], start_command=["false"]))
        assert res["_rc"] != 0 and res.get("failed")
        assert "the start command false failed (rc 1)" in res["msg"], res["msg"]
        assert "the previous data is back in place, but the server did not start again" in res["msg"], res["msg"]
        assert f"the server at 127.0.0.1:{server.port} is stopped" in res["msg"], res["msg"]
        assert "failed too" not in res["msg"]
        no_traceback(res)
        assert port_closed(server) and kept_files(server) == [] and not journal(server).exists()
        server.start()  # the data really is the previous one
        assert_same_state(damaged, state(server))
    finally:
        server.stop()


@pytest.mark.parametrize("stop_command", [["/nonexistent/cmd", "stop"], ["false"]], ids=["not-found", "exits-1"])
def test_stop_command_that_cannot_stop_fails_fast(restore, snapped, stop_command):  # noqa: F811
    server, snap, damaged = snapped
    pid = server.pid
    started = time.monotonic()
    res = restore(server.restore_args(path=snap["path"], stop_command=stop_command, timeout=60))
    assert time.monotonic() - started < 20, "the module waited for the timeout (60 s)"
    assert res["_rc"] != 0 and res.get("failed")
    rc = 127 if stop_command[0].startswith("/nonexistent") else 1
    assert f"the stop command {' '.join(stop_command)} failed (rc {rc})" in res["msg"], res["msg"]
    if rc == 127:
        assert "No such file or directory" in res["msg"], res["msg"]
    assert f"the server at 127.0.0.1:{server.port} still answers" in res["msg"] and "nothing was changed" in res["msg"]
    no_traceback(res)
    assert server.pid == pid and _alive(pid)
    assert_same_state(damaged, state(server))
    assert kept_files(server) == [] and not journal(server).exists()
    assert PASSWORD not in res["_stdout"]
