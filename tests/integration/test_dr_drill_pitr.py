"""The main job, playbooks/dr_drill.yml: an honest drill of point-in-time recovery on the lab (issue 11).

Orders go through the shop app without pause until an unannounced loss (PostgreSQL and Redis killed
with SIGKILL and their data deleted, every receipt deleted); dr_restore.yml puts the three stores back
to the latest common second. The test reads the drill's own evidence, not its verdict alone: the log
of acknowledged orders, the orders each store holds after the restore, and the report.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import redis
from conftest import LABCTL, ROOT, custom_stats, pg_query, run_playbook

pytestmark = [pytest.mark.playbook, pytest.mark.destructive]

REPORTS = ROOT / "reports"
FLAG = ROOT / ".lab" / "app" / "maintenance.flag"


@pytest.fixture(scope="module")
def drill(lab):
    subprocess.run([str(LABCTL), "up"], capture_output=True, timeout=300, check=True)
    FLAG.unlink(missing_ok=True)
    os.environ["ANSIBLE_SHOW_CUSTOM_STATS"] = "true"  # the set_stats data, printed at the end
    try:
        run = run_playbook("dr_drill.yml", "-e", "dr_drill_load_min_s=12", "-e", "dr_drill_load_max_s=20", timeout=1200)
    finally:
        del os.environ["ANSIBLE_SHOW_CUSTOM_STATS"]
    run.stats = custom_stats(run.out)
    yield run
    subprocess.run([str(LABCTL), "up"], capture_output=True, timeout=300, check=False)
    FLAG.unlink(missing_ok=True)


def acked_orders() -> dict[int, float]:
    lines = (REPORTS / "dr-drill-writes.jsonl").read_text().splitlines()
    return {int(e["order"]): float(e["acked_at"]) for e in map(json.loads, lines) if "order" in e}


def test_drill_restores_to_the_last_second_and_measures_rpo_and_rto(lab, drill):
    assert drill.rc == 0, drill
    report = json.loads((REPORTS / "dr-drill.json").read_text())
    orders = acked_orders()
    assert len(orders) >= 20, "the writer got too few orders through for a drill"
    last = max(orders)

    # the database holds every acknowledged order up to the newest one restored, and nothing the
    # writer never sent: the restore is a clean prefix of the load
    newest = pg_query(lab, "SELECT max(id) FROM shop.orders", dbname="shop")[0][0]
    held = {row[0] for row in pg_query(lab, "SELECT id FROM shop.orders WHERE id = ANY(%s)", "shop", (list(orders),))}
    assert {o for o in orders if o <= newest} <= held
    restored_last = max(o for o in orders if o <= newest)
    assert report["rpo"]["seconds"] >= round(orders[last] - orders[restored_last], 3) - 0.001, report["rpo"]

    # the report's RPO is the last acknowledged write minus the worst store's newest restored write
    assert report["last_write_at"] is not None and report["recovery_point"] <= report["last_write_at"]
    per_store = report["facts"]["rpo_per_store_s"]
    assert set(per_store) == {"postgresql", "redis", "s3"}, per_store
    assert report["rpo"]["seconds"] == pytest.approx(max(per_store.values()), abs=0.002), (report["rpo"], per_store)
    assert report["rpo"]["target_s"] == 15 and report["rpo"]["met"] is True, report["rpo"]
    assert report["rto"]["met"] is True and report["overall"]["passed"] is True, report["overall"]
    lost = {loss["component"]: loss["count"] for loss in report["lost_writes"]}
    assert lost["postgresql"] == sum(1 for o in orders if o > restored_last), lost

    # all three stores went to one second (dr_restore's report), and the platform is healthy
    stats = drill.stats["runbook_dr_restore"]
    assert stats["status"] == "restored" and stats["target_time"] == "latest", stats
    assert {p["component"] for p in stats["recovery_points"]} == {"postgresql", "redis", "s3"}, stats
    # latest: the cache and the buckets go to the second before that of the database's last commit (writes
    # of that second may belong to commits the archive lost), so no key or receipt of a missing order
    points = {p["component"]: p["restored_to"] for p in stats["recovery_points"]}
    assert points["redis"] == points["s3"] < points["postgresql"] and stats["skew_s"] == 1, stats
    r = lab["redis"]
    cache = redis.Redis(host=r["login_host"], port=r["login_port"], password=r["login_password"])
    cached = [int(k.rsplit(b":", 1)[1]) for k in cache.scan_iter(match="cache:order:*", count=1000)]
    assert max(cached) <= pg_query(lab, "SELECT max(id) FROM shop.orders", dbname="shop")[0][0]
    assert all(c["passed"] for c in report["verifications"]), report["verifications"]
    # the phases, from the drill's one timeline: in order, each ending where the next starts, except the
    # wait between healthy and VERIFY; the restore's own six phases in place
    phases = report["phases"]
    assert [p["name"] for p in phases][:3] == ["PREPARE", "LOAD (orders without pause)", "LOSS"], phases
    assert [p["name"] for p in phases][-1] == "VERIFY" and len(phases) == 10, phases
    assert all(p["name"].startswith("RESTORE (") for p in phases[3:9]), phases
    assert all(a["ended_at"] == b["started_at"] for a, b in zip(phases[:8], phases[1:9])), phases
    assert phases[8]["ended_at"] == report["healthy_at"] <= phases[9]["started_at"], phases
    assert not FLAG.exists()
    assert subprocess.run([str(LABCTL), "status"], capture_output=True, timeout=60, check=False).returncode == 0
