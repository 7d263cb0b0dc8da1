"""Redis in a container (host_data_dir): mapping the data paths the server reports to the host
directory mounted there, and telling an RDB file written by our save from an older one (its header's
ctime), so that a wrong mapping never yields a snapshot of a stale file. Pure logic and local files."""

from __future__ import annotations

import os
import struct
import sys

import pytest

from ansible_collections.runbook.stack.plugins.module_utils._redis import restore
from ansible_collections.runbook.stack.plugins.module_utils._redis.connection import RedisError
from ansible_collections.runbook.stack.plugins.module_utils._redis.persistence import (
    DataPaths,
    check_fresh_rdb,
    dir_on_host,
    mapping_hint,
    named_data_dir,
    on_host,
    predates,
    rdb_aux,
    rdb_ctime,
    read_data_paths,
)
from ansible_collections.runbook.stack.plugins.modules.redis_restore import given_data_dir

SERVER = DataPaths(dir="/data", dbfilename="dump.rdb", appendonly=True, appenddirname="appendonlydir")

# the first bytes of an RDB file redis-server 7.0.15 wrote (xxd), ctime 1796641004 as a 32-bit integer
REAL_HEAD = bytes.fromhex(
    "524544495330303130fa0972656469732d76657206372e302e3135fa0a72656469732d62697473c040"
    "fa056374696d65c2ec90166bfa08757365642d6d656dc288b50e00fa08616f662d62617365c000fe00fb0100"
)
CTIME = 1796641004


def aux(key: bytes, value: bytes) -> bytes:
    """An AUX field whose key is a short plain string and value already encoded."""
    return b"\xfa" + bytes([len(key)]) + key + value


def plain(text: bytes) -> bytes:
    """A plain string with a 6-bit (< 64) or 14-bit length."""
    if len(text) < 64:
        return bytes([len(text)]) + text
    return bytes([0x40 | (len(text) >> 8), len(text) & 0xFF]) + text


def int32(n: int) -> bytes:
    return b"\xc2" + struct.pack("<i", n)


def rdb(*fields: bytes, version: bytes = b"0010") -> bytes:
    return b"REDIS" + version + b"".join(fields) + b"\xfe\x00\xfb\x01\x00\x00\x01a\x01b\xff"


# ------------------------------------------------------------------------------------------------
# mapping the data paths
# ------------------------------------------------------------------------------------------------


def test_host_dir_replaces_the_directory_the_server_reports(tmp_path):
    host = tmp_path / "redis-data"
    host.mkdir()
    mapped = on_host(SERVER, str(host))
    assert mapped.dir == str(host)
    assert mapped.rdb_path == str(host / "dump.rdb") and mapped.aof_path == str(host / "appendonlydir")
    assert (mapped.dbfilename, mapped.appendonly, mapped.appenddirname) == ("dump.rdb", True, "appendonlydir")


def test_a_relative_host_dir_is_made_absolute(tmp_path, monkeypatch):
    (tmp_path / "redis-data").mkdir()
    monkeypatch.chdir(tmp_path)
    assert on_host(SERVER, "redis-data").dir == str(tmp_path / "redis-data")


@pytest.mark.parametrize("make", [None, "file"], ids=["missing", "a file"])
def test_a_host_dir_that_is_not_a_directory_names_the_option_and_the_server_dir(tmp_path, make):
    host = tmp_path / "redis-data"
    if make == "file":
        host.write_text("x")
    with pytest.raises(RedisError) as err:
        on_host(SERVER, str(host))
    msg = str(err.value)
    assert f"host_data_dir {host} is not an existing directory" in msg
    assert "mounted at the server's data directory /data" in msg


def test_without_host_dir_the_server_dir_must_exist_here(tmp_path):
    here = DataPaths(dir=str(tmp_path), dbfilename="dump.rdb")
    assert on_host(here) is here
    with pytest.raises(RedisError) as err:
        on_host(DataPaths(dir=str(tmp_path / "data"), dbfilename="dump.rdb"))
    msg = str(err.value)
    assert f"data directory {tmp_path / 'data'} (CONFIG GET dir) does not exist on this host" in msg
    assert f"set host_data_dir to the host directory mounted at {tmp_path / 'data'}" in msg


def test_dir_on_host_maps_a_directory_alone(tmp_path):
    """The mapping redis_restore_to_time uses for the dir of its AOF settings."""
    assert dir_on_host(str(tmp_path)) == str(tmp_path)
    assert dir_on_host("/data", str(tmp_path)) == str(tmp_path)
    with pytest.raises(RedisError) as err:
        dir_on_host(str(tmp_path / "data"))  # the container's path, absent here
    assert str(err.value).endswith(f"set host_data_dir to the host directory mounted at {tmp_path / 'data'}")
    with pytest.raises(RedisError, match=r"mounted at the server's data directory /data"):
        dir_on_host("/data", str(tmp_path / "missing"))


def test_named_data_dir_must_be_host_data_dir_which_is_then_enough(tmp_path):
    host = str(tmp_path)
    assert named_data_dir(None, None) is None
    assert named_data_dir("/var/lib/redis", None) == "/var/lib/redis"
    assert named_data_dir(None, host) == host
    assert named_data_dir(host + "/.", host) == host + "/."
    with pytest.raises(RedisError) as err:
        named_data_dir("/data", host, hint=": leave it out")
    assert str(err.value) == f"data_dir /data is not host_data_dir {host}: leave it out"
    with pytest.raises(RedisError, match=r"^data_paths\.dir /data is not"):
        named_data_dir("/data", host, "data_paths.dir")
    with pytest.raises(RedisError, match="is not an existing directory"):
        named_data_dir(None, str(tmp_path / "missing"))


class ConfigClient:
    def __init__(self, config: dict[str, str]) -> None:
        self.config = config

    def config_get(self, name: str) -> dict[str, str]:
        return {name: self.config[name]} if name in self.config else {}


def test_read_data_paths_maps_what_config_get_reports(tmp_path):
    client = ConfigClient({"dir": "/data", "dbfilename": "dump.rdb", "appendonly": "no"})
    assert read_data_paths(client, str(tmp_path)) == DataPaths(dir=str(tmp_path), dbfilename="dump.rdb")
    with pytest.raises(RedisError, match="does not exist on this host"):
        read_data_paths(client)  # /data is the container's


# ------------------------------------------------------------------------------------------------
# the RDB header: which save wrote the file
# ------------------------------------------------------------------------------------------------


def test_aux_fields_of_a_real_rdb_header():
    fields = rdb_aux(REAL_HEAD)
    assert fields == {"redis-ver": b"7.0.15", "redis-bits": 64, "ctime": CTIME, "used-mem": 963976, "aof-base": 0}
    assert rdb_ctime(REAL_HEAD) == CTIME


def test_ctime_stored_as_a_string_long_strings_and_compressed_values():
    head = rdb(
        aux(b"redis-ver", plain(b"7.2.4")),
        aux(b"long", plain(b"x" * 300)),  # 14-bit length
        aux(b"packed", b"\xc3\x03\x05abc"),  # LZF: 3 bytes compressed, 5 once decompressed: skipped
        aux(b"ctime", plain(b"4102444800")),  # after 2038 an int32 no longer holds it: a string
    )
    fields = rdb_aux(head)
    assert fields["long"] == b"x" * 300 and "packed" not in fields
    assert rdb_ctime(head) == 4102444800


def test_a_header_cut_short_keeps_the_fields_read_before():
    cut = REAL_HEAD[: REAL_HEAD.index(b"used-mem") + 3]
    assert rdb_aux(cut) == {"redis-ver": b"7.0.15", "redis-bits": 64, "ctime": CTIME}
    assert rdb_ctime(REAL_HEAD[:40]) is None  # cut inside the ctime field


def test_no_ctime_in_an_old_rdb_or_in_what_is_no_rdb():
    assert rdb_ctime(rdb(version=b"0006")) is None  # Redis before 3.2: no AUX fields
    assert rdb_ctime(b"XEDIS0010" + REAL_HEAD[9:]) is None
    assert rdb_ctime(rdb(aux(b"ctime", plain(b"soon")))) is None
    assert rdb_ctime(b"") is None


def test_a_file_from_a_save_begun_before_ours_predates_it():
    assert predates(REAL_HEAD, 0, CTIME) is None  # the same second: ours (the header is what counts)
    assert predates(REAL_HEAD, 0, CTIME - 100) is None
    why = predates(REAL_HEAD, 9e9, CTIME + 1)  # a fresh mtime does not help an old header
    assert why == "it is from a save begun at 2026-12-07T10:56:44Z (its ctime), this one began at 2026-12-07T10:56:45Z"


def test_without_ctime_the_mtime_decides_with_a_second_of_slack():
    old = rdb(version=b"0006")
    assert predates(old, CTIME - 0.5, CTIME) is None  # timestamps lag the clock by a tick
    why = predates(old, CTIME - 2, CTIME)
    assert why is not None and "last written at 2026-12-07T10:56:42Z (it has no ctime)" in why


def test_check_fresh_rdb_names_host_data_dir_and_keeps_the_offset(tmp_path):
    path = tmp_path / "dump.rdb"
    path.write_bytes(REAL_HEAD)
    with open(path, "rb") as fin:
        fin.read(3)
        check_fresh_rdb(fin, CTIME, mapping_hint("/data", str(tmp_path)))
        assert fin.tell() == 3  # the copy goes on from where the file stood
        with pytest.raises(RedisError) as err:
            check_fresh_rdb(fin, CTIME + 1, mapping_hint("/data", str(tmp_path)))
    msg = str(err.value)
    assert msg.startswith(f"{path} was not written by this save (it is from a save begun at")
    assert f"host_data_dir {tmp_path} is not the directory the server writes to" in msg
    assert "mounted at its data directory /data" in msg


def test_check_fresh_rdb_without_host_data_dir_points_to_it(tmp_path):
    path = tmp_path / "dump.rdb"
    path.write_bytes(REAL_HEAD)
    with open(path, "rb") as fin, pytest.raises(RedisError) as err:
        check_fresh_rdb(fin, CTIME + 1, mapping_hint(str(tmp_path), None))
    assert f"{tmp_path} on this host is not the directory the server writes to" in str(err.value)
    assert f"set host_data_dir to the host directory mounted at {tmp_path}" in str(err.value)


# ------------------------------------------------------------------------------------------------
# redis_restore
# ------------------------------------------------------------------------------------------------


class ServerClient(ConfigClient):
    """A running server as read_server sees it; its process is this test's (a real /proc entry)."""

    def __init__(self, config: dict[str, str]) -> None:
        super().__init__(config)
        self.closed = False

    def info(self, section: str) -> dict:
        if section == "server":
            return {"process_id": os.getpid(), "executable": sys.executable, "config_file": "/etc/redis/redis.conf"}
        return {"db0": {"keys": 3, "expires": 0, "avg_ttl": 0}}

    def close(self) -> None:
        self.closed = True


def test_read_server_in_a_container_maps_the_paths_and_does_not_read_its_process(tmp_path, monkeypatch):
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    host = tmp_path / "host"
    host.mkdir()
    config = {"dir": str(server_dir), "dbfilename": "dump.rdb", "appendonly": "no"}
    monkeypatch.setattr(restore, "connect", lambda info: ServerClient(config))
    monkeypatch.setattr(restore, "original_start", lambda facts, exe: [exe, facts["config_file"]])

    here, _cause = restore.read_server(None)
    assert here.paths.dir == str(server_dir) and here.original_user == (os.getuid(), os.getgid())
    assert here.original_start == [os.readlink("/proc/self/exe"), "/etc/redis/redis.conf"]

    contained, cause = restore.read_server(None, str(host))
    assert cause == "" and contained.keyspace == {"db0": {"keys": 3, "expires": 0, "avg_ttl": 0}}
    assert contained.paths.dir == str(host) and contained.paths.rdb_path == str(host / "dump.rdb")
    assert contained.original_start is None and contained.original_user is None


def params(**given) -> dict:
    return {"data_paths": None, "data_dir": None, "host_data_dir": None, **given}


def test_the_steps_find_the_journal_in_host_data_dir(tmp_path):
    host = str(tmp_path)
    assert given_data_dir(params()) is None
    assert given_data_dir(params(data_dir="/var/lib/redis")) == "/var/lib/redis"
    assert given_data_dir(params(host_data_dir=host)) == host
    assert given_data_dir(params(host_data_dir=host, data_paths={"dir": host, "dbfilename": "dump.rdb"})) == host
    assert given_data_dir(params(host_data_dir=host, data_dir=host + "/.")) == host + "/."


def test_data_paths_of_the_container_view_are_refused_with_host_data_dir(tmp_path):
    with pytest.raises(RedisError) as err:
        given_data_dir(params(host_data_dir=str(tmp_path), data_paths={"dir": "/data", "dbfilename": "dump.rdb"}))
    assert str(err.value) == (
        f"data_paths.dir /data is not host_data_dir {tmp_path}: pass the data_paths that a check-mode run "
        "with the same host_data_dir returned"
    )
    with pytest.raises(RedisError, match=r"^data_dir /data is not host_data_dir"):
        given_data_dir(params(host_data_dir=str(tmp_path), data_dir="/data"))
    with pytest.raises(RedisError, match="is not an existing directory"):
        given_data_dir(params(host_data_dir=str(tmp_path / "missing")))
