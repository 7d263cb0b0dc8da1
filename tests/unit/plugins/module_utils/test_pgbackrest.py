# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers of _pgbackrest: recovery targets, restore argv, configuration text, info JSON."""

from __future__ import annotations

import json

import pytest

from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest import (
    PgBackRestError,
    Runner,
    parse_info,
    render_config,
)
from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest_target import restore_argv, restore_target


def test_targets():
    assert restore_target({"target_time": "2026-12-05T21:57:19.5Z"}) == ("time", "2026-12-05 21:57:19.500000+00:00")
    assert restore_target({"target_lsn": "0/3000a60"}) == ("lsn", "0/3000A60")
    assert restore_target({"target_name": "before_migration"}) == ("name", "before_migration")
    assert restore_target({"target": "latest"}) == ("default", None)
    assert restore_target({}) == ("default", None)
    assert restore_target({"target": "immediate"}) == ("immediate", None)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"target_time": "2026-12-05 10:00"}, "has no UTC offset"),
        ({"target_time": "yesterday"}, "is not an ISO 8601 time"),
        ({"target_lsn": "3000060"}, "is not a WAL location"),
        ({"target_name": "x" * 64}, "is not a restore point name"),
        ({"target_time": "2026-12-05T10:00Z", "target_lsn": "0/1"}, "give one recovery target"),
        ({"target": "latest", "target_name": "a"}, "cannot be combined"),
    ],
)
def test_bad_targets(params, message):
    with pytest.raises(PgBackRestError, match=message):
        restore_target(params)


def test_restore_argv_keeps_secrets_out_and_maps_tablespaces():
    runner = Runner("/usr/bin/pgbackrest", "/etc/pgbackrest/pgbackrest.conf", "main", access_key="AK", secret_key="SK")
    argv = restore_argv(
        runner, "/srv/pitr", "time", "2026-12-05 10:00:00+00:00", "20261205-215734F", True, False, "off"
    )
    assert "--target-action=promote" in argv and "--set=20261205-215734F" in argv
    assert "--pg1-path=/srv/pitr" in argv and "--tablespace-map-all=/srv/pitr.tablespaces" in argv
    assert not any("SK" in a or "AK" in a for a in argv)
    env = runner.env()
    assert env["PGBACKREST_REPO1_S3_KEY"] == "AK" and env["PGBACKREST_REPO1_S3_KEY_SECRET"] == "SK"
    with pytest.raises(PgBackRestError, match="not a pgBackRest backup label"):
        restore_argv(runner, "/srv/pitr", "default", None, "latest-ish", False, False, "off")


def test_render_config():
    text = render_config(
        {"global": {"repo1-type": "s3", "repo1-storage-verify-tls": False, "unset": None}, "main": {"pg1-port": 5432}}
    )
    assert "[global]\nrepo1-type=s3\nrepo1-storage-verify-tls=n\n\n[main]\npg1-port=5432\n" in text
    assert "unset" not in text


def test_parse_info():
    raw = [
        {
            "name": "main",
            "status": {"code": 0, "message": "ok", "lock": {"backup": {"held": False}}},
            "repo": [{"key": 1, "status": {"code": 0, "message": "ok"}}],
            "archive": [{"id": "15-1", "min": "000000010000000000000001", "max": "000000010000000000000003"}],
            "db": [{"id": 1, "system-id": 7, "version": "15"}],
            "backup": [
                {
                    "label": "20261205-215734F",
                    "type": "full",
                    "timestamp": {"start": 100, "stop": 105},
                    "info": {"size": 10, "delta": 10, "repository": {"size": 3, "delta": 3}},
                    "archive": {"start": "000000010000000000000002", "stop": "000000010000000000000002"},
                    "lsn": {"start": "0/2000028", "stop": "0/2000100"},
                }
            ],
        }
    ]
    info = parse_info(json.dumps(raw), "main")
    backup = info["backups"][0]
    assert backup["duration_s"] == 5 and backup["repo_size"] == 3 and backup["start"].startswith("1970-01-01T00:01:40")
    assert info["archive"]["max"] == "000000010000000000000003" and info["pg_version"] == "15"
    with pytest.raises(PgBackRestError, match="nothing for stanza 'other'"):
        parse_info(json.dumps(raw), "other")
