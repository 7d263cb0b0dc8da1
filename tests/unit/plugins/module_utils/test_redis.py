"""Pure helpers of _redis.py and the Redis connection options (no server)."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.runbook.stack.plugins.module_utils import _redis as rd


def _module_with(monkeypatch, args, env=None):
    monkeypatch.delenv("REDISCLI_AUTH", raising=False)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args})))
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    return basic.AnsibleModule(argument_spec=rd.redis_argument_spec())


def test_defaults_and_password_from_rediscli_auth(monkeypatch):
    module = _module_with(monkeypatch, {}, env={"REDISCLI_AUTH": "s3cret"})
    info = rd.conn_info(module.params)
    assert (info.host, info.port, info.db, info.tls, info.validate_certs) == ("127.0.0.1", 6379, 0, False, True)
    assert info.password == "s3cret"
    assert info.connect_timeout == 5.0
    assert "s3cret" not in repr(info)


def test_explicit_password_wins_over_environment(monkeypatch):
    module = _module_with(monkeypatch, {"login_password": "explicit"}, env={"REDISCLI_AUTH": "fromenv"})
    assert rd.conn_info(module.params).password == "explicit"


def test_password_is_no_log():
    assert rd.redis_argument_spec()["login_password"]["no_log"] is True


@pytest.mark.parametrize(
    ("params", "word"),
    [({"login_port": 70000}, "login_port"), ({"connect_timeout": 0}, "connect_timeout"), ({"db": -1}, "db")],
)
def test_bad_connection_values_are_refused(params, word):
    with pytest.raises(rd.RedisError, match=word):
        rd.conn_info(params)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1gb", 1024**3),
        ("1GB", 1024**3),
        ("1g", 10**9),
        ("100mb", 100 * 1024**2),
        ("100m", 100 * 10**6),
        ("512k", 512_000),
        ("512kb", 512 * 1024),
        ("1048576", 1048576),
        (0, 0),
        ("0", 0),
        (" 2 Mb ", 2 * 1024**2),
    ],
)
def test_parse_memory_follows_redis_units(value, expected):
    assert rd.parse_memory(value) == expected


@pytest.mark.parametrize("value", ["1tb", "abc", "", "1.5gb", True])
def test_parse_memory_rejects_garbage(value):
    with pytest.raises(ValueError):
        rd.parse_memory(value)


def test_parse_keyspace_dict_and_text():
    info = {
        "db0": {"keys": 12, "expires": 3, "avg_ttl": 100},
        "db3": "keys=5,expires=0,avg_ttl=0,subexpiry=0",
        "used_memory": 100,
    }
    assert rd.parse_keyspace(info) == {
        "db0": {"keys": 12, "expires": 3, "avg_ttl": 100},
        "db3": {"keys": 5, "expires": 0, "avg_ttl": 0, "subexpiry": 0},
    }


def test_parse_info_text_skips_sections():
    text = "# Server\r\nredis_version:7.2.4\r\n\r\n# Stats\r\nkeyspace_hits:10\r\n"
    assert rd.parse_info_text(text) == {"redis_version": "7.2.4", "keyspace_hits": "10"}


def test_hit_rate():
    assert rd.hit_rate(0, 0) is None
    assert rd.hit_rate(3, 1) == 0.75
    assert rd.hit_rate(0, 5) == 0.0
    assert rd.hit_rate(2, 1) == 0.6667


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1gb", "1073741824"),
        (1073741824, "1073741824"),
        ("100MB", "104857600"),
        (True, "yes"),
        ("YES", "yes"),
        ("  3600 1   300 100 ", "3600 1 300 100"),
        (["3600", 1, "300", 100], "3600 1 300 100"),
        ("allkeys-lru", "allkeys-lru"),
        ("pubsub 32mb 8mb 60", "pubsub 33554432 8388608 60"),
        ("", ""),
    ],
)
def test_normalize_config(value, expected):
    assert rd.normalize_config(value) == expected


def test_normalize_config_equal_forms():
    assert rd.normalize_config("1gb") == rd.normalize_config("1073741824")
    assert rd.normalize_config("1g") != rd.normalize_config("1gb")


# ---------------------------------------------------------------------------------------------
# check_key_counts: one rule for redis_restore's one-run restore and its step verify
# ---------------------------------------------------------------------------------------------


def test_key_counts_that_match_pass_silently():
    from ansible_collections.runbook.stack.plugins.module_utils._redis.restore import check_key_counts

    warnings = []
    check_key_counts({"db0": {"keys": 3, "expires": 1}}, {"db0": {"keys": 2}}, True, warnings.append)
    assert warnings == []


def test_key_counts_of_an_exact_snapshot_must_match_and_the_error_says_what_next():
    from ansible_collections.runbook.stack.plugins.module_utils._redis.connection import RedisError
    from ansible_collections.runbook.stack.plugins.module_utils._redis.restore import check_key_counts

    with pytest.raises(
        RedisError, match=r"^key counts do not match the manifest: db0 has 1 keys, the snapshot had 3; run X$"
    ):
        check_key_counts({"db0": {"keys": 3}}, {"db0": {"keys": 1}}, True, print, then="; run X")


def test_key_counts_of_a_snapshot_not_exact_only_warn():
    from ansible_collections.runbook.stack.plugins.module_utils._redis.restore import check_key_counts

    warnings = []
    check_key_counts({"db0": {"keys": 3}}, {"db0": {"keys": 1}, "db1": {"keys": 2}}, False, warnings.append)
    assert len(warnings) == 1 and "marked as not exact" in warnings[0], warnings
    assert "db0 has 1 keys, the snapshot had 3; db1 has 2 keys, the snapshot had 0" in warnings[0]
