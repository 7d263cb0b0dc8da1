#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: postgresql_restore
short_description: Restore a PostgreSQL database from a verified backup set, swapping it in only after it checks out
version_added: 0.1.0
description:
  - Restores a backup set written by M(runbook.stack.postgresql_backup).
  - Before it touches the server, the module re-computes the SHA-256 of every file of the set and
    compares it with the manifest, and checks that every role the database needs (owner, grantees,
    per-role settings) exists. A set that fails either check is refused and nothing is changed.
  - With O(strategy=swap) (the default) the set is restored with C(pg_restore --jobs) into a temporary
    database C(<name>_restore_<backup_id>) created with the original owner, encoding and locale; the
    database-level ACL, comment, connection limit and C(ALTER DATABASE/ROLE ... SET) settings are
    re-applied; the row count of every table is compared with the manifest. Only then are new
    connections to the live database refused, its sessions terminated, the live database renamed to
    C(<name>_pre_restore_<backup_id>) (C(_2), C(_3)... appended when an earlier restore of the same set
    keeps one already) and the restored one renamed into place. Any failure before the
    swap drops the temporary database and leaves the live database as it was; a failure during the swap
    renames the live database back.
  - With O(strategy=in_place) the live database is dropped and re-created before C(pg_restore) runs.
    Use it only where the server has no room for two copies; it requires O(keep_previous=false) as the
    explicit acknowledgement that the current contents are discarded. The set is still fully verified
    before the drop.
author:
  - runbook.stack maintainers (@runbook-stack)
extends_documentation_fragment:
  - runbook.stack.postgresql
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Verifies every checksum and the roles, then returns the plan; the server is not changed.
  diff_mode:
    support: none
  idempotent:
    description: Whether a second run with the same options reports no change.
    support: none
    details: Every real run restores the set again.
  platform:
    platforms: posix
options:
  name:
    description: Target database. It may be absent (disaster recovery), then it is simply created.
    type: str
    required: true
    aliases: [db]
  path:
    description:
      - Directory of one backup set (C(<root>/postgresql/<source>/<backup_id>)).
      - Mutually exclusive with O(backup_root).
    type: path
  backup_root:
    description:
      - Backup root to pick the set from, with O(backup_id) and O(source).
    type: path
  backup_id:
    description:
      - Id of the set under O(backup_root), or V(latest) for the newest valid set of O(source).
    type: str
    default: latest
  source:
    description:
      - Name of the backed-up database whose sets are looked up under O(backup_root).
      - Defaults to O(name); set it to restore a copy of one database under another name.
    type: str
  strategy:
    description:
      - V(swap) restores into a temporary database and swaps it in after verification (safe, needs room for two copies).
      - V(in_place) drops and re-creates the live database (needs O(keep_previous=false)).
    type: str
    default: swap
    choices: [swap, in_place]
  keep_previous:
    description:
      - With O(strategy=swap), keep the replaced database as C(<name>_pre_restore_<backup_id>) (true) or drop it after
        a successful swap (false).
    type: bool
    default: true
  jobs:
    description: Parallel C(pg_restore) jobs and row-count workers. Defaults to min(4, number of CPUs).
    type: int
  pg_bin_dir:
    description: Directory holding C(pg_restore); found automatically by default (see M(runbook.stack.postgresql_backup)).
    type: path
  swap_timeout:
    description: Seconds to keep terminating sessions of the live database until it can be renamed.
    type: int
    default: 30
seealso:
  - module: runbook.stack.postgresql_backup
  - module: runbook.stack.backup_info
requirements:
  - psycopg2
  - pg_restore of the server's major version or newer
  - a login role that can create databases, terminate sessions and rename databases (a superuser)
"""

EXAMPLES = r"""
- name: Restore the newest valid backup of app, keeping the current database as app_pre_restore_<id>
  runbook.stack.postgresql_restore:
    name: app
    backup_root: /var/backups/runbook
    backup_id: latest

- name: Restore one exact set, dropping the replaced database afterwards
  runbook.stack.postgresql_restore:
    name: app
    path: /var/backups/runbook/postgresql/app/20261122T020000Z
    keep_previous: false
    jobs: 4

- name: Restore yesterday's app backup as a separate database for inspection
  runbook.stack.postgresql_restore:
    name: app_inspect
    source: app
    backup_root: /var/backups/runbook
    backup_id: 20261122T020000Z

- name: Check the newest set and show the plan without touching the server
  runbook.stack.postgresql_restore:
    name: app
    backup_root: /var/backups/runbook
  check_mode: true
  register: plan
"""

RETURN = r"""
restore:
  description: What was restored (in check mode, the plan).
  returned: always
  type: dict
  contains:
    backup_id:
      description: Id of the restored set.
      type: str
      sample: 20261122T020000Z
    path:
      description: Directory of the restored set.
      type: str
      sample: /var/backups/runbook/postgresql/app/20261122T020000Z
    target:
      description: The database that now holds the restored data.
      type: str
      sample: app
    strategy:
      description: The strategy used.
      type: str
      sample: swap
    temporary_database:
      description: Database the set was restored into before the swap (swap only).
      type: str
      sample: app_restore_20261122t020000z
    previous_database:
      description: Name the replaced database was kept under; null when there was none or it was dropped.
      type: str
      sample: app_pre_restore_20261122t020000z
    target_existed:
      description: Whether the target database existed before the restore.
      type: bool
    verified_files:
      description: Number of files whose SHA-256 matched the manifest.
      type: int
      sample: 14
    tables:
      description: Row count per table, verified against the manifest (check mode, from the manifest).
      type: dict
      sample: {"public.orders": 120000}
    steps:
      description: Steps taken (or planned), in order, each with its duration in seconds.
      type: list
      elements: dict
      sample: [{"step": "verify checksums", "duration_s": 0.8}]
    duration_s:
      description: Seconds the restore took.
      type: float
commands:
  description: Client commands that ran (or would run); passwords are passed in the environment, never here.
  returned: always
  type: list
  elements: str
duration_s:
  description: Wall-clock seconds the module spent.
  returned: always
  type: float
"""

import os
import time
from typing import Any, Callable

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    BackupSet,
    BackupSetError,
    Steps,
    find_set,
    keep_name,
    open_set_path,
    open_storage,
)
from ansible_collections.runbook.stack.plugins.module_utils._postgresql import (
    DB_ERRORS,
    HAS_PSYCOPG2,
    PSYCOPG2_IMPORT_ERROR,
    ConnInfo,
    PostgresError,
    apply_database_facts,
    conn_info,
    connect,
    conninfo_dbname,
    count_rows_parallel,
    create_database_sql,
    database_exists,
    default_jobs,
    drop_database,
    error_text,
    execute,
    find_tool,
    libpq_env,
    missing_roles,
    postgres_argument_spec,
    query,
    run_tool,
    server_version,
    shown_command,
    terminate_sessions,
)
from ansible_collections.runbook.stack.plugins.module_utils._process import Interrupted, terminate_on_signals

KIND = "postgresql"
MAX_IDENT = 63


def derived_name(name: str, suffix: str) -> str:
    """``<name><suffix>`` cut to PostgreSQL's 63-byte identifier limit (the suffix is kept whole)."""
    room = MAX_IDENT - len(suffix.encode("utf-8"))
    head = name.encode("utf-8")[:room].decode("utf-8", "ignore")
    return head + suffix


def temp_name(name: str, backup_id: str) -> str:
    return derived_name(name, f"_restore_{backup_id.lower()}")


def previous_name(name: str, backup_id: str, taken: Callable[[str], bool] = lambda _name: False) -> str:
    """``<name>_pre_restore_<id>``, or with ``_2``, ``_3``... when an earlier restore of the same set
    already keeps a database under that name (it is never dropped or overwritten)."""
    suffix = f"_pre_restore_{backup_id.lower()}"
    kept, last = keep_name(lambda more: derived_name(name, suffix + more), taken, "_", 99)
    if last is not None:
        raise PostgresError(f"databases {kept} to {last} all exist; drop the ones no longer needed")
    return kept


def resolve_set(params: dict[str, Any], source: str) -> BackupSet:
    if params["path"]:
        return open_set_path(params["path"], kind=KIND)
    return find_set(open_storage(params["backup_root"]), KIND, source, params["backup_id"])


def verify_set(bset: BackupSet, workers: int) -> int:
    problems = bset.verify(workers=workers)
    if problems:
        shown = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
        raise BackupSetError(f"the set failed verification, nothing was changed: {shown}")
    return len(bset.manifest["files"])


def pg_restore_argv(pg_restore: str, jobs: int, db: str, bset: BackupSet) -> list[str]:
    data_dir = os.path.join(bset.location, bset.manifest["facts"].get("dump_dir", "data"))
    return [
        pg_restore,
        f"--jobs={jobs}",
        "--exit-on-error",
        "--no-password",
        f"--dbname={conninfo_dbname(db)}",
        data_dir,
    ]


def restore_into(
    info: ConnInfo, admin: Any, db: str, bset: BackupSet, pg_restore: str, jobs: int, steps: Steps, commands: list
) -> dict[str, int]:
    """Create db like the original, pg_restore the set into it, re-apply database facts, verify counts."""
    manifest = bset.manifest
    facts = manifest["facts"]["database"]
    with steps.step(f"create database {db}"):
        execute(admin, create_database_sql(db, facts))
    argv = pg_restore_argv(pg_restore, jobs, db, bset)
    commands.append(shown_command(argv))
    with steps.step(f"pg_restore into {db}"):
        run_tool(argv, libpq_env(info, db), what=f"pg_restore into {db!r} failed", secret=info.password)
    with steps.step(f"apply database settings to {db}"):
        apply_database_facts(admin, db, facts)
    expected: dict[str, int] = {k: int(v) for k, v in manifest["facts"]["tables"].items()}
    with steps.step("verify row counts"):
        found = count_rows_parallel(info, db, jobs)
    compare_counts(expected, found, db)
    return found


def compare_counts(expected: dict[str, int], found: dict[str, int], db: str) -> None:
    problems = []
    for table in sorted(set(expected) | set(found)):
        if table not in found:
            problems.append(f"table {table} is missing")
        elif table not in expected:
            problems.append(f"table {table} is not in the manifest")
        elif expected[table] != found[table]:
            problems.append(f"{table} has {found[table]} rows, manifest says {expected[table]}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise PostgresError(
            f"row counts of the restored database {db!r} do not match the manifest: " + "; ".join(problems[:5]) + more
        )


def swap_in(admin: Any, target: str, temp: str, previous: str, timeout: int, steps: Steps) -> bool:
    """Rename target -> previous and temp -> target. Returns whether a target existed.

    New connections to the target are refused during the swap; on failure the target is renamed back
    and its original ALLOW_CONNECTIONS restored, so the live database is as it was.
    """
    if not database_exists(admin, target):
        with steps.step(f"rename {temp} to {target}"):
            execute(admin, "ALTER DATABASE {} RENAME TO {}", idents=(temp, target))
        return False
    allow = query(admin, "SELECT datallowconn FROM pg_database WHERE datname = %s", [target])[0][0]
    renamed = False
    try:
        with steps.step(f"stop sessions on {target} and rename it to {previous}"):
            execute(admin, "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false", idents=(target,))
            deadline = time.monotonic() + timeout
            while True:
                terminate_sessions(admin, target)
                try:
                    execute(admin, "ALTER DATABASE {} RENAME TO {}", idents=(target, previous))
                    renamed = True
                    break
                except DB_ERRORS as exc:
                    if getattr(exc, "pgcode", None) != "55006" or time.monotonic() > deadline:  # object_in_use
                        raise
                    time.sleep(0.2)
        with steps.step(f"rename {temp} to {target}"):
            execute(admin, "ALTER DATABASE {} RENAME TO {}", idents=(temp, target))
    except BaseException:
        if renamed:
            execute(admin, "ALTER DATABASE {} RENAME TO {}", idents=(previous, target))
        execute(admin, f"ALTER DATABASE {{}} WITH ALLOW_CONNECTIONS {'true' if allow else 'false'}", idents=(target,))
        raise
    if allow:
        execute(admin, "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true", idents=(previous,))
    return True


def plan(
    params: dict[str, Any],
    bset: BackupSet,
    name: str,
    verified: int,
    exists: bool,
    taken: Callable[[str], bool] = lambda _name: False,
) -> dict:
    strategy = params["strategy"]
    temp = temp_name(name, bset.backup_id)
    prev = previous_name(name, bset.backup_id, taken)
    if strategy == "swap":
        steps = [f"create database {temp}", f"pg_restore into {temp}", "apply database settings", "verify row counts"]
        if exists:
            steps.append(f"stop sessions on {name} and rename it to {prev}")
        steps.append(f"rename {temp} to {name}")
        if exists and not params["keep_previous"]:
            steps.append(f"drop database {prev}")
    else:
        steps = ([f"stop sessions on {name} and drop it"] if exists else []) + [
            f"create database {name}",
            f"pg_restore into {name}",
            "apply database settings",
            "verify row counts",
        ]
    return {
        "backup_id": bset.backup_id,
        "path": bset.location,
        "target": name,
        "strategy": strategy,
        "temporary_database": temp if strategy == "swap" else None,
        "previous_database": prev if strategy == "swap" and exists and params["keep_previous"] else None,
        "target_existed": exists,
        "verified_files": verified,
        "tables": dict(bset.manifest["facts"]["tables"]),
        "steps": [{"step": s} for s in steps],
    }


def run(params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    name = params["name"]
    jobs = params["jobs"] or default_jobs()
    info = conn_info(params)
    steps = Steps()
    commands: list[str] = []
    t0 = time.monotonic()

    with steps.step("find backup set"):
        bset = resolve_set(params, params["source"] or name)
    with steps.step("verify checksums"):
        verified = verify_set(bset, workers=max(2, jobs))
    manifest = bset.manifest
    for key in ("database", "tables"):
        if key not in manifest.get("facts", {}):
            raise BackupSetError(f"the manifest has no facts.{key}; it was not written by postgresql_backup")

    admin = connect(info)
    try:
        num, _version = server_version(admin)
        pg_restore, _tool_version = find_tool(
            "pg_restore", max(num // 10000, _dump_major(manifest)), params["pg_bin_dir"]
        )
        missing = missing_roles(admin, manifest["facts"]["database"])
        if missing:
            raise PostgresError(
                "the database needs roles that do not exist on this server, nothing was changed: " + ", ".join(missing)
            )
        exists = database_exists(admin, name)
        if check_mode:
            result = plan(params, bset, name, verified, exists, lambda candidate: database_exists(admin, candidate))
            target = result["temporary_database"] or name
            commands.append(shown_command(pg_restore_argv(pg_restore, jobs, target, bset)))
            return {"changed": True, "restore": result, "commands": commands}

        if params["strategy"] == "swap":
            restored = _swap_restore(info, admin, params, bset, name, exists, pg_restore, jobs, steps, commands)
        else:
            restored = _in_place_restore(info, admin, bset, name, exists, pg_restore, jobs, steps, commands)
    finally:
        admin.close()
    restored.update(
        backup_id=bset.backup_id,
        path=bset.location,
        target=name,
        strategy=params["strategy"],
        target_existed=exists,
        verified_files=verified,
        steps=steps.items,
        duration_s=round(time.monotonic() - t0, 3),
    )
    return {"changed": True, "restore": restored, "commands": commands}


def _dump_major(manifest: dict[str, Any]) -> int:
    num = manifest.get("server", {}).get("version_num") or 0
    return int(num) // 10000


def _swap_restore(info, admin, params, bset, name, exists, pg_restore, jobs, steps, commands) -> dict[str, Any]:
    temp = temp_name(name, bset.backup_id)
    prev = previous_name(name, bset.backup_id, lambda candidate: database_exists(admin, candidate))
    if database_exists(admin, temp):
        # left behind by an interrupted restore of this same set: it was never swapped in, so it is ours
        with steps.step(f"drop leftover {temp}"):
            drop_database(admin, temp)
    try:
        tables = restore_into(info, admin, temp, bset, pg_restore, jobs, steps, commands)
        swap_in(admin, name, temp, prev, params["swap_timeout"], steps)
    except BaseException:
        if database_exists(admin, temp):
            drop_database(admin, temp)
        raise
    kept = None
    if exists:
        if params["keep_previous"]:
            kept = prev
        else:
            with steps.step(f"drop database {prev}"):
                drop_database(admin, prev)
    return {"temporary_database": temp, "previous_database": kept, "tables": tables}


def _in_place_restore(info, admin, bset, name, exists, pg_restore, jobs, steps, commands) -> dict[str, Any]:
    if exists:
        with steps.step(f"stop sessions on {name} and drop it"):
            drop_database(admin, name)
    tables = restore_into(info, admin, name, bset, pg_restore, jobs, steps, commands)
    return {"temporary_database": None, "previous_database": None, "tables": tables}


def main() -> None:
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        name=dict(type="str", required=True, aliases=["db"]),
        path=dict(type="path"),
        backup_root=dict(type="path"),
        backup_id=dict(type="str", default="latest"),
        source=dict(type="str"),
        strategy=dict(type="str", default="swap", choices=["swap", "in_place"]),
        keep_previous=dict(type="bool", default=True),
        jobs=dict(type="int"),
        pg_bin_dir=dict(type="path"),
        swap_timeout=dict(type="int", default=30),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[("path", "backup_root")],
        required_one_of=[("path", "backup_root")],
    )
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    p = module.params
    name = p["name"]
    if not name:
        module.fail_json(msg="name must be a database name, got an empty string")
    if p["jobs"] is not None and p["jobs"] < 1:
        module.fail_json(msg=f"jobs must be 1 or more, got {p['jobs']}")
    if p["swap_timeout"] < 1:
        module.fail_json(msg=f"swap_timeout must be a positive number of seconds, got {p['swap_timeout']}")
    if p["strategy"] == "in_place" and p["keep_previous"]:
        module.fail_json(
            msg="strategy=in_place drops the current database before restoring and cannot keep it: "
            "set keep_previous: false to confirm, or use strategy=swap"
        )
    what = p["path"] or f"backup {p['backup_id']} under {p['backup_root']}"
    started = time.monotonic()
    try:
        with terminate_on_signals():
            result = run(p, module.check_mode)
    except (PostgresError, BackupSetError) as exc:
        module.fail_json(msg=f"cannot restore database {name!r} from {what}: {exc}")
    except DB_ERRORS as exc:
        module.fail_json(msg=f"cannot restore database {name!r} from {what}: {error_text(exc)}")
    except OSError as exc:
        module.fail_json(msg=f"cannot restore database {name!r} from {what}: {exc.strerror or exc}")
    except Interrupted as exc:
        module.fail_json(
            msg=f"restore of database {name!r} {exc}; the live database was left as it was "
            "unless the swap had completed"
        )
    result["duration_s"] = round(time.monotonic() - started, 3)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
