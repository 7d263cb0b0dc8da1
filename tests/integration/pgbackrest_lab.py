"""Throwaway pgBackRest lab: a PostgreSQL 15 cluster of its own and a TLS front before the lab SeaweedFS.

Shared by tests/integration/test_postgresql_pitr*.py and bench/pitr_postgresql.py (one copy):

- clusters run as the unprivileged user ``runbooklab`` on their own port and socket directory
  (``pg_start``, ``pg_stop``, ``q`` as the ``postgres`` superuser over the socket, trust auth);
- pgBackRest's S3 driver speaks HTTPS only, so ``make_tls`` + ``start_nginx`` put an nginx TLS front
  (certificate for ``s3.lab.test`` and ``localhost`` from a throwaway CA) before the lab's plain-HTTP
  SeaweedFS. pgBackRest 2.45 checks the certificate against ``repo1-storage-host`` by DNS name only,
  so the modules connect to ``localhost`` and send ``s3.lab.test`` as the S3 endpoint
  (``repo_options``).

No pytest here: the bench imports it too. ``wait_for`` raises AssertionError, which pytest reports as
a failure.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "runbooklab"
S3_ENDPOINT = "s3.lab.test"  # the name in the front's certificate that pgBackRest sends as the S3 endpoint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_user(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", USER, "--", *argv], capture_output=True, text=True, check=check)


def chown_to_user(*paths: Path) -> None:
    entry = pwd.getpwnam(USER)
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def make_tls(d: Path) -> None:
    """A throwaway CA (``ca.crt``) and a server certificate for s3.lab.test and localhost in ``d``."""
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(d / "ca.key"),
       "-out", str(d / "ca.crt"), "-subj", "/CN=pitr test CA", "-addext", "basicConstraints=critical,CA:TRUE",
       "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"),
       "-subj", f"/CN={S3_ENDPOINT}")  # fmt: skip
    (d / "ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName=DNS:{S3_ENDPOINT},DNS:localhost\n"
    )
    sh("openssl", "x509", "-req", "-days", "2", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"), "-CAkey",
       str(d / "ca.key"), "-set_serial", "0x1234", "-out", str(d / "server.crt"), "-extfile", str(d / "ext"))  # fmt: skip


def start_nginx(d: Path, port: int, upstream: str) -> None:
    """nginx in ``d`` serving TLS on 127.0.0.1:``port`` with the certificate of ``make_tls(d.parent / "tls")``."""
    (d / "nginx.conf").write_text(f"""
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {d.parent}/tls/server.crt; ssl_certificate_key {d.parent}/tls/server.key;
    client_max_body_size 0; proxy_request_buffering off; proxy_buffering off;
    location / {{ proxy_pass {upstream}; proxy_set_header Host $http_host; proxy_http_version 1.1; }}
  }}
}}
""")
    sh("/usr/sbin/nginx", "-c", str(d / "nginx.conf"), "-e", str(d / "error.log"))


def stop_nginx(d: Path) -> None:
    pid = d / "nginx.pid"
    if pid.exists():
        os.kill(int(pid.read_text()), 15)


def initdb(data: Path) -> None:
    as_user(str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")


def pg_start(data: Path, port: int, sock: Path, log: Path, *extra: str) -> None:
    opts = f"-p {port} -k {sock} -c listen_addresses='' " + " ".join(extra)
    as_user(str(BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "120", "start")


def pg_stop(data: Path, mode: str = "immediate") -> None:
    if (data / "postmaster.pid").exists():
        as_user(str(BIN / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "stop", check=False)


def q(port: int, sock: Path, statement: str, args: Any = None) -> list:
    import psycopg2  # pylint: disable=import-outside-toplevel  # only the callers that query need it

    conn = psycopg2.connect(host=str(sock), port=port, user="postgres", dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def wait_for(what: str, cond: Callable[[], Any], timeout: float = 90, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not reached within {timeout} s")


def base_options(stanza: str, config_file: Path, s3: dict[str, str]) -> dict[str, Any]:
    """Options every pgBackRest module of the collection takes here (runs pgbackrest as ``runbooklab``)."""
    return dict(
        stanza=stanza, config_file=str(config_file), os_user=USER,
        access_key=s3["access_key"], secret_key=s3["secret_key"], command_timeout=300,
    )  # fmt: skip


def repo_options(root: Path, bucket: str, front_port: int) -> dict[str, Any]:
    """postgresql_wal_archive's repository options: S3 through the TLS front of ``root/tls``, logs,
    locks and spool under ``root`` (directories ``log`` and ``lock`` owned by runbooklab)."""
    return dict(
        repo_bucket=bucket, s3_endpoint=S3_ENDPOINT, storage_host="localhost", storage_port=front_port,
        storage_ca_file=str(root / "tls" / "ca.crt"), s3_uri_style="path", s3_region="us-east-1",
        log_path=str(root / "log"), lock_path=str(root / "lock"), spool_path=str(root / "lock"),
        global_options={"io-timeout": 20},
    )  # fmt: skip
