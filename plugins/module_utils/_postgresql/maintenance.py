# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sessions and databases of a PostgreSQL server (private): ending other sessions, dropping a database
(postgresql_restore), and the sessions idle in a transaction (postgresql_health_info,
postgresql_maintenance)."""

from __future__ import annotations

from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._postgresql.connection import execute, query, query_dicts


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
