"""Pure snapshot/restore helpers of _redis.py: the save wait loop, data paths, RDB magic, key counts."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from ansible_collections.runbook.stack.plugins.module_utils import _redis as rd
from ansible_collections.runbook.stack.plugins.module_utils._redis import persistence


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def sequence(*replies):
    """fetch_info returning the replies in order, the last one forever after."""
    items = list(replies)

    def fetch():
        return items.pop(0) if len(items) > 1 else items[0]

    return fetch


def info(in_progress=0, saves=5, last=1000, status="ok", **extra):
    reply = {"rdb_bgsave_in_progress": in_progress, "rdb_saves": saves, "rdb_last_save_time": last}
    reply["rdb_last_bgsave_status"] = status
    reply.update(extra)
    return reply


MARKER = rd.save_marker(info(saves=5, last=1000))


def wait(fetch, started=True, timeout=10.0):
    clock = FakeClock()
    return rd.wait_for_save(fetch, MARKER, started, timeout, interval=0.5, clock=clock, sleep=clock.sleep), clock


def test_save_that_finished_before_the_first_poll_is_done_at_once():
    reply, clock = wait(sequence(info(saves=6, last=1001)))
    assert reply["rdb_saves"] == 6
    assert clock.now == 0.0


def test_save_running_is_waited_for():
    reply, clock = wait(sequence(info(1, saves=6), info(1, saves=6), info(0, saves=6, last=1003)))
    assert reply["rdb_last_save_time"] == 1003
    assert clock.now == 1.0


def test_history_not_past_marker_is_never_done():
    # no save after our marker: an older file must never be taken, the wait runs into the timeout
    with pytest.raises(rd.RedisError, match="did not finish within 3 s"):
        wait(sequence(info(0, saves=5, last=1000)), started=False, timeout=3)


def test_scheduled_save_waits_until_it_ran():
    fetch = sequence(info(0, saves=5, aof_rewrite_in_progress=1), info(1, saves=6), info(0, saves=6, last=1002))
    reply, _clock = wait(fetch, started=False)
    assert reply["rdb_last_save_time"] == 1002


def test_failed_save_raises():
    with pytest.raises(rd.RedisError, match="rdb_last_bgsave_status:err"):
        wait(sequence(info(1, saves=6), info(0, saves=6, status="err")))


def test_failed_save_without_counter_raises():
    marker = rd.save_marker({"rdb_last_save_time": 1000, "rdb_bgsave_in_progress": 0})
    assert marker.saves is None
    reply = {"rdb_last_save_time": 1000, "rdb_bgsave_in_progress": 0, "rdb_last_bgsave_status": "err"}
    with pytest.raises(rd.RedisError, match="failed"):
        rd.save_progress(reply, marker, started=True, seen_running=False)


def test_without_counter_the_save_time_decides():
    marker = rd.save_marker({"rdb_last_save_time": 1000})
    assert rd.save_progress({"rdb_last_save_time": 1000}, marker, True, False) == rd.WAIT
    assert rd.save_progress({"rdb_last_save_time": 1001}, marker, True, False) == rd.DONE


def test_someone_elses_save_is_waited_out_before_ours():
    clock = FakeClock()
    fetch = sequence(info(1, saves=5), info(0, aof_rewrite_in_progress=1), info(0, saves=6))
    idle = rd.wait_until_idle(fetch, 10, interval=1, clock=clock, sleep=clock.sleep)
    assert idle["rdb_saves"] == 6 and clock.now == 2
    with pytest.raises(rd.RedisError, match="still running after 2 s"):
        rd.wait_until_idle(sequence(info(1)), 2, interval=1, clock=clock, sleep=clock.sleep)


def test_data_paths_from_config():
    paths = rd.data_paths(
        {"dir": "/var/lib/redis", "dbfilename": "dump.rdb", "appendonly": "yes", "appenddirname": "aofdir"}
    )
    assert paths.rdb_path == "/var/lib/redis/dump.rdb"
    assert paths.appendonly and paths.aof_path == "/var/lib/redis/aofdir"
    old = rd.data_paths({"dir": "/d", "dbfilename": "x.rdb", "appendonly": "no", "appendfilename": "a.aof"})
    assert not old.appendonly and old.aof_path == "/d/a.aof"
    with pytest.raises(rd.RedisError):
        rd.data_paths({"dir": "", "dbfilename": "dump.rdb"})
    with pytest.raises(rd.RedisError):
        rd.data_paths({"dir": "/d", "dbfilename": "../etc/x"})


def test_rdb_magic(tmp_path):
    good = tmp_path / "good.rdb"
    good.write_bytes(b"REDIS0010\xfa")
    rd.check_rdb_magic(str(good))
    bad = tmp_path / "bad.rdb"
    bad.write_bytes(b"XEDIS0010")
    with pytest.raises(rd.RedisError, match="not an RDB file"):
        rd.check_rdb_magic(str(bad))
    with pytest.raises(rd.RedisError, match="cannot read"):
        rd.check_rdb_magic(str(tmp_path / "missing"))


def test_aof_manifest():
    base, text = rd.aof_manifest("appendonly.aof")
    assert base == "appendonly.aof.1.base.rdb"
    assert text == b"file appendonly.aof.1.base.rdb seq 1 type b\n"


def test_compare_keyspace_allows_expired_keys_only():
    expected = {"db0": {"keys": 10, "expires": 3}, "db2": {"keys": 5, "expires": 0}}
    assert rd.compare_keyspace(expected, {"db0": {"keys": 7}, "db2": {"keys": 5}}) == []
    problems = rd.compare_keyspace(expected, {"db0": {"keys": 6}, "db2": {"keys": 6}, "db9": {"keys": 1}})
    assert len(problems) == 3
    assert problems[0].startswith("db0 has 6 keys") and "db9 has 1 keys" in problems[2]
    assert rd.compare_keyspace(expected, {"db0": {"keys": 10}}) == ["db2 has 0 keys, the snapshot had 5"]
    assert rd.total_keys(expected) == 15


def test_redis_cli_argv_keeps_the_password_out():
    info = rd.ConnInfo(host="h", port=7, user="backup", password="pw-secret", tls=True, ca_certs="/ca.pem")
    argv = rd.redis_cli_argv("redis-cli", info, "/out.rdb")
    expected = ["redis-cli", "-h", "h", "-p", "7", "--user", "backup", "--tls", "--cacert", "/ca.pem"]
    assert argv == [*expected, "--rdb", "/out.rdb"]
    assert "pw-secret" not in " ".join(argv)
    env = rd.redis_cli_env(info, {"PATH": "/bin", "REDISCLI_AUTH": "other"})
    assert env == {"PATH": "/bin", "REDISCLI_AUTH": "pw-secret"}
    assert "REDISCLI_AUTH" not in rd.redis_cli_env(rd.ConnInfo(host="h", port=7), {"REDISCLI_AUTH": "x"})


def test_copy_stable_copies_through_the_open_descriptor(tmp_path):
    src = tmp_path / "dump.rdb"
    src.write_bytes(b"REDIS" + os.urandom(1000))
    content = src.read_bytes()
    with open(src, "rb") as fin:
        # the server replaces the file by rename while we copy: the open descriptor keeps the old one
        replacement = tmp_path / "temp-1.rdb"
        replacement.write_bytes(b"REDISnewer")
        os.replace(replacement, src)
        assert rd.copy_stable(fin, str(tmp_path / "copy.rdb")) == len(content)
    assert (tmp_path / "copy.rdb").read_bytes() == content


def test_copy_stable_hashes_while_it_copies(tmp_path):
    src = tmp_path / "dump.rdb"
    src.write_bytes(b"REDIS" + os.urandom(3 * 1024 * 1024 + 17))
    digest = hashlib.sha256()
    with open(src, "rb") as fin:
        assert rd.copy_stable(fin, str(tmp_path / "copy.rdb"), chunk=1024 * 1024, digest=digest) == src.stat().st_size
    assert digest.hexdigest() == hashlib.sha256(src.read_bytes()).hexdigest()
    assert (tmp_path / "copy.rdb").read_bytes() == src.read_bytes()


def test_copy_stable_refuses_a_file_changed_in_place(tmp_path, monkeypatch):
    # the user-space path (no sendfile), where a read can be interleaved with a write
    monkeypatch.setattr(persistence, "_kernel_copy", lambda *args: None)
    src = tmp_path / "dump.rdb"
    src.write_bytes(b"REDIS" + b"x" * 100)

    class Growing(io.FileIO):
        grown = False

        def read(self, size=-1):
            block = super().read(8)  # small reads, and the server appends once in the middle
            if block and not self.grown:
                self.grown = True
                with open(src, "ab") as fh:
                    fh.write(b"more")
            return block

    with Growing(str(src), "rb") as fin, pytest.raises(rd.RedisError, match="changed while"):
        rd.copy_stable(fin, str(tmp_path / "copy.rdb"))


def test_poll_returns_value_or_none():
    clock = FakeClock()
    values = iter([None, 0, "ok"])
    assert rd.poll(lambda: next(values), 5, interval=1, clock=clock, sleep=clock.sleep) == "ok"
    assert rd.poll(lambda: None, 2, interval=1, clock=clock, sleep=clock.sleep) is None
