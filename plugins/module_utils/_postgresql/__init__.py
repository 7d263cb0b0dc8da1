# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL helpers of the postgresql_* modules (private), one file per concern:

- ``connection.py``: connection options, ConnInfo, PostgresError, connect, libpq environment, queries;
- ``tools.py``: the client tools (find, run, show their command line);
- ``database_facts.py``: user tables and row counts, database-level properties read and re-applied;
- ``maintenance.py``: ending sessions, dropping a database, sessions idle in a transaction;
- ``local_server.py`` and ``in_place_restore.py``: the in-place pgBackRest restore (was _pgbackrest_swap.py).

This ``__init__`` is a one-release re-export shim: it re-exports every public name of the former
``_postgresql.py`` so that ``from ...module_utils._postgresql import X`` keeps working for one release.
New code imports from the file that defines the name; the shim goes in the release after.
"""

from __future__ import annotations

from ansible_collections.runbook.stack.plugins.module_utils._postgresql.connection import (
    DB_ERRORS,
    HAS_PSYCOPG2,
    PSYCOPG2_IMPORT_ERROR,
    ConnInfo,
    PostgresError,
    conn_info,
    connect,
    conninfo_dbname,
    database_exists,
    databases_oldest_first,
    error_text,
    execute,
    ident,
    libpq_env,
    postgres_argument_spec,
    query,
    query_dicts,
    server_version,
)
from ansible_collections.runbook.stack.plugins.module_utils._postgresql.database_facts import (
    DATABASE_FACTS_SQL,
    DATABASE_SETTINGS_SQL,
    LIST_GUCS,
    USER_RELATION_FILTER,
    USER_TABLES_SQL,
    apply_database_facts,
    count_rows,
    count_rows_parallel,
    create_database_sql,
    database_facts,
    missing_roles,
    parse_aclitem,
    setting_sql,
    split_guc_list,
    table_key,
    user_tables,
)
from ansible_collections.runbook.stack.plugins.module_utils._postgresql.maintenance import (
    IDLE_IN_TRANSACTION_SQL,
    drop_database,
    idle_in_transaction_sessions,
    terminate_sessions,
)
from ansible_collections.runbook.stack.plugins.module_utils._postgresql.tools import (
    default_jobs,
    find_tool,
    run_tool,
    shown_command,
    tail,
    tool_version,
)

__all__ = [
    "DATABASE_FACTS_SQL",
    "DATABASE_SETTINGS_SQL",
    "DB_ERRORS",
    "HAS_PSYCOPG2",
    "IDLE_IN_TRANSACTION_SQL",
    "LIST_GUCS",
    "PSYCOPG2_IMPORT_ERROR",
    "USER_RELATION_FILTER",
    "USER_TABLES_SQL",
    "ConnInfo",
    "PostgresError",
    "apply_database_facts",
    "conn_info",
    "connect",
    "conninfo_dbname",
    "count_rows",
    "count_rows_parallel",
    "create_database_sql",
    "database_exists",
    "database_facts",
    "databases_oldest_first",
    "default_jobs",
    "drop_database",
    "error_text",
    "execute",
    "find_tool",
    "ident",
    "idle_in_transaction_sessions",
    "libpq_env",
    "missing_roles",
    "parse_aclitem",
    "postgres_argument_spec",
    "query",
    "query_dicts",
    "run_tool",
    "server_version",
    "setting_sql",
    "shown_command",
    "split_guc_list",
    "table_key",
    "tail",
    "terminate_sessions",
    "tool_version",
    "user_tables",
]
