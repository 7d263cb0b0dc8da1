# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL connection, errors and client-tool helpers shared by the postgresql_* modules (private).

Helpers take plain values, never the AnsibleModule; only a module's main() touches params and
fail_json. Every foreseeable fault is raised as :class:`PostgresError` with a message that names the
object and the cause and never contains a password.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import traceback
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
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


# ---------------------------------------------------------------------------------------------
# client tools
# ---------------------------------------------------------------------------------------------

_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def tool_version(path: str) -> tuple[int, str]:
    """(major, full version text) of a PostgreSQL client tool."""
    try:
        # helpers take values, not the module, so run_command is not at hand here
        out = subprocess.run(  # pylint: disable=ansible-bad-function
            [path, "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except OSError as exc:
        raise PostgresError(f"cannot run {path}: {exc.strerror or exc}") from None
    m = _VERSION_RE.search(out)
    if not m:
        raise PostgresError(f"cannot read the version of {path} from {out.strip()!r}")
    return int(m.group(1)), out.strip()


def find_tool(name: str, server_major: int, bin_dir: str | None = None) -> tuple[str, str]:
    """Path and version of a client tool at least as new as the server (pg_dump refuses older servers' peers).

    Search order: ``bin_dir``; versioned Debian/RHEL directories (matching major first, then newer);
    then PATH.
    """
    candidates: list[str] = []
    if bin_dir:
        candidates.append(os.path.join(bin_dir, name))
    versioned = []
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"):
        for d in glob.glob(pattern):
            m = re.search(r"(?:postgresql/|pgsql-)(\d+)", d)
            if m:
                versioned.append((int(m.group(1)), os.path.join(d, name)))
    versioned.sort(key=lambda v: (v[0] != server_major, v[0] < server_major, -v[0]))
    candidates.extend(path for _major, path in versioned)
    on_path = shutil.which(name)
    if on_path:
        candidates.append(on_path)
    tried = []
    for path in candidates:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            continue
        major, text = tool_version(path)
        if major >= server_major:
            return path, text
        tried.append(f"{path} ({major})")
    detail = f"; found only older ones: {', '.join(tried)}" if tried else ""
    raise PostgresError(f"no {name} of PostgreSQL {server_major} or newer is installed{detail}")


def tail(text: str | bytes, lines: int = 12) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    kept = [ln for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)


def run_tool(
    argv: Sequence[str], env: dict[str, str], what: str, timeout: float | None = None, secret: str | None = None
) -> subprocess.CompletedProcess:
    """Run a client tool; a non-zero exit becomes PostgresError '<what>: <tool> exited N: <stderr tail>'."""
    try:
        # helpers take values, not the module; this one needs a timeout and a scrubbed environment
        proc = subprocess.run(  # pylint: disable=ansible-bad-function
            list(argv), env=env, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise PostgresError(f"{what}: {os.path.basename(argv[0])} did not finish within {timeout} s") from None
    except OSError as exc:
        raise PostgresError(f"{what}: cannot run {argv[0]}: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        detail = one_line(tail(proc.stderr) or tail(proc.stdout) or "no output", secret)
        raise PostgresError(f"{what}: {os.path.basename(argv[0])} exited {proc.returncode}: {detail}")
    return proc


def shown_command(argv: Iterable[str]) -> str:
    """A command line for the result (passwords never reach argv, so nothing to strip here)."""
    return " ".join(_shell_quote(a) for a in argv)


def _shell_quote(arg: str) -> str:
    if arg and re.fullmatch(r"[A-Za-z0-9_./:=@%+,-]+", arg):
        return arg
    return "'" + arg.replace("'", "'\"'\"'") + "'"


# ---------------------------------------------------------------------------------------------
# catalogue queries shared by backup and restore
# ---------------------------------------------------------------------------------------------


def default_jobs() -> int:
    """Parallel jobs for pg_dump / pg_restore when the user sets none: min(4, CPUs)."""
    return max(1, min(4, os.cpu_count() or 1))


# Relations of users, as opposed to the system's or an extension's: ``c`` is pg_class, ``n`` its
# pg_namespace. It contains literal '%' signs, so statements using it run without query arguments.
USER_RELATION_FILTER = """n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%'
  AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND NOT EXISTS (
    SELECT 1 FROM pg_depend d
    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')"""

USER_TABLES_SQL = f"""
SELECT n.nspname, c.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND {USER_RELATION_FILTER}
ORDER BY 1, 2
"""


def table_key(schema: str, table: str) -> str:
    return f"{schema}.{table}"


def user_tables(conn: Any) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in query(conn, USER_TABLES_SQL)]


def count_rows(conn: Any, tables: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Exact row count of each table (``count(*) FROM ONLY``, so inheritance is not counted twice)."""
    counts: dict[str, int] = {}
    with conn.cursor() as cur:
        for schema, table in tables:
            cur.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(ident(schema, table)))
            counts[table_key(schema, table)] = int(cur.fetchone()[0])
    return counts


DATABASE_FACTS_SQL = """
SELECT d.datname, pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) AS encoding,
       d.datcollate AS collate, d.datctype AS ctype, d.datacl::text[] AS acl,
       d.datconnlimit AS connection_limit, d.datallowconn AS allow_connections,
       shobj_description(d.oid, 'pg_database') AS comment,
       pg_database_size(d.oid) AS size_bytes
FROM pg_database d WHERE d.datname = %s
"""

DATABASE_SETTINGS_SQL = """
SELECT COALESCE(r.rolname, '') AS role, s.setconfig
FROM pg_db_role_setting s
JOIN pg_database d ON d.oid = s.setdatabase
LEFT JOIN pg_roles r ON r.oid = s.setrole
WHERE d.datname = %s
ORDER BY 1
"""


def database_facts(conn: Any, name: str) -> dict[str, Any]:
    """Database-level properties pg_dump leaves to ``--create``: owner, encoding, locale, ACL, comment,
    connection limit and ``ALTER DATABASE ... SET`` / ``ALTER ROLE ... IN DATABASE ... SET`` settings."""
    rows = query_dicts(conn, DATABASE_FACTS_SQL, [name])
    if not rows:
        raise PostgresError(f"database {name!r} does not exist")
    facts = rows[0]
    facts.pop("datname", None)
    facts["acl"] = list(facts["acl"] or [])
    settings: list[dict[str, str]] = []
    for row in query_dicts(conn, DATABASE_SETTINGS_SQL, [name]):
        for item in row["setconfig"] or []:
            key, _sep, value = item.partition("=")
            settings.append({"role": row["role"], "name": key, "value": value})
    facts["settings"] = settings
    return facts


def conninfo_dbname(name: str) -> str:
    """A libpq conninfo string selecting database ``name`` (safe for names with '=', spaces, quotes)."""
    if re.fullmatch(r"[A-Za-z0-9_]+", name):
        return f"dbname={name}"
    escaped = name.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{escaped}'"


def count_rows_parallel(info: ConnInfo, dbname: str, workers: int) -> dict[str, int]:
    """Row counts of every user table of dbname, spread over ``workers`` connections."""
    conn = connect(info, dbname=dbname)
    try:
        tables = user_tables(conn)
        if workers <= 1 or len(tables) <= 1:
            return count_rows(conn, tables)
    finally:
        conn.close()
    chunks = [tables[i::workers] for i in range(workers)]

    def one(chunk: list[tuple[str, str]]) -> dict[str, int]:
        c = connect(info, dbname=dbname)
        try:
            return count_rows(c, chunk)
        finally:
            c.close()

    counts: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for part in pool.map(one, [c for c in chunks if c]):
            counts.update(part)
    return counts


def create_database_sql(name: str, facts: dict[str, Any]) -> Any:
    """CREATE DATABASE like the original: owner, encoding and locale, from template0."""
    return sql.SQL(
        "CREATE DATABASE {} WITH OWNER = {} ENCODING = {} LC_COLLATE = {} LC_CTYPE = {} TEMPLATE = template0"
    ).format(
        ident(name),
        ident(facts["owner"]),
        sql.Literal(facts["encoding"]),
        sql.Literal(facts["collate"]),
        sql.Literal(facts["ctype"]),
    )


def terminate_sessions(conn: Any, dbname: str) -> int:
    rows = query(
        conn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        [dbname],
    )
    return len(rows)


def drop_database(conn: Any, dbname: str) -> None:
    """Drop a database, terminating its sessions first (``WITH (FORCE)``, PostgreSQL 13+)."""
    if int(conn.server_version) >= 130000:
        execute(conn, "DROP DATABASE IF EXISTS {} WITH (FORCE)", idents=(dbname,))
    else:
        terminate_sessions(conn, dbname)
        execute(conn, "DROP DATABASE IF EXISTS {}", idents=(dbname,))


# --- database-level ACL and settings --------------------------------------------------------

_ACL_PRIVS = {"C": "CREATE", "T": "TEMPORARY", "c": "CONNECT"}
# GUCs whose values are lists that ALTER ... SET takes as several literals (pg_dump's GUC_LIST_QUOTE set)
LIST_GUCS = {
    "search_path",
    "temp_tablespaces",
    "session_preload_libraries",
    "local_preload_libraries",
    "shared_preload_libraries",
    "dynamic_library_path",
}


def parse_aclitem(item: str) -> tuple[str, list[tuple[str, bool]]]:
    """'grantee=CTc*/grantor' -> (grantee or '' for PUBLIC, [(privilege, with_grant_option)])."""
    grantee, _sep, rest = item.partition("=")
    privs_text = rest.split("/", 1)[0]
    if grantee.startswith('"') and grantee.endswith('"'):
        grantee = grantee[1:-1].replace('""', '"')
    privs: list[tuple[str, bool]] = []
    for i, ch in enumerate(privs_text):
        if ch == "*":
            continue
        if ch not in _ACL_PRIVS:
            raise PostgresError(f"unknown database privilege {ch!r} in ACL item {item!r}")
        privs.append((_ACL_PRIVS[ch], i + 1 < len(privs_text) and privs_text[i + 1] == "*"))
    return grantee, privs


def split_guc_list(value: str) -> list[str]:
    """Split a stored list GUC ('app, "My Schema", public') into its elements, as pg_dump does."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    i = 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == '"' and i + 1 < len(value) and value[i + 1] == '"':
                cur.append('"')
                i += 1
            elif ch == '"':
                quoted = False
            else:
                cur.append(ch)
        elif ch == '"':
            quoted = True
        elif ch == ",":
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    last = "".join(cur).strip()
    if last or out:
        out.append(last)
    return out


def setting_sql(name: str, value: str) -> Any:
    if name.lower() in LIST_GUCS:
        parts = split_guc_list(value)
        return sql.SQL(", ").join(sql.Literal(v) for v in parts) if parts else sql.Literal("")
    return sql.Literal(value)


def missing_roles(conn: Any, facts: dict[str, Any]) -> list[str]:
    """Roles the database facts refer to that do not exist on this server, each with why it is needed."""
    needed: dict[str, str] = {facts["owner"]: "owner"}
    for item in facts.get("acl") or []:
        grantee, _privs = parse_aclitem(item)
        if grantee:
            needed.setdefault(grantee, "grantee")
    for setting in facts.get("settings") or []:
        if setting["role"]:
            needed.setdefault(setting["role"], "has settings in the database")
    existing = {r[0] for r in query(conn, "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [list(needed)])}
    return [f"{role} ({why})" for role, why in needed.items() if role not in existing]


def apply_database_facts(conn: Any, dbname: str, facts: dict[str, Any]) -> list[str]:
    """Re-apply ACL, comment, connection limit and settings of the original database to dbname."""
    statements: list[Any] = []
    db = ident(dbname)
    acl = facts.get("acl") or []
    if acl:  # NULL datacl means default privileges: nothing to do
        statements.append(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC, {}").format(db, ident(facts["owner"])))
        for item in acl:
            grantee, privs = parse_aclitem(item)
            who = ident(grantee) if grantee else sql.SQL("PUBLIC")
            for priv, grant_option in privs:
                statements.append(
                    sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                        sql.SQL(priv), db, who, sql.SQL(" WITH GRANT OPTION" if grant_option else "")
                    )
                )
    if facts.get("comment") is not None:
        statements.append(sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(facts["comment"])))
    limit = facts.get("connection_limit")
    if limit is not None and int(limit) != -1:
        statements.append(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(db, sql.Literal(int(limit))))
    for setting in facts.get("settings") or []:
        value = setting_sql(setting["name"], setting["value"])
        if setting["role"]:
            statements.append(
                sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                    ident(setting["role"]), db, ident(setting["name"]), value
                )
            )
        else:
            statements.append(sql.SQL("ALTER DATABASE {} SET {} = {}").format(db, ident(setting["name"]), value))
    done = []
    with conn.cursor() as cur:
        for st in statements:
            cur.execute(st)
            done.append(st.as_string(conn))
    return done


# ---------------------------------------------------------------------------------------------
# sessions (postgresql_health_info, postgresql_maintenance)
# ---------------------------------------------------------------------------------------------


IDLE_IN_TRANSACTION_SQL = """
SELECT pid, usename, datname, application_name, host(client_addr) AS client_addr, state,
       round(extract(epoch FROM clock_timestamp() - state_change)::numeric, 3)::float8 AS state_age_s,
       round(extract(epoch FROM clock_timestamp() - xact_start)::numeric, 3)::float8 AS xact_age_s,
       left(query, 200) AS query{terminate}
FROM pg_stat_activity
WHERE state IN ('idle in transaction', 'idle in transaction (aborted)')
  AND pid <> pg_backend_pid()
  AND clock_timestamp() - state_change >= make_interval(secs => %(min_s)s)
  AND (%(dbname)s::text IS NULL OR datname = %(dbname)s::text)
ORDER BY state_change
"""


def idle_in_transaction_sessions(
    conn: Any, min_s: float, dbname: str | None = None, terminate: bool = False
) -> list[dict]:
    """Other sessions idle in a transaction for at least ``min_s`` seconds, oldest first (query cut to 200
    characters). With ``terminate``, each is terminated in the same statement (waiting up to 5 s for the
    backend to exit on PostgreSQL 14+) and its row carries ``terminated`` (bool)."""
    column = ""
    if terminate:
        wait = ", 5000" if int(conn.server_version) >= 140000 else ""
        column = f",\n       pg_terminate_backend(pid{wait}) AS terminated"
    return query_dicts(conn, IDLE_IN_TRANSACTION_SQL.format(terminate=column), dict(min_s=float(min_s), dbname=dbname))
