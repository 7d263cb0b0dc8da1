"""redis_health_info, redis_keys and redis_config against the lab Redis (and a throwaway server).

Keys live under a unique ``rbit:<uuid>:`` prefix and are removed afterwards; the lab is never
flushed. Settings changed with CONFIG SET are restored in a ``finally``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import redis_args

ITDB = 13  # the database these tests put their keys in


def _client(lab: dict[str, Any], db: int = ITDB) -> redis.Redis:
    r = lab["redis"]
    return redis.Redis(
        host=r["login_host"], port=r["login_port"], password=r["login_password"], db=db, decode_responses=True
    )


@pytest.fixture
def prefix(lab):
    value = f"rbit:{uuid.uuid4().hex}:"
    yield value
    client = _client(lab)
    keys = list(client.scan_iter(match=f"{value}*", count=1000))
    if keys:
        client.unlink(*keys)
    client.close()


def _no_traceback(result: dict[str, Any]) -> None:
    assert "Traceback" not in result["_stdout"] + result["_stderr"]


# ------------------------------------------------------------------------------------------------
# redis_health_info
# ------------------------------------------------------------------------------------------------


def test_health_reports_dbsize_and_hit_rate(lab, module, prefix):
    client = _client(lab)
    before = module("redis_health_info", redis_args(lab, db=ITDB))
    assert before["_rc"] == 0, before
    client.mset({f"{prefix}{i}": i for i in range(25)})
    for i in range(6):
        client.get(f"{prefix}{i}")  # hits
    for i in range(2):
        client.get(f"{prefix}missing{i}")  # misses
    after = module("redis_health_info", redis_args(lab, db=ITDB), check_mode=True)
    assert after["_rc"] == 0 and after["changed"] is False
    assert after["dbsize"] == before["dbsize"] + 25
    assert after["keyspace"][f"db{ITDB}"]["keys"] == after["dbsize"]
    assert after["keyspace_hits"] - before["keyspace_hits"] >= 6
    assert after["keyspace_misses"] - before["keyspace_misses"] >= 2
    total = after["keyspace_hits"] + after["keyspace_misses"]
    assert after["hit_rate"] == pytest.approx(after["keyspace_hits"] / total, abs=1e-4)
    assert after["hit_rate_ok"] is (after["hit_rate"] >= 0.8)
    strict = module("redis_health_info", redis_args(lab, min_hit_rate=1.01))
    assert strict["hit_rate_ok"] is False
    assert 0 < after["ping_ms"] < 1000
    assert after["role"] == "master"
    assert int(after["version"].split(".")[0]) >= 6
    mem = after["memory"]
    assert 0 < mem["used_bytes"] <= mem["peak_bytes"]
    assert mem["maxmemory_policy"] == client.config_get("maxmemory-policy")["maxmemory-policy"]
    assert after["persistence"]["rdb_last_bgsave_status"] in ("ok", "err")
    assert isinstance(after["persistence"]["aof_enabled"], bool)
    assert after["clients"]["connected"] >= 2  # this test's client and the module's
    assert after["replication"]["master_host"] is None
    client.close()


def test_health_closed_port_fails_fast(module):
    started = time.monotonic()
    result = module("redis_health_info", {"login_host": "127.0.0.1", "login_port": 1, "connect_timeout": 3})
    assert time.monotonic() - started < 10
    assert result["_rc"] != 0 and result.get("failed")
    assert "127.0.0.1:1" in result["msg"] and "refused" in result["msg"].lower()
    _no_traceback(result)


def test_health_wrong_password_is_not_echoed(lab, module):
    secret = "wrong-" + uuid.uuid4().hex
    result = module("redis_health_info", redis_args(lab, login_password=secret))
    assert result["_rc"] != 0 and result.get("failed")
    assert "authentication failed" in result["msg"]
    assert secret not in result["_stdout"] + result["_stderr"]
    _no_traceback(result)


def test_health_password_from_rediscli_auth(lab, module):
    args = {k: v for k, v in lab["redis"].items() if k != "login_password"}
    result = module("redis_health_info", args, env={"REDISCLI_AUTH": lab["redis"]["login_password"]})
    assert result["_rc"] == 0, result["msg"]


# ------------------------------------------------------------------------------------------------
# redis_keys
# ------------------------------------------------------------------------------------------------


def _seed(lab: dict[str, Any], prefix: str, doomed: int = 120, kept: int = 30) -> redis.Redis:
    client = _client(lab)
    pipe = client.pipeline(transaction=False)
    for i in range(doomed):
        pipe.set(f"{prefix}old:{i}", i)
    for i in range(kept):
        pipe.set(f"{prefix}new:{i}", i)
    pipe.execute()
    return client


def test_keys_count_and_check_mode_delete_touch_nothing(lab, module, prefix):
    client = _seed(lab, prefix)
    counted = module("redis_keys", redis_args(lab, db=ITDB, pattern=f"{prefix}old:*", batch_size=7, sample_size=5))
    assert counted["_rc"] == 0, counted
    assert counted["changed"] is False
    assert (counted["matched"], counted["affected"]) == (120, 0)
    assert len(counted["sample"]) == 5 and all(k.startswith(f"{prefix}old:") for k in counted["sample"])
    assert counted["scan_calls"] > 1
    check = module(
        "redis_keys",
        redis_args(lab, db=ITDB, pattern=f"{prefix}old:*", action="delete", batch_size=50),
        check_mode=True,
    )
    assert check["changed"] is True and check["matched"] == 120 and check["affected"] == 0
    assert len(list(client.scan_iter(match=f"{prefix}*", count=1000))) == 150
    expire_check = module(
        "redis_keys", redis_args(lab, db=ITDB, pattern=f"{prefix}old:*", action="expire", ttl=100), check_mode=True
    )
    assert expire_check["changed"] is True
    assert client.ttl(f"{prefix}old:1") == -1


@pytest.mark.parametrize("server_side,method", [(True, "server_script"), (False, "client_pipeline")])
def test_keys_delete_then_rerun_unchanged(lab, module, prefix, server_side, method):
    client = _seed(lab, prefix)
    result = module(
        "redis_keys",
        redis_args(lab, db=ITDB, pattern=f"{prefix}old:*", action="delete", batch_size=16, server_side=server_side),
    )
    assert result["_rc"] == 0, result
    assert result["method"] == method
    assert result["changed"] is True and result["affected"] == 120 and result["matched"] >= 120
    left = sorted(client.scan_iter(match=f"{prefix}*", count=1000))
    assert left == sorted(f"{prefix}new:{i}" for i in range(30))
    again = module("redis_keys", redis_args(lab, db=ITDB, pattern=f"{prefix}old:*", action="delete"))
    assert again["changed"] is False and again["matched"] == 0 and again["affected"] == 0


def test_keys_delete_respects_rate_limit(lab, module, prefix):
    _seed(lab, prefix, doomed=40, kept=0)
    result = module(
        "redis_keys",
        redis_args(lab, db=ITDB, pattern=f"{prefix}old:*", action="delete", batch_size=10, max_per_second=20),
    )
    assert result["affected"] == 40
    # SCAN examines the whole db in batches of 10: at 20 keys/s it cannot finish within 1 s
    assert result["duration_s"] >= 1.0


@pytest.mark.parametrize("server_side", [True, False])
def test_keys_expire_sets_ttl(lab, module, prefix, server_side):
    client = _seed(lab, prefix)
    result = module(
        "redis_keys",
        redis_args(lab, db=ITDB, pattern=f"{prefix}old:*", action="expire", ttl=500, server_side=server_side),
    )
    assert result["_rc"] == 0, result
    assert result["changed"] is True and result["affected"] == 120
    assert 490 <= client.ttl(f"{prefix}old:7") <= 500
    assert client.ttl(f"{prefix}new:7") == -1


@pytest.mark.parametrize("pattern", ["*", "", "**"])
def test_keys_delete_all_needs_allow_all(lab, module, prefix, pattern):
    client = _seed(lab, prefix, doomed=3, kept=0)
    before = client.dbsize()
    result = module("redis_keys", redis_args(lab, db=ITDB, pattern=pattern, action="delete"))
    assert result["_rc"] != 0 and result.get("failed")
    assert "allow_all" in result["msg"]
    assert client.dbsize() >= before
    _no_traceback(result)


@pytest.mark.parametrize(
    ("extra", "word"),
    [
        ({"action": "expire"}, "ttl"),
        ({"action": "expire", "ttl": 0}, "ttl"),
        ({"action": "delete", "ttl": 5}, "ttl"),
        ({"batch_size": 0}, "batch_size"),
        ({"action": "purge"}, "action"),
    ],
)
def test_keys_bad_options_fail_clearly(lab, module, prefix, extra, word):
    result = module("redis_keys", redis_args(lab, db=ITDB, pattern=f"{prefix}*", **extra))
    assert result["_rc"] != 0 and result.get("failed")
    assert word in result["msg"]
    _no_traceback(result)


def test_keys_wrong_password_and_closed_port(lab, module):
    secret = "nope-" + uuid.uuid4().hex
    result = module("redis_keys", redis_args(lab, pattern="x:*", login_password=secret))
    assert result["_rc"] != 0 and "authentication failed" in result["msg"]
    assert secret not in result["_stdout"] + result["_stderr"]
    started = time.monotonic()
    closed = module("redis_keys", {"login_port": 1, "pattern": "x:*", "connect_timeout": 2})
    assert time.monotonic() - started < 10
    assert closed["_rc"] != 0 and "127.0.0.1:1" in closed["msg"]
    _no_traceback(closed)


# ------------------------------------------------------------------------------------------------
# redis_config
# ------------------------------------------------------------------------------------------------

TOUCHED = ("slowlog-log-slower-than", "maxmemory-samples", "maxmemory")


@pytest.fixture
def lab_config(lab):
    """The lab's current values of the settings the tests change, restored afterwards."""
    client = _client(lab, db=0)
    saved = {name: client.config_get(name)[name] for name in TOUCHED}
    try:
        yield client, saved
    finally:
        for name, value in saved.items():
            client.config_set(name, value)
        client.close()


def test_config_check_mode_then_set_then_idempotent(lab, module, lab_config):
    client, saved = lab_config
    slowlog = int(saved["slowlog-log-slower-than"]) + 1234
    samples = 7 if saved["maxmemory-samples"] != "7" else 8
    maxmem = "3gb" if saved["maxmemory"] != str(3 * 1024**3) else "4gb"
    settings = {"slowlog-log-slower-than": slowlog, "maxmemory-samples": samples, "maxmemory": maxmem}

    check = module("redis_config", redis_args(lab, settings=settings), check_mode=True, diff=True)
    assert check["_rc"] == 0, check
    assert check["changed"] is True
    assert check["changed_settings"] == sorted(TOUCHED)
    assert check["diff"]["before"]["maxmemory"] == saved["maxmemory"]
    assert check["diff"]["after"]["maxmemory"] == str(int(maxmem[0]) * 1024**3)
    assert {n: client.config_get(n)[n] for n in TOUCHED} == saved

    real = module("redis_config", redis_args(lab, settings=settings), diff=True)
    assert real["_rc"] == 0, real
    assert real["changed"] is True and real["persisted"] is False
    assert client.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"] == str(slowlog)
    assert client.config_get("maxmemory-samples")["maxmemory-samples"] == str(samples)
    assert client.config_get("maxmemory")["maxmemory"] == str(int(maxmem[0]) * 1024**3)
    assert real["diff"]["after"]["maxmemory-samples"] == str(samples)
    assert real["diff"]["before"]["maxmemory-samples"] == saved["maxmemory-samples"]

    again = module("redis_config", redis_args(lab, settings=settings), diff=True)
    assert again["changed"] is False and again["changed_settings"] == []
    assert again["diff"] == {"before": {}, "after": {}}
    in_bytes = module("redis_config", redis_args(lab, settings={"maxmemory": str(int(maxmem[0]) * 1024**3)}))
    assert in_bytes["changed"] is False


def test_config_unknown_setting_changes_nothing(lab, module, lab_config):
    client, saved = lab_config
    samples = 9 if saved["maxmemory-samples"] != "9" else 10
    result = module("redis_config", redis_args(lab, settings={"maxmemory-samples": samples, "no-such-setting": "1"}))
    assert result["_rc"] != 0 and result.get("failed")
    assert "no-such-setting" in result["msg"] and "unknown" in result["msg"]
    assert client.config_get("maxmemory-samples")["maxmemory-samples"] == saved["maxmemory-samples"]
    _no_traceback(result)


def test_config_bad_value_fails_clearly(lab, module, lab_config):
    client, saved = lab_config
    result = module("redis_config", redis_args(lab, settings={"maxmemory-samples": "lots"}))
    assert result["_rc"] != 0 and "maxmemory-samples" in result["msg"]
    assert client.config_get("maxmemory-samples")["maxmemory-samples"] == saved["maxmemory-samples"]
    _no_traceback(result)


def test_config_wrong_password_not_echoed(lab, module):
    secret = "bad-" + uuid.uuid4().hex
    result = module("redis_config", redis_args(lab, login_password=secret, settings={"maxmemory-samples": 5}))
    assert result["_rc"] != 0 and "authentication failed" in result["msg"]
    assert secret not in result["_stdout"] + result["_stderr"]
    _no_traceback(result)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def scratch_redis(tmp_path):
    """A throwaway redis-server: ``start(with_config)`` -> (port, config path or None)."""
    procs: list[subprocess.Popen] = []

    def start(with_config: bool = True, extra: str = "") -> tuple[int, Path | None]:
        port = _free_port()
        conf = None
        cmd = ["redis-server"]
        if with_config:
            conf = tmp_path / f"redis-{port}.conf"
            conf.write_text(f'port {port}\nbind 127.0.0.1\nsave ""\ndir {tmp_path}\nmaxmemory-samples 5\n{extra}')
            cmd.append(str(conf))
        else:
            cmd += ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)]
        # The test owns this short-lived server process and stops it in the fixture's teardown.
        procs.append(
            subprocess.Popen(  # pylint: disable=ansible-bad-function
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
        client = redis.Redis(port=port, socket_connect_timeout=1)
        for _attempt in range(50):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        client.close()
        return port, conf

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def test_config_persist_rewrites_config_file(module, scratch_redis):
    port, conf = scratch_redis(with_config=True)
    args = {"login_port": port, "settings": {"maxmemory-samples": 7}, "persist": True}
    check = module("redis_config", args, check_mode=True)
    assert check["changed"] is True and check["persisted"] is False
    assert "maxmemory-samples 5" in conf.read_text()
    result = module("redis_config", args)
    assert result["_rc"] == 0, result
    assert result["changed"] is True and result["persisted"] is True
    assert "maxmemory-samples 7" in conf.read_text()
    again = module("redis_config", args)
    assert again["changed"] is False and again["persisted"] is False


def test_config_persist_without_config_file_fails(module, scratch_redis):
    port, _conf = scratch_redis(with_config=False)
    result = module("redis_config", {"login_port": port, "settings": {"maxmemory-samples": 7}, "persist": True})
    assert result["_rc"] != 0 and result.get("failed")
    assert "CONFIG REWRITE" in result["msg"] and "maxmemory-samples" in result["msg"]
    _no_traceback(result)


def test_keys_falls_back_to_pipelines_when_scripts_are_refused(module, scratch_redis):
    port, _conf = scratch_redis(with_config=True, extra='rename-command EVALSHA ""\nrename-command EVAL ""\n')
    client = redis.Redis(port=port)
    client.mset({f"tmp:{i}": i for i in range(50)} | {f"keep:{i}": i for i in range(5)})
    result = module("redis_keys", {"login_port": port, "pattern": "tmp:*", "action": "delete", "batch_size": 8})
    assert result["_rc"] == 0, result
    assert result["method"] == "client_pipeline" and result["affected"] == 50
    assert "Lua scripts are not available" in json.dumps(result.get("warnings", [])), result
    assert sorted(client.keys("*")) == sorted(f"keep:{i}".encode() for i in range(5))
