"""Smoke tests of the lab itself: each service answers real requests, with its password only."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import boto3
import pytest
import redis
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import ROOT, psql, run_module


def _s3_client(s3: dict, secret_key: str | None = None):
    return boto3.client(
        "s3",
        endpoint_url=s3["endpoint_url"],
        aws_access_key_id=s3["access_key"],
        aws_secret_access_key=secret_key or s3["secret_key"],
        region_name=s3["region"],
        config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 1}),
    )


def test_postgresql_answers(lab):
    assert psql(lab, "select 1") == "1"
    assert psql(lab, "select current_user; show server_encoding") == "postgres\nUTF8"


def test_postgresql_has_pg_stat_statements_preloaded(lab):
    assert "pg_stat_statements" in psql(lab, "show shared_preload_libraries")


def test_postgresql_refuses_a_wrong_password(lab):
    wrong = {**lab, "pg": {**lab["pg"], "login_password": "not-the-password"}}
    with pytest.raises(AssertionError, match="password authentication failed"):
        psql(wrong, "select 1")


def test_redis_answers(lab):
    r = lab["redis"]
    client = redis.Redis(host=r["login_host"], port=r["login_port"], password=r["login_password"], socket_timeout=5)
    assert client.ping() is True


def test_redis_refuses_a_wrong_password(lab):
    r = lab["redis"]
    client = redis.Redis(host=r["login_host"], port=r["login_port"], password="nope", socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        client.ping()


def test_s3_answers(lab):
    response = _s3_client(lab["s3"]).list_buckets()
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert isinstance(response["Buckets"], list)


def test_s3_refuses_a_wrong_secret(lab):
    with pytest.raises(ClientError) as info:
        _s3_client(lab["s3"], secret_key="not-the-secret").list_buckets()
    assert info.value.response["Error"]["Code"] in {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"}


def test_lab_backup_root_exists(lab):
    assert lab["backup_root"] == ROOT / ".lab" / "backups"
    assert lab["backup_root"].is_dir()


def test_run_module_returns_the_module_result(tmp_backup_root: Path):
    modules = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("[a-z]*.py"))
    if not modules:
        pytest.skip("no modules in plugins/modules yet")
    # whatever else the module requires, argument validation fails it with a message, as JSON
    result = run_module(modules[0], {"no_such_option_xyz": 1})
    assert result["failed"] is True
    assert isinstance(result["msg"], str) and result["msg"]
    assert result["_rc"] == 1
    assert "Traceback" not in result["_stdout"] + result["_stderr"]
    assert tmp_backup_root.is_dir() and not any(tmp_backup_root.iterdir())


def _reserved_ports() -> set[int]:
    """net.ipv4.ip_local_reserved_ports as a set (its ranges expanded)."""
    text = Path("/proc/sys/net/ipv4/ip_local_reserved_ports").read_text().strip()
    ports: set[int] = set()
    for part in filter(None, text.split(",")):
        low, _dash, high = part.partition("-")
        ports.update(range(int(low), int(high or low) + 1))
    return ports


@pytest.mark.skipif(
    not os.access("/proc/sys/net/ipv4/ip_local_reserved_ports", os.W_OK), reason="needs root (a writable sysctl)"
)
def test_lab_ports_are_kept_out_of_the_client_port_range(lab):
    """labctl up reserves the lab's ports: the kernel never picks them as a client's source port, so a
    burst of test connections cannot hold one (also in TIME-WAIT) when a service restarts."""
    env = lab["env"]
    restore_test = yaml.safe_load((ROOT / "inventories/lab/group_vars/all.yml").read_text())["restore_test_redis_port"]
    ports = {int(env[k]) for k in ("PGPORT", "REDIS_PORT", "LAB_APP_PORT", "LAB_PROXY_PORT", "LAB_S3_HTTPS_PORT")}
    ports |= {int(env["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]), restore_test}
    assert ports <= _reserved_ports()
    # and the kernel honours it: a thousand source ports taken at once never include one of them
    socks = []
    try:
        for _attempt in range(1000):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        taken = {s.getsockname()[1] for s in socks}
    finally:
        for sock in socks:
            sock.close()
    assert not taken & ports
