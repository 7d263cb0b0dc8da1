#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: postgresql_backup
short_description: Back up one PostgreSQL database into a verified backup set
version_added: 0.1.0
description:
  - Dumps one database with C(pg_dump --format=directory --jobs=N) into a new backup set
    C(<dest>/postgresql/<database>/<backup_id>/) and seals it with a C(manifest.json) that lists every
    file with its size and SHA-256, the exact row count of every table, and the database-level
    properties that C(pg_dump) leaves out (owner, encoding, locale, ACL, comment, connection limit,
    C(ALTER DATABASE ... SET) and C(ALTER ROLE ... IN DATABASE ... SET) settings).
  - Row counts are taken inside the same snapshot as the dump (the module exports a snapshot and
    hands it to C(pg_dump --snapshot)), so they describe exactly what was dumped, and they are counted
    while C(pg_dump) runs.
  - If C(pg_dump) fails in any way, or the module is interrupted, the partial directory is removed and
    no manifest is written; a directory without a valid manifest is never treated as a backup.
  - The backup-set format is described in C(docs/backup-format.md) of the collection.
author:
  - runbook.stack maintainers (@runbook-stack)
extends_documentation_fragment:
  - runbook.stack.postgresql
  - runbook.stack._attributes
  - runbook.stack._attributes.operation
  - runbook.stack._attributes.actiongroup_postgresql
attributes:
  check_mode:
    details: Connects, lists the tables and their estimated sizes and checks that O(dest) is writable; writes nothing.
  idempotent:
    details: Every real run creates a new backup set.
options:
  name:
    description: Name of the database to back up.
    type: str
    required: true
    aliases: [db]
  dest:
    description:
      - Backup root directory. The set is created at C(<dest>/postgresql/<name>/<backup_id>/).
      - It (and any missing parent), C(<kind>) and C(<source>) below it are created with mode 0700 when
        missing; directories that already exist keep their mode.
      - Everything the module and C(pg_dump) write is created with mode 0600 (directories 0700) from the
        start (umask 0077), so a backup killed mid-way leaves no file that other users can read.
    type: path
    required: true
    aliases: [backup_root]
  jobs:
    description:
      - Number of parallel C(pg_dump) jobs (C(--jobs)). Defaults to min(4, number of CPUs).
      - Each job holds one extra connection to the server.
    type: int
  compress:
    description:
      - Compression level 0-9 passed to C(pg_dump --compress). 0 disables compression.
      - When not set, C(pg_dump)'s own default (gzip, default level) is used.
    type: int
  pg_bin_dir:
    description:
      - Directory holding C(pg_dump). By default the newest suitable one is found in the versioned
        PostgreSQL directories (C(/usr/lib/postgresql/<major>/bin), C(/usr/pgsql-<major>/bin)) or on E(PATH).
    type: path
  timeout:
    description: Seconds after which C(pg_dump) is stopped and the backup fails. 0 means no limit.
    type: int
    default: 0
seealso:
  - module: runbook.stack.postgresql_restore
  - module: runbook.stack.backup_info
  - module: runbook.stack.backup_prune
requirements:
  - psycopg2
  - pg_dump of the server's major version or newer
"""

EXAMPLES = r"""
- name: Back up the application database
  runbook.stack.postgresql_backup:
    name: app
    dest: /var/backups/runbook
    jobs: 4
    login_host: db1.internal
    login_user: backup
    login_password: "{{ vault_postgresql_backup_password }}"
  register: pg_backup

- name: Show where it went
  ansible.builtin.debug:
    msg: "{{ pg_backup.backup.id }} -> {{ pg_backup.backup.path }} ({{ pg_backup.backup.size_bytes }} bytes)"

- name: Set the connection once for every PostgreSQL module of the play
  module_defaults:
    group/runbook.stack.postgresql:
      login_host: 127.0.0.1
      login_port: 5432
      login_user: postgres
  block:
    - name: Nightly dump, lighter compression for speed
      runbook.stack.postgresql_backup:
        db: app
        dest: /var/backups/runbook
        compress: 1
"""

RETURN = r"""
backup:
  description: The backup set that was written (in check mode, what would be backed up).
  returned: always
  type: dict
  contains:
    id:
      description:
        - Backup id (UTC start time). Not returned in check mode.
        - Deprecated, use C(backup_set.backup_id); to be removed in runbook.stack 2.0.0.
      type: str
      sample: 20261122T020000Z
    path:
      description:
        - Directory of the set (in check mode, its parent).
        - Deprecated, use C(backup_set.location); to be removed in runbook.stack 2.0.0.
      type: str
      sample: /var/backups/runbook/postgresql/app/20261122T020000Z
    size_bytes:
      description: Total size of the files of the set (in check mode, the database size on the server).
      type: int
      sample: 52428800
    duration_s:
      description: Seconds from start to sealed manifest.
      type: float
      sample: 12.41
    tables:
      description: Row count per table (C(schema.table)); in check mode the planner's estimate.
      type: dict
      sample: {"public.orders": 120000, "public.customers": 5000}
    manifest:
      description: The full manifest as written. Not returned in check mode.
      type: dict
    steps:
      description:
        - Phases of the backup with their durations in seconds. The row counts run while C(pg_dump) runs,
          so their time is part of the C(pg_dump) step. Not returned in check mode.
        - Deprecated, use C(steps); to be removed in runbook.stack 2.0.0.
      type: list
      elements: dict
      sample: [{"step": "pg_dump (row counts taken alongside)", "duration_s": 17.9}]
commands:
  description: Commands that ran (or would run), passwords never included (they travel in the environment).
  returned: always
  type: list
  elements: str
  sample:
    - "/usr/lib/postgresql/15/bin/pg_dump --format=directory --jobs=4 --no-password
      --file=/var/backups/runbook/postgresql/app/20261122T020000Z/data --snapshot=00000003-0000001B-1"
steps:
  description:
    - What the run did, in order, with the seconds each step took. The row counts run while C(pg_dump) runs,
      so their time is part of the C(pg_dump) step. Empty in check mode.
  returned: always
  type: list
  elements: dict
  contains:
    step: {description: What was done., type: str}
    duration_s: {description: Seconds it took., type: float}
  sample: [{"step": "pg_dump (row counts taken alongside)", "duration_s": 17.9}]
server_version:
  description: Server version.
  returned: always
  type: str
  sample: "15.18"
duration_s:
  description: Wall-clock seconds the module spent.
  returned: always
  type: float
  sample: 12.9
backup_set:
  description:
    - The set written, in the shape every module that writes sets returns; its C(kind), C(source), C(backup_id)
      and C(root) name it as a component of M(runbook.stack.dr_set).
    - In check mode, what only a real run knows (a new set's id, location, times and size) is null.
  returned: success
  type: dict
  contains:
    kind: {description: Kind of the set., type: str, sample: postgresql}
    source: {description: Its source name., type: str, sample: app}
    backup_id: {description: Its backup id (UTC start time)., type: str, sample: 20261122T020000Z}
    root: {description: "Its backup root, a local directory or C(s3://bucket/prefix).", type: str, sample: /var/backups/runbook}
    location: {description: Its directory or S3 URL., type: str, sample: /var/backups/runbook/postgresql/app/20261122T020000Z}
    started: {description: When the backup started (UTC)., type: str, sample: "2026-11-22T02:00:00.412Z"}
    finished: {description: When it finished (UTC)., type: str, sample: "2026-11-22T02:00:12.905Z"}
    size_bytes: {description: "Bytes of its files (of an S3 snapshot set, its objects).", type: int, sample: 52428800}
    file_count: {description: "Its files (of an S3 snapshot set, its objects), the manifest not counted.", type: int, sample: 42}
"""

import os
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    BackupSetError,
    LocalSetWriter,
    check_dest_writable,
    private_umask,
    set_rel,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.contract import set_reference
from ansible_collections.runbook.stack.plugins.module_utils._common.process import (
    BoundedChild,
    ChildTimeout,
    Interrupted,
    terminate_on_signals,
)
from ansible_collections.runbook.stack.plugins.module_utils._postgresql import (
    DB_ERRORS,
    HAS_PSYCOPG2,
    PSYCOPG2_IMPORT_ERROR,
    USER_RELATION_FILTER,
    ConnInfo,
    PostgresError,
    conn_info,
    connect,
    count_rows,
    database_facts,
    default_jobs,
    error_text,
    find_tool,
    libpq_env,
    postgres_argument_spec,
    query,
    server_version,
    shown_command,
    tail,
    user_tables,
)

KIND = "postgresql"


def estimated_tables(conn: Any) -> dict[str, int]:
    rows = query(
        conn,
        f"""SELECT n.nspname || '.' || c.relname, GREATEST(c.reltuples, 0)::bigint
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind = 'r' AND {USER_RELATION_FILTER} ORDER BY 1""",
    )
    return {r[0]: int(r[1]) for r in rows}


def pg_dump_argv(pg_dump: str, out_dir: str, jobs: int, compress: int | None, snapshot: str | None) -> list[str]:
    argv = [pg_dump, "--format=directory", f"--jobs={jobs}", "--no-password", f"--file={out_dir}"]
    if compress is not None:
        argv.append(f"--compress={compress}")
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    # The database name travels in PGDATABASE: a name containing '=' would be read as a conninfo string.
    return argv


def source_identity(conn: Any, info: ConnInfo, name: str) -> dict[str, Any]:
    sysid = query(conn, "SELECT system_identifier::text FROM pg_control_system()")[0][0]
    return {"host": info.host, "port": info.port, "database": name, "system_identifier": sysid}


def plan_backup(info: ConnInfo, name: str, dest: str, jobs: int, compress: int | None, bin_dir: str | None) -> dict:
    conn = connect(info, dbname=name)
    try:
        num, version = server_version(conn)
        pg_dump, _version = find_tool("pg_dump", num // 10000, bin_dir)
        facts = database_facts(conn, name)
        tables = estimated_tables(conn)
    finally:
        conn.close()
    check_dest_writable(dest)
    parent = os.path.join(os.path.abspath(dest), os.path.dirname(set_rel(KIND, name, "x")))
    argv = pg_dump_argv(pg_dump, os.path.join(parent, "<backup_id>", "data"), jobs, compress, "<snapshot>")
    return {
        "changed": True,
        "backup": {"path": parent, "size_bytes": int(facts["size_bytes"]), "tables": tables},
        "backup_set": set_reference(dest, kind=KIND, source=name),
        "steps": [],
        "commands": [shown_command(argv)],
        "server_version": version,
    }


def run_backup(
    info: ConnInfo, name: str, dest: str, jobs: int, compress: int | None, bin_dir: str | None, timeout: int
) -> dict:
    conn = connect(info, dbname=name)
    snap_conn = None
    writer = None
    try:
        num, version = server_version(conn)
        pg_dump, pg_dump_version = find_tool("pg_dump", num // 10000, bin_dir)
        facts = database_facts(conn, name)
        identity = source_identity(conn, info, name)
        conn.close()

        check_dest_writable(dest)
        writer = LocalSetWriter(dest, KIND, name).create()
        t_dump = time.monotonic()

        # One exported snapshot for pg_dump and for our row counts: the counts describe the dump exactly.
        snap_conn = connect(info, dbname=name, autocommit=False)
        snap_conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        snapshot = query(snap_conn, "SELECT pg_export_snapshot()")[0][0]

        argv = pg_dump_argv(pg_dump, os.path.join(writer.path, "data"), jobs, compress, snapshot)
        # a child, not run_command: pg_dump runs while this process counts rows in the exported snapshot
        with BoundedChild(argv, libpq_env(info, name), capture="stderr") as child:
            tables = count_rows(snap_conn, user_tables(snap_conn))
            counted_s = time.monotonic() - t_dump
            try:
                rc = child.wait(timeout or None)
            except ChildTimeout:
                raise PostgresError(f"pg_dump did not finish within {timeout} s") from None
            stderr = child.output(64 * 1024)
        if rc != 0:
            raise PostgresError(f"pg_dump exited {rc}: {tail(stderr) or 'no output'}")
        snap_conn.rollback()
        snap_conn.close()
        snap_conn = None

        dumped_s = time.monotonic() - t_dump
        t_seal = time.monotonic()
        manifest = writer.seal(
            hash_workers=max(2, jobs),
            source_identity=identity,
            tool={
                "name": "pg_dump",
                "version": pg_dump_version,
                "format": "directory",
                "jobs": jobs,
                "compress": compress,
            },
            server={"version": version, "version_num": num},
            facts={"database": facts, "tables": tables, "dump_format": "directory", "dump_dir": "data"},
        )
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    finally:
        if snap_conn is not None:
            snap_conn.close()
        if not conn.closed:
            conn.close()
    steps = [
        {"step": "pg_dump (row counts taken alongside)", "duration_s": round(dumped_s, 3)},
        {"step": "row counts in the dump snapshot", "duration_s": round(counted_s, 3)},
        {"step": "fsync and SHA-256 of every file, write manifest", "duration_s": round(time.monotonic() - t_seal, 3)},
    ]
    return {
        "changed": True,
        "backup": {
            "id": manifest["backup_id"],
            "path": writer.path,
            "size_bytes": manifest["total_size_bytes"],
            "duration_s": manifest["duration_s"],
            "tables": tables,
            "manifest": manifest,
            "steps": steps,
        },
        "steps": steps,
        "backup_set": set_reference(dest, manifest, location=writer.path),
        "commands": [shown_command(argv)],
        "server_version": version,
    }


def main() -> None:
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        name=dict(type="str", required=True, aliases=["db"]),
        dest=dict(type="path", required=True, aliases=["backup_root"]),
        jobs=dict(type="int"),
        compress=dict(type="int"),
        pg_bin_dir=dict(type="path"),
        timeout=dict(type="int", default=0),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)

    p = module.params
    name = p["name"]
    jobs = default_jobs() if p["jobs"] is None else p["jobs"]
    if jobs < 1:
        module.fail_json(msg=f"jobs must be 1 or more, got {jobs}")
    if p["compress"] is not None and not 0 <= p["compress"] <= 9:
        module.fail_json(msg=f"compress must be a level from 0 to 9, got {p['compress']}")
    if p["timeout"] < 0:
        module.fail_json(msg=f"timeout must be 0 (no limit) or a positive number of seconds, got {p['timeout']}")
    if not name:
        module.fail_json(msg="name must be a database name, got an empty string")

    started = time.monotonic()
    try:
        info = conn_info(p)
        if module.check_mode:
            result = plan_backup(info, name, p["dest"], jobs, p["compress"], p["pg_bin_dir"])
        else:
            with terminate_on_signals(), private_umask():  # 0600/0700 also if killed mid-way
                result = run_backup(info, name, p["dest"], jobs, p["compress"], p["pg_bin_dir"], p["timeout"])
    except (PostgresError, BackupSetError) as exc:
        module.fail_json(msg=f"cannot back up database {name!r}: {exc}")
    except DB_ERRORS as exc:
        module.fail_json(msg=f"cannot back up database {name!r}: {error_text(exc)}")
    except OSError as exc:
        module.fail_json(msg=f"cannot back up database {name!r} to {p['dest']}: {exc.strerror or exc}")
    except Interrupted as exc:
        module.fail_json(msg=f"backup of database {name!r} {exc}; the partial backup set was removed")
    result["duration_s"] = round(time.monotonic() - started, 3)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
