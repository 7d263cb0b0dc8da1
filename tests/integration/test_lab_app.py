"""The lab's demo application (lab/app) and its nginx TLS proxy, through real requests.

The proxy is reached the way a client reaches it: TLS to 127.0.0.1:58443 with SNI app.lab.test,
verified against the lab CA only. The drain tests run a private app instance on its own port,
so the lab's app keeps serving the other tests.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from botocore.config import Config
from conftest import LABCTL, PYTHON, ROOT, _labctl, psql, run_module

pytestmark = [pytest.mark.destructive]

APP = ROOT / "lab" / "app" / "app.py"
# The drain tests' own app instance.  Its port lies below Linux's ephemeral range (32768-60999):
# a probe of a port inside that range while nothing listens on it can get the same port as its
# own source port and connect to itself (TCP simultaneous open), read its own request back
# ("BadStatusLine: GET /health") and keep the port busy for the app it waits for (CI failure).
PRIVATE_PORT = 28010


@pytest.fixture(scope="module")
def shop(lab) -> dict[str, str]:
    """The lab with its demo data (labctl seed) and the app and proxy up; returns labctl env."""
    proc = _labctl("seed", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return lab["env"]


def proxy_request(env: dict[str, str], method: str, path: str, body: Any = None) -> tuple[int, dict]:
    """One HTTPS request through nginx: TLS verified with the lab CA only, SNI = LAB_PROXY_HOST."""
    ctx = ssl.create_default_context(cafile=env["LAB_CA_CERT"])
    host, port = env["LAB_PROXY_HOST"], int(env["LAB_PROXY_PORT"])
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
    conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=host)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def get(url: str, timeout: float = 10) -> tuple[int, dict]:
    host, _sep, rest = url.removeprefix("http://").partition("/")
    name, _sep, port = host.partition(":")
    conn = http.client.HTTPConnection(name, int(port), timeout=timeout)
    try:
        conn.request("GET", "/" + rest)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def s3_client(env: dict[str, str]):
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
        config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 1}),
    )


def redis_client(env: dict[str, str]) -> redis.Redis:
    return redis.Redis(
        host=env["REDIS_HOST"], port=int(env["REDIS_PORT"]), password=env["REDIS_PASSWORD"], socket_timeout=5
    )


# ---- health, TLS, status -----------------------------------------------------------------------------
def test_health_through_the_proxy_is_healthy(shop):
    code, doc = proxy_request(shop, "GET", "/health")
    assert code == 200, doc
    assert doc["status"] == "healthy"
    assert set(doc["components"]) == {"postgresql", "redis", "s3"}
    for name, component in doc["components"].items():
        assert component["status"] == "ok", (name, component)
        assert isinstance(component["latency_ms"], float)


def test_proxy_is_refused_without_the_lab_ca(shop):
    ctx = ssl.create_default_context()  # the system trust store does not know the lab CA
    port = int(shop["LAB_PROXY_PORT"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ctx.wrap_socket(raw, server_hostname=shop["LAB_PROXY_HOST"])


def test_lab_certificates_and_keys(shop):
    for key in ("LAB_CA_KEY", "LAB_PROXY_KEY"):
        assert Path(shop[key]).stat().st_mode & 0o777 == 0o600, key
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", shop["LAB_CA_CERT"], shop["LAB_PROXY_CERT"]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", shop["LAB_PROXY_CERT"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:app.lab.test" in text and "DNS:localhost" in text
    check = subprocess.run(
        ["nginx", "-t", "-q", "-c", shop["LAB_PROXY_CONF"], "-e", "/dev/null"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_status_lists_app_and_proxy(shop):
    proc = _labctl("status", timeout=60)
    lines = {line.split()[0]: line.split()[1] for line in proc.stdout.splitlines() if line.strip()}
    assert lines.get("app") == "up", proc.stdout
    assert lines.get("proxy") == "up", proc.stdout


# ---- maintenance ---------------------------------------------------------------------------------------
def test_maintenance_flag_file_makes_health_503(shop):
    args = {"flag_file": shop["LAB_MAINTENANCE_FLAG"], "reason": "test_lab_app"}
    on = run_module("maintenance_mode", {**args, "state": "on"})
    try:
        assert on["_rc"] == 0 and on["changed"] is True, on
        code, doc = proxy_request(shop, "GET", "/health")
        assert (code, doc["status"], doc["signal"]) == (503, "maintenance", "flag_file")
    finally:
        off = run_module("maintenance_mode", {**args, "state": "off"})
    assert off["_rc"] == 0 and off["changed"] is True, off
    code, doc = proxy_request(shop, "GET", "/health")
    assert (code, doc["status"]) == (200, "healthy")


def test_maintenance_redis_key_makes_health_503(shop):
    args = {
        "redis_key": shop["LAB_MAINTENANCE_KEY"],
        "login_host": shop["REDIS_HOST"],
        "login_port": int(shop["REDIS_PORT"]),
        "login_password": shop["REDIS_PASSWORD"],
    }
    on = run_module("maintenance_mode", {**args, "state": "on", "ttl": 60})
    try:
        assert on["_rc"] == 0 and on["changed"] is True, on
        code, doc = get(shop["LAB_APP_URL"] + "/health")
        assert (code, doc["status"], doc["signal"]) == (503, "maintenance", "redis_key")
    finally:
        run_module("maintenance_mode", {**args, "state": "off"})
    assert get(shop["LAB_APP_URL"] + "/health")[0] == 200


# ---- data in all three stores ---------------------------------------------------------------------------
def test_order_lands_in_all_three_stores(shop):
    code, created = proxy_request(
        shop, "POST", "/orders", {"customer_id": 42, "product_id": 7, "quantity": 2, "note": "test_lab_app"}
    )
    assert code == 201, created
    order_id = created["order"]["id"]
    assert created["cache_key"] == f"cache:order:{order_id}"
    assert created["receipt"] == f"receipts/{order_id}.json"

    code, listed = proxy_request(shop, "GET", "/orders?limit=5")
    assert code == 200 and order_id in [o["id"] for o in listed["orders"]]
    code, found = proxy_request(shop, "GET", f"/orders/{order_id}")
    assert code == 200 and found["order"] == created["order"] and found["source"] == "cache"

    lab = {"pg": {"login_host": shop["PGHOST"], "login_port": int(shop["PGPORT"]), "login_user": shop["PGUSER"]}}
    lab["pg"]["login_password"] = shop["PGPASSWORD"]
    row = psql(lab, f"select customer_id, product_id, quantity, note from shop.orders where id = {order_id}", "shop")
    assert row == "42|7|2|test_lab_app"
    assert json.loads(redis_client(shop).get(f"cache:order:{order_id}")) == created["order"]
    body = s3_client(shop).get_object(Bucket=shop["LAB_APP_BUCKET"], Key=f"receipts/{order_id}.json")["Body"]
    assert json.loads(body.read()) == created["order"]


def test_seed_put_data_in_all_three_stores(shop):
    assert redis_client(shop).exists("cache:order:1") == 1
    s3_client(shop).head_object(Bucket=shop["LAB_APP_BUCKET"], Key="receipts/1.json")
    code, found = get(shop["LAB_APP_URL"] + "/orders/1")
    assert code == 200 and found["order"]["id"] == 1


def test_bad_order_is_refused(shop):
    code, doc = proxy_request(shop, "POST", "/orders", {"customer_id": "x"})
    assert code == 400 and "bad order" in doc["error"]


# ---- graceful drain -------------------------------------------------------------------------------------
def start_private_app(env: dict[str, str], drain_s: float) -> subprocess.Popen:
    child_env = {**os.environ, **env, "LAB_APP_PORT": str(PRIVATE_PORT), "LAB_APP_DRAIN_S": str(drain_s)}
    child_env.pop("LAB_APP_USER", None)
    proc = subprocess.Popen(
        [str(PYTHON), str(APP), "serve"], env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if get(f"http://127.0.0.1:{PRIVATE_PORT}/health", timeout=2)[0] in (200, 503):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("private app did not answer within 20s")


def slow_request(seconds: float, results: list) -> None:
    try:
        results.append(get(f"http://127.0.0.1:{PRIVATE_PORT}/slow?seconds={seconds}", timeout=30))
    except OSError as exc:
        results.append(exc)


def refused_within(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", PRIVATE_PORT), timeout=1).close()
        except (ConnectionRefusedError, ConnectionResetError):
            # refused, or reset: a connection that reached the backlog as the listener closed
            return True
        time.sleep(0.05)
    return False


def test_sigterm_drains_in_flight_requests_and_exits_0(shop):
    proc = start_private_app(shop, drain_s=10)
    results: list = []
    try:
        # a 4 s request, so that it is still in flight after the checks below even on a busy machine
        worker = threading.Thread(target=slow_request, args=(4, results))
        worker.start()
        time.sleep(0.5)  # the request is in flight
        proc.send_signal(signal.SIGTERM)
        assert refused_within(2.0), "new connections still accepted after SIGTERM"
        assert worker.is_alive(), "the in-flight request ended before the drain could be observed"
        worker.join(10)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert results and results[0][0] == 200, results
    assert "drained in" in proc.stdout.read()


def in_flight_becomes(expected: int, within: float = 1.0) -> list[int]:
    """Poll /health until it reports `expected` other requests in flight; return what it reported.

    A request whose response the client has already read is still counted until its server thread
    has closed the socket, a few milliseconds later: a single read right after another request races
    with that (seen once in CI as in_flight 1 right after the start-up probe).
    """
    seen: list[int] = []
    deadline = time.monotonic() + within
    while True:
        seen.append(get(f"http://127.0.0.1:{PRIVATE_PORT}/health")[1]["in_flight"])
        if seen[-1] == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.02)


def test_health_counts_other_requests_in_flight(shop):
    proc = start_private_app(shop, drain_s=5)
    results: list = []
    try:
        assert in_flight_becomes(0)[-1] == 0
        worker = threading.Thread(target=slow_request, args=(4, results), daemon=True)
        worker.start()
        time.sleep(0.5)
        # the slow request runs until 4 s: within 1 s the count must settle on exactly that one
        seen = in_flight_becomes(1)
        assert seen[-1] == 1 and worker.is_alive(), seen
        worker.join(10)
        assert in_flight_becomes(0)[-1] == 0
    finally:
        proc.kill()
        proc.wait(10)
    assert results and results[0][0] == 200, results


def test_drain_timeout_exits_1(shop):
    proc = start_private_app(shop, drain_s=0.5)
    results: list = []
    try:
        worker = threading.Thread(target=slow_request, args=(5, results), daemon=True)
        worker.start()
        time.sleep(0.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 1
        assert time.monotonic() - started < 4.5  # the drain timeout (0.5 s), not the 5 s request
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "drain timeout" in proc.stdout.read()


def test_labctl_down_app_drains_and_up_restarts_it(shop):
    log = Path(shop["LAB_APP_PIDFILE"]).with_name("app.log")
    down = subprocess.run([str(LABCTL), "down", "app"], capture_output=True, text=True, timeout=60, check=False)
    try:
        assert down.returncode == 0, down.stderr
        assert "app: down" in down.stdout
        assert log.read_text().rstrip().endswith("exiting 0")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(shop["LAB_APP_PORT"])), timeout=2)
    finally:
        up = subprocess.run([str(LABCTL), "up", "app"], capture_output=True, text=True, timeout=120, check=False)
    assert up.returncode == 0, up.stderr
    assert proxy_request(shop, "GET", "/health")[0] == 200
