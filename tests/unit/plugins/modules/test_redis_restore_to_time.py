# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""redis_restore_to_time's last step, the AOF rewrite, when the restored server stops answering
between its start and the rewrite; where the AOF goes with host_data_dir, data_dir or neither (pure
logic: the server is a fake)."""

from __future__ import annotations

import re

import pytest

from ansible_collections.runbook.stack.plugins.module_utils._redis import ConnInfo, RedisError
from ansible_collections.runbook.stack.plugins.modules import redis_restore_to_time as mod

INFO = ConnInfo(host="127.0.0.1", port=6399)
RESULT = {"dbsize": 7, "aof_path": "/data/appendonlydir", "previous_aof": "/data/appendonlydir.pre-restore-X"}


class FakeClient:
    def __init__(self, calls):
        self.calls = calls

    def bgrewriteaof(self):
        self.calls.append("bgrewriteaof")

    def close(self):
        self.calls.append("close")


def test_a_server_that_answers_again_is_rewritten(monkeypatch):
    answers = iter([None, None, {"loading": 0}])
    calls: list[str] = []
    monkeypatch.setattr(mod, "ready", lambda info: next(answers))
    monkeypatch.setattr(mod, "connect", lambda info: FakeClient(calls))
    monkeypatch.setattr(mod, "wait_rewrite_idle", lambda client, timeout: calls.append("idle"))
    mod.rewrite({"timeout": 5}, INFO, RESULT)
    assert calls == ["bgrewriteaof", "idle", "close"]


def test_a_server_that_stays_down_gets_an_error_saying_the_restore_is_in_place(monkeypatch):
    monkeypatch.setattr(mod, "ready", lambda info: None)
    monkeypatch.setattr(mod, "connect", lambda info: pytest.fail("connected to a server that does not answer"))
    with pytest.raises(RedisError) as err:
        mod.rewrite({"timeout": 0.3}, INFO, RESULT)
    msg = str(err.value)
    assert "127.0.0.1:6399" in msg and "stopped answering before the AOF rewrite" in msg
    assert "the restore is in place in /data/appendonlydir" in msg
    assert "/data/appendonlydir.pre-restore-X" in msg and "run BGREWRITEAOF" in msg


# ------------------------------------------------------------------------------------------------
# host_data_dir: where the AOF goes (the server's settings are a fake)
# ------------------------------------------------------------------------------------------------


class SettingsClient:
    def __init__(self, server_dir: str) -> None:
        self.config = {"appendonly": "yes", "dir": server_dir, "appenddirname": "appendonlydir"}

    def config_get(self, name: str) -> dict[str, str]:
        return {name: self.config[name]} if name in self.config else {}

    def info(self, section: str) -> dict:
        return {"db0": {"keys": 2, "expires": 0, "avg_ttl": 0}}

    def close(self) -> None:
        pass


def params(**given) -> dict:
    defaults = {"data_dir": None, "host_data_dir": None, "appenddirname": "appendonlydir"}
    return {**defaults, "appendfilename": "appendonly.aof", **given}


@pytest.fixture
def running(monkeypatch):
    """A running server that reports ``dir`` /data (set ``.config`` to change it)."""
    client = SettingsClient("/data")
    monkeypatch.setattr(mod, "port_open", lambda host, port: True)
    monkeypatch.setattr(mod, "connect", lambda info: client)
    return client


def aof_dir(path) -> None:
    """What a server with appendonly yes has in its data directory: the AOF manifest."""
    (path / "appendonlydir").mkdir()
    (path / "appendonlydir" / "appendonly.aof.manifest").write_text("file appendonly.aof.1.base.rdb seq 1 type b\n")


def test_a_running_server_in_a_container_is_restored_in_host_data_dir(running, tmp_path):
    aof_dir(tmp_path)
    settings, keyspace = mod.server_state(params(host_data_dir=str(tmp_path)), INFO, [])
    assert settings["dir"] == str(tmp_path) and settings["appendfilename"] == "appendonly.aof"
    assert keyspace == {"db0": {"keys": 2, "expires": 0, "avg_ttl": 0}}
    settings, _keyspace = mod.server_state(params(host_data_dir=str(tmp_path), data_dir=str(tmp_path)), INFO, [])
    assert settings["dir"] == str(tmp_path)


def test_a_server_dir_missing_here_fails_naming_host_data_dir(running, tmp_path):
    running.config["dir"] = str(tmp_path / "data")
    with pytest.raises(RedisError) as err:
        mod.server_state(params(), INFO, [])
    assert "does not exist on this host" in str(err.value)
    assert f"set host_data_dir to the host directory mounted at {tmp_path / 'data'}" in str(err.value)
    assert not (tmp_path / "data").exists()
    running.config["dir"] = str(tmp_path)  # on the host itself: as reported
    assert mod.server_state(params(), INFO, [])[0]["dir"] == str(tmp_path)


def test_a_host_data_dir_without_the_servers_aof_is_not_where_it_writes(running, tmp_path):
    with pytest.raises(RedisError) as err:
        mod.server_state(params(host_data_dir=str(tmp_path)), INFO, [])
    assert str(err.value) == (
        f"{tmp_path}/appendonlydir/appendonly.aof.manifest does not exist: host_data_dir {tmp_path} is not the "
        "directory the server writes to (the host directory mounted at its data directory /data); nothing was changed"
    )
    running.config["appendonly"] = "no"  # the caller's check of appendonly says why
    assert mod.server_state(params(host_data_dir=str(tmp_path)), INFO, [])[0]["dir"] == str(tmp_path)


def test_data_dir_is_the_host_side_when_host_data_dir_is_set(running, tmp_path):
    aof_dir(tmp_path)
    with pytest.raises(
        RedisError, match=rf"^data_dir /data is not host_data_dir {re.escape(str(tmp_path))}: data_dir is the data"
    ):
        mod.server_state(params(host_data_dir=str(tmp_path), data_dir="/data"), INFO, [])
    with pytest.raises(RedisError, match=r"host_data_dir .*missing is not an existing directory .* directory /data"):
        mod.server_state(params(host_data_dir=str(tmp_path / "missing")), INFO, [])


def test_a_server_that_is_down_goes_to_host_data_dir(monkeypatch, tmp_path):
    monkeypatch.setattr(mod, "port_open", lambda host, port: False)
    monkeypatch.setattr(mod, "connect", lambda info: pytest.fail("connected to a server that is down"))
    warnings: list[str] = []
    settings, keyspace = mod.server_state(params(host_data_dir=str(tmp_path)), INFO, warnings)
    assert settings == {
        "appendonly": "yes",
        "dir": str(tmp_path),
        "appenddirname": "appendonlydir",
        "appendfilename": "appendonly.aof",
    }
    assert keyspace == {} and f"restoring into {tmp_path} from the module's options" in warnings[0]
    assert mod.server_state(params(data_dir="/srv/lost"), INFO, [])[0]["dir"] == "/srv/lost"
    with pytest.raises(RedisError, match=r"^data_dir /data is not host_data_dir"):
        mod.server_state(params(host_data_dir=str(tmp_path), data_dir="/data"), INFO, [])
    with pytest.raises(RedisError) as err:
        mod.server_state(params(), INFO, [])
    assert "is down and data_dir is not set" in str(
        err.value
    ) and "host_data_dir when Redis runs in a container" in str(err.value)
