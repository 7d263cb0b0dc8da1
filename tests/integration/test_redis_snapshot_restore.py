"""redis_snapshot and redis_restore against real redis-server processes.

Restores only ever run against throwaway servers started here (own port, own directory, a password,
``daemonize yes`` with a pidfile); every server is stopped in the fixture's teardown. The lab Redis is
only used for one snapshot (a key in db 9, removed afterwards) and for the wrong-password check.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import PYTHON, module_env

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    BackupSet,
    LocalStorage,
    list_sets,
    source_dirname,
)

PASSWORD = "scratch-" + uuid.uuid4().hex[:12]
DBS = (0, 1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill 0: look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


class Server:
    """A throwaway redis-server started with ``daemonize yes`` (as start_command would start it)."""

    def __init__(self, base: Path, aof: bool) -> None:
        self.port = _free_port()
        self.dir = base / f"redis-{self.port}"
        self.dir.mkdir()
        self.conf = self.dir / "redis.conf"
        self.pidfile = self.dir / "redis.pid"
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"requirepass {PASSWORD}",
            f'dir "{self.server_dir}"',
            "dbfilename dump.rdb",
            'save ""',
            f"appendonly {'yes' if aof else 'no'}",
            "daemonize yes",
            f'pidfile "{self.pidfile}"',
            f'logfile "{self.dir / "redis.log"}"',
            "repl-diskless-sync-delay 0",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        self.pids: set[int] = set()
        self.start()

    @property
    def server_dir(self) -> Path:
        """The data directory the server reports (CONFIG GET dir): ``dir`` itself."""
        return self.dir

    @property
    def start_command(self) -> list[str]:
        return ["redis-server", str(self.conf)]

    @property
    def stop_command(self) -> list[str]:
        return ["redis-cli", "-p", str(self.port), "shutdown", "save"]

    def args(self, **extra: Any) -> dict[str, Any]:
        return {"login_port": self.port, "login_password": PASSWORD, **extra}

    def restore_args(self, **extra: Any) -> dict[str, Any]:
        return self.args(
            **{"stop_command": self.stop_command, "start_command": self.start_command, "timeout": 30, **extra}
        )

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, password=PASSWORD, db=db, socket_timeout=10)

    def start(self) -> None:
        subprocess.run(self.start_command, check=True, timeout=30, capture_output=True)
        for _attempt in range(100):
            try:
                if self.client().ping():
                    break
            except redis.RedisError:
                time.sleep(0.05)
        self.pids.add(self.pid)

    @property
    def pid(self) -> int:
        return int(self.pidfile.read_text().strip())

    def log_tail(self, lines: int = 15) -> str:
        """The end of the server's own log: why it refused or stalled, for a failed assertion."""
        try:
            return "\n".join((self.dir / "redis.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self) -> None:
        if self.pidfile.exists():
            self.pids.add(self.pid)
        for pid in self.pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in self.pids) and time.monotonic() < deadline:
            time.sleep(0.05)


def serve(base: Path, kind: type[Server] = Server):
    """The body of a server fixture: yields ``start(aof=False)`` -> a running ``kind`` (directory under
    ``base``); every one started is killed afterwards, and the teardown fails if one survives."""
    servers: list[Server] = []

    def start(aof: bool = False) -> Server:
        server = kind(base, aof)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    for server in servers:
        assert not any(_alive(p) for p in server.pids), f"redis-server on port {server.port} is still running"


@pytest.fixture
def redis_server(tmp_path):
    """``redis_server(aof=False)`` -> a running Server; all of them are killed afterwards."""
    yield from serve(tmp_path)


# ------------------------------------------------------------------------------------------------
# data helpers
# ------------------------------------------------------------------------------------------------


def seed(server: Server) -> None:
    """Every value type in two databases, some keys with a time to live."""
    for db in DBS:
        c = server.client(db)
        c.set(f"s:{db}", f"string value {db} ünï")
        c.set(f"bin:{db}", bytes(range(256)))
        c.set(f"ttl:{db}", "expires later", ex=3600)
        c.hset(f"h:{db}", mapping={f"f{i}": f"v{i}" for i in range(50)})
        c.rpush(f"l:{db}", *[f"item{i}" for i in range(300)])
        c.sadd(f"set:{db}", *[f"m{i}" for i in range(40)])
        c.zadd(f"z:{db}", {f"p{i}": i * 1.5 for i in range(60)})
        c.expire(f"z:{db}", 7200)
        for i in range(5):
            c.xadd(f"x:{db}", {"n": str(i), "db": str(db)})
        c.mset({f"k:{db}:{i}": i for i in range(200)})
        c.close()


def value(c: redis.Redis, key: bytes, typ: bytes) -> Any:
    """The logical value (DUMP is not comparable: set and hash encodings keep no fixed order)."""
    read = {
        b"string": c.get,
        b"hash": c.hgetall,
        b"list": lambda k: c.lrange(k, 0, -1),
        b"set": c.smembers,
        b"zset": lambda k: c.zrange(k, 0, -1, withscores=True),
        b"stream": c.xrange,
    }
    return read[typ](key)


def state(server: Server) -> dict[int, dict[bytes, tuple[bytes, Any, int]]]:
    """Every key of every test db: (type, value, PTTL)."""
    out: dict[int, dict[bytes, tuple[bytes, Any, int]]] = {}
    for db in DBS:
        c = server.client(db)
        out[db] = {}
        for k in c.scan_iter(count=1000):
            typ = c.type(k)
            out[db][k] = (typ, value(c, k, typ), c.pttl(k))
        c.close()
    return out


def assert_same_state(before: dict, after: dict) -> None:
    assert set(before) == set(after)
    for db in before:
        assert set(before[db]) == set(after[db]), f"db{db}: keys differ"
        for key, (typ, val, pttl) in before[db].items():
            typ2, val2, pttl2 = after[db][key]
            assert typ == typ2 and val == val2, f"db{db} {key!r} differs"
            if pttl < 0:
                assert pttl2 == pttl, f"db{db} {key!r}: ttl {pttl} -> {pttl2}"
            else:
                assert 0 < pttl2 <= pttl and pttl - pttl2 < 60_000, f"db{db} {key!r}: ttl {pttl} -> {pttl2}"


def damage(server: Server) -> None:
    server.client(1).flushdb()
    c = server.client(0)
    c.set("s:0", "changed")
    c.hset("h:0", "f1", "changed")
    c.delete("x:0")
    c.set("added:after:snapshot", "1")
    c.close()


def set_dir(root: Path, server: Server) -> Path:
    return root / "redis" / source_dirname(f"127.0.0.1:{server.port}")


def no_traceback(res: dict[str, Any]) -> None:
    assert "Traceback" not in res["_stdout"] + res["_stderr"], res["_stdout"] + res["_stderr"]


def kept_files(server: Server) -> list[str]:
    return sorted(p.name for p in server.dir.iterdir() if ".pre-restore-" in p.name)


# ------------------------------------------------------------------------------------------------
# round trips
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("aof", "method"), [(False, "bgsave"), (True, "bgsave"), (False, "replication")])
def test_round_trip_restores_every_key_type_and_ttl(module, redis_server, tmp_backup_root, aof, method):
    server = redis_server(aof=aof)
    seed(server)
    original = state(server)
    assert sum(len(v) for v in original.values()) == 2 * 208

    check = module("redis_snapshot", server.args(dest=str(tmp_backup_root), method=method), check_mode=True)
    assert check["_rc"] == 0, check
    assert check["changed"] is True and check["dbsize"] == 416
    assert check["keyspace"]["db1"]["keys"] == 208
    assert list(tmp_backup_root.iterdir()) == []  # check mode wrote nothing

    snap = module("redis_snapshot", server.args(dest=str(tmp_backup_root), method=method))
    assert snap["_rc"] == 0, (snap.get("msg"), server.log_tail(), snap)
    assert snap["changed"] is True and snap["method"] == method
    assert snap["dbsize"] == 416 and snap["keyspace"]["db0"]["keys"] == 208
    assert snap["keyspace"]["db0"]["expires"] == 2 and snap["keyspace_exact"] is True
    assert snap["path"] == str(set_dir(tmp_backup_root, server) / snap["backup_id"])
    rdb = Path(snap["path"], "dump.rdb")
    assert rdb.read_bytes()[:5] == b"REDIS" and snap["size_bytes"] == rdb.stat().st_size
    manifest = json.loads(Path(snap["path"], "manifest.json").read_text())
    facts = manifest["facts"]
    assert facts["method"] == method and facts["rdb_file"] == "dump.rdb" and facts["dbsize"] == 416
    assert facts["redis_version"].startswith("7.")
    assert (facts["last_save_time"] is not None) is (method == "bgsave")
    assert PASSWORD not in snap["_stdout"] + json.dumps(manifest)
    assert [s["step"] for s in snap["steps"]][-1].startswith("fsync")

    damage(server)
    assert state(server) != original
    pid = server.pid

    plan = module("redis_restore", server.restore_args(backup_root=str(tmp_backup_root)), check_mode=True)
    assert plan["_rc"] == 0, plan
    assert plan["changed"] is True and plan["backup_id"] == snap["backup_id"]
    assert plan["data_file"] == str(server.dir / "dump.rdb") and plan["dbsize_expected"] == 416
    assert plan["aof"] is aof
    assert server.pid == pid and kept_files(server) == []
    assert server.client(0).get("s:0") == b"changed"  # untouched

    res = module("redis_restore", server.restore_args(backup_root=str(tmp_backup_root)))
    assert res["_rc"] == 0, res
    assert res["changed"] is True and res["aof"] is aof
    assert res["dbsize"] == res["dbsize_expected"] == 416
    assert res["keyspace"]["db1"]["keys"] == 208
    assert server.pid != pid  # it really was restarted
    assert_same_state(original, state(server))
    assert res["previous_file"] == str(server.dir / f"dump.rdb.pre-restore-{snap['backup_id']}")
    assert Path(res["previous_file"]).read_bytes()[:5] == b"REDIS"
    if aof:
        assert res["previous_aof"] == str(server.dir / f"appendonlydir.pre-restore-{snap['backup_id']}")
        assert Path(res["previous_aof"]).is_dir()
        # the data survives a second restart: it lives in the AOF the server now appends to
        server.client().set("after:restore", "1")
        subprocess.run(server.stop_command, env=module_env({"REDISCLI_AUTH": PASSWORD}), check=False, timeout=30)
        time.sleep(0.5)
        server.start()
        assert server.client(1).hlen("h:1") == 50 and server.client().get("after:restore") == b"1"
    else:
        assert res["previous_aof"] is None

    # a second restore of the same set keeps what the first one kept and sets the current data aside as .2
    first_kept = Path(res["previous_file"]).read_bytes()
    server.client(0).set("s:0", "changed again")
    again = module("redis_restore", server.restore_args(backup_root=str(tmp_backup_root)))
    assert again["_rc"] == 0, again
    assert again["previous_file"] == res["previous_file"] + ".2"
    assert Path(res["previous_file"]).read_bytes() == first_kept
    assert Path(again["previous_file"]).read_bytes()[:5] == b"REDIS"
    if aof:
        assert again["previous_aof"] == res["previous_aof"] + ".2" and Path(again["previous_aof"]).is_dir()
    assert_same_state(original, state(server))


def test_lab_snapshot_with_password(lab, module, tmp_backup_root):
    client = redis.Redis(
        host=lab["redis"]["login_host"], port=lab["redis"]["login_port"], password=lab["redis"]["login_password"], db=9
    )
    key = f"rbsnap:{uuid.uuid4().hex[:8]}"
    client.set(key, "lab value")
    try:
        res = module("redis_snapshot", {**lab["redis"], "dest": str(tmp_backup_root), "source": "lab"})
        assert res["_rc"] == 0, res
        assert res["keyspace"]["db9"]["keys"] >= 1
        assert key.encode() in Path(res["path"], "dump.rdb").read_bytes()
        assert lab["redis"]["login_password"] not in res["_stdout"] + res["_stderr"]
        found = list_sets(LocalStorage(str(tmp_backup_root)), "redis", "lab")
        assert [s.backup_id for s in found if s.valid] == [res["backup_id"]]
    finally:
        client.delete(key)
        client.close()


# ------------------------------------------------------------------------------------------------
# concurrency and interruption
# ------------------------------------------------------------------------------------------------


def test_save_started_by_another_client_is_waited_for(module, redis_server, tmp_backup_root):
    server = redis_server()
    c = server.client()
    # 50 ms per key: each save takes about 5 s, longer than the module takes to start on a loaded machine
    # (with 2 s, a module that started late found the other save done: waited 0.001 s)
    c.mset({f"slow:{i}": i for i in range(100)})
    c.config_set("rdb-key-save-delay", 50_000)
    saves_before = int(c.info("persistence")["rdb_saves"])
    c.bgsave()
    assert int(c.info("persistence")["rdb_bgsave_in_progress"]) == 1
    c.set("late-key", "written during the other save")
    started = time.monotonic()
    res = module("redis_snapshot", server.args(dest=str(tmp_backup_root)))
    assert res["_rc"] == 0, res
    assert time.monotonic() - started >= 3.0  # the other save, then ours
    data = Path(res["path"], "dump.rdb").read_bytes()
    assert b"late-key" in data  # a fresh save, not the one that was running
    assert int(c.info("persistence")["rdb_saves"]) == saves_before + 2
    assert res["dbsize"] == 101
    waited = {s["step"]: s["duration_s"] for s in res["steps"]}
    assert waited["wait for a save or AOF rewrite already running"] >= 0.5
    c.config_set("rdb-key-save-delay", 0)


@pytest.fixture
def module_argv(tmp_path):
    def make(name: str, args: dict[str, Any]) -> list[str]:
        args_file = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        return [str(PYTHON), "-m", f"ansible_collections.runbook.stack.plugins.modules.{name}", str(args_file)]

    return make


def _redis_cli_children(rdb_dir: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"redis-cli") and str(rdb_dir).encode() in b" ".join(cmdline):
                found.append(int(proc.name))
    return [p for p in found if _alive(p)]


@pytest.mark.parametrize("method", ["bgsave", "replication"])
def test_kill_9_mid_snapshot_leaves_no_valid_set(module_argv, redis_server, tmp_backup_root, method):
    server = redis_server()
    c = server.client()
    c.mset({f"big:{i}": "x" * 100 for i in range(100)})
    c.config_set("rdb-key-save-delay", 100_000)  # 10 s for the whole save
    argv = module_argv("redis_snapshot", server.args(dest=str(tmp_backup_root), method=method))
    proc = subprocess.Popen(argv, env=module_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        parent = set_dir(tmp_backup_root, server)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            busy = int(c.info("persistence")["rdb_bgsave_in_progress"]) or c.info("replication")["connected_slaves"]
            if parent.exists() and list(parent.iterdir()) and busy:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the snapshot never got under way")
        time.sleep(0.5)
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    sets = [
        BackupSet(LocalStorage(str(tmp_backup_root)), "redis", parent.name, d.name).load() for d in parent.iterdir()
    ]
    assert len(sets) == 1
    assert not sets[0].valid and sets[0].incomplete
    assert not Path(sets[0].location, "manifest.json").exists()
    assert [s for s in list_sets(LocalStorage(str(tmp_backup_root)), "redis") if s.valid] == []
    if method == "replication":
        deadline = time.monotonic() + 5
        while _redis_cli_children(parent) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _redis_cli_children(parent) == []  # redis-cli died with the module
    c.config_set("rdb-key-save-delay", 0)


# ------------------------------------------------------------------------------------------------
# refusals and roll-back
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def snapped(module, redis_server, tmp_backup_root):
    """A seeded server with one snapshot, then damaged: (server, snapshot result, damaged state)."""
    server = redis_server()
    seed(server)
    snap = module("redis_snapshot", server.args(dest=str(tmp_backup_root)))
    assert snap["_rc"] == 0, (snap.get("msg"), server.log_tail(), snap)
    damage(server)
    return server, snap, state(server)


def _assert_untouched(server: Server, pid: int, damaged: dict) -> None:
    assert server.pid == pid and _alive(pid)
    assert_same_state(damaged, state(server))
    assert kept_files(server) == []


def test_corrupt_rdb_is_refused_before_the_server_is_touched(module, snapped):
    server, snap, damaged = snapped
    pid = server.pid
    rdb = Path(snap["path"], "dump.rdb")
    data = bytearray(rdb.read_bytes())
    data[len(data) // 2] ^= 0xFF
    rdb.write_bytes(bytes(data))
    res = module("redis_restore", server.restore_args(path=snap["path"]))
    assert res["_rc"] != 0 and res.get("failed")
    assert "checksum mismatch on dump.rdb" in res["msg"] and snap["path"] in res["msg"]
    assert "nothing was changed" in res["msg"]
    no_traceback(res)
    _assert_untouched(server, pid, damaged)


def test_corrupt_manifest_is_refused_before_the_server_is_touched(module, snapped, tmp_backup_root):
    server, snap, damaged = snapped
    pid = server.pid
    manifest = Path(snap["path"], "manifest.json")
    manifest.write_text(manifest.read_text()[:-40])
    res = module("redis_restore", server.restore_args(path=snap["path"]))
    assert res["_rc"] != 0 and "not valid" in res["msg"] and "manifest" in res["msg"]
    no_traceback(res)
    latest = module("redis_restore", server.restore_args(backup_root=str(tmp_backup_root)))
    assert latest["_rc"] != 0 and "no valid redis backup set" in latest["msg"]
    _assert_untouched(server, pid, damaged)


def test_wrong_magic_with_matching_checksum_is_refused(module, snapped):
    server, snap, damaged = snapped
    pid = server.pid
    rdb = Path(snap["path"], "dump.rdb")
    data = b"XEDIS" + rdb.read_bytes()[5:]
    rdb.write_bytes(data)
    manifest_path = Path(snap["path"], "manifest.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][0]["sha256"] = hashlib.sha256(data).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    res = module("redis_restore", server.restore_args(path=snap["path"]))
    assert res["_rc"] != 0 and "not an RDB file" in res["msg"] and "dump.rdb" in res["msg"]
    no_traceback(res)
    _assert_untouched(server, pid, damaged)


def test_key_count_mismatch_rolls_back(module, snapped):
    server, snap, damaged = snapped
    manifest_path = Path(snap["path"], "manifest.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["facts"]["keyspace"]["db1"]["keys"] += 5  # the manifest itself is not hashed: still a valid set
    manifest_path.write_text(json.dumps(manifest))
    res = module("redis_restore", server.restore_args(path=snap["path"]))
    assert res["_rc"] != 0 and res.get("failed")
    assert "db1 has 208 keys, the snapshot had 213" in res["msg"]
    assert "the previous data is back in place and the server is running" in res["msg"]
    no_traceback(res)
    assert _alive(server.pid)
    assert_same_state(damaged, state(server))
    assert kept_files(server) == []


def test_failing_start_rolls_back(module, snapped, tmp_path):
    server, snap, damaged = snapped
    flag = tmp_path / "fail-once"
    flag.write_text("1")
    # the first start fails (as a broken unit would); the roll-back's start works
    script = f'if [ -e "{flag}" ]; then rm -f "{flag}"; echo boom >&2; exit 3; fi; exec redis-server "{server.conf}"'
    res = module("redis_restore", server.restore_args(path=snap["path"], start_command=["sh", "-c", script]))
    assert res["_rc"] != 0 and res.get("failed")
    assert "failed (rc 3): boom" in res["msg"]
    assert "the previous data is back in place and the server is running" in res["msg"]
    no_traceback(res)
    assert not flag.exists() and _alive(server.pid)
    assert_same_state(damaged, state(server))
    assert kept_files(server) == []


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


def test_closed_port_fails_fast(module, snapped, tmp_path):
    server, snap, damaged = snapped
    pid = server.pid
    dest = tmp_path / "other-root"
    for name, args in (
        ("redis_snapshot", {"login_port": 1, "dest": str(dest), "connect_timeout": 2}),
        ("redis_restore", server.restore_args(login_port=1, path=snap["path"], connect_timeout=2)),
    ):
        started = time.monotonic()
        res = module(name, args)
        assert time.monotonic() - started < 15
        assert res["_rc"] != 0 and res.get("failed"), res
        assert "127.0.0.1:1" in res["msg"] and "refused" in res["msg"].lower(), res["msg"]
        no_traceback(res)
    assert not dest.exists()
    _assert_untouched(server, pid, damaged)


def test_wrong_password_is_not_echoed(lab, module, snapped, tmp_path):
    server, snap, damaged = snapped
    pid = server.pid
    dest = tmp_path / "other-root"
    secret = "wrong-" + uuid.uuid4().hex
    runs = [
        ("redis_snapshot", {**lab["redis"], "login_password": secret, "dest": str(dest)}),
        ("redis_snapshot", server.args(login_password=secret, dest=str(dest), method="replication")),
        ("redis_restore", server.restore_args(login_password=secret, path=snap["path"])),
    ]
    for name, args in runs:
        res = module(name, args)
        assert res["_rc"] != 0 and "authentication failed" in res["msg"], res["msg"]
        assert secret not in res["_stdout"] + res["_stderr"]
        no_traceback(res)
    assert list(dest.glob("redis/*/*")) == []
    _assert_untouched(server, pid, damaged)


@pytest.mark.parametrize(
    ("name", "extra", "needle"),
    [
        ("redis_snapshot", {"method": "dump"}, "method"),
        ("redis_snapshot", {"timeout": 0}, "timeout"),
        ("redis_restore", {"path": "/nonexistent/x", "backup_root": "/tmp", "service": "r"}, "mutually exclusive"),
        ("redis_restore", {"backup_root": "/tmp"}, "service, stop_command"),
        ("redis_restore", {"backup_root": "/tmp", "stop_command": ["true"]}, "start_command"),
        ("redis_restore", {"backup_root": "/tmp", "service": "r", "start_command": ["true"]}, "mutually exclusive"),
        ("redis_restore", {"backup_root": "/tmp", "backup_id": "yesterday", "service": "r"}, "invalid backup id"),
        ("redis_restore", {"service": "r"}, "path, backup_root"),
    ],
)
def test_bad_options_fail_clearly(module, redis_server, tmp_backup_root, name, extra, needle):
    server = redis_server()
    args = server.args(**extra)
    if name == "redis_snapshot":
        args["dest"] = str(tmp_backup_root)
    pid = server.pid
    started = time.monotonic()
    res = module(name, args)
    assert time.monotonic() - started < 15
    assert res["_rc"] != 0 and res.get("failed"), res
    assert needle in res["msg"], res["msg"]
    no_traceback(res)
    assert server.pid == pid and _alive(pid)
    assert list(tmp_backup_root.iterdir()) == []


def test_bgsave_without_config_points_to_replication(module, redis_server, tmp_backup_root):
    server = redis_server()
    server.conf.write_text(server.conf.read_text() + 'rename-command CONFIG ""\n')
    server.client().shutdown(nosave=True)
    time.sleep(0.5)
    server.start()
    res = module("redis_snapshot", server.args(dest=str(tmp_backup_root)))
    assert res["_rc"] != 0 and "use method=replication" in res["msg"]
    no_traceback(res)
    assert list(tmp_backup_root.glob("redis/*/*")) == []
    repl = module("redis_snapshot", server.args(dest=str(tmp_backup_root), method="replication"))
    assert repl["_rc"] == 0, repl
