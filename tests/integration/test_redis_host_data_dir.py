"""redis_snapshot and redis_restore with host_data_dir, against a redis-server that sees its data
directory as a container does: it runs in a mount namespace of its own (``unshare -m``) where the
host directory ``<tmp>/redis-data-<port>`` is bind-mounted at ``<tmp>/container-<port>/data``, the
directory CONFIG GET dir reports, which on this host does not exist (``container-<port>`` is a tmpfs
in the server's namespace, an empty directory here). As with Docker, the modules run on the host and
reach the files only through host_data_dir; unlike Docker the server's pid is one of this host's, so
a module that looked at its process would find it (the roll-back test tells).

Needs root and ``unshare``/``mount`` (skipped otherwise). Every server is a throwaway one of the test
(own port, own directories, killed at the end): nothing of the lab is touched."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from test_redis_restore_caller_managed import journals, stop
from test_redis_snapshot_restore import (
    Server,
    _alive,
    assert_same_state,
    damage,
    kept_files,
    no_traceback,
    seed,
    serve,
    set_dir,
    state,
)

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import LocalStorage, list_sets


class ContainerServer(Server):
    """A throwaway redis-server in its own mount namespace; ``dir`` is the host directory mounted at
    ``server_dir``, its data directory (CONFIG GET dir), which does not exist on this host."""

    @property
    def server_dir(self) -> Path:
        return self.dir.parent / f"container-{self.port}" / "data"

    @property
    def start_command(self) -> list[str]:
        root = self.server_dir.parent
        script = (
            f'mkdir -p "{root}" && mount -t tmpfs tmpfs "{root}" && mkdir "{self.server_dir}" '
            f'&& mount --bind "{self.dir}" "{self.server_dir}" && exec redis-server "{self.conf}"'
        )
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script]


def cannot_unshare(base: Path) -> str | None:
    """Why a server cannot be started in a mount namespace of its own here, or None."""
    if os.geteuid() != 0:
        return "needs root (unshare -m and mount)"
    if not shutil.which("unshare"):
        return "unshare is not installed"
    probe = base / "unshare-probe"
    probe.mkdir()
    script = f'mount -t tmpfs tmpfs "{probe}" && mount --bind "{probe}" "{probe}"'
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    probe.rmdir()
    if proc.returncode != 0:
        return f"cannot mount in a mount namespace of its own: {proc.stderr.strip() or proc.returncode}"
    return None


@pytest.fixture
def container_redis(tmp_path):
    """``container_redis(aof=False)`` -> a running ContainerServer; all of them are killed afterwards."""
    why = cannot_unshare(tmp_path)
    if why:
        pytest.skip(why)
    yield from serve(tmp_path, ContainerServer)


def host(server: ContainerServer, **extra) -> dict:
    return server.args(host_data_dir=str(server.dir), **extra)


def restore_args(server: ContainerServer, **extra) -> dict:
    return server.restore_args(host_data_dir=str(server.dir), **extra)


def snapshot(module, server: ContainerServer, root: Path) -> dict:
    snap = module("redis_snapshot", host(server, dest=str(root)))
    assert snap["_rc"] == 0, (snap.get("msg"), server.log_tail(), snap)
    return snap


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def no_sets(root: Path) -> bool:
    """Nothing under the root looks like a set: the failed snapshot removed its directory."""
    return list(root.glob("redis/*/*")) == []


# ------------------------------------------------------------------------------------------------
# redis_snapshot
# ------------------------------------------------------------------------------------------------


def test_snapshot_reads_the_rdb_in_host_data_dir(module, container_redis, tmp_backup_root):
    server = container_redis()
    seed(server)
    assert server.client().config_get("dir") == {"dir": str(server.server_dir)}
    assert not server.server_dir.exists()  # the container's path: not on this host

    # without host_data_dir: a clear failure before any save, nothing written
    saves = int(server.client().info("persistence")["rdb_saves"])
    bare = module("redis_snapshot", server.args(dest=str(tmp_backup_root)))
    assert bare["_rc"] != 0 and bare.get("failed"), bare
    assert f"data directory {server.server_dir} (CONFIG GET dir) does not exist on this host" in bare["msg"]
    assert f"set host_data_dir to the host directory mounted at {server.server_dir}" in bare["msg"]
    no_traceback(bare)
    assert no_sets(tmp_backup_root) and int(server.client().info("persistence")["rdb_saves"]) == saves

    check = module("redis_snapshot", host(server, dest=str(tmp_backup_root)), check_mode=True)
    assert check["_rc"] == 0, check
    assert check["rdb_source"] == str(server.dir / "dump.rdb") and check["dbsize"] == 416
    assert list(tmp_backup_root.iterdir()) == []

    snap = snapshot(module, server, tmp_backup_root)
    assert snap["rdb_source"] == str(server.dir / "dump.rdb")
    assert snap["dbsize"] == 416 and snap["keyspace"]["db1"]["keys"] == 208 and snap["keyspace_exact"] is True
    manifest = json.loads(Path(snap["path"], "manifest.json").read_text())
    assert manifest["facts"]["keyspace"] == snap["keyspace"]
    assert Path(snap["path"], "dump.rdb").read_bytes() == (server.dir / "dump.rdb").read_bytes()
    found = list_sets(LocalStorage(str(tmp_backup_root)), "redis")
    assert [s.backup_id for s in found if s.valid] == [snap["backup_id"]]

    repl = module("redis_snapshot", host(server, dest=str(tmp_backup_root), method="replication"))
    assert repl["_rc"] != 0 and "host_data_dir is for method=bgsave" in repl["msg"], repl
    no_traceback(repl)


def test_a_wrong_host_data_dir_never_gives_a_snapshot_of_an_old_file(
    module, container_redis, tmp_backup_root, tmp_path
):
    server = container_redis()
    seed(server)
    c = server.client()
    c.save()
    # an old copy of this very server's RDB file, with a fresh mtime (copied, touched): only its header
    # tells that an earlier save wrote it
    stale = tmp_path / "old-redis-data"
    stale.mkdir()
    shutil.copyfile(server.dir / "dump.rdb", stale / "dump.rdb")
    later = time.time() + 60
    os.utime(stale / "dump.rdb", (later, later))
    saved_at = int(c.info("persistence")["rdb_last_save_time"])
    while int(c.time()[0]) <= saved_at:  # our save begins in a later second
        time.sleep(0.05)
    c.set("written:after:the:old:file", "1")

    res = module("redis_snapshot", server.args(dest=str(tmp_backup_root), host_data_dir=str(stale)))
    assert res["_rc"] != 0 and res.get("failed"), res
    assert f"{stale / 'dump.rdb'} was not written by this save (it is from a save begun at" in res["msg"]
    assert f"host_data_dir {stale} is not the directory the server writes to" in res["msg"]
    assert f"mounted at its data directory {server.server_dir}" in res["msg"]
    assert res["backup_set"]["backup_id"] is None
    no_traceback(res)
    assert no_sets(tmp_backup_root)

    empty = tmp_path / "empty"
    empty.mkdir()
    res = module("redis_snapshot", server.args(dest=str(tmp_backup_root), host_data_dir=str(empty)))
    assert res["_rc"] != 0, res
    assert f"cannot read the RDB file {empty / 'dump.rdb'}: No such file or directory" in res["msg"]
    assert f"host_data_dir {empty} is not the directory the server writes to" in res["msg"]
    no_traceback(res)
    assert no_sets(tmp_backup_root)

    missing = tmp_path / "missing"
    for check_mode in (True, False):
        res = module(
            "redis_snapshot", server.args(dest=str(tmp_backup_root), host_data_dir=str(missing)), check_mode=check_mode
        )
        assert res["_rc"] != 0, res
        assert f"host_data_dir {missing} is not an existing directory" in res["msg"]
        assert f"mounted at the server's data directory {server.server_dir}" in res["msg"]
        no_traceback(res)
    assert no_sets(tmp_backup_root)


# ------------------------------------------------------------------------------------------------
# redis_restore
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("aof", [False, True], ids=["rdb", "aof"])
def test_restore_into_host_data_dir(module, container_redis, tmp_backup_root, aof):
    server = container_redis(aof=aof)
    seed(server)
    original = state(server)
    snap = snapshot(module, server, tmp_backup_root)
    damage(server)
    damaged = state(server)
    pid = server.pid

    bare = module("redis_restore", server.restore_args(path=snap["path"]), check_mode=True)
    assert bare["_rc"] != 0 and "does not exist on this host" in bare["msg"] and "host_data_dir" in bare["msg"]
    no_traceback(bare)

    plan = module("redis_restore", restore_args(server, path=snap["path"]), check_mode=True)
    assert plan["_rc"] == 0, plan
    assert plan["data_file"] == str(server.dir / "dump.rdb")
    assert plan["aof_path"] == (str(server.dir / "appendonlydir") if aof else None)
    assert server.pid == pid and kept_files(server) == [] and journals(server) == []
    assert_same_state(damaged, state(server))

    res = module("redis_restore", restore_args(server, backup_root=str(tmp_backup_root)))
    assert res["_rc"] == 0, res
    assert res["dbsize"] == res["dbsize_expected"] == 416
    assert res["data_file"] == str(server.dir / "dump.rdb")
    assert res["previous_file"] == str(server.dir / f"dump.rdb.pre-restore-{snap['backup_id']}")
    if aof:
        assert res["previous_aof"] == str(server.dir / f"appendonlydir.pre-restore-{snap['backup_id']}")
        assert Path(res["previous_aof"]).is_dir()
    assert server.pid != pid and journals(server) == []
    assert server.client().config_get("dir") == {"dir": str(server.server_dir)}  # started in its "container"
    assert_same_state(original, state(server))


def test_caller_managed_steps_with_host_data_dir(module, container_redis, tmp_backup_root, tmp_path):
    server = container_redis()
    seed(server)
    original = state(server)
    snap = snapshot(module, server, tmp_backup_root)
    damage(server)
    damaged = state(server)
    # the state directory where a restore notes where its journal is; "elsewhere" is another user's,
    # which has no such note: only host_data_dir tells where the journal is
    (tmp_path / "elsewhere").mkdir()

    def step(name: str, check_mode: bool = False, home: str = "state", **extra) -> dict:
        args = server.args(path=snap["path"], manage_service=False, step=name, timeout=30, **extra)
        env = {"XDG_STATE_HOME": str(tmp_path / home)}
        return module("redis_restore", {"host_data_dir": str(server.dir), **args}, check_mode=check_mode, env=env)

    plan = step("install", check_mode=True)
    assert plan["_rc"] == 0, plan
    paths = plan["data_paths"]
    assert paths["dir"] == str(server.dir) and plan["data_file"] == str(server.dir / "dump.rdb")
    stop(server)

    # the container's view of the paths does not go with host_data_dir
    wrong = step("install", data_paths={**paths, "dir": str(server.server_dir)})
    assert wrong["_rc"] != 0 and f"data_paths.dir {server.server_dir} is not host_data_dir" in wrong["msg"], wrong
    no_traceback(wrong)
    assert kept_files(server) == [] and journals(server) == []

    done = step("install", data_paths=paths)
    assert done["_rc"] == 0, done
    assert done["previous_file"] == str(server.dir / f"dump.rdb.pre-restore-{snap['backup_id']}")
    assert journals(server), "the journal, in host_data_dir, stays until step verify or roll_back"

    # roll_back (run as another user) finds the journal through host_data_dir alone
    back = step("roll_back", home="elsewhere")
    assert back["_rc"] == 0, back
    assert back["restored_files"] == [done["previous_file"]]
    assert kept_files(server) == [] and journals(server) == []
    server.start()
    assert_same_state(damaged, state(server))

    plan = step("install", check_mode=True)
    stop(server)
    done = step("install", data_paths=plan["data_paths"])
    assert done["_rc"] == 0, done
    server.start()
    checked = step("verify", home="elsewhere")
    assert checked["_rc"] == 0, checked
    assert checked["changed"] is True and checked["dbsize"] == checked["dbsize_expected"] == 416
    assert journals(server) == []
    assert_same_state(original, state(server))


def test_a_server_in_a_container_is_not_started_another_way(module, container_redis, tmp_backup_root):
    """The start command fails, in the restore and again in its roll-back. A server on this host would
    then be started as it ran (its binary and config file, read from /proc/<process_id>); one in a
    container is not (its process_id is the container's): it stays stopped, with its previous data."""
    server = container_redis()
    seed(server)
    snap = snapshot(module, server, tmp_backup_root)
    damage(server)
    damaged = state(server)
    pid = server.pid
    broken = ["sh", "-c", "echo no such container >&2; exit 3"]

    res = module("redis_restore", restore_args(server, path=snap["path"], start_command=broken))
    assert res["_rc"] != 0 and res.get("failed"), res
    assert "the start command sh -c echo no such container >&2; exit 3 failed (rc 3): no such container" in res["msg"]
    assert (
        "the previous data is back in place, but the server did not start again" in res["msg"]
        and "it was not started another way (host_data_dir is set: it runs in a container, which only its own "
        f"start command starts), so the server at 127.0.0.1:{server.port} is stopped"
        in res["msg"]
    ), res["msg"]
    no_traceback(res)
    assert not _alive(pid) and not listening(server.port)
    assert kept_files(server) == [] and journals(server) == []
    assert (server.dir / "dump.rdb").exists()

    server.start()
    assert_same_state(damaged, state(server))
    assert set_dir(tmp_backup_root, server).exists()  # the set is still there to retry with
