"""The drill's load: orders placed through the lab shop app without pause, and what a restore kept of them.

    python lab/writer.py run --log <file> [--pidfile <file>] [--url http://127.0.0.1:58000] [--interval 0.2]
        POST /orders until SIGTERM (its pid in --pidfile). Each order the app acknowledged (201: its row committed in
        PostgreSQL, its cache key set in Redis, its receipt put in S3) is one JSON line in the log:
        {"order": <id>, "acked_at": <unix seconds>}. Failures (the stores gone) are counted in
        {"failed": N, "at": ...} lines; the writer keeps trying until it is stopped.
    python lab/writer.py measure --log <file>
        After a restore: the newest order each store holds again (PostgreSQL shop.orders, Redis
        cache:order:<id> keys, S3 receipts/<id>.json), and per store the recovery point objective
        actually met: RPO = the last acknowledged order's time - the time of the newest order that
        came back. Also whether the orders that came back have no holes (every acknowledged order
        up to the newest one restored is in PostgreSQL). One JSON document on stdout.

Connection facts come from the environment `lab/labctl env` prints. Lab only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

STOP = False


def _stop(_signum: int, _frame: Any) -> None:
    global STOP  # pylint: disable=global-statement
    STOP = True


def run(log: Path, url: str, interval: float, pidfile: str | None) -> int:
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.parent.mkdir(parents=True, exist_ok=True)
    if pidfile:
        Path(pidfile).write_text(f"{os.getpid()}\n")
    body = json.dumps({"customer_id": 1, "product_id": 1, "quantity": 1, "note": "drill load"}).encode()
    failed = 0
    with log.open("a", buffering=1) as out:
        while not STOP:
            started = time.monotonic()
            request = urllib.request.Request(
                f"{url}/orders", data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    doc = json.loads(answer.read())
                if answer.status == 201:
                    out.write(json.dumps({"order": doc["order"]["id"], "acked_at": round(time.time(), 3)}) + "\n")
                    os.fsync(out.fileno())
            except (urllib.error.URLError, OSError, ValueError, KeyError):
                failed += 1
                out.write(json.dumps({"failed": failed, "at": round(time.time(), 3)}) + "\n")
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    return 0


def acked(log: Path) -> dict[int, float]:
    orders: dict[int, float] = {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if "order" in entry:
            orders[int(entry["order"])] = float(entry["acked_at"])
    return orders


def newest_restored() -> dict[str, int | None]:
    import boto3  # pylint: disable=import-outside-toplevel
    import psycopg2  # pylint: disable=import-outside-toplevel
    import redis  # pylint: disable=import-outside-toplevel

    env = os.environ
    conn = psycopg2.connect(
        host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"], password=env["PGPASSWORD"], dbname="shop"
    )
    with conn, conn.cursor() as cur:
        cur.execute("SELECT max(id) FROM shop.orders")
        pg = cur.fetchone()[0]
    conn.close()
    cache = redis.Redis(host=env["REDIS_HOST"], port=int(env["REDIS_PORT"]), password=env["REDIS_PASSWORD"])
    ids = [int(k.rsplit(b":", 1)[1]) for k in cache.scan_iter(match="cache:order:*", count=1000)]
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env.get("AWS_DEFAULT_REGION"))
    receipts = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=env["LAB_APP_BUCKET"], Prefix="receipts/"):
        for obj in page.get("Contents", []):
            name = obj["Key"].rsplit("/", 1)[1].removesuffix(".json")
            if name.isdigit():
                receipts.append(int(name))
    return {"postgresql": pg, "redis": max(ids, default=None), "s3": max(receipts, default=None)}


def missing_in_postgresql(orders: list[int], up_to: int | None) -> list[int]:
    """Acknowledged orders up to ``up_to`` that PostgreSQL does not hold (holes in what came back)."""
    import psycopg2  # pylint: disable=import-outside-toplevel

    wanted = [o for o in orders if up_to is not None and o <= up_to]
    if not wanted:
        return []
    env = os.environ
    conn = psycopg2.connect(
        host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"], password=env["PGPASSWORD"], dbname="shop"
    )
    with conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM shop.orders WHERE id = ANY(%s)", (wanted,))
        found = {row[0] for row in cur.fetchall()}
    conn.close()
    return sorted(set(wanted) - found)


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def measure(log: Path) -> int:
    orders = acked(log)
    if not orders:
        sys.exit(f"no acknowledged order in {log}: the writer never got a write through")
    last = max(orders)
    stores = {}
    for store, newest in newest_restored().items():
        # the newest acknowledged order the store holds again (an order it holds that was never
        # acknowledged counts as the acknowledged one before it)
        back = max((o for o in orders if newest is not None and o <= newest), default=None)
        stores[store] = {
            "newest_order": newest,
            "newest_acked_order": back,
            "acked_at": orders[back] if back is not None else None,
            "rpo_s": round(orders[last] - orders[back], 3) if back is not None else None,
            "orders_lost": sum(1 for o in orders if back is None or o > back),
        }
    holes = missing_in_postgresql(sorted(orders), stores["postgresql"]["newest_acked_order"])
    worst = [s["rpo_s"] for s in stores.values()]
    points = [s["acked_at"] for s in stores.values()]
    doc = {
        "orders_acked": len(orders),
        "last_acked": {"order": last, "acked_at": orders[last]},
        # the ISO times a DR report takes: the last write before the loss, and the worst store's
        # newest write that came back
        "last_write_at": iso(orders[last]),
        "recovery_point": None if None in points else iso(min(points)),
        "stores": stores,
        "rpo_s": None if None in worst else max(worst),
        "holes_in_postgresql": holes[:20],
        "holes": len(holes),
    }
    print(json.dumps(doc, sort_keys=True))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in ("run", "measure") or "--log" not in argv:
        sys.exit(__doc__)
    opts = dict(zip(argv[2::2], argv[3::2]))
    log = Path(opts["--log"])
    if argv[1] == "run":
        url = opts.get("--url", "http://127.0.0.1:58000")
        return run(log, url, float(opts.get("--interval", "0.2")), opts.get("--pidfile"))
    return measure(log)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
