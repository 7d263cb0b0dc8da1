# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The config of the follow process (_redis_aof_follow): module option names and defaults, secrets
from the environment, typos refused."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.runbook.stack.plugins.module_utils._redis import redis_argument_spec
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof_follow import (
    ConfigError,
    load_config,
    options_from_spec,
)


def test_options_take_the_environment_fallback_and_the_default(monkeypatch):
    monkeypatch.setenv("REDISCLI_AUTH", "from-env")
    found = options_from_spec(redis_argument_spec(), {"login_port": "6380", "tls": "yes"}, "redis")
    assert found["login_password"] == "from-env" and found["login_port"] == 6380 and found["tls"] is True
    assert found["login_host"] == "127.0.0.1" and found["connect_timeout"] == 5.0
    given = options_from_spec(redis_argument_spec(), {"login_password": "in-file"}, "redis")
    assert given["login_password"] == "in-file"


def test_unknown_keys_and_bad_values_are_refused():
    with pytest.raises(ConfigError, match=r"unknown key.*passwd"):
        options_from_spec(redis_argument_spec(), {"passwd": "x"}, "redis")
    with pytest.raises(ConfigError, match=r"redis\.login_port must be of type int"):
        options_from_spec(redis_argument_spec(), {"login_port": "many"}, "redis")
    with pytest.raises(ConfigError, match=r"redis\.tls must be of type bool"):
        options_from_spec(redis_argument_spec(), {"tls": "maybe"}, "redis")


def test_load_config(tmp_path, monkeypatch):
    monkeypatch.delenv("REDISCLI_AUTH", raising=False)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"archive": "archive-dir", "redis": {"login_port": 6390}}))
    cfg = load_config(str(path))
    assert cfg["archive"] == os.path.join(os.getcwd(), "archive-dir") and cfg["interval"] == 5
    assert cfg["redis_conn"].where == "127.0.0.1:6390" and cfg["redis_conn"].password is None
    for bad, match in (
        ({"redis": {}}, r"archive \(a directory"),
        ({"archive": "/a", "intervall": 1}, r"unknown key.*intervall"),
        ({"archive": "/a", "interval": 0}, "interval must be a positive"),
        ({"archive": "s3://", "interval": 1}, "no valid bucket"),
        ({"archive": "/a", "redis": {"login_port": 70000}}, "not a valid TCP port"),
    ):
        path.write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=match):
            load_config(str(path))
