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
  - A temporary database C(<name>_restore_<id>) that an interrupted restore of O(name) left behind (of
    any set) is dropped before the restore starts; it only ever holds data restored from a backup, the
    live database never carries such a name. It is returned in RV(restore.dropped).
  - Kept databases are limited by O(keep_previous_count). After a successful restore that replaced an
    existing database, the oldest C(<name>_pre_restore_*) copies beyond that number (counting the one
    just kept, which is never dropped) are dropped and returned in RV(restore.dropped). Oldest means
    created first (the database OID, which a rename keeps). Nothing is dropped by retention when
    O(name) did not exist before the restore, since a restore that stopped during its swap leaves the
    replaced database only as its newest copy.
  - A failure message names the copies earlier restores kept and any temporary database left over,
    and says when O(name) is missing while a copy of it is kept.
  - With O(strategy=in_place) the live database is dropped and re-created before C(pg_restore) runs.
    Use it only where the server has no room for two copies; it requires O(keep_previous=false) as the
    explicit acknowledgement that the current contents are discarded. The set is still fully verified
    before the drop.
author:
  - runbook.stack maintainers (@runbook-stack)
extends_documentation_fragment:
  - runbook.stack.postgresql
  - runbook.stack._attributes
  - runbook.stack._attributes.operation
  - runbook.stack._attributes.actiongroup_postgresql
attributes:
  check_mode:
    details: Verifies every checksum and the roles, then returns the plan; the server is not changed.
  idempotent:
    details: Every real run restores the set again.
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
  keep_previous_count:
    description:
      - How many C(<name>_pre_restore_<id>[_<N>]) databases to keep at most after a successful
        restore that replaced O(name), counting the one this run kept; the oldest beyond it are dropped.
      - V(0) keeps every copy (no retention).
      - Only copies whose name is exactly O(name) followed by that suffix are counted or dropped, because a
        name cut to PostgreSQL's 63-byte limit could be shared by two databases, so such copies are
        never dropped automatically.
    type: int
    default: 2
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
    dropped:
      description:
        - Databases dropped (in check mode, that would be dropped) besides the replaced one when
          O(keep_previous=false) - temporary databases left over by interrupted restores and kept copies
          beyond O(keep_previous_count).
      type: list
      elements: str
      sample: [app_restore_20261121t020000z, app_pre_restore_20261120t020000z]
    kept_copies:
      description: The C(<name>_pre_restore_*) databases there are after the restore (oldest first).
      type: list
      elements: str
      sample: [app_pre_restore_20261121t020000z, app_pre_restore_20261122t020000z]
    steps:
      description:
        - Steps taken (or planned), in order, each with its duration in seconds.
        - Deprecated, use C(steps); to be removed in runbook.stack 2.0.0.
      type: list
      elements: dict
      sample: [{"step": "verify checksums", "duration_s": 0.8}]
    duration_s:
      description: Seconds the restore took.
      type: float
steps:
  description:
    - What the run did, in order, with the seconds each step took, as every module of this collection returns them.
    - In check mode, the steps a real run would take, without durations.
  returned: always
  type: list
  elements: dict
  contains:
    step: {description: What was done (or would be)., type: str}
    duration_s: {description: Seconds it took; not in check mode., type: float}
  sample: [{"step": "verify checksums", "duration_s": 0.8}]
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
import re
import time
from typing import Any, Callable

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    BackupSet,
    BackupSetError,
    find_set,
    open_set_path,
    open_storage,
)
from ansible_collections.runbook.stack.plugins.module_utils._common.process import Interrupted, terminate_on_signals
from ansible_collections.runbook.stack.plugins.module_utils._common.steps import Steps
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
    databases_oldest_first,
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
    already keeps a database under that name (it is never dropped or overwritten). The number goes on
    after the highest one taken, also when retention dropped lower ones: the highest is the newest."""
    suffix = f"_pre_restore_{backup_id.lower()}"
    first = derived_name(name, suffix)
    highest = max((n for n in range(2, 100) if taken(derived_name(name, f"{suffix}_{n}"))), default=0)
    if not highest:
        return derived_name(name, f"{suffix}_2") if taken(first) else first
    if highest == 99:
        last = derived_name(name, f"{suffix}_99")
        raise PostgresError(f"database {last} exists, the last name for a kept copy; drop the ones no longer needed")
    return derived_name(name, f"{suffix}_{highest + 1}")


_ID = r"[0-9]{8}t[0-9]{6}z"  # a backup id as the derived names spell it (lower case)
_KEPT_RE = re.compile(rf"_pre_restore_{_ID}(?:_[0-9]+)?\Z")
_TEMP_RE = re.compile(rf"_restore_{_ID}\Z")


def kept_copies(name: str, databases: list[str]) -> list[str]:
    """The databases (in the given order) that a swap restore of ``name`` kept: exactly
    ``<name>_pre_restore_<id>`` or ``..._<N>``. A name cut to 63 bytes is never matched (two long
    names could share it), so copies of such databases are never dropped automatically."""
    return [db for db in databases if (m := _KEPT_RE.search(db)) and db == name + m.group(0)]


def scratch_copies(name: str, databases: list[str]) -> list[str]:
    """The temporary databases ``<name>_restore_<id>`` that an interrupted restore of ``name`` left.

    They only ever hold data restored from a backup set: the live database never carries such a
    name (a restore renames it to ``<name>_pre_restore_<id>``). A name that is also the kept copy of
    another database (``<name>`` itself ending in ``_pre``) is not one of them."""
    return [
        db
        for db in databases
        if (m := _TEMP_RE.search(db)) and db == derived_name(name, m.group(0)) and not _KEPT_RE.search(db)
    ]


def retention_drops(kept: list[str], just_kept: str | None, limit: int) -> list[str]:
    """The oldest kept copies (``kept`` is oldest first) beyond ``limit``, counting ``just_kept``,
    which is never among them; ``limit`` 0 keeps every copy."""
    if limit <= 0:
        return []
    others = [db for db in kept if db != just_kept]
    room = limit - (1 if just_kept else 0)
    return others[: max(0, len(others) - room)]


def databases_note(name: str, databases: list[str]) -> str:
    """What the failure message says of the databases earlier restores of ``name`` left."""
    kept, scratch = kept_copies(name, databases), scratch_copies(name, databases)
    notes = []
    if kept and name not in databases:
        notes.append(
            f"database {name!r} does not exist: a restore stopped during its swap; the database it replaced "
            f"is kept as {kept[-1]}"
        )
    if kept:
        notes.append(f"databases kept by earlier restores of {name!r}: {', '.join(kept)}")
    if scratch:
        notes.append(
            f"left over by an interrupted restore (restored from a backup, never live data, safe to drop): "
            f"{', '.join(scratch)}"
        )
    return "; ".join(notes)


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


def plan(params: dict[str, Any], bset: BackupSet, name: str, verified: int, exists: bool, databases: list[str]) -> dict:
    strategy = params["strategy"]
    temp = temp_name(name, bset.backup_id)
    prev = previous_name(name, bset.backup_id, lambda candidate: candidate in databases)
    scratch = scratch_copies(name, databases)
    steps = [f"drop leftover {db}" for db in scratch]
    just_kept = None
    if strategy == "swap":
        steps += [f"create database {temp}", f"pg_restore into {temp}", "apply database settings", "verify row counts"]
        if exists:
            steps.append(f"stop sessions on {name} and rename it to {prev}")
        steps.append(f"rename {temp} to {name}")
        if exists and not params["keep_previous"]:
            steps.append(f"drop database {prev}")
        just_kept = prev if exists and params["keep_previous"] else None
    else:
        steps += ([f"stop sessions on {name} and drop it"] if exists else []) + [
            f"create database {name}",
            f"pg_restore into {name}",
            "apply database settings",
            "verify row counts",
        ]
    # the copy kept now is the live database renamed: it keeps its place in the creation order
    copies = kept_copies(name, [just_kept if just_kept and db == name else db for db in databases])
    # no retention when the target was missing: the newest copy may then hold what a stopped swap replaced
    old = retention_drops(copies, just_kept, params["keep_previous_count"] if exists else 0)
    steps += [f"drop database {db} (keep_previous_count)" for db in old]
    return {
        "backup_id": bset.backup_id,
        "path": bset.location,
        "target": name,
        "strategy": strategy,
        "temporary_database": temp if strategy == "swap" else None,
        "previous_database": just_kept,
        "target_existed": exists,
        "verified_files": verified,
        "tables": dict(bset.manifest["facts"]["tables"]),
        "dropped": scratch + old,
        "kept_copies": [db for db in copies if db not in old],
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
        try:
            num, _version = server_version(admin)
            pg_restore, _tool_version = find_tool(
                "pg_restore", max(num // 10000, _dump_major(manifest)), params["pg_bin_dir"]
            )
            missing = missing_roles(admin, manifest["facts"]["database"])
            if missing:
                raise PostgresError(
                    "the database needs roles that do not exist on this server, nothing was changed: "
                    + ", ".join(missing)
                )
            databases = databases_oldest_first(admin)
            exists = name in databases
            temp = temp_name(name, bset.backup_id)
            if params["strategy"] == "swap" and temp in databases and temp not in scratch_copies(name, databases):
                raise PostgresError(
                    f"database {temp} exists and is named like a copy that a restore of another database kept; "
                    "nothing was changed: rename or drop it"
                )
            if check_mode:
                result = plan(params, bset, name, verified, exists, databases)
                target = result["temporary_database"] or name
                commands.append(shown_command(pg_restore_argv(pg_restore, jobs, target, bset)))
                return {"changed": True, "restore": result, "steps": result["steps"], "commands": commands}

            dropped = scratch_copies(name, databases)
            for db in dropped:
                # left behind by an interrupted restore: never swapped in, restored data only
                with steps.step(f"drop leftover {db}"):
                    drop_database(admin, db)
            if params["strategy"] == "swap":
                restored = _swap_restore(info, admin, params, bset, name, exists, pg_restore, jobs, steps, commands)
            else:
                restored = _in_place_restore(info, admin, bset, name, exists, pg_restore, jobs, steps, commands)
            restored["dropped"] = dropped + _apply_retention(
                admin, name, restored["previous_database"], params["keep_previous_count"] if exists else 0, steps
            )
            restored["kept_copies"] = kept_copies(name, databases_oldest_first(admin))
        except (PostgresError, BackupSetError, Interrupted, *DB_ERRORS) as exc:
            raise _with_note(exc, _databases_note_or_empty(admin, name)) from None
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
    return {"changed": True, "restore": restored, "steps": restored["steps"], "commands": commands}


def _apply_retention(admin: Any, name: str, just_kept: str | None, limit: int, steps: Steps) -> list[str]:
    """Drop the oldest kept copies of name beyond limit (never just_kept); return their names."""
    old = retention_drops(kept_copies(name, databases_oldest_first(admin)), just_kept, limit)
    for db in old:
        with steps.step(f"drop database {db} (keep_previous_count)"):
            drop_database(admin, db)
    return old


def _databases_note_or_empty(admin: Any, name: str) -> str:
    try:
        return databases_note(name, databases_oldest_first(admin))
    except DB_ERRORS:  # the connection may be what failed: the note is a courtesy
        return ""


def _with_note(exc: BaseException, note: str) -> BaseException:
    """exc with the note on the databases earlier restores left appended to its message."""
    text = error_text(exc) if isinstance(exc, DB_ERRORS) else str(exc)
    if not note:
        return exc if not isinstance(exc, DB_ERRORS) else PostgresError(text)
    if isinstance(exc, (BackupSetError, Interrupted)):
        return type(exc)(f"{text}; {note}")
    return PostgresError(f"{text}; {note}")


def _dump_major(manifest: dict[str, Any]) -> int:
    num = manifest.get("server", {}).get("version_num") or 0
    return int(num) // 10000


def _swap_restore(info, admin, params, bset, name, exists, pg_restore, jobs, steps, commands) -> dict[str, Any]:
    temp = temp_name(name, bset.backup_id)
    taken = set(databases_oldest_first(admin))
    prev = previous_name(name, bset.backup_id, taken.__contains__)
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
        keep_previous_count=dict(type="int", default=2),
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
    if p["keep_previous_count"] < 0:
        module.fail_json(msg=f"keep_previous_count must be 0 (keep every copy) or more, got {p['keep_previous_count']}")
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
