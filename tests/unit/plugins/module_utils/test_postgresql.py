"""Pure helpers of _postgresql.py and the restore module's argument handling (no server)."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.runbook.stack.plugins.module_utils import _postgresql as pg
from ansible_collections.runbook.stack.plugins.modules import postgresql_backup, postgresql_restore

# ------------------------------------------------------------------------------------------------
# connection options
# ------------------------------------------------------------------------------------------------


def _module_with(monkeypatch, args, spec=None, env=None):
    for key in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD"):
        monkeypatch.delenv(key, raising=False)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args})))
    # ansible-core 2.19+ reads module args with a serialization profile
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    return basic.AnsibleModule(argument_spec=spec or pg.postgres_argument_spec())


def test_connection_options_fall_back_to_libpq_environment(monkeypatch):
    module = _module_with(
        monkeypatch, {}, env={"PGHOST": "db1", "PGPORT": "6432", "PGUSER": "ops", "PGPASSWORD": "s3cret"}
    )
    info = pg.conn_info(module.params)
    assert (info.host, info.port, info.user, info.password) == ("db1", 6432, "ops", "s3cret")
    assert "s3cret" not in repr(info)


def test_explicit_options_win_over_environment(monkeypatch):
    module = _module_with(
        monkeypatch, {"login_host": "db2", "login_port": 5433}, env={"PGHOST": "db1", "PGPORT": "6432"}
    )
    info = pg.conn_info(module.params)
    assert (info.host, info.port, info.user, info.dbname) == ("db2", 5433, "postgres", "postgres")


def test_password_option_is_no_log():
    assert pg.postgres_argument_spec()["login_password"]["no_log"] is True


def test_socket_used_when_no_host():
    info = pg.conn_info({"login_unix_socket": "/run/postgresql", "login_port": 5432})
    assert info.host == "/run/postgresql"


@pytest.mark.parametrize(
    ("params", "needle"),
    [({"login_port": 70000}, "login_port 70000"), ({"login_port": 5432, "connect_timeout": 0}, "connect_timeout")],
)
def test_conn_info_rejects_bad_values(params, needle):
    with pytest.raises(pg.PostgresError, match=needle):
        pg.conn_info(params)


def test_libpq_env_carries_password_and_drops_ambient_pg_vars(monkeypatch):
    monkeypatch.setenv("PGSERVICE", "somewhere-else")
    env = pg.libpq_env(pg.ConnInfo("h", 5432, "u", "pw", "postgres"), dbname="app")
    assert env["PGPASSWORD"] == "pw" and env["PGDATABASE"] == "app" and env["PGHOST"] == "h"
    assert "PGSERVICE" not in env


# ------------------------------------------------------------------------------------------------
# catalogue text formats
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("=Tc/owner", ("", [("TEMPORARY", False), ("CONNECT", False)])),
        ("app=CTc/app", ("app", [("CREATE", False), ("TEMPORARY", False), ("CONNECT", False)])),
        ("reader=c*/app", ("reader", [("CONNECT", True)])),
        ('"odd ""name"""=C/app', ('odd "name"', [("CREATE", False)])),
    ],
)
def test_parse_aclitem(item, expected):
    assert pg.parse_aclitem(item) == expected


def test_parse_aclitem_rejects_unknown_privilege():
    with pytest.raises(pg.PostgresError, match="unknown database privilege 'X'"):
        pg.parse_aclitem("app=X/app")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("app, public", ["app", "public"]),
        ('"$user", public', ["$user", "public"]),
        ('"My Schema", "with,comma", "quote""d"', ["My Schema", "with,comma", 'quote"d']),
        ("", []),
    ],
)
def test_split_guc_list(value, expected):
    assert pg.split_guc_list(value) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [("app", "dbname=app"), ("my db", "dbname='my db'"), ("a'b\\c", "dbname='a\\'b\\\\c'"), ("x=y", "dbname='x=y'")],
)
def test_conninfo_dbname_quotes_what_libpq_would_misread(name, expected):
    assert pg.conninfo_dbname(name) == expected


def test_shown_command_quotes_spaces():
    assert pg.shown_command(["pg_dump", "--file=/a b/c"]) == "pg_dump '--file=/a b/c'"


# ------------------------------------------------------------------------------------------------
# restore planning helpers
# ------------------------------------------------------------------------------------------------


def test_derived_names_fit_postgresql_identifier_limit():
    long = "ä" * 40  # 80 bytes in UTF-8
    name = postgresql_restore.temp_name(long, "20261122T020000Z")
    assert len(name.encode()) <= 63 and name.endswith("_restore_20261122t020000z")
    assert postgresql_restore.previous_name("app", "20261122T020000Z") == "app_pre_restore_20261122t020000z"
    taken = {"app_pre_restore_20261122t020000z", "app_pre_restore_20261122t020000z_2"}
    assert postgresql_restore.previous_name("app", "20261122T020000Z", taken.__contains__) == (
        "app_pre_restore_20261122t020000z_3"
    )
    long = "x" * 70
    kept = postgresql_restore.previous_name(
        long, "20261122T020000Z", lambda n: n.endswith("_pre_restore_20261122t020000z")
    )
    assert kept.endswith("_pre_restore_20261122t020000z_2") and len(kept.encode()) <= 63
    # after retention dropped the lower ones, the number goes on after the highest (the newest copy)
    taken = {"app_pre_restore_20261122t020000z_3"}
    assert postgresql_restore.previous_name("app", "20261122T020000Z", taken.__contains__) == (
        "app_pre_restore_20261122t020000z_4"
    )
    with pytest.raises(pg.PostgresError, match="app_pre_restore_20261122t020000z_99 exists"):
        postgresql_restore.previous_name("app", "20261122T020000Z", lambda n: n.endswith("_99"))


def test_compare_counts_names_every_difference():
    with pytest.raises(pg.PostgresError) as err:
        postgresql_restore.compare_counts(
            {"s.a": 1, "s.b": 2, "s.gone": 3}, {"s.a": 1, "s.b": 5, "s.new": 0}, "app_restore_x"
        )
    msg = str(err.value)
    assert "table s.gone is missing" in msg and "s.b has 5 rows, manifest says 2" in msg
    assert "table s.new is not in the manifest" in msg and "s.a" not in msg
    postgresql_restore.compare_counts({"s.a": 1}, {"s.a": 1}, "db")  # equal: no error


def test_backup_argv_keeps_database_name_out_of_argv():
    argv = postgresql_backup.pg_dump_argv("/bin/pg_dump", "/b/data", 3, 5, "0000-1")
    assert argv == [
        "/bin/pg_dump",
        "--format=directory",
        "--jobs=3",
        "--no-password",
        "--file=/b/data",
        "--compress=5",
        "--snapshot=0000-1",
    ]


# ------------------------------------------------------------------------------------------------
# client tools at least as new as the server (a server in a container may be newer than the host's)
# ------------------------------------------------------------------------------------------------


def _fake_tool(directory, name, major):
    """An executable that answers --version as PostgreSQL <major>'s tools do."""
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / name
    tool.write_text(f"#!/bin/sh\necho '{name} (PostgreSQL) {major}.3 (Debian {major}.3-1)'\n")
    tool.chmod(0o755)
    return str(tool)


@pytest.fixture
def tool_dirs(tmp_path, monkeypatch):
    """<tmp>/postgresql/<major>/bin (13, 15, 17) in place of Debian's /usr/lib/postgresql/<major>/bin,
    and a PATH with only a 14."""

    lib = tmp_path / "postgresql"
    versioned = {major: _fake_tool(lib / str(major) / "bin", "pg_dump", major) for major in (13, 15, 17)}
    _fake_tool(tmp_path / "path", "pg_dump", 14)
    monkeypatch.setenv("PATH", str(tmp_path / "path"))
    dirs = [str(lib / str(major) / "bin") for major in versioned]
    monkeypatch.setattr(
        pg.tools.glob, "glob", lambda pattern: dirs if pattern.startswith("/usr/lib/postgresql/") else []
    )
    return lib, versioned


def test_find_tool_takes_the_servers_major_first_then_newer(tool_dirs):
    lib, versioned = tool_dirs
    assert pg.tools.find_tool("pg_dump", 15)[0] == versioned[15]
    # no 16 installed: the newer 17, never an older one
    assert pg.tools.find_tool("pg_dump", 16)[0] == versioned[17]
    # pg_bin_dir first, when new enough
    assert pg.tools.find_tool("pg_dump", 15, str(lib / "17" / "bin"))[0] == versioned[17]


def test_find_tool_refuses_older_clients_and_says_how_to_go_on(tool_dirs):
    lib, versioned = tool_dirs
    with pytest.raises(pg.PostgresError) as err:
        pg.tools.find_tool("pg_dump", 18, str(lib / "13" / "bin"))
    msg = str(err.value)
    assert msg.startswith("no pg_dump of PostgreSQL 18 or newer is installed; found only older ones: ")
    for major, path in versioned.items():
        assert f"{path} ({major})" in msg
    assert f"{lib.parent / 'path' / 'pg_dump'} (14)" in msg
    assert "set pg_bin_dir to the directory that has them" in msg
