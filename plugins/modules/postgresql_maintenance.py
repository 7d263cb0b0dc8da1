#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_maintenance
short_description: Run routine maintenance (VACUUM, ANALYZE, REINDEX) on one PostgreSQL database
version_added: 0.1.0
description:
  - Runs C(VACUUM), C(ANALYZE) and C(REINDEX) on the tables of one database, table by table, in the
    order given in O(tasks), and optionally terminates sessions of that database that have been idle in
    a transaction for too long (they hold back C(VACUUM) and make C(REINDEX CONCURRENTLY) wait).
  - Everything is validated before anything runs; the database must exist, every table in O(tables)
    must exist and be a table, partitioned table or materialized view. An unknown table fails the task
    with nothing run.
  - Sessions are terminated first, then the tasks run.
  - Statements run outside a transaction (autocommit), as C(VACUUM) and C(REINDEX CONCURRENTLY) require.
  - In check mode the module validates the same way, returns the statements it would run and the
    sessions it would terminate, and runs nothing.
extends_documentation_fragment:
  - runbook.stack.postgresql
  - runbook.stack._attributes
  - runbook.stack._attributes.operation
  - runbook.stack._attributes.actiongroup_postgresql
attributes:
  check_mode:
    details: Validates the database and tables, returns RV(statements) and RV(terminated) as they would be, runs nothing.
  idempotent:
    details:
      - Maintenance always runs. Every run with a task that has tables, or with a session to
        terminate, reports C(changed=true).
options:
  name:
    description:
      - Database to maintain.
    type: str
    required: true
    aliases: [db]
  tasks:
    description:
      - Maintenance to run, in this order (duplicates are ignored).
      - V(vacuum) runs C(VACUUM) (C(VACUUM (FULL)) with O(vacuum_full=true)) on each table.
      - V(analyze) runs C(ANALYZE) on each table.
      - V(reindex) runs C(REINDEX TABLE CONCURRENTLY) (C(REINDEX TABLE) with O(reindex_concurrently=false))
        on each table.
      - An empty list runs no task; use it with O(terminate_idle_in_transaction_s) alone.
    type: list
    elements: str
    choices: [vacuum, analyze, reindex]
    default: []
  vacuum_full:
    description:
      - Run C(VACUUM (FULL)) for the V(vacuum) task. It rewrites each table under an C(ACCESS EXCLUSIVE)
        lock, blocking reads and writes while it runs, and needs room for a second copy of the table.
      - Requires V(vacuum) in O(tasks).
    type: bool
    default: false
  tables:
    description:
      - Tables to maintain, each V(schema.table) or V(table) (found through the search path). Names follow
        SQL rules, unquoted names are folded to lower case; write V('"Billing"."Invoices"') for mixed case.
      - When omitted, every user table, partitioned table and materialized view of the database outside
        C(pg_catalog), C(information_schema) and extensions, chosen per task. V(vacuum) takes the tables
        that hold data (partitions rather than their partitioned parent), V(analyze) also takes the
        partitioned parents (autovacuum never analyzes them), V(reindex) takes the tables that have indexes.
        System catalogs are left to autovacuum.
      - An empty list is an error; omit the option to maintain every table.
    type: list
    elements: str
  reindex_concurrently:
    description:
      - Rebuild indexes with C(REINDEX TABLE CONCURRENTLY), which does not block writes, on PostgreSQL 12
        and newer. Older servers get a plain C(REINDEX TABLE) and a warning.
      - System catalogs cannot be reindexed concurrently; naming one in O(tables) with this option fails
        before anything runs.
    type: bool
    default: true
  terminate_idle_in_transaction_s:
    description:
      - Terminate the sessions of database O(name) that have been idle in a transaction for at least this
        many seconds, before the tasks run. The module's own session is never terminated.
      - Needs a superuser, a member of C(pg_signal_backend), or the role that owns those sessions.
      - When omitted, no session is terminated.
    type: int
notes:
  - The login role must own the tables (or be a superuser) for C(VACUUM), C(ANALYZE) and C(REINDEX) to
    process them. The server skips the other tables with a warning, which the module passes on.
  - C(VACUUM (FULL)) and plain C(REINDEX) lock each table while it is processed; run them in a
    maintenance window.
seealso:
  - module: runbook.stack.postgresql_health_info
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Nightly vacuum and analyze of the application database
  runbook.stack.postgresql_maintenance:
    login_host: db1.internal.example.com
    login_user: postgres
    login_password: "{{ vault_pg_postgres_password }}"
    name: app
    tasks: [vacuum, analyze]

- name: Rebuild the bloated indexes of two tables without blocking writes
  runbook.stack.postgresql_maintenance:
    login_host: db1.internal.example.com
    db: app
    tasks: [reindex]
    tables:
      - billing.invoices
      - public.events

- name: Clear sessions stuck idle in a transaction for more than 15 minutes, then vacuum
  runbook.stack.postgresql_maintenance:
    login_host: db1.internal.example.com
    name: app
    terminate_idle_in_transaction_s: 900
    tasks: [vacuum]
  register: app_maintenance

- name: Show which sessions were terminated
  ansible.builtin.debug:
    msg: "{{ app_maintenance.terminated | map(attribute='pid') | list }}"

- name: Reclaim disk space of an archive table in a maintenance window
  runbook.stack.postgresql_maintenance:
    login_host: db1.internal.example.com
    name: app
    tasks: [vacuum, analyze]
    vacuum_full: true
    tables: [archive.events_2023]
"""

RETURN = r"""
database:
  description: The database maintained.
  type: str
  returned: always
  sample: app
tasks:
  description: One entry per task, in the order they ran (or would run in check mode).
  type: list
  elements: dict
  returned: always
  contains:
    name:
      description: The task, one of V(vacuum), V(analyze), V(reindex).
      type: str
      sample: vacuum
    tables:
      description: Tables the task processes, as V(schema.table).
      type: list
      elements: str
      sample: [billing.invoices, public.events]
    statements:
      description: Statements the task ran (in check mode, would run).
      type: list
      elements: str
      sample: ['VACUUM "billing"."invoices"', 'VACUUM "public"."events"']
    duration_s:
      description: Seconds the task took; V(0) in check mode.
      type: float
      sample: 12.481
statements:
  description: All statements that ran (in check mode, would run), in order.
  type: list
  elements: str
  returned: always
  sample: ['VACUUM "billing"."invoices"', 'ANALYZE "billing"."invoices"']
terminated:
  description:
    - Sessions terminated because they were idle in a transaction for at least
      O(terminate_idle_in_transaction_s) seconds. In check mode, the sessions that would be terminated.
  type: list
  elements: dict
  returned: always
  contains:
    pid:
      description: Backend process id.
      type: int
      sample: 81234
    usename:
      description: Role of the session.
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
      description: Seconds the session had been idle.
      type: float
      sample: 1204.6
    xact_age_s:
      description: Seconds since its transaction started.
      type: float
      sample: 1210.2
    query:
      description: Last statement of the session, cut to 200 characters.
      type: str
      sample: "SELECT * FROM invoices WHERE id = $1 FOR UPDATE"
duration_s:
  description: Seconds the module took.
  type: float
  returned: always
  sample: 14.02
"""

import time
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._postgresql import (
    HAS_PSYCOPG2,
    PSYCOPG2_IMPORT_ERROR,
    USER_RELATION_FILTER,
    PostgresError,
    conn_info,
    connect,
    database_exists,
    error_text,
    execute,
    idle_in_transaction_sessions,
    postgres_argument_spec,
    query_dicts,
)

if HAS_PSYCOPG2:
    import psycopg2
    from psycopg2 import sql

TASKS = ("vacuum", "analyze", "reindex")
MAINTAINABLE = {"r": "table", "p": "partitioned table", "m": "materialized view"}
RELKIND_NAMES = {
    "i": "index",
    "I": "partitioned index",
    "S": "sequence",
    "t": "TOAST table",
    "v": "view",
    "c": "composite type",
    "f": "foreign table",
}
SYSTEM_SCHEMAS = ("pg_catalog", "pg_toast")


@dataclass(frozen=True)
class Relation:
    schema: str
    name: str
    relkind: str
    has_indexes: bool

    @property
    def key(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class TaskPlan:
    name: str
    relations: list[Relation]
    statements: list[Any] = field(default_factory=list)


RELATION_COLUMNS = """
SELECT c.oid, n.nspname AS schema, c.relname AS name, c.relkind,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid) AS has_indexes
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
"""

DEFAULT_RELATIONS_SQL = f"""{RELATION_COLUMNS}
WHERE c.relkind IN ('r', 'p', 'm') AND {USER_RELATION_FILTER}
ORDER BY n.nspname, c.relname
"""

RESOLVE_SQL = RELATION_COLUMNS + "WHERE c.oid = to_regclass(%s)"


def _relation(row: dict) -> Relation:
    return Relation(row["schema"], row["name"], row["relkind"], bool(row["has_indexes"]))


def default_relations(conn: Any) -> list[Relation]:
    return [_relation(row) for row in query_dicts(conn, DEFAULT_RELATIONS_SQL)]


def resolve_relations(conn: Any, dbname: str, names: list[str]) -> list[Relation]:
    """Look every name up (schema.table or search-path table); fail naming all unknown ones at once."""
    found: list[Relation] = []
    missing: list[str] = []
    for name in names:
        try:
            rows = query_dicts(conn, RESOLVE_SQL, [name])
        except psycopg2.Error as exc:
            raise PostgresError(f"cannot look up table {name!r} in database {dbname!r}: {error_text(exc)}") from None
        if not rows:
            missing.append(name)
            continue
        rel = _relation(rows[0])
        if rel.relkind not in MAINTAINABLE:
            kind = RELKIND_NAMES.get(rel.relkind, f"relation of kind {rel.relkind!r}")
            raise PostgresError(f"{name!r} in database {dbname!r} is a {kind}, not a table")
        if rel not in found:
            found.append(rel)
    if missing:
        listed = ", ".join(repr(m) for m in missing)
        verb = "does" if len(missing) == 1 else "do"
        noun = "table" if len(missing) == 1 else "tables"
        raise PostgresError(f"{noun} {listed} {verb} not exist in database {dbname!r}; nothing was run")
    return found


def task_relations(task: str, relations: list[Relation], explicit: bool) -> list[Relation]:
    """Tables a task processes: all named ones, or the task's share of the database's tables."""
    if explicit:
        return list(relations)
    if task == "vacuum":
        return [r for r in relations if r.relkind != "p"]
    if task == "reindex":
        return [r for r in relations if r.relkind != "p" and r.has_indexes]
    return list(relations)


def statement(task: str, rel: Relation, vacuum_full: bool, concurrently: bool) -> Any:
    target = sql.Identifier(rel.schema, rel.name)
    if task == "vacuum":
        return sql.SQL("VACUUM (FULL) {}" if vacuum_full else "VACUUM {}").format(target)
    if task == "analyze":
        return sql.SQL("ANALYZE {}").format(target)
    return sql.SQL("REINDEX TABLE CONCURRENTLY {}" if concurrently else "REINDEX TABLE {}").format(target)


def build_plan(
    tasks: list[str],
    relations: list[Relation],
    explicit: bool,
    vacuum_full: bool,
    concurrently: bool,
) -> list[TaskPlan]:
    plans = []
    for task in dict.fromkeys(tasks):
        rels = task_relations(task, relations, explicit)
        if task == "reindex" and concurrently:
            catalogs = [r.key for r in rels if r.schema in SYSTEM_SCHEMAS]
            if catalogs:
                raise PostgresError(
                    f"cannot reindex system catalog {', '.join(catalogs)} concurrently; "
                    "set reindex_concurrently: false for it"
                )
        plans.append(TaskPlan(task, rels, [statement(task, r, vacuum_full, concurrently) for r in rels]))
    return plans


def server_warnings(conn: Any) -> list[str]:
    """WARNING messages the server sent since the last call (e.g. tables skipped for lack of ownership)."""
    found = [" ".join(n.split()) for n in conn.notices if n.startswith("WARNING")]
    del conn.notices[:]
    return found


def run_plan(conn: Any, dbname: str, plans: list[TaskPlan], report: dict[str, Any]) -> None:
    """Run the statements; ``report`` (tasks, statements, warnings) grows as they complete, so a failure
    still shows what ran."""
    for plan in plans:
        entry: dict[str, Any] = dict(
            name=plan.name, tables=[r.key for r in plan.relations], statements=[], duration_s=0.0
        )
        report["tasks"].append(entry)
        started = time.monotonic()
        for rel, stmt in zip(plan.relations, plan.statements):
            text = stmt.as_string(conn)
            try:
                execute(conn, stmt)
            except psycopg2.Error as exc:
                entry["duration_s"] = round(time.monotonic() - started, 3)
                raise PostgresError(
                    f"cannot {plan.name} {MAINTAINABLE[rel.relkind]} {rel.key} of database {dbname!r}: "
                    f"{error_text(exc)} (statement: {text})"
                ) from None
            entry["statements"].append(text)
            report["statements"].append(text)
            report["warnings"].extend(server_warnings(conn))
        entry["duration_s"] = round(time.monotonic() - started, 3)


def terminate_sessions(conn: Any, dbname: str, min_s: int, check_mode: bool, report: dict[str, Any]) -> None:
    try:
        rows = idle_in_transaction_sessions(conn, min_s, dbname=dbname, terminate=not check_mode)
    except psycopg2.Error as exc:
        verb = "list" if check_mode else "terminate"
        raise PostgresError(
            f"cannot {verb} sessions idle in transaction of database {dbname!r}: {error_text(exc)}"
        ) from None
    for row in rows:
        row.pop("datname", None)
        if row.pop("terminated", True):
            report["terminated"].append(row)
        else:
            report["warnings"].append(f"session {row['pid']} was not terminated (it ended or did not exit in 5 s)")
    report["warnings"].extend(server_warnings(conn))


def check_options(params: dict[str, Any]) -> None:
    limit = params["terminate_idle_in_transaction_s"]
    if limit is not None and limit < 0:
        raise PostgresError(f"terminate_idle_in_transaction_s must be 0 or more seconds, got {limit}")
    if params["vacuum_full"] and "vacuum" not in params["tasks"]:
        raise PostgresError("vacuum_full: true needs 'vacuum' in tasks")
    if params["tables"] is not None and not [t for t in params["tables"] if t and t.strip()]:
        raise PostgresError("tables is empty; omit it to maintain every table")


def main() -> None:
    argument_spec = postgres_argument_spec() | dict(
        name=dict(type="str", required=True, aliases=["db"]),
        tasks=dict(type="list", elements="str", choices=list(TASKS), default=[]),
        vacuum_full=dict(type="bool", default=False),
        tables=dict(type="list", elements="str"),
        reindex_concurrently=dict(type="bool", default=True),
        terminate_idle_in_transaction_s=dict(type="int"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)

    started = time.monotonic()
    params = module.params
    dbname = params["name"]
    report: dict[str, Any] = dict(tasks=[], statements=[], terminated=[], warnings=[])
    conn = None
    try:
        check_options(params)
        info = conn_info(params)
        admin = connect(info)
        try:
            if not database_exists(admin, dbname):
                raise PostgresError(f"database {dbname!r} does not exist on {info.where}")
        finally:
            admin.close()
        conn = connect(info, dbname=dbname)

        explicit = params["tables"] is not None
        if explicit:
            relations = resolve_relations(conn, dbname, [t.strip() for t in params["tables"] if t and t.strip()])
        else:
            relations = default_relations(conn) if params["tasks"] else []
        concurrently = params["reindex_concurrently"]
        if concurrently and "reindex" in params["tasks"] and conn.server_version < 120000:
            report["warnings"].append("REINDEX CONCURRENTLY needs PostgreSQL 12 or newer; running plain REINDEX")
            concurrently = False
        plans = build_plan(params["tasks"], relations, explicit, params["vacuum_full"], concurrently)

        if params["terminate_idle_in_transaction_s"] is not None:
            terminate_sessions(conn, dbname, params["terminate_idle_in_transaction_s"], module.check_mode, report)
        if module.check_mode:
            for plan in plans:
                texts = [s.as_string(conn) for s in plan.statements]
                report["tasks"].append(
                    dict(name=plan.name, tables=[r.key for r in plan.relations], statements=texts, duration_s=0.0)
                )
                report["statements"].extend(texts)
        else:
            run_plan(conn, dbname, plans, report)
    except (PostgresError, psycopg2.Error) as exc:
        msg = str(exc) if isinstance(exc, PostgresError) else f"cannot maintain database {dbname!r}: {error_text(exc)}"
        for warning in report.pop("warnings"):
            module.warn(warning)
        module.fail_json(
            msg=msg,
            changed=bool(report["statements"] or report["terminated"]),
            database=dbname,
            duration_s=round(time.monotonic() - started, 3),
            **report,
        )
    finally:
        if conn is not None:
            conn.close()

    for warning in report.pop("warnings"):
        module.warn(warning)
    module.exit_json(
        changed=bool(report["statements"] or report["terminated"]),
        database=dbname,
        duration_s=round(time.monotonic() - started, 3),
        **report,
    )


if __name__ == "__main__":
    main()
