"""The lab's demo shop application: a small HTTP service over the lab's PostgreSQL, Redis and S3.

Run by ``lab/labctl up app`` with the project's .venv python, as the lab user, on 127.0.0.1:58000
(behind the lab nginx at https://app.lab.test:58443). Connection facts come from the environment
labctl sets (the same values ``lab/labctl env`` prints); nothing here is for production.

    GET  /health            {"status": "healthy"|"unhealthy", "components": {...}, "in_flight": N}:
                            200 when every component is ok, else 503; 503 {"status": "maintenance",
                            "in_flight": N} while the maintenance flag file or Redis key exists
                            (in_flight: other requests being served, what a drain waits for)
    GET  /orders[?limit=N]  the newest orders (PostgreSQL)
    GET  /orders/<id>       one order, with where it was found (cache or database) and its receipt
    POST /orders            {"customer_id", "product_id", "quantity", "note"}: a row in shop.orders,
                            the cache key cache:order:<id> in Redis, the receipt receipts/<id>.json in S3
    GET  /slow?seconds=N    answers after N seconds (an in-flight request for drain tests)

    python app.py serve     the server (SIGTERM/SIGINT: drain, see below)
    python app.py seed      demo data in all three stores (idempotent)
    python app.py fingerprint   one JSON digest of the demo data in all three stores

Graceful drain: on SIGTERM the server stops accepting connections (the listening socket is
closed), lets the requests in flight finish for up to LAB_APP_DRAIN_S seconds (default 20) and
exits 0. A second SIGTERM, or in-flight requests still running at the deadline, exit 1 at once.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import hashlib
import importlib
import json
import os
import pwd
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import psycopg2
import redis
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

VERSION = "1.0.0"
ROOT = Path(__file__).resolve().parents[2]
PROCESS_NAME = b"lab-app"  # what labctl expects in /proc/<pid>/comm
SEED_ORDERS = 50  # the first orders get a cache key and a receipt
# standard-library modules the clients import lazily on a request path; loaded before the app drops
# privileges (see drop_privileges), when the interpreter's own files may no longer be readable
PRELOAD_MODULES = ("base64", "email.utils", "hmac", "uuid", "xml.etree.ElementTree", "zlib")


def setting(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        sys.exit(f"lab app: environment variable {name} is not set (start the app with lab/labctl up app)")
    return value


class Settings:
    def __init__(self) -> None:
        self.host = setting("LAB_APP_HOST", "127.0.0.1")
        self.port = int(setting("LAB_APP_PORT", "58000"))
        self.drain_s = float(setting("LAB_APP_DRAIN_S", "20"))
        self.flag_file = setting("LAB_MAINTENANCE_FLAG", str(ROOT / ".lab" / "app" / "maintenance.flag"))
        self.maintenance_key = setting("LAB_MAINTENANCE_KEY", "maintenance")
        self.db = setting("LAB_APP_DB", "shop")
        self.bucket = setting("LAB_APP_BUCKET", "shop-receipts")
        self.pg = {
            "host": setting("PGHOST"),
            "port": int(setting("PGPORT")),
            "user": setting("PGUSER"),
            "password": setting("PGPASSWORD"),
            "dbname": self.db,
            "connect_timeout": 3,
            "application_name": "lab-app",
        }
        self.redis = redis.Redis(
            host=setting("REDIS_HOST"),
            port=int(setting("REDIS_PORT")),
            password=setting("REDIS_PASSWORD"),
            socket_timeout=3,
            socket_connect_timeout=2,
            decode_responses=True,
        )
        self.s3 = boto3.client(
            "s3",
            endpoint_url=setting("AWS_ENDPOINT_URL"),
            aws_access_key_id=setting("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=setting("AWS_SECRET_ACCESS_KEY"),
            region_name=setting("AWS_DEFAULT_REGION", "us-east-1"),
            config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}),
        )


def cache_key(order_id: int) -> str:
    return f"cache:order:{order_id}"


def receipt_key(order_id: int) -> str:
    return f"receipts/{order_id}.json"


def order_doc(row: tuple) -> dict[str, Any]:
    order_id, customer_id, product_id, quantity, placed, note = row
    return {
        "id": order_id,
        "customer_id": customer_id,
        "product_id": product_id,
        "quantity": quantity,
        "placed": placed.isoformat(),
        "note": note,
    }


ORDER_COLUMNS = "id, customer_id, product_id, quantity, placed, note"


# ---- the three stores ----------------------------------------------------------------------------
def timed(check) -> dict[str, Any]:
    started = time.monotonic()
    try:
        check()
        result: dict[str, Any] = {"status": "ok"}
    except Exception as exc:  # any failure is the component's health
        result = {"status": "error", "error": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}
    result["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def check_postgresql(cfg: Settings) -> None:
    with psycopg2.connect(**cfg.pg) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM shop.orders WHERE id = 1")
    conn.close()


def health(cfg: Settings) -> dict[str, Any]:
    components = {
        "postgresql": timed(lambda: check_postgresql(cfg)),
        "redis": timed(cfg.redis.ping),
        "s3": timed(lambda: cfg.s3.head_bucket(Bucket=cfg.bucket)),
    }
    healthy = all(c["status"] == "ok" for c in components.values())
    return {
        "status": "healthy" if healthy else "unhealthy",
        "version": VERSION,
        "timestamp": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "components": components,
    }


def maintenance(cfg: Settings) -> dict[str, Any] | None:
    """Which maintenance signal is set (runbook.stack.maintenance_mode's flag file or key), else None."""
    if os.path.exists(cfg.flag_file):
        return {"signal": "flag_file", "flag_file": cfg.flag_file}
    try:
        if cfg.redis.exists(cfg.maintenance_key):
            return {"signal": "redis_key", "redis_key": cfg.maintenance_key}
    except redis.RedisError:
        pass  # Redis down is reported by /health, not mistaken for maintenance
    return None


def list_orders(cfg: Settings, limit: int) -> list[dict[str, Any]]:
    with psycopg2.connect(**cfg.pg) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {ORDER_COLUMNS} FROM shop.orders ORDER BY id DESC LIMIT %s", (limit,))
        rows = cur.fetchall()
    conn.close()
    return [order_doc(r) for r in rows]


def get_order(cfg: Settings, order_id: int) -> dict[str, Any] | None:
    cached = cfg.redis.get(cache_key(order_id))
    if cached is not None:
        return {"order": json.loads(cached), "source": "cache", "receipt": receipt_key(order_id)}
    with psycopg2.connect(**cfg.pg) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {ORDER_COLUMNS} FROM shop.orders WHERE id = %s", (order_id,))
        row = cur.fetchone()
    conn.close()
    if row is None:
        return None
    return {"order": order_doc(row), "source": "database", "receipt": receipt_key(order_id)}


def store_side_copies(cfg: Settings, order: dict[str, Any]) -> None:
    """The cache key and the receipt object of an order (the two non-database copies)."""
    doc = json.dumps(order, sort_keys=True)
    cfg.redis.set(cache_key(order["id"]), doc)
    cfg.s3.put_object(
        Bucket=cfg.bucket, Key=receipt_key(order["id"]), Body=doc.encode(), ContentType="application/json"
    )


def create_order(cfg: Settings, body: dict[str, Any]) -> dict[str, Any]:
    values = (
        int(body["customer_id"]),
        int(body["product_id"]),
        int(body.get("quantity", 1)),
        body.get("note"),
    )
    with psycopg2.connect(**cfg.pg) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO shop.orders (customer_id, product_id, quantity, placed, note)"
            f" VALUES (%s, %s, %s, now(), %s) RETURNING {ORDER_COLUMNS}",
            values,
        )
        order = order_doc(cur.fetchone())
    conn.close()
    store_side_copies(cfg, order)
    return {"order": order, "cache_key": cache_key(order["id"]), "receipt": receipt_key(order["id"])}


# ---- HTTP ------------------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    server_version = f"lab-app/{VERSION}"
    cfg: Settings  # set by serve()

    def send_json(self, code: int, doc: Any) -> None:
        body = (json.dumps(doc, sort_keys=True) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def fail(self, code: int, msg: str) -> None:
        self.send_json(code, {"error": msg})

    def do_GET(self) -> None:  # http.server's naming
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            if url.path == "/health":
                # requests in flight besides this one: what a drain before shutdown waits for
                in_flight = max(self.server.in_flight - 1, 0)
                flag = maintenance(self.cfg)
                if flag is not None:
                    self.send_json(503, {"status": "maintenance", "in_flight": in_flight, **flag})
                    return
                doc = health(self.cfg)
                self.send_json(200 if doc["status"] == "healthy" else 503, {**doc, "in_flight": in_flight})
            elif url.path == "/orders":
                limit = min(max(int(query.get("limit", ["20"])[0]), 1), 1000)
                self.send_json(200, {"orders": list_orders(self.cfg, limit)})
            elif url.path.startswith("/orders/"):
                found = get_order(self.cfg, int(url.path.rsplit("/", 1)[1]))
                if found is None:
                    self.fail(404, "no such order")
                else:
                    self.send_json(200, found)
            elif url.path == "/slow":
                seconds = min(float(query.get("seconds", ["1"])[0]), 300.0)
                time.sleep(seconds)
                self.send_json(200, {"slept_s": seconds})
            else:
                self.fail(404, f"no route for GET {url.path}")
        except ValueError as exc:
            self.fail(400, f"bad request: {exc}")
        except (psycopg2.Error, redis.RedisError, BotoCoreError, ClientError) as exc:
            self.fail(503, f"{type(exc).__name__}: {str(exc).strip()[:300]}")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/orders":
            self.fail(404, f"no route for POST {url.path}")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            self.send_json(201, create_order(self.cfg, body))
        except (ValueError, KeyError, TypeError) as exc:
            self.fail(400, f"bad order: {exc!r}")
        except psycopg2.IntegrityError as exc:
            self.fail(409, f"order refused by the database: {str(exc).strip()[:300]}")
        except (psycopg2.Error, redis.RedisError, BotoCoreError, ClientError) as exc:
            self.fail(503, f"{type(exc).__name__}: {str(exc).strip()[:300]}")


class DrainingServer(ThreadingHTTPServer):
    """Counts requests in flight, so a drain can wait for exactly those."""

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = 0
        self.idle = threading.Condition()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self.idle:
            self.in_flight += 1
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.idle:
                self.in_flight -= 1
                self.idle.notify_all()

    def wait_idle(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        with self.idle:
            while self.in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.idle.wait(left)
        return True


def log(msg: str) -> None:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{stamp} lab-app[{os.getpid()}]: {msg}", file=sys.stderr, flush=True)


def set_process_name() -> None:
    try:
        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(PROCESS_NAME), 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def drop_privileges(user: str) -> None:
    """Run on as ``user`` (LAB_APP_USER, set by labctl when it runs as root).

    The project's python may live where only root can read it (pyenv under /root), so labctl
    cannot start it as the lab user the way it starts the servers: it starts it as root, and the
    app switches user once everything is imported and its socket is bound. The standard-library
    modules a request needs later (PRELOAD_MODULES) are imported before that for this reason.
    """
    for name in PRELOAD_MODULES:
        importlib.import_module(name)
    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(HOME="/nonexistent", USER=user, LOGNAME=user)


def serve() -> int:
    set_process_name()
    cfg = Settings()
    Handler.cfg = cfg
    server = DrainingServer((cfg.host, cfg.port), Handler)
    health(cfg)  # a first round through every client's code path, while imports still work
    if os.geteuid() == 0 and os.environ.get("LAB_APP_USER"):
        drop_privileges(os.environ["LAB_APP_USER"])
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stopping.is_set():
            log(f"second {signal.Signals(signum).name} while draining: exiting now")
            os._exit(1)
        stopping.set()
        log(f"{signal.Signals(signum).name}: no new connections, draining (at most {cfg.drain_s:g}s)")
        # shutdown() waits for serve_forever() to return: not from the thread that runs it
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log(f"listening on http://{cfg.host}:{cfg.port} (db {cfg.db}, bucket {cfg.bucket}, flag {cfg.flag_file})")
    server.serve_forever(poll_interval=0.1)
    server.socket.close()  # new connections are refused from here on
    started = time.monotonic()
    if not server.wait_idle(cfg.drain_s):
        log(f"drain timeout: {server.in_flight} request(s) still in flight after {cfg.drain_s:g}s, exiting 1")
        return 1
    log(f"drained in {time.monotonic() - started:.2f}s, exiting 0")
    return 0


# ---- demo data ---------------------------------------------------------------------------------------
def seed() -> int:
    """The demo shop in all three stores: database shop (lab/demo/postgresql.sql, loaded only when
    the database is missing, as playbooks/dr_drill.yml loads it), bucket shop-receipts with a receipt
    per order for the first orders, and their cache keys in Redis; the empty backup buckets
    shop-backups and shop-offsite, and shop-restore-test (the restore test's scratch bucket). Safe to
    run again."""
    cfg = Settings()
    admin = {**cfg.pg, "dbname": "postgres"}
    owner = setting("LAB_APP_DB_OWNER", "shop_owner")
    conn = psycopg2.connect(**admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE ROLE "{owner}" LOGIN')
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (cfg.db,))
        created = cur.fetchone() is None
        if created:
            cur.execute(f'CREATE DATABASE "{cfg.db}" OWNER "{owner}"')
    conn.close()
    if created:
        psql = setting("LAB_PSQL", "psql")
        dataset = ROOT / "lab" / "demo" / "postgresql.sql"
        proc = subprocess.run(
            [
                psql,
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                cfg.pg["host"],
                "-p",
                str(cfg.pg["port"]),
                "-U",
                cfg.pg["user"],
                "-d",
                cfg.db,
                "-f",
                str(dataset),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            sys.exit(f"seed: loading {dataset} into {cfg.db} failed: {proc.stderr.strip()}")
        with psycopg2.connect(**cfg.pg) as c, c.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{cfg.db}" SET search_path = shop, public')
        c.close()
    # the receipts, the buckets the lab's backups write to (inventories/lab: backup_s3_buckets,
    # backup_offsite_root) and the restore test's scratch bucket (restore_test_s3_bucket)
    for bucket in (
        cfg.bucket,
        *setting("LAB_BACKUP_BUCKETS", "shop-backups,shop-offsite,shop-restore-test").split(","),
    ):
        try:
            cfg.s3.head_bucket(Bucket=bucket)
        except ClientError:
            cfg.s3.create_bucket(Bucket=bucket)
    with psycopg2.connect(**cfg.pg) as c, c.cursor() as cur:
        cur.execute(f"SELECT {ORDER_COLUMNS} FROM shop.orders ORDER BY id LIMIT %s", (SEED_ORDERS,))
        orders = [order_doc(r) for r in cur.fetchall()]
    c.close()
    present = {o["Key"] for o in cfg.s3.list_objects_v2(Bucket=cfg.bucket, Prefix="receipts/").get("Contents", [])}
    written = 0
    for order in orders:
        if receipt_key(order["id"]) not in present or not cfg.redis.exists(cache_key(order["id"])):
            store_side_copies(cfg, order)
            written += 1
    state = "loaded" if created else "already there"
    print(f"seed: database {cfg.db} {state}; {written} of {len(orders)} orders cached and receipted in {cfg.bucket}")
    return 0


def fingerprint() -> int:
    """Print one JSON fingerprint of the demo data in all three stores: per table of schema shop its
    row count and an md5 of its rows in key order; the Redis keys (but the maintenance key) with a
    SHA-256 over their names, types, values (DUMP) and whether they expire; the objects of the
    receipts bucket with a SHA-256 over their keys, sizes and ETags. Two equal fingerprints mean
    equal data."""
    cfg = Settings()
    out: dict[str, Any] = {"postgresql": {}, "redis": {}, "s3": {}}
    with psycopg2.connect(**cfg.pg) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'shop' ORDER BY 1")
        for (table,) in cur.fetchall():
            cur.execute(
                f"SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM shop.\"{table}\" t"
            )
            rows, digest = cur.fetchone()
            out["postgresql"][table] = {"rows": rows, "md5": digest}
    conn.close()
    digest = hashlib.sha256()
    raw = redis.Redis(host=setting("REDIS_HOST"), port=int(setting("REDIS_PORT")), password=setting("REDIS_PASSWORD"))
    keys = sorted(k for k in raw.scan_iter(count=1000) if k != cfg.maintenance_key.encode())
    for key in keys:
        digest.update(key + b"\0" + raw.type(key) + b"\0" + (raw.dump(key) or b""))
        digest.update(b"ttl" if raw.pttl(key) > 0 else b"none")
    out["redis"] = {"keys": len(keys), "sha256": digest.hexdigest()}
    digest = hashlib.sha256()
    count = 0
    for page in cfg.s3.get_paginator("list_objects_v2").paginate(Bucket=cfg.bucket):
        for obj in page.get("Contents", []):
            digest.update(f"{obj['Key']}\0{obj['Size']}\0{obj['ETag']}\n".encode())
            count += 1
    out["s3"] = {"bucket": cfg.bucket, "objects": count, "sha256": digest.hexdigest()}
    print(json.dumps(out, sort_keys=True))
    return 0


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "serve"
    if command == "serve":
        return serve()
    if command == "seed":
        return seed()
    if command == "fingerprint":
        return fingerprint()
    sys.exit(f"usage: {argv[0]} [serve|seed|fingerprint]")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
