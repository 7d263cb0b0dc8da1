"""Benchmark: the RPO and RTO point-in-time recovery achieves, over several unannounced losses.

Run with ``.venv/bin/python bench/drill_pitr.py [--kills 5]`` on the lab (``make lab-up``). Each kill is
one run of the main job, ``playbooks/dr_drill.yml``: continuous protection on (``playbooks/protect.yml``:
pgBackRest WAL archiving with ``archive_timeout`` 5 s, the Redis AOF follow process every 2 s into S3,
versioning on the receipts bucket), orders placed through the shop app without pause (5 a second,
each one a row, a cache key and a receipt) for a random 20-40 s, then PostgreSQL and Redis killed with
SIGKILL and their data deleted and every receipt deleted, then ``dr_restore.yml -e
dr_restore_target_time=latest``.

Per kill, from the drill's own evidence (``reports/dr-drill.json`` and the log of acknowledged
orders): the RPO of each store (the last acknowledged order's time minus the time of the newest
acknowledged order that store holds again), the drill's RPO (the worst store), the orders lost, the
RTO (loss to healthy) and the restore phases. Target: RPO at most 15 s for every kill. Nothing here
is compared with a peer tool: the figure is the loss window itself (the DR-set drill's RPO is the
backup interval; see ``RESULTS-drill.md``).

Results: ``bench/results-drill-pitr.json`` and ``bench/RESULTS-drill-pitr.md`` (composed into
``bench/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from common import BENCH, ROOT, clean_env, log
from report import compose

TARGET_RPO_S = 15.0
REPORT = ROOT / "reports" / "dr-drill.json"


def one_kill(number: int) -> dict[str, Any]:
    env = clean_env()
    env["ANSIBLE_SHOW_CUSTOM_STATS"] = "true"
    started = time.monotonic()
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", "inventories/lab", "playbooks/dr_drill.yml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    wall = time.monotonic() - started
    if not REPORT.exists():
        raise SystemExit(f"kill {number}: the drill wrote no report (rc {proc.returncode}):\n{proc.stdout[-3000:]}")
    report = json.loads(REPORT.read_text())
    phases = {p["name"]: p["duration_s"] for p in report["phases"]}
    entry = {
        "kill": number,
        "rc": proc.returncode,
        "passed": report["overall"]["passed"],
        "rpo_s": report["rpo"]["seconds"],
        "rpo_per_store_s": report["facts"]["rpo_per_store_s"],
        "orders_acknowledged": report["facts"]["orders_acknowledged"],
        "orders_lost": {w["component"]: w["count"] for w in report["lost_writes"]},
        "rto_s": report["rto"]["seconds"],
        "load_s": phases.get("LOAD (orders without pause)"),
        "restore_phases_s": {k: v for k, v in phases.items() if k.startswith("RESTORE")},
        "skew_s": report["facts"]["skew_s"],
        "drill_wall_s": round(wall, 1),
    }
    log(
        f"kill {number}: rc {proc.returncode}, RPO {entry['rpo_s']} s {entry['rpo_per_store_s']}, "
        f"RTO {entry['rto_s']} s, lost {entry['orders_lost']}"
    )
    return entry


def section(doc: dict[str, Any]) -> str:
    kills = doc["kills"]
    lines = [
        "## Point-in-time recovery: RPO and RTO over unannounced losses (`bench/drill_pitr.py`)",
        "",
        f"Generated on {doc['when']}: {len(kills)} runs of `playbooks/dr_drill.yml` on the lab, each with orders "
        "placed without pause until PostgreSQL and Redis were killed with SIGKILL and their data deleted and every "
        "receipt deleted, then `dr_restore.yml -e dr_restore_target_time=latest`. RPO = last acknowledged order minus "
        "the newest acknowledged order the store holds again. How it is measured: the docstring of `bench/drill_pitr.py`.",
        "",
        "| kill | load s | orders acked | RPO PostgreSQL s | RPO Redis s | RPO S3 s | RPO (worst) s | orders lost (pg) | "
        "RTO s | skew s | passed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for k in kills:
        per = k["rpo_per_store_s"]
        lines.append(
            f"| {k['kill']} | {k['load_s']:.0f} | {k['orders_acknowledged']} | {per['postgresql']} | {per['redis']} | "
            f"{per['s3']} | {k['rpo_s']} | {k['orders_lost'].get('postgresql')} | {k['rto_s']:.1f} | {k['skew_s']} | "
            f"{'yes' if k['passed'] else 'no'} |"
        )
    s = doc["summary"]
    lines += [
        "",
        f"RPO over the {len(kills)} kills: median {s['rpo_median_s']} s, worst {s['rpo_max_s']} s against the target "
        f"{TARGET_RPO_S:g} s ({'met' if s['rpo_met'] else '**MISSED**'} every time: {s['rpo_met_count']}/{len(kills)}). "
        f"RTO: median {s['rto_median_s']} s, worst {s['rto_max_s']} s (loss to healthy, the whole of dr_restore.yml "
        "included).",
        "",
        "Where the loss window comes from: PostgreSQL loses the WAL written since its last archived segment "
        "(`archive_timeout` 5 s plus the push), Redis the writes after the follow process's last pass (every 2 s; "
        "it keeps the AOF files open, so its last pass after the kill still reads them), S3 nothing (the deletes "
        "are delete markers over kept versions). `latest` restores Redis and S3 to the second before PostgreSQL's "
        "last replayed commit (skew 1 s), so they never hold an order the database lost: they lose its lost orders "
        "and those of that last second too, which is why their RPO is up to a second longer.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--out", type=Path, default=BENCH)
    parser.add_argument("--render", action="store_true", help="only rewrite the Markdown from results-drill-pitr.json")
    args = parser.parse_args()
    if args.render:
        doc = json.loads((args.out / "results-drill-pitr.json").read_text())
        (args.out / "RESULTS-drill-pitr.md").write_text(section(doc))
        compose(args.out)
        return 0
    kills = [one_kill(n) for n in range(1, args.kills + 1)]
    rpos = [k["rpo_s"] for k in kills]
    rtos = [k["rto_s"] for k in kills]
    doc = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "target_rpo_s": TARGET_RPO_S,
        "kills": kills,
        "summary": {
            "rpo_median_s": round(statistics.median(rpos), 3),
            "rpo_max_s": max(rpos),
            "rpo_met_count": sum(1 for r in rpos if r <= TARGET_RPO_S),
            "rpo_met": all(r <= TARGET_RPO_S for r in rpos),
            "rto_median_s": round(statistics.median(rtos), 1),
            "rto_max_s": max(rtos),
        },
    }
    (args.out / "results-drill-pitr.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "RESULTS-drill-pitr.md").write_text(section(doc))
    compose(args.out)
    log(f"RPO median {doc['summary']['rpo_median_s']} s, worst {doc['summary']['rpo_max_s']} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
