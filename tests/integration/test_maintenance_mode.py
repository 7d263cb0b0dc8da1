"""maintenance_mode with a flag file (tmp_path) and a Redis key on the lab Redis.

Each test uses its own ``rbit:<uuid>:maintenance`` key in db 13 and removes it afterwards; the lab
is never flushed.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import redis_args

ITDB = 13


def _client(lab: dict[str, Any]) -> redis.Redis:
    r = lab["redis"]
    return redis.Redis(
        host=r["login_host"], port=r["login_port"], password=r["login_password"], db=ITDB, decode_responses=True
    )


@pytest.fixture
def key(lab):
    name = f"rbit:{uuid.uuid4().hex}:maintenance"
    yield name
    client = _client(lab)
    client.delete(name)
    client.close()


@pytest.fixture
def flag(tmp_path) -> Path:
    return tmp_path / "www" / "maintenance.flag"


def _args(lab: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return redis_args(lab, db=ITDB) | extra


def _ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result["_rc"] == 0, result.get("msg")
    return result


def _failed(result: dict[str, Any], *expect: str) -> None:
    assert result["_rc"] != 0 and result.get("failed"), result
    for text in expect:
        assert text in result["msg"], result["msg"]
    assert "Traceback" not in result["_stdout"] + result["_stderr"]


def test_flag_file_and_key_on_rerun_reason_off(lab, module, key, flag):
    flag.parent.mkdir()
    client = _client(lab)
    args = _args(lab, state="on", flag_file=str(flag), redis_key=key, reason="db upgrade CHG-1", ttl=600)

    predicted = _ok(module("maintenance_mode", args, check_mode=True, diff=True))
    assert predicted["changed"] is True and predicted["enabled"] is True
    assert predicted["previous"] == {"flag_file": False, "redis_key": False}
    assert predicted["diff"]["before"] == {"flag_file": {"enabled": False}, "redis_key": {"enabled": False}}
    assert predicted["diff"]["after"]["redis_key"]["enabled"] is True
    assert not flag.exists() and client.exists(key) == 0  # check mode touched nothing

    on = _ok(module("maintenance_mode", args, diff=True))
    assert on["changed"] is True and on["enabled"] is True
    assert on["previous"] == {"flag_file": False, "redis_key": False}
    doc = json.loads(flag.read_text())
    assert doc["enabled"] is True and doc["reason"] == "db upgrade CHG-1" and doc["since"] == on["since"]
    assert stat.S_IMODE(flag.stat().st_mode) == 0o644
    assert json.loads(client.get(key)) == doc
    assert 590 <= client.ttl(key) <= 600 and 590 <= on["ttl"] <= 600
    assert on["reason"] == "db upgrade CHG-1"

    again = _ok(module("maintenance_mode", args))
    assert again["changed"] is False
    assert again["previous"] == {"flag_file": True, "redis_key": True}
    assert again["since"] == on["since"]
    assert flag.read_text() == json.dumps(doc, sort_keys=True) + "\n"

    # no reason given: an existing flag is left as it is
    quiet = _ok(module("maintenance_mode", {**args, "reason": None}))
    assert quiet["changed"] is False and quiet["reason"] == "db upgrade CHG-1"

    # a different reason is a change; the start time stays
    renamed = _ok(module("maintenance_mode", {**args, "reason": "db upgrade CHG-1 (extended)"}, diff=True))
    assert renamed["changed"] is True and renamed["since"] == on["since"]
    assert json.loads(flag.read_text())["reason"] == "db upgrade CHG-1 (extended)"
    assert json.loads(client.get(key))["reason"] == "db upgrade CHG-1 (extended)"
    assert renamed["diff"]["before"]["flag_file"]["reason"] == "db upgrade CHG-1"

    off_check = _ok(module("maintenance_mode", {**args, "state": "off"}, check_mode=True))
    assert off_check["changed"] is True and off_check["enabled"] is False
    assert flag.exists() and client.exists(key) == 1

    off = _ok(module("maintenance_mode", {**args, "state": "absent"}, diff=True))
    assert off["changed"] is True and off["enabled"] is False
    assert off["previous"] == {"flag_file": True, "redis_key": True}
    assert off["diff"]["after"] == {"flag_file": {"enabled": False}, "redis_key": {"enabled": False}}
    assert not flag.exists() and client.exists(key) == 0

    off_again = _ok(module("maintenance_mode", {**args, "state": "off"}))
    assert off_again["changed"] is False and off_again["previous"] == {"flag_file": False, "redis_key": False}
    client.close()


def test_yaml_boolean_state_and_present_alias(module, flag):
    flag.parent.mkdir()
    on = _ok(module("maintenance_mode", {"state": True, "flag_file": str(flag)}))  # unquoted `on` in YAML
    assert on["changed"] is True and flag.exists()
    assert on["previous"] == {"flag_file": False, "redis_key": None}
    assert on["ttl"] is None
    assert _ok(module("maintenance_mode", {"state": "present", "flag_file": str(flag)}))["changed"] is False
    off = _ok(module("maintenance_mode", {"state": False, "flag_file": str(flag)}))
    assert off["changed"] is True and not flag.exists()


def test_foreign_flag_counts_as_on(module, flag):
    flag.parent.mkdir()
    flag.write_text("")  # `touch maintenance.flag` by hand
    result = _ok(module("maintenance_mode", {"flag_file": str(flag)}))
    assert result["changed"] is False and result["previous"]["flag_file"] is True
    assert flag.read_text() == ""


def test_key_only_ttl_applied_to_existing_key_without_expiry(lab, module, key):
    client = _client(lab)
    client.set(key, "1")  # set by hand, no expiry
    result = _ok(module("maintenance_mode", _args(lab, redis_key=key, ttl=300)))
    assert result["changed"] is True and result["previous"] == {"flag_file": None, "redis_key": True}
    assert 290 <= client.ttl(key) <= 300
    assert client.get(key) == "1"  # content kept: no reason was given
    again = _ok(module("maintenance_mode", _args(lab, redis_key=key, ttl=300)))
    assert again["changed"] is False  # an expiry that runs is not restarted
    client.close()


def test_key_without_ttl_never_expires(lab, module, key):
    client = _client(lab)
    result = _ok(module("maintenance_mode", _args(lab, redis_key=key, reason="x")))
    assert result["changed"] is True and result["ttl"] == -1 and client.ttl(key) == -1
    client.close()


def test_password_from_rediscli_auth(lab, module, key):
    args = {k: v for k, v in _args(lab, redis_key=key).items() if k != "login_password"}
    result = _ok(module("maintenance_mode", args, env={"REDISCLI_AUTH": lab["redis"]["login_password"]}))
    assert result["changed"] is True


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


def test_neither_flag_file_nor_key(module):
    result = module("maintenance_mode", {"state": "on"})
    _failed(result, "one of the following is required: flag_file, redis_key")


def test_wrong_password_not_echoed_and_nothing_changed(lab, module, key, flag):
    flag.parent.mkdir()
    secret = "wrong-" + uuid.uuid4().hex
    result = module("maintenance_mode", _args(lab, login_password=secret, redis_key=key, flag_file=str(flag)))
    _failed(result, "authentication failed", f"{lab['redis']['login_host']}:{lab['redis']['login_port']}")
    assert secret not in result["_stdout"] + result["_stderr"]
    assert not flag.exists()  # Redis is reached before anything is written


def test_flag_directory_missing_or_not_a_directory(module, tmp_path, flag):
    result = module("maintenance_mode", {"flag_file": str(flag)})
    _failed(result, f"cannot use flag_file {flag}: directory {flag.parent} does not exist")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = module("maintenance_mode", {"flag_file": str(blocker / "maintenance.flag")})
    _failed(result, "maintenance.flag")
    (tmp_path / "dir.flag").mkdir()
    _failed(module("maintenance_mode", {"flag_file": str(tmp_path / "dir.flag")}), "is a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_flag_directory_not_writable(module, flag):
    flag.parent.mkdir()
    flag.parent.chmod(0o555)
    try:
        _failed(module("maintenance_mode", {"flag_file": str(flag)}), "is not writable")
    finally:
        flag.parent.chmod(0o755)


def test_unwritable_flag_location_as_root(module):
    # /proc/self refuses new files even for root
    result = module("maintenance_mode", {"flag_file": "/proc/self/maintenance.flag"})
    _failed(result, "/proc/self/maintenance.flag")


def test_key_of_another_type_is_not_touched(lab, module, key):
    client = _client(lab)
    client.hset(key, "a", "1")
    _failed(module("maintenance_mode", _args(lab, redis_key=key, state="off")), "holds a hash, not a string")
    assert client.type(key) == "hash"
    client.close()


def test_ttl_without_key_and_bad_ttl(module, flag, lab, key):
    flag.parent.mkdir()
    _failed(module("maintenance_mode", {"flag_file": str(flag), "ttl": 60}), "ttl is only used with redis_key")
    _failed(module("maintenance_mode", _args(lab, redis_key=key, ttl=0)), "ttl must be a positive number")
    assert not flag.exists()
