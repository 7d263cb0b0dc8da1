"""redis_health_info, redis_keys and redis_config against the lab Redis (and a throwaway server).

Keys live under a unique ``rbit:<uuid>:`` prefix and are removed afterwards; the lab is never
flushed. Settings changed with CONFIG SET are restored in a ``finally``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis

ITDB = 13  # the database these tests put their keys in


def _args(lab: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**lab["redis"], **extra}


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
    before = module("redis_health_info", _args(lab, db=ITDB))
    assert before["_rc"] == 0, before
    client.mset({f"{prefix}{i}": i for i in range(25)})
    for i in range(6):
        client.get(f"{prefix}{i}")  # hits
    for i in range(2):
        client.get(f"{prefix}missing{i}")  # misses
    after = module("redis_health_info", _args(lab, db=ITDB), check_mode=True)
    assert after["_rc"] == 0 and after["changed"] is False
    assert after["dbsize"] == before["dbsize"] + 25
    assert after["keyspace"][f"db{ITDB}"]["keys"] == after["dbsize"]
    assert after["keyspace_hits"] - before["keyspace_hits"] >= 6
    assert after["keyspace_misses"] - before["keyspace_misses"] >= 2
    total = after["keyspace_hits"] + after["keyspace_misses"]
    assert after["hit_rate"] == pytest.approx(after["keyspace_hits"] / total, abs=1e-4)
    assert after["hit_rate_ok"] is (after["hit_rate"] >= 0.8)
    strict = module("redis_health_info", _args(lab, min_hit_rate=1.01))
    assert strict["hit_rate_ok"] is False
    assert 0 < after["ping_ms"] < 1000
    assert after["role"] == "master"
    assert after["version"].split(".")[0] >= "6"
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
    result = module("redis_health_info", _args(lab, login_password=secret))
    assert result["_rc"] != 0 and result.get("failed")
    assert "authentication failed" in result["msg"]
    assert secret not in result["_stdout"] + result["_stderr"]
    _no_traceback(result)


def test_health_password_from_rediscli_auth(lab, module):
    args = {k: v for k, v in lab["redis"].items() if k != "login_password"}
    result = module("redis_health_info", args, env={"REDISCLI_AUTH": lab["redis"]["login_password"]})
    assert result["_rc"] == 0, result["msg"]
