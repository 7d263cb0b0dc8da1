#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_health_info
short_description: Report the health of a PostgreSQL server
version_added: 0.1.0
description:
  - Connects to a PostgreSQL server and reports whether it accepts connections (the equivalent of
    C(pg_isready) followed by C(SELECT 1)), its version and recovery state, connection usage,
    sessions idle in a transaction, long-running queries, lock waits, database sizes and, when the
    extension is installed, the most expensive statements from C(pg_stat_statements).
  - An unreachable server (connection refused, timeout, unknown host, server starting up or shutting
    down, no free connection slot) is not an error. The module returns RV(ready=false) and the reason
    in RV(error) unless O(fail_on_unready=true). A server that answers but rejects the credentials,
    or a O(login_db) that does not exist, is a configuration fault and always fails.
  - Session lists never include the module's own connection.
  - The module only reads. It runs the same way in check mode.
extends_documentation_fragment:
  - runbook.stack.postgresql
  - runbook.stack._attributes
  - runbook.stack._attributes.info_module
  - runbook.stack._attributes.actiongroup_postgresql
options:
  fail_on_unready:
    description:
      - Fail when the server does not accept connections, instead of returning RV(ready=false).
    type: bool
    default: false
  idle_in_transaction_min_s:
    description:
      - Report only sessions that have been idle in a transaction for at least this many seconds.
    type: float
    default: 0
  long_query_threshold_s:
    description:
      - Report active queries that have been running for longer than this many seconds.
      - The runbooks treat queries older than five minutes as long-running.
    type: float
    default: 300
  top_statements:
    description:
      - How many statements to report from C(pg_stat_statements), ordered by total execution time.
      - V(0) skips the statement list but still reports whether the extension is installed.
    type: int
    default: 10
notes:
  - A complete view of other roles' sessions and of every database's size needs a superuser or a
    member of C(pg_monitor); other roles see their own sessions only and no size for databases they
    cannot connect to.
  - C(pg_stat_statements) is looked up in O(login_db). The extension needs the library in
    C(shared_preload_libraries) and C(CREATE EXTENSION pg_stat_statements) in that database.
seealso:
  - module: runbook.stack.postgresql_maintenance
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Wait until the primary accepts connections
  runbook.stack.postgresql_health_info:
    login_host: db1.internal.example.com
    login_user: monitor
    login_password: "{{ vault_pg_monitor_password }}"
    connect_timeout: 3
  register: pg_health
  until: pg_health.ready
  retries: 30
  delay: 5

- name: Look for sessions that hold transactions open for more than 10 minutes
  runbook.stack.postgresql_health_info:
    login_host: db1.internal.example.com
    idle_in_transaction_min_s: 600
    long_query_threshold_s: 300
  register: pg_health

- name: Stop the change when the server is unhealthy
  ansible.builtin.assert:
    that:
      - pg_health.ready
      - not pg_health.in_recovery
      - pg_health.connections.percent_used < 80
      - pg_health.blocking | length == 0
    fail_msg: "PostgreSQL on db1 is not healthy: {{ pg_health.error | default('see connections/blocking') }}"

- name: Top 5 statements of the application database (pg_stat_statements installed there)
  runbook.stack.postgresql_health_info:
    login_host: db1.internal.example.com
    login_db: app
    top_statements: 5
    fail_on_unready: true
"""

RETURN = r"""
ready:
  description: Whether the server accepted a connection and answered C(SELECT 1).
  type: bool
  returned: always
  sample: true
error:
  description: Why the server is not ready (connection error text, password removed).
  type: str
  returned: when RV(ready) is false
  sample: >-
    cannot connect to PostgreSQL at 10.0.0.5:5432 (database 'postgres', user 'monitor'):
    connection to server at "10.0.0.5", port 5432 failed: Connection refused
version:
  description: Server version text (C(SHOW server_version)).
  type: str
  returned: when RV(ready) is true
  sample: "15.10 (Debian 15.10-1.pgdg120+1)"
version_num:
  description: Server version number (C(server_version_num)).
  type: int
  returned: when RV(ready) is true
  sample: 150010
in_recovery:
  description: Whether the server is a standby or still replaying WAL (C(pg_is_in_recovery())).
  type: bool
  returned: when RV(ready) is true
  sample: false
connections:
  description: Client connections, including the module's own.
  type: dict
  returned: when RV(ready) is true
  contains:
    total:
      description: Client backends connected now.
      type: int
      sample: 42
    max_connections:
      description: The server's C(max_connections).
      type: int
      sample: 100
    percent_used:
      description: RV(connections.total) as a percentage of RV(connections.max_connections), one decimal.
      type: float
      sample: 42.0
    by_state:
      description: Client backends per C(pg_stat_activity.state); V(unknown) when the state is hidden.
      type: dict
      sample: {"active": 3, "idle": 38, "idle in transaction": 1}
    by_database:
      description: Client backends per database.
      type: dict
      sample: {"app": 40, "postgres": 2}
idle_in_transaction:
  description:
    - Sessions idle in a transaction (or in an aborted transaction) for at least
      O(idle_in_transaction_min_s) seconds, oldest first.
  type: list
  elements: dict
  returned: when RV(ready) is true
  contains:
    pid:
      description: Backend process id.
      type: int
      sample: 81234
    usename:
      description: Role of the session.
      type: str
      sample: app
    datname:
      description: Database of the session.
      type: str
      sample: app
    application_name:
      description: C(application_name) the client set.
      type: str
      sample: billing-worker
    client_addr:
      description: Client IP address; null for local socket connections.
      type: str
      sample: 10.0.3.17
    state:
      description: V(idle in transaction) or V(idle in transaction (aborted)).
      type: str
      sample: idle in transaction
    state_age_s:
      description: Seconds since the session became idle.
      type: float
      sample: 754.21
    xact_age_s:
      description: Seconds since the transaction started.
      type: float
      sample: 760.02
    query:
      description: Last statement of the session, cut to 200 characters.
      type: str
      sample: "UPDATE invoices SET status = 'sent' WHERE id = $1"
long_running:
  description: Active queries running for longer than O(long_query_threshold_s) seconds, oldest first.
  type: list
  elements: dict
  returned: when RV(ready) is true
  contains:
    pid:
      description: Backend process id.
      type: int
      sample: 81240
    usename:
      description: Role of the session.
      type: str
      sample: reporting
    datname:
      description: Database of the session.
      type: str
      sample: app
    application_name:
      description: C(application_name) the client set.
      type: str
      sample: metabase
    client_addr:
      description: Client IP address; null for local socket connections.
      type: str
      sample: 10.0.3.40
    wait_event_type:
      description: Type of the event the query waits for, null when it is running.
      type: str
      sample: IO
    wait_event:
      description: Event the query waits for, null when it is running.
      type: str
      sample: DataFileRead
    duration_s:
      description: Seconds since the query started.
      type: float
      sample: 912.4
    query:
      description: The query, cut to 200 characters.
      type: str
      sample: "SELECT customer_id, sum(amount) FROM payments GROUP BY 1"
blocking:
  description: Sessions waiting for a lock held by other sessions, longest waiting first.
  type: list
  elements: dict
  returned: when RV(ready) is true
  contains:
    pid:
      description: Process id of the blocked backend.
      type: int
      sample: 81250
    blocking_pids:
      description: Process ids of the backends that block it (C(pg_blocking_pids())).
      type: list
      elements: int
      sample: [81234]
    usename:
      description: Role of the blocked session.
      type: str
      sample: app
    datname:
      description: Database of the blocked session.
      type: str
      sample: app
    wait_event_type:
      description: Type of the wait event.
      type: str
      sample: Lock
    wait_event:
      description: The wait event.
      type: str
      sample: transactionid
    duration_s:
      description: Seconds since the blocked statement started.
      type: float
      sample: 31.7
    query:
      description: The blocked statement, cut to 200 characters.
      type: str
      sample: "UPDATE invoices SET status = 'paid' WHERE id = 17"
databases:
  description: Databases that are not templates, by name.
  type: list
  elements: dict
  returned: when RV(ready) is true
  contains:
    name:
      description: Database name.
      type: str
      sample: app
    size_bytes:
      description: Size on disk; null when the login role may not connect to the database.
      type: int
      sample: 7812345856
    size_pretty:
      description: Size on disk in human units; null when RV(databases[].size_bytes) is null.
      type: str
      sample: 7450 MB
pg_stat_statements:
  description: Statement statistics from the C(pg_stat_statements) extension in O(login_db).
  type: dict
  returned: when RV(ready) is true
  contains:
    installed:
      description: Whether the extension exists in O(login_db).
      type: bool
      sample: true
    preloaded:
      description: Whether C(pg_stat_statements) is listed in C(shared_preload_libraries).
      type: bool
      sample: true
    version:
      description: Installed extension version.
      type: str
      returned: when RV(pg_stat_statements.installed) is true
      sample: "1.10"
    reason:
      description: Why no statement list is returned.
      type: str
      returned: when RV(pg_stat_statements.top) is not returned
      sample: >-
        extension pg_stat_statements is not installed in database 'postgres'
        (run CREATE EXTENSION pg_stat_statements there)
    top:
      description: The O(top_statements) statements with the highest total execution time.
      type: list
      elements: dict
      returned: when the extension is installed and loaded and O(top_statements) is above 0
      contains:
        queryid:
          description: Statement fingerprint.
          type: int
          sample: -3125587743204399121
        usename:
          description: Role that ran the statement.
          type: str
          sample: app
        datname:
          description: Database the statement ran in.
          type: str
          sample: app
        calls:
          description: Number of executions.
          type: int
          sample: 120345
        total_exec_time_ms:
          description: Total execution time in milliseconds.
          type: float
          sample: 987654.321
        mean_exec_time_ms:
          description: Mean execution time in milliseconds.
          type: float
          sample: 8.207
        rows:
          description: Rows retrieved or affected, summed over all calls.
          type: int
          sample: 120345
        query:
          description: Normalised statement text, cut to 200 characters.
          type: str
          sample: "SELECT * FROM invoices WHERE customer_id = $1"
duration_s:
  description: Seconds the module spent collecting the report.
  type: float
  returned: always
  sample: 0.041
"""

import re
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._postgresql import (
    HAS_PSYCOPG2,
    PSYCOPG2_IMPORT_ERROR,
    ConnInfo,
    PostgresError,
    conn_info,
    connect,
    error_text,
    idle_in_transaction_sessions,
    postgres_argument_spec,
    query,
    query_dicts,
    server_version,
)

if HAS_PSYCOPG2:
    import psycopg2
    from psycopg2 import sql

QUERY_CHARS = 200

# libpq / server messages that mean "the server is not accepting connections right now" (pg_isready
# exit 1 or 2). Anything else that stops a connection (bad password, no pg_hba entry, unknown role or
# database, TLS misconfiguration) is a configuration fault and fails the module.
_UNREADY_PATTERNS = re.compile(
    "|".join(
        [
            r"connection refused",
            r"timeout expired",
            r"could not translate host name",
            r"no route to host",
            r"network is unreachable",
            r"host is unreachable",
            r"server closed the connection unexpectedly",
            r"could not connect to server",
            r"no such file or directory",  # Unix socket absent: server down
            r"the database system is (starting up|shutting down|in recovery mode|not yet accepting connections)",
            r"the database system is not accepting connections",
            r"sorry, too many clients already",
            r"remaining connection slots are reserved",
        ]
    ),
    re.IGNORECASE,
)


def is_unready_error(message: str) -> bool:
    """True when a connection error means the server is down or busy rather than misconfigured."""
    return bool(_UNREADY_PATTERNS.search(message))


def probe(info: ConnInfo) -> tuple[Any, str | None]:
    """(open connection, None) when the server is ready, (None, reason) when it is not.

    Faults that are not about readiness (credentials, unknown database) raise PostgresError.
    """
    try:
        conn = connect(info)
    except PostgresError as exc:
        if is_unready_error(str(exc)):
            return None, str(exc)
        raise
    try:
        query(conn, "SELECT 1")
    except psycopg2.Error as exc:
        conn.close()
        return None, f"PostgreSQL at {info.where} accepted a connection but did not answer SELECT 1: {error_text(exc)}"
    return conn, None


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def _ages(rows: list[dict], *keys: str) -> list[dict]:
    for row in rows:
        for key in keys:
            row[key] = _seconds(row[key])
    return rows


CONNECTIONS_SQL = """
SELECT COALESCE(state, 'unknown') AS state, COALESCE(datname, '') AS datname, count(*) AS n
FROM pg_stat_activity
WHERE backend_type = 'client backend'
GROUP BY 1, 2
"""


def connections(conn: Any) -> dict[str, Any]:
    max_conn = int(query(conn, "SELECT current_setting('max_connections')")[0][0])
    by_state: dict[str, int] = {}
    by_db: dict[str, int] = {}
    total = 0
    for state, datname, n in query(conn, CONNECTIONS_SQL):
        total += n
        by_state[state] = by_state.get(state, 0) + n
        by_db[datname] = by_db.get(datname, 0) + n
    return dict(
        total=total,
        max_connections=max_conn,
        percent_used=round(100.0 * total / max_conn, 1) if max_conn else 0.0,
        by_state=by_state,
        by_database=by_db,
    )


LONG_RUNNING_SQL = f"""
SELECT pid, usename, datname, application_name, host(client_addr) AS client_addr,
       wait_event_type, wait_event,
       extract(epoch FROM clock_timestamp() - query_start) AS duration_s,
       left(query, {QUERY_CHARS}) AS query
FROM pg_stat_activity
WHERE state = 'active'
  AND backend_type = 'client backend'
  AND pid <> pg_backend_pid()
  AND clock_timestamp() - query_start > make_interval(secs => %s)
ORDER BY query_start
"""


def long_running(conn: Any, threshold_s: float) -> list[dict]:
    return _ages(query_dicts(conn, LONG_RUNNING_SQL, [threshold_s]), "duration_s")


BLOCKING_SQL = f"""
SELECT pid, blocking_pids, usename, datname, wait_event_type, wait_event, duration_s, query
FROM (
  SELECT pid, pg_blocking_pids(pid) AS blocking_pids, usename, datname, wait_event_type, wait_event,
         extract(epoch FROM clock_timestamp() - query_start) AS duration_s,
         left(query, {QUERY_CHARS}) AS query, query_start
  FROM pg_stat_activity
  WHERE pid <> pg_backend_pid() AND wait_event_type = 'Lock'
) w
WHERE cardinality(blocking_pids) > 0
ORDER BY query_start
"""


def blocking(conn: Any) -> list[dict]:
    rows = _ages(query_dicts(conn, BLOCKING_SQL), "duration_s")
    for row in rows:
        row["blocking_pids"] = sorted(int(p) for p in row["blocking_pids"])
    return rows


DATABASES_SQL = """
SELECT datname AS name, size_bytes, pg_size_pretty(size_bytes) AS size_pretty
FROM (
  SELECT datname,
         CASE WHEN has_database_privilege(oid, 'CONNECT')
                   OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')
              THEN pg_database_size(oid) END AS size_bytes
  FROM pg_database
  WHERE NOT datistemplate
) d
ORDER BY datname
"""


def databases(conn: Any) -> list[dict]:
    return query_dicts(conn, DATABASES_SQL)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text))


def pg_stat_statements(conn: Any, dbname: str, top: int) -> dict[str, Any]:
    preload = str(query(conn, "SELECT current_setting('shared_preload_libraries')")[0][0])
    preloaded = "pg_stat_statements" in [p.strip().strip('"') for p in preload.split(",")]
    rows = query(
        conn,
        "SELECT extversion, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE extname = 'pg_stat_statements'",
    )
    if not rows:
        hint = "" if preloaded else "; it also needs pg_stat_statements in shared_preload_libraries"
        return dict(
            installed=False,
            preloaded=preloaded,
            reason=(
                f"extension pg_stat_statements is not installed in database {dbname!r} "
                f"(run CREATE EXTENSION pg_stat_statements there{hint})"
            ),
        )
    version, schema = rows[0]
    result: dict[str, Any] = dict(installed=True, preloaded=preloaded, version=version)
    if not preloaded:
        result["reason"] = "pg_stat_statements is installed but not in shared_preload_libraries, so it collects nothing"
        return result
    if top <= 0:
        result["reason"] = "top_statements is 0"
        return result
    # Extension 1.8 (PostgreSQL 13) renamed total_time / mean_time to total_exec_time / mean_exec_time.
    total, mean = (
        ("total_exec_time", "mean_exec_time") if _version_tuple(version) >= (1, 8) else ("total_time", "mean_time")
    )
    statement = sql.SQL(
        "SELECT s.queryid, r.rolname AS usename, d.datname, s.calls, "
        "round(s.{total}::numeric, 3)::float8 AS total_exec_time_ms, "
        "round(s.{mean}::numeric, 3)::float8 AS mean_exec_time_ms, s.rows, "
        "left(s.query, {chars}) AS query "
        "FROM {view} s "
        "LEFT JOIN pg_roles r ON r.oid = s.userid "
        "LEFT JOIN pg_database d ON d.oid = s.dbid "
        "ORDER BY s.{total} DESC LIMIT %s"
    ).format(
        total=sql.Identifier(total),
        mean=sql.Identifier(mean),
        chars=sql.Literal(QUERY_CHARS),
        view=sql.Identifier(schema, "pg_stat_statements"),
    )
    result["top"] = query_dicts(conn, statement, [top])
    return result


def health(conn: Any, dbname: str, idle_min_s: float, long_query_s: float, top: int) -> dict[str, Any]:
    num, text = server_version(conn)
    return dict(
        ready=True,
        version=text,
        version_num=num,
        in_recovery=bool(query(conn, "SELECT pg_is_in_recovery()")[0][0]),
        connections=connections(conn),
        idle_in_transaction=idle_in_transaction_sessions(conn, idle_min_s),
        long_running=long_running(conn, long_query_s),
        blocking=blocking(conn),
        databases=databases(conn),
        pg_stat_statements=pg_stat_statements(conn, dbname, top),
    )


def check_options(params: dict[str, Any]) -> None:
    for name in ("idle_in_transaction_min_s", "long_query_threshold_s", "top_statements"):
        if params[name] < 0:
            raise PostgresError(f"{name} must be 0 or more, got {params[name]}")


def main() -> None:
    argument_spec = postgres_argument_spec() | dict(
        fail_on_unready=dict(type="bool", default=False),
        idle_in_transaction_min_s=dict(type="float", default=0),
        long_query_threshold_s=dict(type="float", default=300),
        top_statements=dict(type="int", default=10),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)

    started = time.monotonic()
    params = module.params
    conn = None
    info = None
    try:
        check_options(params)
        info = conn_info(params)
        conn, error = probe(info)
        if conn is None:
            elapsed = round(time.monotonic() - started, 3)
            if params["fail_on_unready"]:
                module.fail_json(msg=error, ready=False, error=error, duration_s=elapsed)
            module.exit_json(changed=False, ready=False, error=error, duration_s=elapsed)
        result = health(
            conn,
            info.dbname,
            params["idle_in_transaction_min_s"],
            params["long_query_threshold_s"],
            params["top_statements"],
        )
    except PostgresError as exc:
        module.fail_json(msg=str(exc), duration_s=round(time.monotonic() - started, 3))
    except psycopg2.Error as exc:
        cause = error_text(exc)
        where = f"PostgreSQL at {info.where} (database {info.dbname!r})" if info else "PostgreSQL"
        module.fail_json(msg=f"cannot read health of {where}: {cause}", duration_s=round(time.monotonic() - started, 3))
    finally:
        if conn is not None:
            conn.close()
    module.exit_json(changed=False, duration_s=round(time.monotonic() - started, 3), **result)


if __name__ == "__main__":
    main()
