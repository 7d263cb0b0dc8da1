# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL connection options, errors and query helpers shared by the postgresql_* modules (private).

Helpers take plain values, never the AnsibleModule; only a module's main() touches params and
fail_json. Every foreseeable fault is raised as :class:`PostgresError` with a message that names the
object and the cause and never contains a password. psycopg2 is imported (guarded) here only; the
other files of the package take ``sql`` from here.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.basic import env_fallback

from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line

try:
    import psycopg2
    import psycopg2.errors
    import psycopg2.extensions
    from psycopg2 import sql

    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported by the module via missing_required_lib
    psycopg2 = None
    sql = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()


class PostgresError(Exception):
    """A foreseeable PostgreSQL fault, already phrased for the operator."""


# psycopg2's base error when available: main() catches these once, next to PostgresError.
DB_ERRORS: tuple[type[BaseException], ...] = (psycopg2.Error,) if HAS_PSYCOPG2 else ()


def error_text(exc: BaseException) -> str:
    """The server's primary message of a psycopg2 error on one line (no 'ERROR:' prefix, no LINE/caret),
    with its SQLSTATE when the server sent one."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = " ".join(str(primary or exc).split()) or type(exc).__name__
    code = getattr(exc, "pgcode", None)
    return f"{text} (SQLSTATE {code})" if code else text


def postgres_argument_spec() -> dict[str, Any]:
    """Connection options shared by every postgresql_* module (doc fragment: runbook.stack.postgresql)."""
    return dict(
        login_host=dict(type="str", aliases=["host"], fallback=(env_fallback, ["PGHOST"])),
        login_port=dict(type="int", default=5432, aliases=["port"], fallback=(env_fallback, ["PGPORT"])),
        login_user=dict(type="str", default="postgres", aliases=["login"], fallback=(env_fallback, ["PGUSER"])),
        login_password=dict(type="str", no_log=True, fallback=(env_fallback, ["PGPASSWORD"])),
        login_db=dict(type="str", default="postgres", aliases=["maintenance_db"]),
        login_unix_socket=dict(type="str"),
        connect_timeout=dict(type="int", default=10),
        ssl_mode=dict(
            type="str",
            default="prefer",
            choices=["allow", "disable", "prefer", "require", "verify-ca", "verify-full"],
        ),
        ca_cert=dict(type="path", aliases=["ssl_rootcert"]),
    )


@dataclass(frozen=True)
class ConnInfo:
    host: str | None
    port: int
    user: str
    password: str | None = field(repr=False)
    dbname: str
    connect_timeout: int = 10
    sslmode: str = "prefer"
    sslrootcert: str | None = None

    @property
    def where(self) -> str:
        return f"{self.host or 'local socket'}:{self.port}"

    def for_db(self, dbname: str) -> ConnInfo:
        return ConnInfo(
            self.host, self.port, self.user, self.password, dbname, self.connect_timeout, self.sslmode, self.sslrootcert
        )


def conn_info(params: dict[str, Any]) -> ConnInfo:
    """ConnInfo from module params (validated values, not the module)."""
    port = params.get("login_port") or 5432
    if not 0 < int(port) < 65536:
        raise PostgresError(f"login_port {port} is not a valid TCP port")
    timeout = params.get("connect_timeout")
    if timeout is not None and timeout <= 0:
        raise PostgresError(f"connect_timeout must be a positive number of seconds, got {timeout}")
    host = params.get("login_host") or params.get("login_unix_socket") or None
    return ConnInfo(
        host=host,
        port=int(port),
        user=params.get("login_user") or "postgres",
        password=params.get("login_password") or None,
        dbname=params.get("login_db") or "postgres",
        connect_timeout=int(timeout or 10),
        sslmode=params.get("ssl_mode") or "prefer",
        sslrootcert=params.get("ca_cert"),
    )


def connect(info: ConnInfo, dbname: str | None = None, autocommit: bool = True) -> Any:
    """Open a psycopg2 connection; connection faults become PostgresError naming host, db and user."""
    db = dbname or info.dbname
    kwargs: dict[str, Any] = dict(
        port=info.port,
        user=info.user,
        dbname=db,
        connect_timeout=info.connect_timeout,
        sslmode=info.sslmode,
        application_name="runbook.stack",
    )
    if info.host:
        kwargs["host"] = info.host
    if info.password:
        kwargs["password"] = info.password
    if info.sslrootcert:
        kwargs["sslrootcert"] = info.sslrootcert
    try:
        conn = psycopg2.connect(**kwargs)
    except psycopg2.Error as exc:
        raise PostgresError(
            f"cannot connect to PostgreSQL at {info.where} (database {db!r}, user {info.user!r}): "
            f"{one_line(exc, info.password)}"
        ) from None
    conn.autocommit = autocommit
    return conn


def libpq_env(info: ConnInfo, dbname: str | None = None) -> dict[str, str]:
    """Environment for pg_dump / pg_restore / psql: the password travels here, never in argv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        PGPORT=str(info.port),
        PGUSER=info.user,
        PGDATABASE=dbname or info.dbname,
        PGCONNECT_TIMEOUT=str(info.connect_timeout),
        PGSSLMODE=info.sslmode,
        PGAPPNAME="runbook.stack",
        LC_ALL="C.UTF-8",
    )
    if info.host:
        env["PGHOST"] = info.host
    if info.password:
        env["PGPASSWORD"] = info.password
    if info.sslrootcert:
        env["PGSSLROOTCERT"] = info.sslrootcert
    return env


def conninfo_dbname(name: str) -> str:
    """A libpq conninfo string selecting database ``name`` (safe for names with '=', spaces, quotes)."""
    if re.fullmatch(r"[A-Za-z0-9_]+", name):
        return f"dbname={name}"
    escaped = name.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{escaped}'"


# ---------------------------------------------------------------------------------------------
# statements
# ---------------------------------------------------------------------------------------------


def ident(*names: str) -> Any:
    """A safely quoted (optionally schema-qualified) identifier."""
    return sql.Identifier(*names)


def query(conn: Any, statement: Any, args: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(statement, args)
        return cur.fetchall() if cur.description else []


def query_dicts(conn: Any, statement: Any, args: Sequence[Any] | dict[str, Any] | None = None) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute(statement, args)
        if not cur.description:
            return []
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]


def execute(
    conn: Any, statement: Any, args: Sequence[Any] | dict[str, Any] | None = None, idents: Sequence[str] = ()
) -> None:
    """Run one statement; ``idents`` fill its ``{}`` placeholders as quoted identifiers."""
    if idents:
        statement = sql.SQL(statement).format(*[ident(i) for i in idents])
    with conn.cursor() as cur:
        cur.execute(statement, args)


def server_version(conn: Any) -> tuple[int, str]:
    """(server_version_num, human version string)."""
    num = int(conn.server_version)
    text = query(conn, "SHOW server_version")[0][0]
    return num, str(text)


def database_exists(conn: Any, name: str) -> bool:
    return bool(query(conn, "SELECT 1 FROM pg_database WHERE datname = %s", [name]))


def databases_oldest_first(conn: Any) -> list[str]:
    """Every database of the server in creation order (by OID, which a rename keeps)."""
    return [row[0] for row in query(conn, "SELECT datname FROM pg_database ORDER BY oid")]
