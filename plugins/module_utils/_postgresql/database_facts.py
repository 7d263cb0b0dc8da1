# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Catalogue queries shared by postgresql_backup and postgresql_restore (private): the user tables and
their exact row counts, and the database-level properties pg_dump leaves to ``--create`` (owner,
encoding, locale, ACL, comment, connection limit, settings), read from one server and applied to
another."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._postgresql.connection import (
    ConnInfo,
    PostgresError,
    connect,
    ident,
    query,
    query_dicts,
    sql,
)

# ---------------------------------------------------------------------------------------------
# user tables and their row counts
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# database-level properties
# ---------------------------------------------------------------------------------------------

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
