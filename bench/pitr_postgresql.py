"""Benchmark: postgresql_pitr_restore (pgBackRest, from S3) against pg_restore -j2 of a pg_dump -Fd.

Run with ``.venv/bin/python bench/pitr_postgresql.py [--quick] [--sizes-mb 500,5000] [--rounds 3]``
(the lab's S3 must be up: ``lab/labctl up s3``). A full restore of one database, two ways:

- **PITR**: ``runbook.stack.postgresql_pitr_restore`` (``target: latest``, ``promote: true``) restores
  the newest full backup of the stanza from the S3 repository into a new data directory, then
  ``pg_ctl start -w`` starts it on a port of its own; the time runs until the server accepts
  connections and until it has replayed the archived WAL and is promoted (``pg_is_in_recovery()``
  false, read-write: the figure of the ratio). It brings back the whole cluster: the dataset
  database plus ``postgres``, ``template0``, ``template1``, with indexes as files.
- **Logical** (the collection's postgresql_backup / postgresql_restore path, here the raw tool):
  ``pg_restore -j2`` of a ``pg_dump -Fd`` (default gzip, made once, untimed) into an empty database
  created just before (untimed), on the source cluster restarted with ``archive_mode=off`` so that
  it does not ship the restore's WAL to the repository. It loads the rows and rebuilds every index
  and the foreign key.

Setup, as tests/integration/test_postgresql_pitr.py (helpers shared in tests/integration/pgbackrest_lab.py):
a throwaway PostgreSQL 15 cluster per size under ``bench/work/pitr-pg-<size>mb/`` (own port and socket,
user runbooklab, initdb defaults: shared_buffers 128MB, max_wal_size 1GB), a throwaway nginx TLS front
before the lab SeaweedFS, a bucket of its own. The dataset is bench/run.py's (deterministic SHA-256
digests, poorly compressible, btree indexes, a foreign key), built set-based once with fsync off and
kept in ``bench/work/pitr-pg-<size>mb/data`` (git-ignored; ``--drop-datasets`` removes it). Per run:
``postgresql_wal_archive`` (archive into the bucket, restart, check), one full
``postgresql_physical_backup`` (pgBackRest defaults, gzip, plus ``process-max=2`` to match ``-j2``),
then a table of about 1% of the size written after the backup and archived (the PITR side replays it
from the WAL archive; the dump is taken after it, so both sides restore the same rows).

Each round runs both sides in alternating order; before each timed step: CHECKPOINT on the source,
``sync``. Each restored copy is checked (row count of every table equals the source's), measured and
removed right after. Page cache is not dropped (the dump files and SeaweedFS's volume files are
both read warm). Medians over the rounds. Writes bench/results-pitr.json (key ``postgresql``, one
entry per size, each with its own date) and bench/RESULTS-pitr-postgresql.md, merged into
bench/RESULTS.md; ``--quick`` (50 MB, 1 round) writes them under bench/work/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from common import BENCH, ROOT, WORK, lab_env, log, median, run_module, timed_run
from common import clean_env as common_clean_env
from report import compose
from run import dataset_sql, dir_size, marker, sha_blocks

sys.path.insert(0, str(ROOT / "tests" / "integration"))
from pgbackrest_lab import (  # pylint: disable=wrong-import-position
    BIN,
    as_user,
    base_options,
    chown_to_user,
    free_port,
    initdb,
    make_tls,
    pg_start,
    pg_stop,
    q,
    repo_options,
    start_nginx,
    stop_nginx,
    wait_for,
)

JOBS = 2
DB = "bench_pg"
AFTER = "bench_after_backup"
PITR_DATASET_VERSION = 1
RESULTS = "results-pitr.json"
SECTION = "RESULTS-pitr-postgresql.md"
# Post-backup writes: rows per MB of dataset, about 300 bytes each (~0.9% of the size).
AFTER_ROWS_PER_MB = 30
# pgBackRest options on top of its defaults (gzip level 6): 2 processes, as pg_restore -j2.
PGBACKREST_GLOBAL = {"process-max": JOBS}
BUILD_OPTS = (
    "-c fsync=off -c full_page_writes=off -c synchronous_commit=off -c wal_level=minimal "
    "-c max_wal_senders=0 -c archive_mode=off -c max_wal_size=8GB -c checkpoint_timeout=30min"
)


def s3_facts() -> dict[str, str]:
    env = lab_env()
    return {
        "endpoint_url": env["AWS_ENDPOINT_URL"],
        "access_key": env["AWS_ACCESS_KEY_ID"],
        "secret_key": env["AWS_SECRET_ACCESS_KEY"],
    }


def s3_client(s3: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3["endpoint_url"],
        aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"],
        region_name="us-east-1",
    )


def empty_bucket(client: Any, bucket: str, delete: bool = True) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    if delete:
        client.delete_bucket(Bucket=bucket)


def tool_env(port: int, sock: Path) -> dict[str, str]:
    return common_clean_env() | {"PGHOST": str(sock), "PGPORT": str(port), "PGUSER": "postgres"}


# --- the run's scaffolding: TLS front, socket directory, pgBackRest logs and locks ----------------


class Front:
    """``bench/work/pitr-run``: the TLS front before the lab SeaweedFS, sockets, logs, locks."""

    def __init__(self, s3: dict[str, str]) -> None:
        self.root = WORK / "pitr-run"
        self.s3 = s3
        self.port = 0

    def __enter__(self) -> Front:
        if (self.root / "nginx" / "nginx.pid").exists():
            stop_nginx(self.root / "nginx")
        shutil.rmtree(self.root, ignore_errors=True)
        for sub in ("tls", "nginx", "run", "log", "lock"):
            (self.root / sub).mkdir(parents=True)
        make_tls(self.root / "tls")
        chown_to_user(self.root, *(self.root / sub for sub in ("run", "log", "lock")))
        self.port = free_port()
        start_nginx(self.root / "nginx", self.port, self.s3["endpoint_url"])
        return self

    def __exit__(self, *exc: object) -> None:
        stop_nginx(self.root / "nginx")
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def sock(self) -> Path:
        return self.root / "run"


# --- one size: dataset cluster, repository, dump, rounds ------------------------------------------


class Size:
    def __init__(self, front: Front, size_mb: int) -> None:
        self.front = front
        self.size_mb = size_mb
        self.dir = WORK / f"pitr-pg-{size_mb}mb"
        self.data = self.dir / "data"
        self.marker_file = self.dir / "dataset.marker"
        self.build_file = self.dir / "dataset-build.json"
        self.log = self.dir / "source.log"
        self.port = free_port()
        self.stanza = f"bench{size_mb}"
        self.bucket = f"rbbench-pitr-pg-{size_mb}-{os.getpid()}"
        self.conf = front.root / f"pgbackrest-{size_mb}.conf"
        self.dump = self.dir / "dump"
        self.restored = self.dir / "restored"
        self.client = s3_client(front.s3)

    # dataset ------------------------------------------------------------------------------------

    def wanted_marker(self) -> str:
        return f"{marker(self.size_mb)} pitr v{PITR_DATASET_VERSION}"

    def sql(self, statement: str, args: Any = None, port: int | None = None) -> list:
        return q(port or self.port, self.front.sock, statement, args)

    def db_sql(self, db: str, statement: str, port: int | None = None) -> list:
        import psycopg2  # pylint: disable=import-outside-toplevel

        conn = psycopg2.connect(host=str(self.front.sock), port=port or self.port, user="postgres", dbname=db)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def ensure_dataset(self) -> dict[str, Any]:
        """The cluster with the dataset, built set-based once (fsync off, WAL minimal) and kept."""
        if self.marker_file.exists() and self.marker_file.read_text() == self.wanted_marker() and self.data.is_dir():
            log(f"{self.size_mb} MB: reusing the dataset cluster in {self.data}")
            earlier = json.loads(self.build_file.read_text()) if self.build_file.exists() else {}
            return {"built": False, "build_s": None, "earlier_build": earlier}
        log(f"{self.size_mb} MB: building the dataset cluster in {self.data}")
        if self.data.exists():
            pg_stop(self.data)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        chown_to_user(self.dir)
        t0 = time.perf_counter()
        initdb(self.data)
        pg_start(self.data, self.port, self.front.sock, self.log, BUILD_OPTS)
        steps = []
        try:
            self.sql(f"CREATE DATABASE {DB} TEMPLATE template0")
            for label, statement in dataset_sql(self.size_mb):
                t1 = time.perf_counter()
                self.db_sql(DB, statement)
                steps.append({"step": label, "s": round(time.perf_counter() - t1, 1)})
                log(f"{self.size_mb} MB dataset: {label}: {steps[-1]['s']} s")
            self.sql("CHECKPOINT")
        finally:
            as_user(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        os.sync()
        build_s = round(time.perf_counter() - t0, 1)
        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.build_file.write_text(json.dumps({"build_s": build_s, "when": when, "steps": steps}) + "\n")
        self.marker_file.write_text(self.wanted_marker())
        log(f"{self.size_mb} MB: dataset built in {build_s} s")
        return {"built": True, "build_s": build_s, "build_steps": steps}

    def describe(self) -> dict[str, Any]:
        rel = self.db_sql(
            DB,
            """SELECT c.relname, c.reltuples::bigint, pg_table_size(c.oid), pg_indexes_size(c.oid),
                      (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 1""",
        )
        tables = [
            {"table": r[0], "table_mb": round(r[2] / 2**20, 1), "indexes": r[4], "indexes_mb": round(r[3] / 2**20, 1)}
            for r in rel
        ]
        for t in tables:
            t["rows"] = self.db_sql(DB, f"SELECT count(*) FROM {t['table']}")[0][0]
        cluster = self.sql("SELECT sum(pg_database_size(oid)) FROM pg_database")[0][0]
        return {
            "database": DB,
            "size_mb": round(self.sql("SELECT pg_database_size(%s)", [DB])[0][0] / 2**20, 1),
            "cluster_databases_mb": round(int(cluster) / 2**20, 1),
            "tables": tables,
        }

    def counts(self, db: str, port: int | None = None) -> dict[str, int]:
        names = self.db_sql(
            db, "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace", port
        )
        return {n: self.db_sql(db, f"SELECT count(*) FROM {n}", port)[0][0] for (n,) in sorted(names)}

    # repository, backup, post-backup writes, dump --------------------------------------------------

    def archive_args(self) -> dict[str, Any]:
        opts = repo_options(self.front.root, self.bucket, self.front.port)
        opts["global_options"] = opts["global_options"] | PGBACKREST_GLOBAL
        return (
            base_options(self.stanza, self.conf, self.front.s3)
            | opts
            | dict(login_unix_socket=str(self.front.sock), login_port=self.port, login_user="postgres")
            | dict(archive_timeout=10, command_timeout=3600)
        )

    def restart(self, *extra: str) -> None:
        as_user(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "300", "stop")
        pg_start(self.data, self.port, self.front.sock, self.log, *extra)

    def prepare(self) -> dict[str, Any]:
        self.client.create_bucket(Bucket=self.bucket)
        pg_start(self.data, self.port, self.front.sock, self.log)
        self.sql(f"DROP DATABASE IF EXISTS {DB}_restored WITH (FORCE)")
        self.db_sql(DB, f"DROP TABLE IF EXISTS {AFTER}")
        res = run_module("postgresql_wal_archive", self.archive_args())[1]
        if res.get("restart_required"):
            self.restart()
            res = run_module("postgresql_wal_archive", self.archive_args())[1]
        if not res.get("checked"):
            raise RuntimeError(f"postgresql_wal_archive did not check the archive: {res}")
        self.sql("CHECKPOINT")
        os.sync()
        wall, backup = run_module(
            "postgresql_physical_backup", base_options(self.stanza, self.conf, self.front.s3) | dict(type="full")
        )
        b = backup["backup"]
        log(
            f"{self.size_mb} MB: full backup {wall:.1f} s, {b['size'] / 2**20:.0f} MB, repo {b['repo_size'] / 2**20:.0f} MB"
        )
        stop = dt.datetime.fromisoformat(b["stop"]) + dt.timedelta(seconds=1)
        wait_for(
            "server clock past the backup's stop second", lambda: self.sql("SELECT clock_timestamp()")[0][0] > stop, 5
        )
        lsn0 = self.sql("SELECT pg_current_wal_lsn()")[0][0]
        rows = max(1000, AFTER_ROWS_PER_MB * self.size_mb)
        t0 = time.perf_counter()
        self.db_sql(
            DB,
            f"""CREATE TABLE {AFTER} AS
                SELECT g AS id, now() AS written_at, {sha_blocks("g", 8)} AS payload
                FROM generate_series(1, {rows}) g;
                ALTER TABLE {AFTER} ADD PRIMARY KEY (id);""",
        )
        after_s = time.perf_counter() - t0
        seg = self.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
        wal_bytes = self.sql("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [lsn0])[0][0]
        self.sql("SELECT pg_switch_wal()")
        wait_for(
            f"WAL segment {seg} archived",
            lambda: (self.sql("SELECT last_archived_wal FROM pg_stat_archiver")[0][0] or "") >= seg,
            600,
        )
        after_size = self.db_sql(DB, f"SELECT pg_total_relation_size('{AFTER}')")[0][0]
        # the logical side restores into this server: no WAL shipping for its writes
        self.restart("-c archive_mode=off")
        self.sql("CHECKPOINT")
        shutil.rmtree(self.dump, ignore_errors=True)
        argv = [str(BIN / "pg_dump"), "-Fd", f"-j{JOBS}", "-f", str(self.dump), "-d", DB]
        dump_s, _out, _err = timed_run(argv, tool_env(self.port, self.front.sock))
        log(f"{self.size_mb} MB: pg_dump {dump_s:.1f} s, {dir_size(self.dump) / 2**20:.0f} MB")
        return {
            "backup": {
                "label": backup["label"],
                "module_wall_s": round(wall, 2),
                "duration_s": b["duration_s"],
                "size_mb": round(b["size"] / 2**20, 1),
                "repo_size_mb": round(b["repo_size"] / 2**20, 1),
                "command": backup["command"],
            },
            "after_backup": {
                "table": AFTER,
                "rows": rows,
                "size_mb": round(after_size / 2**20, 1),
                "write_s": round(after_s, 2),
                "wal_mb": round(float(wal_bytes) / 2**20, 1),
                "last_segment": seg,
            },
            "dump": {
                "seconds": round(dump_s, 2),
                "size_mb": round(dir_size(self.dump) / 2**20, 1),
                "command": shlex.join(argv),
            },
        }

    # the two sides ---------------------------------------------------------------------------------

    def settle(self) -> dict[str, Any]:
        self.sql("CHECKPOINT")
        os.sync()
        return {"load1": round(os.getloadavg()[0], 2)}

    def pitr(self, expected: dict[str, int]) -> dict[str, Any]:
        shutil.rmtree(self.restored, ignore_errors=True)
        port = free_port()
        context = self.settle()
        t0 = time.perf_counter()
        wall, res = run_module(
            "postgresql_pitr_restore",
            base_options(self.stanza, self.conf, self.front.s3)
            | dict(dest_data_dir=str(self.restored), target="latest", promote=True, command_timeout=3600),
        )
        t1 = time.perf_counter()
        pg_start(self.restored, port, self.front.sock, self.dir / "restored.log")
        t2 = time.perf_counter()
        wait_for(
            "restored cluster promoted",
            lambda: not self.sql("SELECT pg_is_in_recovery()", port=port)[0][0],
            3600,
            0.05,
        )
        t3 = time.perf_counter()
        try:
            got = self.counts(DB, port)
            if got != expected:
                raise RuntimeError(f"PITR restore: row counts {got} differ from the source's {expected}")
            db_mb = round(self.sql("SELECT pg_database_size(%s)", [DB], port=port)[0][0] / 2**20, 1)
            timeline = int(self.sql("SELECT pg_walfile_name(pg_current_wal_lsn())", port=port)[0][0][:8], 16)
        finally:
            pg_stop(self.restored)
        data_mb = round(dir_size(self.restored) / 2**20, 1)
        wal_mb = round(dir_size(self.restored / "pg_wal") / 2**20, 1)
        shutil.rmtree(self.restored, ignore_errors=True)
        return {
            "seconds": round(t3 - t0, 3),
            "module_wall_s": round(wall, 3),
            "module_duration_s": res["duration_s"],
            "start_until_connections_s": round(t2 - t1, 3),
            "connections_until_promoted_s": round(t3 - t2, 3),
            "until_connections_s": round(t2 - t0, 3),
            "command": res["command"],
            "restored_data_dir_mb": data_mb,
            "restored_pg_wal_mb": wal_mb,
            "restored_db_mb": db_mb,
            "timeline": timeline,
            **context,
        }

    def logical(self, expected: dict[str, int]) -> dict[str, Any]:
        target = f"{DB}_restored"
        self.sql(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")
        self.sql(f"CREATE DATABASE {target} TEMPLATE template0")
        argv = [str(BIN / "pg_restore"), f"-j{JOBS}", "-d", target, str(self.dump)]
        context = self.settle()
        wall, _out, _err = timed_run(argv, tool_env(self.port, self.front.sock))
        got = self.counts(target)
        if got != expected:
            raise RuntimeError(f"pg_restore: row counts {got} differ from the source's {expected}")
        db_mb = round(self.sql("SELECT pg_database_size(%s)", [target])[0][0] / 2**20, 1)
        self.sql(f"DROP DATABASE {target} WITH (FORCE)")
        return {"seconds": round(wall, 3), "command": shlex.join(argv), "restored_db_mb": db_mb, **context}

    def cleanup(self) -> None:
        """Untouched dataset kept (archive settings reset, post-backup table dropped); the rest removed."""
        pg_stop(self.restored)
        shutil.rmtree(self.restored, ignore_errors=True)
        shutil.rmtree(self.dump, ignore_errors=True)
        if (self.data / "postmaster.pid").exists():
            try:
                self.sql(f"DROP DATABASE IF EXISTS {DB}_restored WITH (FORCE)")
                self.db_sql(DB, f"DROP TABLE IF EXISTS {AFTER}")
                self.sql("ALTER SYSTEM RESET archive_mode")
                self.sql("ALTER SYSTEM RESET archive_command")
                self.sql("ALTER SYSTEM RESET archive_timeout")
                self.sql("CHECKPOINT")
            finally:
                pg_stop(self.data, "fast")
        try:
            empty_bucket(self.client, self.bucket)
        except Exception as exc:  # pylint: disable=broad-except  # report, go on cleaning
            if "NoSuchBucket" not in str(exc):
                log(f"could not remove bucket {self.bucket}: {exc}")
        self.conf.unlink(missing_ok=True)

    def run(self, rounds: int) -> dict[str, Any]:
        build = self.ensure_dataset()
        try:
            prep = self.prepare()
            dataset = {**self.describe(), **build, "target_mb": self.size_mb}
            expected = self.counts(DB)
            results = []
            for i in range(1, rounds + 1):
                order = ["pitr", "logical"] if i % 2 == 1 else ["logical", "pitr"]
                entry: dict[str, Any] = {"round": i, "order": order}
                for side in order:
                    entry[side] = self.pitr(expected) if side == "pitr" else self.logical(expected)
                    log(f"{self.size_mb} MB round {i}: {side} {entry[side]['seconds']:.2f} s")
                results.append(entry)
        finally:
            self.cleanup()
        return summarize(self.size_mb, dataset, prep, results)


def summarize(
    size_mb: int, dataset: dict[str, Any], prep: dict[str, Any], rounds: list[dict[str, Any]]
) -> dict[str, Any]:
    def med(side: str, key: str = "seconds") -> float:
        return median([r[side][key] for r in rounds])

    pitr, logical = med("pitr"), med("logical")
    return {
        "when": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "size_mb": size_mb,
        "dataset": dataset,
        **prep,
        "rounds": rounds,
        "summary": {
            "pitr_s": pitr,
            "logical_s": logical,
            "ratio": round(pitr / logical, 3),
            "pitr_until_connections_s": med("pitr", "until_connections_s"),
            "pitr_module_wall_s": med("pitr", "module_wall_s"),
            "pitr_start_until_connections_s": med("pitr", "start_until_connections_s"),
            "pitr_connections_until_promoted_s": med("pitr", "connections_until_promoted_s"),
            "restored_data_dir_mb": med("pitr", "restored_data_dir_mb"),
            "restored_pg_wal_mb": med("pitr", "restored_pg_wal_mb"),
            "pitr_db_mb": med("pitr", "restored_db_mb"),
            "logical_db_mb": med("logical", "restored_db_mb"),
        },
    }


# --- report -------------------------------------------------------------------------------------


def render(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        "## PostgreSQL point-in-time recovery: postgresql_pitr_restore vs pg_restore -j2",
        "",
        f"Full restore of one database, {m['nproc']} cores, {m['pgbackrest']}, PostgreSQL {m['postgresql']}, "
        f"lab SeaweedFS behind a throwaway nginx TLS front on loopback. How it is measured: the docstring of "
        "`bench/pitr_postgresql.py`. Ratio = PITR / logical (below 1 is faster); no target is set, the figures "
        "show where each path stands.",
        "",
        "- **PITR**: `runbook.stack.postgresql_pitr_restore` (`target: latest`, `promote: true`, module process as "
        "Ansible runs it) restoring the newest full pgBackRest backup from S3 into a new data directory, then "
        "`pg_ctl start -w` on its own port, timed until the server is promoted (`pg_is_in_recovery()` false, it "
        "accepts writes). It restores the **whole cluster** (the dataset plus `postgres`, `template0`, `template1`) "
        "with index files copied as they are, and replays the WAL written after the backup from the archive. "
        f"pgBackRest: its defaults (gzip level 6) plus `process-max={JOBS}`.",
        f"- **Logical**: `pg_restore -j{JOBS}` of a `pg_dump -Fd` (gzip, made once, untimed) into an empty database "
        "created untimed just before, on the source cluster restarted with `archive_mode=off`. It loads the rows "
        "and **rebuilds every index** and the foreign key; it restores one database, no cluster.",
        "- Both sides restore the same rows (the dump is taken after the post-backup writes); each copy's row "
        "counts are checked against the source after the timed step.",
        "",
        "| size | database MB | PITR s (rounds) | until connections s | logical s (rounds) | ratio | run |",
        "|---|---:|---|---:|---|---:|---|",
    ]
    for key in sorted(data["sizes"], key=int):
        e = data["sizes"][key]
        s = e["summary"]
        pitr_runs = ", ".join(f"{r['pitr']['seconds']:.2f}" for r in e["rounds"])
        log_runs = ", ".join(f"{r['logical']['seconds']:.2f}" for r in e["rounds"])
        lines.append(
            f"| {size_label(int(key))} | {e['dataset']['size_mb']:,} | **{s['pitr_s']:.2f}** ({pitr_runs}) "
            f"| {s['pitr_until_connections_s']:.2f} | **{s['logical_s']:.2f}** ({log_runs}) | **{s['ratio']:.2f}x** "
            f"| {e['when']}{' (quick)' if e.get('quick') else ''} |"
        )
    lines.append("")
    for key in sorted(data["sizes"], key=int):
        e = data["sizes"][key]
        s, ds, b, a, d = e["summary"], e["dataset"], e["backup"], e["after_backup"], e["dump"]
        idx = sum(t["indexes_mb"] for t in ds["tables"])
        tables = ", ".join(f"{t['table']} {t['rows']:,} rows" for t in ds["tables"])
        earlier = ds.get("earlier_build") or {}
        if ds["built"]:
            build = f"built by this run in {ds['build_s']:.0f} s (set-based, fsync off)"
        elif earlier:
            build = f"built set-based (fsync off) in {earlier['build_s']:.0f} s on {earlier['when']}, reused"
        else:
            build = "reused from an earlier run"
        lines += [
            f"**{size_label(int(key))}** ({len(e['rounds'])} round{'s' if len(e['rounds']) > 1 else ''}, alternating order):",
            "",
            f"- dataset: `{ds['database']}` {ds['size_mb']:,} MB (`pg_database_size`, {idx:,.1f} MB of it indexes), "
            f"{tables}; {build}. Cluster "
            f"databases together {ds['cluster_databases_mb']:,} MB.",
            f"- pgBackRest full backup (untimed here): {b['duration_s']:.1f} s, {b['size_mb']:,} MB of data, "
            f"{b['repo_size_mb']:,} MB in the repository (gzip). After it: {a['rows']:,} rows ({a['size_mb']} MB, "
            f"{a['wal_mb']} MB of WAL) written and archived, replayed by the PITR side.",
            f"- `pg_dump -Fd -j{JOBS}` (untimed here): {d['seconds']:.1f} s, {d['size_mb']:,} MB.",
            f"- PITR medians: module {s['pitr_module_wall_s']:.2f} s (pgbackrest restore), `pg_ctl start -w` until "
            f"connections {s['pitr_start_until_connections_s']:.2f} s, then until promoted "
            f"{s['pitr_connections_until_promoted_s']:.2f} s; restored data directory {s['restored_data_dir_mb']:,} MB "
            f"after the promotion ({s['restored_pg_wal_mb']:,} MB of it pg_wal) "
            f"(database {s['pitr_db_mb']:,} MB). Logical: restored database {s['logical_db_mb']:,} MB.",
            "",
        ]
    lines += [
        f"The machine is shared: the 1-minute load average at the start of the timed steps was {load_range(data)} "
        "on 2 cores (other sessions' work); round-to-round spread is in the rounds columns.",
        "",
        "The PITR time grows with the cluster's size on disk (files copied and decompressed, indexes included) "
        "plus the WAL to replay since the backup; the logical time grows with rows and index builds, and "
        "comes on top of a dump that is only as recent as its last run, where the PITR side reaches the last "
        "archived WAL segment.",
        "",
        f"Command: `.venv/bin/python bench/pitr_postgresql.py --sizes-mb {','.join(sorted(data['sizes'], key=int))}`.",
        "",
    ]
    return "\n".join(lines)


def load_range(data: dict[str, Any]) -> str:
    loads = [r[side]["load1"] for e in data["sizes"].values() for r in e["rounds"] for side in ("pitr", "logical")]
    return f"{min(loads):.1f} to {max(loads):.1f}"


def size_label(size_mb: int) -> str:
    return f"{size_mb / 1000:g} GB" if size_mb >= 1000 else f"{size_mb} MB"


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "pgbackrest": subprocess.run(
            ["pgbackrest", "version"], capture_output=True, text=True, check=True
        ).stdout.strip(),
        "postgresql": subprocess.run(
            [str(BIN / "postgres"), "--version"], capture_output=True, text=True, check=True
        ).stdout.split()[2],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="500,5000", help="dataset sizes in MB, default 500,5000")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per size, default 3")
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 MB, 1 round, results under bench/work/")
    parser.add_argument("--drop-datasets", action="store_true", help="remove the kept dataset clusters afterwards")
    parser.add_argument("--render", action="store_true", help="only rewrite the section from results-pitr.json")
    parser.add_argument("--out", type=Path, help="directory for the results (default bench/, bench/work/ with --quick)")
    parser.add_argument("--build-only", action="store_true", help="only build the dataset clusters (no S3 needed)")
    opts = parser.parse_args()
    out = opts.out or (WORK if opts.quick else BENCH)
    if opts.render:
        write(out, json.loads((out / RESULTS).read_text())["postgresql"])
        return 0
    sizes = [50] if opts.quick else [int(s) for s in opts.sizes_mb.split(",")]
    rounds = 1 if opts.quick else opts.rounds
    if rounds < 1 or min(sizes) < 10:
        parser.error("--rounds must be >= 1 and sizes >= 10")
    if not shutil.which("pgbackrest"):
        parser.error("pgbackrest is not installed (scripts/bootstrap installs it)")
    s3 = s3_facts()
    WORK.mkdir(parents=True, exist_ok=True)
    if opts.build_only:
        with Front(s3) as front:
            for size_mb in sizes:
                log(f"{size_mb} MB: {Size(front, size_mb).ensure_dataset()}")
        return 0
    s3_client(s3).list_buckets()  # fails clearly when the lab's S3 is down
    previous = json.loads((out / RESULTS).read_text()) if (out / RESULTS).exists() else {}
    data = previous.get("postgresql") or {"sizes": {}}
    data["machine"] = machine()
    with Front(s3) as front:
        for size_mb in sizes:
            entry = Size(front, size_mb).run(rounds)
            entry["quick"] = opts.quick
            data["sizes"][str(size_mb)] = entry
            log(f"{size_mb} MB: PITR {entry['summary']['pitr_s']:.2f} s, logical {entry['summary']['logical_s']:.2f} s, "
                f"ratio {entry['summary']['ratio']:.2f}x")  # fmt: skip
            write(out, data)
    if opts.drop_datasets:
        for size_mb in sizes:
            shutil.rmtree(WORK / f"pitr-pg-{size_mb}mb", ignore_errors=True)
    log(f"wrote {out / RESULTS} and {out / SECTION}")
    return 0


def write(out: Path, data: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS
    allres = json.loads(path.read_text()) if path.exists() else {}
    allres["postgresql"] = data
    path.write_text(json.dumps(allres, indent=2) + "\n")
    (out / SECTION).write_text(render(data))
    compose(out)


if __name__ == "__main__":
    sys.exit(main())
