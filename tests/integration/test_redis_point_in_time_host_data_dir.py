"""redis_restore_to_time with host_data_dir, against a redis-server that sees its data directory as a
container does (``ContainerServer`` of test_redis_host_data_dir: a mount namespace of its own where
the host directory ``<tmp>/redis-<port>`` is bind-mounted at ``<tmp>/container-<port>/data``, the
directory CONFIG GET dir reports, which does not exist on this host). The archive is written with
redis_aof_archive's data_dir (the host directory); the restore reaches the AOF only through
host_data_dir.

Writes happen in distinct whole seconds, so the state at each of them is known key by key.
Needs root and ``unshare``/``mount`` (skipped otherwise); every server is a throwaway one of the test."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from test_redis_host_data_dir import (  # noqa: F401  # pylint: disable=unused-import
    ContainerServer,
    container_redis,
    listening,
)
from test_redis_point_in_time import aof_server, keys, write_timeline
from test_redis_snapshot_restore import _alive, no_traceback


def listing(server: ContainerServer) -> dict[str, int]:
    """relative path -> size (-1 for a directory) of everything in the host directory but the log."""
    out = {}
    for path in server.dir.rglob("*"):
        if path.name != "redis.log":
            out[str(path.relative_to(server.dir))] = -1 if path.is_dir() else path.stat().st_size
    return out


@pytest.fixture
def container_timeline(module, container_redis, tmp_path):  # noqa: F811
    """A server in a "container" with writes at T0, T1, T2 (:func:`write_timeline`), archived through
    the host directory. Returns (server, archive root, {T: keys at T}, last archive run)."""
    server = aof_server(container_redis)
    root = tmp_path / "archive"
    states, last = write_timeline(module, server, root, data_dir=str(server.dir))
    assert server.client().config_get("dir") == {"dir": str(server.server_dir)}
    assert not server.server_dir.exists()  # the container's path: not on this host
    return server, root, states, last


def test_restore_to_time_into_host_data_dir(module, container_timeline):
    server, root, states, arch = container_timeline
    t0, t1, t2 = sorted(states)
    assert keys(server) == states[t2]
    before = listing(server)

    def restore(target: Any, check_mode: bool = False, **extra: Any) -> dict:
        args = server.restore_args(archive_root=str(root), target_time=str(target), **extra)
        return module("redis_restore_to_time", args, check_mode=check_mode)

    # without host_data_dir: a clear failure before anything is done, in check mode too; the
    # container's path is not created on this host (the restore would have gone there)
    for check_mode in (True, False):
        bare = restore(t1, check_mode=check_mode)
        assert bare["_rc"] != 0 and bare.get("failed"), bare
        assert f"data directory {server.server_dir} (CONFIG GET dir) does not exist on this host" in bare["msg"]
        assert f"set host_data_dir to the host directory mounted at {server.server_dir}" in bare["msg"], bare["msg"]
        no_traceback(bare)
        assert not server.server_dir.exists()
        assert keys(server) == states[t2] and listing(server) == before

    # data_dir, when also set, is the directory on this host: the container's path is refused
    wrong = restore(t1, host_data_dir=str(server.dir), data_dir=str(server.server_dir))
    assert wrong["_rc"] != 0 and f"data_dir {server.server_dir} is not host_data_dir {server.dir}" in wrong["msg"]
    no_traceback(wrong)
    assert keys(server) == states[t2] and listing(server) == before

    # a host directory that is not the one mounted there (no AOF of the server): refused, nothing changed
    elsewhere = server.dir.parent / "not-the-volume"
    elsewhere.mkdir()
    for check_mode in (True, False):
        res = restore(t1, check_mode=check_mode, host_data_dir=str(elsewhere))
        assert res["_rc"] != 0 and f"{elsewhere}/appendonlydir/appendonly.aof.manifest does not exist" in res["msg"]
        assert f"host_data_dir {elsewhere} is not the directory the server writes to" in res["msg"], res["msg"]
        no_traceback(res)
    assert list(elsewhere.iterdir()) == [] and keys(server) == states[t2] and listing(server) == before

    # check mode: assembled and checked elsewhere, nothing changed, the paths on this host
    pid = server.pid
    plan = restore(t0, check_mode=True, host_data_dir=str(server.dir))
    assert plan["_rc"] == 0 and plan["changed"] and plan["target_time"] == t0, plan
    assert plan["aof_path"] == str(server.dir / "appendonlydir") and plan["previous_aof"] is None
    assert plan["dbsize"] == len(states[t2])
    assert server.pid == pid and keys(server) == states[t2] and listing(server) == before

    # T1: the writes of T1, not those of T2; the previous AOF kept in the host directory
    done = restore(t1, host_data_dir=str(server.dir))
    assert done["_rc"] == 0 and done["changed"] and done["rewritten"], done
    assert keys(server) == states[t1], (keys(server), states[t1])
    assert done["dbsize"] == len(states[t1]) == 3 and done["keyspace"]["db0"]["keys"] == 3
    assert done["aof_path"] == str(server.dir / "appendonlydir")
    kept = Path(done["previous_aof"])
    assert kept.parent == server.dir and kept.name.startswith("appendonlydir.pre-restore-") and kept.is_dir()
    assert sorted(p.name for p in kept.iterdir()) == sorted(
        n.split("/", 1)[1] for n in before if n.startswith("appendonlydir/")
    )
    assert not [p for p in server.dir.iterdir() if ".pitr-" in p.name]
    assert server.pid != pid and not server.server_dir.exists()
    assert server.client().config_get("dir") == {"dir": str(server.server_dir)}  # started in its "container"

    # ISO 8601 time of T0: only the writes of T0; data_dir equal to host_data_dir is accepted
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))
    done = restore(iso, host_data_dir=str(server.dir), data_dir=str(server.dir))
    assert done["_rc"] == 0 and done["target_time"] == t0, done
    assert keys(server) == states[t0] and server.client().get("gone") == b"x"

    # latest: the newest archived second, T2
    done = restore("latest", host_data_dir=str(server.dir))
    assert done["_rc"] == 0 and done["target_time"] == arch["held"]["newest"], done
    assert keys(server) == states[t2] and server.client().get("counter") == b"2"


def test_a_failed_start_in_a_container_puts_the_previous_aof_back(module, container_timeline):
    """The start command fails, in the restore and again in its roll-back: the previous AOF directory
    is back in the host directory, and the server is not started another way (it stays stopped)."""
    server, root, states, _arch = container_timeline
    before = keys(server)
    aof_dir = server.dir / "appendonlydir"
    files = sorted((p.name, p.read_bytes()) for p in aof_dir.iterdir())
    pid = server.pid
    broken = ["sh", "-c", "echo no such container >&2; exit 3"]
    args = server.restore_args(
        archive_root=str(root), target_time=str(min(states)), start_command=broken, host_data_dir=str(server.dir)
    )
    res = module("redis_restore_to_time", args)
    assert res["_rc"] != 0 and res.get("failed"), res
    assert "failed (rc 3): no such container" in res["msg"], res["msg"]
    assert "the previous AOF is back in place, but the server did not start again" in res["msg"], res["msg"]
    no_traceback(res)
    assert not _alive(pid) and not listening(server.port)
    assert sorted((p.name, p.read_bytes()) for p in aof_dir.iterdir()) == files
    assert not [p for p in server.dir.iterdir() if ".pitr-" in p.name or ".pre-restore-" in p.name]
    assert not server.server_dir.exists()
    server.start()
    assert keys(server) == before


def test_restore_into_a_killed_container_whose_aof_was_deleted(module, container_timeline):
    """The server is down (killed) and its AOF directory gone: host_data_dir alone tells where to put
    the archived AOF; a data_dir that is the container's path is refused, nothing created there."""
    server, root, states, _arch = container_timeline
    t1 = sorted(states)[1]
    os.kill(server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while listening(server.port) and time.monotonic() < deadline:
        time.sleep(0.1)
    for path in (server.dir / "appendonlydir").iterdir():
        path.unlink()
    (server.dir / "appendonlydir").rmdir()
    before = listing(server)
    args = server.restore_args(archive_root=str(root), target_time=str(t1))

    refused = module("redis_restore_to_time", args)
    assert refused["_rc"] != 0 and "is down and data_dir is not set" in refused["msg"], refused
    assert "host_data_dir when Redis runs in a container" in refused["msg"] and "nothing was changed" in refused["msg"]
    no_traceback(refused)

    wrong = module(
        "redis_restore_to_time", {**args, "host_data_dir": str(server.dir), "data_dir": str(server.server_dir)}
    )
    assert wrong["_rc"] != 0 and f"data_dir {server.server_dir} is not host_data_dir {server.dir}" in wrong["msg"]
    no_traceback(wrong)
    assert listing(server) == before and not server.server_dir.exists() and not listening(server.port)

    done = module("redis_restore_to_time", {**args, "host_data_dir": str(server.dir)})
    assert done["_rc"] == 0 and done["changed"] and done["previous_aof"] is None, done
    assert f"restoring into {server.dir} from the module's options" in json.dumps(done.get("warnings", []))
    assert keys(server) == states[t1]
    assert (server.dir / "appendonlydir").is_dir() and not server.server_dir.exists()
    assert server.client().config_get("dir") == {"dir": str(server.server_dir)}
