"""Benchmark: postgresql_backup / postgresql_restore against raw pg_dump / pg_restore.

Run with ``make bench`` (starts the lab first) or ``.venv/bin/python bench/run.py [--quick]``.
What is measured and why is in bench/README.md; the figures go to bench/RESULTS-postgresql.md (merged into bench/RESULTS.md) and
bench/results.json (a ``--quick`` smoke run writes them under bench/work/ instead).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg2
from common import (  # bench/ is sys.path[0] when a benchmark script runs
    BENCH,
    PYTHON,
    WORK,
    ansible_startup,
    clean_env,
    lab_env,
    log,
    median,
    run_module,
    timed_run,
)
from psycopg2 import sql
from report import compose  # bench/ is sys.path[0] when a benchmark script runs

JOBS = 2
TARGETS = {"backup": 1.10, "restore": 1.25}
DATASET_VERSION = 1
# Rows per MB of target size, calibrated so that pg_database_size lands near --size-mb.
ROWS_PER_MB = {"bench_accounts": 513, "bench_documents": 342, "bench_events": 1672}


# --- lab connection -----------------------------------------------------------------------------


class Lab:
    def __init__(self, env: dict[str, str]) -> None:
        self.host = env["PGHOST"]
        self.port = int(env["PGPORT"])
        self.user = env["PGUSER"]
        self.password = env["PGPASSWORD"]

    def connect(self, dbname: str = "postgres") -> Any:
        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password, dbname=dbname)
        conn.autocommit = True
        return conn

    def module_login(self) -> dict[str, Any]:
        return {
            "login_host": self.host,
            "login_port": self.port,
            "login_user": self.user,
            "login_password": self.password,
        }

    def tool_env(self) -> dict[str, str]:
        env = clean_env()
        env.update(PGPASSWORD=self.password, PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.user)
        return env


def scalar(conn: Any, statement: Any, args: Any = None) -> Any:
    with conn.cursor() as cur:
        cur.execute(statement, args)
        return cur.fetchone()[0]


def execute(conn: Any, statement: Any, args: Any = None) -> None:
    with conn.cursor() as cur:
        cur.execute(statement, args)


def drop_db(admin: Any, name: str) -> None:
    execute(admin, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def drop_like(admin: Any, prefix: str) -> list[str]:
    """Drop ``prefix`` and every ``prefix_*`` database (leftovers of the module's swap restore)."""
    with admin.cursor() as cur:
        cur.execute(
            "SELECT datname FROM pg_database WHERE datname = %s OR starts_with(datname, %s)",
            [prefix, prefix + "_"],
        )
        names = [r[0] for r in cur.fetchall()]
    for name in names:
        drop_db(admin, name)
    return names


# --- dataset ------------------------------------------------------------------------------------


def row_counts(size_mb: int) -> dict[str, int]:
    return {t: max(1000, per_mb * size_mb) for t, per_mb in ROWS_PER_MB.items()}


def marker(size_mb: int) -> str:
    """Database comment identifying a finished dataset build (any change of definition rebuilds it)."""
    rows = ",".join(f"{t}={n}" for t, n in row_counts(size_mb).items())
    return f"runbook.stack bench dataset v{DATASET_VERSION} size_mb={size_mb} {rows}"


def sha_blocks(expr: str, count: int) -> str:
    """SQL for ``count`` concatenated SHA-256 digests of ``expr`` salted 1..count (32*count random-looking bytes)."""
    return " || ".join(f"sha256(int8send({expr}) || '\\x{k:02x}'::bytea)" for k in range(1, count + 1))


def dataset_sql(size_mb: int) -> list[tuple[str, str]]:
    """(label, statement) list building the dataset set-based; deterministic (hashes of the row number)."""
    n = row_counts(size_mb)
    body = " || ".join(f"encode(sha256(int8send(g) || '\\x{k:02x}'::bytea), 'hex')" for k in range(1, 9))
    steps = [
        (
            "create tables",
            """
            CREATE TABLE bench_accounts (
                id integer NOT NULL, email text NOT NULL, name text NOT NULL,
                balance_cents bigint NOT NULL, created_at timestamptz NOT NULL);
            CREATE TABLE bench_documents (
                id bigint NOT NULL, title text NOT NULL, body text NOT NULL);
            CREATE TABLE bench_events (
                id bigint NOT NULL, account_id integer NOT NULL, kind smallint NOT NULL,
                created_at timestamptz NOT NULL, payload bytea NOT NULL);
            """,
        ),
        (
            f"bench_accounts ({n['bench_accounts']} rows)",
            f"""
            INSERT INTO bench_accounts
            SELECT g, 'u' || left(md5(g::text), 20) || '@example.com', md5('name' || g),
                   (hashint8(g)::bigint & 2147483647), '2020-01-01'::timestamptz + g * interval '17 s'
            FROM generate_series(1, {n["bench_accounts"]}) AS g
            """,
        ),
        (
            f"bench_documents ({n['bench_documents']} rows)",
            f"""
            INSERT INTO bench_documents
            SELECT g, md5('title' || g), {body}
            FROM generate_series(1, {n["bench_documents"]}) AS g
            """,
        ),
    ]
    chunk = 250_000
    total = n["bench_events"]
    for lo in range(1, total + 1, chunk):
        hi = min(total, lo + chunk - 1)
        steps.append(
            (
                f"bench_events rows {lo}-{hi} of {total}",
                f"""
                INSERT INTO bench_events
                SELECT g, (hashint8(g)::bigint & 2147483647) % {n["bench_accounts"]} + 1, (g % 7)::smallint,
                       '2024-01-01'::timestamptz + g * interval '937 ms', {sha_blocks("g", 8)}
                FROM generate_series({lo}, {hi}) AS g
                """,
            )
        )
    steps += [
        (
            "indexes",
            """
            SET maintenance_work_mem = '256MB';
            ALTER TABLE bench_accounts ADD PRIMARY KEY (id);
            CREATE UNIQUE INDEX bench_accounts_email ON bench_accounts (email);
            ALTER TABLE bench_documents ADD PRIMARY KEY (id);
            CREATE INDEX bench_documents_title ON bench_documents (title);
            ALTER TABLE bench_events ADD PRIMARY KEY (id);
            CREATE INDEX bench_events_account ON bench_events (account_id, created_at);
            CREATE INDEX bench_events_created ON bench_events (created_at);
            ALTER TABLE bench_events ADD CONSTRAINT bench_events_account_fk
                FOREIGN KEY (account_id) REFERENCES bench_accounts (id);
            """,
        ),
        ("vacuum (freeze, analyze)", "VACUUM (FREEZE, ANALYZE)"),
    ]
    return steps


def ensure_dataset(lab: Lab, db: str, size_mb: int) -> dict[str, Any]:
    """Create ``db`` unless it exists with our marker and a size within 20% of ``size_mb``."""
    admin = lab.connect()
    try:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT shobj_description(oid, 'pg_database'), pg_database_size(oid) FROM pg_database"
                " WHERE datname = %s",
                [db],
            )
            row = cur.fetchone()
        wanted = size_mb * 1024 * 1024
        if row and row[0] == marker(size_mb) and 0.8 * wanted <= row[1] <= 1.2 * wanted:
            log(f"dataset: reusing {db} ({row[1] / 2**20:.0f} MB)")
            return {"built": False, "build_s": None}
        if row:
            log(f"dataset: {db} exists without the expected marker/size, rebuilding it")
        drop_db(admin, db)
        execute(admin, sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(db)))
        t0 = time.perf_counter()
        conn = lab.connect(db)
        try:
            for label, statement in dataset_sql(size_mb):
                t1 = time.perf_counter()
                execute(conn, statement)
                log(f"dataset: {label}: {time.perf_counter() - t1:.1f} s")
        finally:
            conn.close()
        execute(admin, "CHECKPOINT")
        # The marker goes on last: an interrupted build is never mistaken for a finished one.
        execute(admin, sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(db), sql.Literal(marker(size_mb))))
        build_s = round(time.perf_counter() - t0, 1)
        size = scalar(admin, "SELECT pg_database_size(%s)", [db])
        log(f"dataset: built {db} in {build_s} s, {size / 2**20:.0f} MB")
        return {"built": True, "build_s": build_s}
    finally:
        admin.close()


def describe_dataset(lab: Lab, db: str) -> dict[str, Any]:
    conn = lab.connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute(
                """SELECT c.relname, pg_table_size(c.oid), pg_indexes_size(c.oid),
                          (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid)
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 1"""
            )
            rel = cur.fetchall()
            tables = []
            for name, table_bytes, index_bytes, n_indexes in rel:
                cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name)))
                tables.append(
                    {
                        "table": name,
                        "rows": cur.fetchone()[0],
                        "table_mb": round(table_bytes / 2**20, 1),
                        "indexes": n_indexes,
                        "indexes_mb": round(index_bytes / 2**20, 1),
                    }
                )
        size = scalar(conn, "SELECT pg_database_size(current_database())")
    finally:
        conn.close()
    return {"database": db, "size_mb": round(size / 2**20, 1), "tables": tables}


# --- running things -----------------------------------------------------------------------------


def settle(lab: Lab, max_wait_s: float = 120) -> dict[str, Any]:
    """Before each timed operation: wait until no autovacuum worker runs (a freshly restored database
    gets vacuumed and analyzed), then flush dirty data (CHECKPOINT + sync), so that neither side pays for
    the previous one's work. Notes what else is running: the machine is shared."""
    admin = lab.connect()
    try:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < max_wait_s and scalar(
            admin, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
        ):
            time.sleep(0.5)
        waited = time.perf_counter() - t0
        execute(admin, "CHECKPOINT")
        os.sync()
        others = scalar(
            admin,
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()"
            " AND backend_type IN ('client backend', 'autovacuum worker')",
        )
    finally:
        admin.close()
    return {
        "load1": round(os.getloadavg()[0], 2),
        "other_active_sessions": int(others),
        "autovacuum_wait_s": round(waited, 1),
    }


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def hash_tree(path: Path, workers: int) -> float:
    """Seconds to SHA-256 every file under path with ``workers`` threads (what the module's seal and
    verify steps do); run outside the timed region, as a profile estimate."""

    def one(p: Path) -> None:
        h = hashlib.sha256()
        with open(p, "rb", buffering=0) as fh:
            while chunk := fh.read(4 * 1024 * 1024):
                h.update(chunk)

    files = [p for p in path.rglob("*") if p.is_file()]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, files))
    return time.perf_counter() - t0


def count_all(lab: Lab, db: str) -> float:
    """Seconds to count(*) every table of db on one connection (what the backup does during pg_dump)."""
    conn = lab.connect(db)
    try:
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace")
            for (name,) in cur.fetchall():
                cur.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(name)))
                cur.fetchone()
        return time.perf_counter() - t0
    finally:
        conn.close()


# --- one round ----------------------------------------------------------------------------------


class Round:
    def __init__(self, lab: Lab, bin_dir: Path, db: str, index: int) -> None:
        self.lab = lab
        self.bin_dir = bin_dir
        self.db = db
        self.index = index
        self.dir = WORK / f"round-{index}"
        self.restored = f"{db}_restored"
        self.raw_target = f"{db}_raw"
        self.data: dict[str, Any] = {"round": index}
        self.set_path: str | None = None

    def module_backup(self) -> None:
        dest = self.dir / "module"
        context = settle(self.lab)
        wall, result = run_module(
            "postgresql_backup", {**self.lab.module_login(), "name": self.db, "dest": str(dest), "jobs": JOBS}
        )
        backup = result["backup"]
        self.set_path = backup["path"]
        self.data["backup_module"] = {
            "seconds": round(wall, 3),
            "module_duration_s": result["duration_s"],
            "set_duration_s": backup["duration_s"],
            "size_bytes": backup["size_bytes"],
            "set_dir_bytes": dir_size(Path(backup["path"])),
            "files": len(backup["manifest"]["files"]),
            "commands": result["commands"],
            **context,
        }
        log(f"round {self.index}: module backup {wall:.2f} s ({backup['size_bytes'] / 2**20:.0f} MB)")

    def raw_backup(self) -> None:
        out = self.dir / "raw"
        argv = [str(self.bin_dir / "pg_dump"), "-Fd", f"-j{JOBS}", "-f", str(out), "-d", self.db]
        context = settle(self.lab)
        wall, _stdout, _stderr = timed_run(argv, self.lab.tool_env())
        self.data["backup_raw"] = {
            "seconds": round(wall, 3),
            "size_bytes": dir_size(out),
            "command": shlex.join(argv),
            **context,
        }
        log(f"round {self.index}: raw pg_dump {wall:.2f} s ({dir_size(out) / 2**20:.0f} MB)")

    def module_restore(self) -> None:
        admin = self.lab.connect()
        try:
            dropped = drop_like(admin, self.restored)
        finally:
            admin.close()
        context = settle(self.lab)
        wall, result = run_module(
            "postgresql_restore",
            {**self.lab.module_login(), "name": self.restored, "path": self.set_path, "jobs": JOBS},
        )
        restore = result["restore"]
        self.data["restore_module"] = {
            "seconds": round(wall, 3),
            "module_duration_s": result["duration_s"],
            "restore_duration_s": restore["duration_s"],
            "steps": restore["steps"],
            "verified_files": restore["verified_files"],
            "target_existed": restore["target_existed"],
            "dropped_before": dropped,
            "commands": result["commands"],
            "restored_mb": self.size_and_drop(self.restored),
            **context,
        }
        log(f"round {self.index}: module restore {wall:.2f} s")

    def raw_restore(self) -> None:
        admin = self.lab.connect()
        try:
            drop_db(admin, self.raw_target)
            execute(admin, sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(self.raw_target)))
        finally:
            admin.close()
        argv = [str(self.bin_dir / "pg_restore"), f"-j{JOBS}", "-d", self.raw_target, str(self.dir / "raw")]
        context = settle(self.lab)
        wall, _stdout, _stderr = timed_run(argv, self.lab.tool_env())
        self.data["restore_raw"] = {
            "seconds": round(wall, 3),
            "command": shlex.join(argv),
            "restored_mb": self.size_and_drop(self.raw_target),
            **context,
        }
        log(f"round {self.index}: raw pg_restore {wall:.2f} s")

    def size_and_drop(self, name: str) -> float:
        """Size of a restored database (MB), then drop it: the next timed step starts without it (and
        without autovacuum working on it)."""
        admin = self.lab.connect()
        try:
            size = scalar(admin, "SELECT pg_database_size(%s)", [name])
            drop_like(admin, name)
        finally:
            admin.close()
        return round(size / 2**20, 1)

    def profile(self) -> None:
        """Untimed estimates of the module's extra work: hashing the set, counting rows alone."""
        assert self.set_path
        self.data["profile"] = {
            "hash_set_s": round(hash_tree(Path(self.set_path), max(2, JOBS)), 3),
            "count_rows_s": round(count_all(self.lab, self.db), 3),
        }

    def run(self) -> dict[str, Any]:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        module_first = self.index % 2 == 1
        self.data["order"] = "module first" if module_first else "raw first"
        backups = [self.module_backup, self.raw_backup]
        restores = [self.module_restore, self.raw_restore]
        if not module_first:
            backups.reverse()
            restores.reverse()
        for step in (*backups, *restores):
            step()
        self.profile()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.data


# --- report -------------------------------------------------------------------------------------


def machine_facts(lab: Lab, bin_dir: Path) -> dict[str, Any]:
    mem_kb = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    admin = lab.connect()
    try:
        version = scalar(admin, "SHOW server_version")
        settings = {
            k: scalar(admin, f"SHOW {k}")
            for k in ("shared_buffers", "maintenance_work_mem", "max_wal_size", "wal_level", "fsync")
        }
    finally:
        admin.close()
    ansible_version = subprocess.run(
        [str(PYTHON), "-c", "import ansible.release as r; print(r.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "postgresql_server": version,
        "postgresql_settings": settings,
        "pg_dump": subprocess.run(
            [str(bin_dir / "pg_dump"), "--version"], capture_output=True, text=True, check=True
        ).stdout.strip(),
        "python": platform.python_version(),
        "ansible_core": ansible_version,
    }


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    med = {
        key: median([r[key]["seconds"] for r in rounds])
        for key in ("backup_module", "backup_raw", "restore_module", "restore_raw")
    }
    ratios = {}
    for op in ("backup", "restore"):
        ratio = round(med[f"{op}_module"] / med[f"{op}_raw"], 3)
        ratios[op] = {"ratio": ratio, "target": TARGETS[op], "pass": ratio <= TARGETS[op]}
    steps: dict[str, list[float]] = {}
    for r in rounds:
        for s in r["restore_module"]["steps"]:
            steps.setdefault(generic_step(s["step"]), []).append(s["duration_s"])
    return {
        "medians_s": med,
        "ratios": ratios,
        "restore_steps_median_s": {k: median(v) for k, v in steps.items()},
        "backup_breakdown_median_s": {
            "process_wall": med["backup_module"],
            "module_duration_s": median([r["backup_module"]["module_duration_s"] for r in rounds]),
            "set_duration_s": median([r["backup_module"]["set_duration_s"] for r in rounds]),
            "hash_set_estimate": median([r["profile"]["hash_set_s"] for r in rounds]),
            "count_rows_estimate": median([r["profile"]["count_rows_s"] for r in rounds]),
        },
        "restore_breakdown_median_s": {
            "process_wall": med["restore_module"],
            "module_duration_s": median([r["restore_module"]["module_duration_s"] for r in rounds]),
        },
        "restored_median_mb": {
            "module": median([r["restore_module"]["restored_mb"] for r in rounds]),
            "raw": median([r["restore_raw"]["restored_mb"] for r in rounds]),
        },
        "sizes_median_mb": {
            "module_set": round(median([r["backup_module"]["set_dir_bytes"] for r in rounds]) / 2**20, 1),
            "module_dump_files": round(median([r["backup_module"]["size_bytes"] for r in rounds]) / 2**20, 1),
            "raw_dump": round(median([r["backup_raw"]["size_bytes"] for r in rounds]) / 2**20, 1),
        },
    }


def generic_step(label: str) -> str:
    """Step labels name databases (``pg_restore into bench_pg_restored_restore_2026...``): use placeholders."""
    names = {
        "create database": "create database <temp>",
        "pg_restore into": "pg_restore into <temp>",
        "apply database settings": "apply database settings",
        "rename": "rename <temp> to <target>",
        "drop leftover": "drop leftover <temp>",
    }
    for prefix, generic in names.items():
        if label.startswith(prefix):
            return generic
    return label


def render(data: dict[str, Any]) -> str:
    m, ds, s = data["machine"], data["dataset"], data["summary"]
    rounds = data["rounds"]
    lines = [
        "## PostgreSQL: postgresql_backup and postgresql_restore vs pg_dump and pg_restore",
        "",
        f"Generated by `bench/run.py` on {data['date']} ({'quick smoke run' if data['quick'] else 'full run'}); "
        "raw data in `results.json`. How it is measured: [README.md](README.md).",
        "",
        "### Machine",
        "",
        f"- CPU: {m['nproc']} cores ({m['cpu']}), memory {m['memory_gb']} GB, kernel {m['kernel']}",
        f"- PostgreSQL {m['postgresql_server']} (lab, loopback); {m['pg_dump']}; settings: "
        + ", ".join(f"{k}={v}" for k, v in m["postgresql_settings"].items()),
        f"- Python {m['python']}, ansible-core {m['ansible_core']}",
        f"- jobs: {data['jobs']} on both sides; rounds: {len(rounds)}, order alternating; before each timed step: "
        "restored databases dropped, autovacuum idle, CHECKPOINT + sync",
        "",
        "### Dataset",
        "",
        f"Database `{ds['database']}`: {ds['size_mb']} MB (`pg_database_size`), deterministic poorly-compressible "
        "data (SHA-256 digests as bytea and hex text), btree indexes, one foreign key; "
        + (f"built by this run in {ds['build_s']} s." if ds["built"] else "reused from an earlier run."),
        "",
        "| table | rows | table MB | indexes | indexes MB |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {t['table']} | {t['rows']:,} | {t['table_mb']} | {t['indexes']} | {t['indexes_mb']} |" for t in ds["tables"]
    ]
    sizes = s["sizes_median_mb"]
    lines += [
        "",
        f"Dump size (median): module backup set {sizes['module_set']} MB on disk ({sizes['module_dump_files']} MB of "
        f"dump files plus `manifest.json`), raw `pg_dump -Fd` {sizes['raw_dump']} MB; pg_dump's default gzip "
        f"compression on both sides ({sizes['raw_dump'] / ds['size_mb']:.2f} of the database size, indexes included). Restored "
        f"databases (median): module {s['restored_median_mb']['module']} MB, raw {s['restored_median_mb']['raw']} MB.",
        "",
        "### Rounds (seconds, wall clock)",
        "",
        "| round | order | backup: module | backup: raw pg_dump | restore: module | restore: raw pg_restore "
        "| other sessions at start |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    ops = ("backup_module", "backup_raw", "restore_module", "restore_raw")
    for r in rounds:
        others = "/".join(str(r[k]["other_active_sessions"]) for k in ops)
        lines.append(
            f"| {r['round']} | {r['order']} | {r['backup_module']['seconds']:.2f} | {r['backup_raw']['seconds']:.2f} "
            f"| {r['restore_module']['seconds']:.2f} | {r['restore_raw']['seconds']:.2f} | {others} |"
        )
    lines += [
        "",
        "Other sessions: active client or autovacuum backends on the server when each step (in column order) "
        "started; the machine is shared, 0 means none was seen.",
    ]
    med = s["medians_s"]
    lines += [
        "",
        "### Medians and targets",
        "",
        "| operation | module (s) | raw (s) | module / raw | target | result |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for op, raw_name in (("backup", "pg_dump -Fd -j2"), ("restore", "pg_restore -j2")):
        r = s["ratios"][op]
        lines.append(
            f"| {op} (vs `{raw_name}`) | {med[f'{op}_module']:.2f} | {med[f'{op}_raw']:.2f} | {r['ratio']:.3f}x "
            f"| {r['target']:.2f}x | {'PASS' if r['pass'] else 'MISS'} |"
        )
    a = data["ansible_startup_s"]
    bb = s["backup_breakdown_median_s"]
    rb = s["restore_breakdown_median_s"]
    spread = ", ".join(
        f"{k.replace('_', ' ')} {max(v) / min(v):.2f}" for k, v in ((k, [r[k]["seconds"] for r in rounds]) for k in ops)
    )
    lines += [
        "",
        f"Round-to-round spread (slowest / fastest): {spread}. A ratio closer to its target than this spread "
        "is not a firm verdict: rerun.",
        "",
        f"Module times are the module process's wall clock (what the operator waits for once Ansible has started "
        f"it); raw times are the client tool's. Ansible's own start-up, measured separately as "
        f"`ansible localhost -m ansible.builtin.ping` (local connection), is **{median(a):.2f} s** "
        f"(median of {', '.join(f'{x:.2f}' for x in a)}) and comes on top of any playbook run; it is not in the figures above.",
        "",
        "### Where the module spends its time (medians)",
        "",
        "Backup (`postgresql_backup`, jobs=2):",
        "",
        f"- process wall clock {bb['process_wall']:.2f} s, of which the module's own `duration_s` {bb['module_duration_s']:.2f} s "
        f"(the rest, {bb['process_wall'] - bb['module_duration_s']:.2f} s, is interpreter start and imports)",
        f"- set creation to sealed manifest (`backup.duration_s`: pg_dump with row counts alongside, then fsync and "
        f"SHA-256 of every file) {bb['set_duration_s']:.2f} s vs raw pg_dump {med['backup_raw']:.2f} s",
        f"- untimed estimates: SHA-256 of the set with 2 threads {bb['hash_set_estimate']:.2f} s (page cache warm); "
        f"`count(*)` of every table alone {bb['count_rows_estimate']:.2f} s (runs concurrently with pg_dump in the module)",
        "",
        "Restore (`postgresql_restore`, strategy swap, jobs=2; target absent, so the swap is one rename):",
        "",
        "| step | median s |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {v:.2f} |" for k, v in s["restore_steps_median_s"].items()]
    lines += [
        f"| *module `duration_s`* | {rb['module_duration_s']:.2f} |",
        f"| *process wall clock* | {rb['process_wall']:.2f} |",
        "",
    ]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500, help="dataset size (pg_database_size), default 500")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds, default 3")
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 MB, 1 round, results under bench/work/")
    parser.add_argument("--db", help="dataset database (default bench_pg; bench_pg_quick with --quick)")
    parser.add_argument("--out", type=Path, help="directory for RESULTS.md and results.json (default bench/)")
    parser.add_argument("--render", action="store_true", help="only rewrite RESULTS.md from the results.json in --out")
    opts = parser.parse_args()
    if opts.quick:
        opts.size_mb, opts.rounds = 50, 1
    db = opts.db or ("bench_pg_quick" if opts.quick else "bench_pg")
    out = opts.out or (WORK if opts.quick else BENCH)
    if opts.render:
        (out / "RESULTS-postgresql.md").write_text(render(json.loads((out / "results.json").read_text())))
        compose(out)
        return 0
    if opts.rounds < 1 or opts.size_mb < 10:
        parser.error("--rounds must be >= 1 and --size-mb >= 10")

    lab = Lab(lab_env())
    admin = lab.connect()
    try:
        major = int(scalar(admin, "SHOW server_version_num")) // 10000
    finally:
        admin.close()
    bin_dir = Path(f"/usr/lib/postgresql/{major}/bin")
    WORK.mkdir(parents=True, exist_ok=True)

    build = ensure_dataset(lab, db, opts.size_mb)
    dataset = {**describe_dataset(lab, db), **build, "target_mb": opts.size_mb}
    machine = machine_facts(lab, bin_dir)
    log("ansible start-up: 3 ad-hoc pings")
    startup = ansible_startup(3)
    rounds = []
    for i in range(1, opts.rounds + 1):
        rounds.append(Round(lab, bin_dir, db, i).run())
    data = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": opts.quick,
        "jobs": JOBS,
        "targets": TARGETS,
        "machine": machine,
        "dataset": dataset,
        "ansible_startup_s": startup,
        "rounds": rounds,
        "summary": summarize(rounds),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / "RESULTS-postgresql.md").write_text(render(data))
    compose(out)
    for op, r in data["summary"]["ratios"].items():
        log(f"{op}: {r['ratio']:.3f}x raw (target {r['target']:.2f}x) {'PASS' if r['pass'] else 'MISS'}")
    log(f"wrote {out / 'RESULTS.md'} and {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
