"""playbooks/shutdown.yml and playbooks/startup.yml on the lab (roles shutdown, startup, component).

The lab's services are really stopped and started here; the module-scoped fixture brings every
one of them back (``labctl up``) whatever happens, so later tests find the lab as they expect.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import psycopg2
import pytest
import redis
from conftest import LABCTL, ROOT, run_playbook

pytestmark = [pytest.mark.playbook, pytest.mark.destructive]

SERVICES = ("postgresql", "redis", "s3", "app", "proxy")
PORTS = {"postgresql": 55432, "redis": 56379, "s3": 58333, "app": 58000, "proxy": 58443}
FLAG = ROOT / ".lab" / "app" / "maintenance.flag"


def status(service: str) -> bool:
    return (
        subprocess.run([str(LABCTL), "status", service], capture_output=True, timeout=60, check=False).returncode == 0
    )


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def order_of(out: str, markers: list[str]) -> list[int]:
    return [out.index(m) for m in markers]


def clear_maintenance(lab) -> None:
    FLAG.unlink(missing_ok=True)
    redis.Redis(port=lab["redis"]["login_port"], password=lab["redis"]["login_password"]).delete("maintenance")


@pytest.fixture(scope="module")
def lab_up(lab):
    subprocess.run([str(LABCTL), "up"], capture_output=True, timeout=300, check=True)
    clear_maintenance(lab)
    yield lab
    subprocess.run([str(LABCTL), "up"], capture_output=True, timeout=300, check=False)
    clear_maintenance(lab)


def test_shutdown_check_mode_changes_nothing(lab_up):
    run = run_playbook("shutdown.yml", "--check")
    assert run.rc == 0, run
    assert run.changed() > 0, "check mode must predict the stops"
    assert all(status(s) for s in SERVICES), "check mode stopped a service"
    assert not FLAG.exists(), "check mode set the maintenance flag"


def test_shutdown_stops_everything_in_order_then_reruns_cleanly(lab_up):
    run = run_playbook("shutdown.yml")
    assert run.rc == 0, run
    down = [s for s in SERVICES if status(s) or port_open(PORTS[s])]
    assert not down, f"still running after shutdown: {down}"
    assert FLAG.exists(), "maintenance flag not set"
    # proxy (no new traffic), then the app by signal, then cache, database, storage
    positions = order_of(
        run.out,
        [
            "Maintenance on (every signal)",
            "Run the stop command of proxy",
            "Wait for the requests in flight to finish on app",
            "Send the graceful stop signal to app",
            "Run the stop command of redis",
            "Run the stop command of postgresql",
            "Run the stop command of s3",
        ],
    )
    assert positions == sorted(positions), run
    again = run_playbook("shutdown.yml")
    assert again.rc == 0, again
    assert again.changed() == 0, again


def test_startup_check_mode_changes_nothing_when_down(lab_up):
    assert not status("postgresql"), "expects the lab down (previous test)"
    run = run_playbook("startup.yml", "--check")
    assert run.rc == 0, run
    assert run.changed() > 0
    assert not any(status(s) for s in SERVICES), "check mode started a service"


def test_startup_starts_in_order_and_is_healthy_then_idempotent(lab_up):
    run = run_playbook("startup.yml")
    assert run.rc == 0, run
    assert all(status(s) for s in SERVICES)
    assert not FLAG.exists(), "maintenance flag still set after startup"
    positions = order_of(
        run.out,
        [
            "Run the start command of s3",
            "Run the start command of postgresql",
            "Run the start command of redis",
            "Run the start command of app",
            "Run the start command of proxy",
            "Wait until the platform reports healthy",
        ],
    )
    assert positions == sorted(positions), run
    with urllib.request.urlopen("http://127.0.0.1:58000/health", timeout=10) as response:
        assert json.load(response)["status"] == "healthy"
    # the archive_timeout trap: the started server's configuration was reloaded after its start
    assert "After its start, reload the configuration of postgresql" in run.out, run
    pg = lab_up["pg"]
    with (
        psycopg2.connect(
            host="127.0.0.1",
            port=pg["login_port"],
            user=pg["login_user"],
            password=pg["login_password"],
            dbname="postgres",
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT pg_conf_load_time() > pg_postmaster_start_time()")
        assert cur.fetchone()[0], "startup did not reload PostgreSQL's configuration after starting it"
    again = run_playbook("startup.yml")
    assert again.rc == 0, again
    assert again.changed() == 0, again


def test_drain_timeout_fails_clearly_and_leaves_the_app_running(lab_up):
    assert status("app")
    results: list = []

    def slow() -> None:
        try:
            with urllib.request.urlopen("http://127.0.0.1:58000/slow?seconds=40", timeout=90) as response:
                results.append(response.status)
        except OSError as exc:
            results.append(exc)

    worker = threading.Thread(target=slow, daemon=True)
    worker.start()
    time.sleep(0.5)
    started = time.monotonic()
    run = run_playbook("shutdown.yml", "-e", "shutdown_drain_timeout=2")
    assert run.rc != 0, run
    assert "drain of app timed out: 1 request(s) still in flight after 2 s" in run.out, run
    assert time.monotonic() - started < 60
    assert status("app"), "the app must still run after a failed drain"
    assert not status("proxy"), "the proxy stops before the drain"
    assert status("redis") and status("postgresql") and status("s3"), "nothing after the app may stop"
    assert FLAG.exists()
    worker.join(60)
    assert results == [200], "the in-flight request must complete"
    back = run_playbook("startup.yml")
    assert back.rc == 0, back
    assert all(status(s) for s in SERVICES)
    assert not FLAG.exists()


def test_unknown_tier_is_refused_before_anything_starts(lab_up, tmp_path: Path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "runbook_components:\n  - {name: ghost, tier: middleware, control: {type: command, start: [/bin/true]}}\n"
    )
    run = run_playbook("startup.yml", "-e", f"@{bad}")
    assert run.rc != 0, run
    assert "ghost" in run.out and "middleware" in run.out, run
