"""One place for the connection options of every playbook (playbooks/vars/connection_defaults.yml).

The lab's S3 is put behind a TLS forwarder whose certificate comes from the lab's own CA (the one
nginx uses), so the S3 TLS options decide whether a playbook's S3 calls work: a CA bundle that
trusts the lab CA, or validate_certs false, gets through; a missing CA file fails naming the file.
backup.yml and dr_restore.yml ignored s3_validate_certs and s3_ca_bundle before.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, run_playbook

pytestmark = [pytest.mark.playbook]

TLS_DIR = ROOT / ".lab" / "proxy" / "tls"
UNKNOWN_ID = "19990101T000000Z"


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def tls_forwarder(upstream: tuple[str, int]) -> Iterator[int]:
    """https://localhost:<port> -> the lab S3 (plain http), with the lab CA's server certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(TLS_DIR / "server.crt", TLS_DIR / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(None)

            def handle(raw: socket.socket = raw) -> None:
                try:
                    client = ctx.wrap_socket(raw, server_side=True)
                except (OSError, ssl.SSLError):
                    raw.close()
                    return
                server = socket.create_connection(upstream)
                threading.Thread(target=_pipe, args=(server, client), daemon=True).start()
                _pipe(client, server)

            threading.Thread(target=handle, daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def https_s3(lab) -> Iterator[str]:
    from urllib.parse import urlsplit

    parts = urlsplit(lab["s3"]["endpoint_url"])
    with tls_forwarder((parts.hostname, parts.port)) as port:
        yield f"https://localhost:{port}"


def _backup_check(endpoint: str, root: Path, *extra: str):
    # check mode, components only: the S3 snapshot lists the bucket through the endpoint, nothing is written
    return run_playbook(
        "backup.yml",
        "--check",
        "--tags",
        "backup_components",
        "-e",
        f"s3_endpoint_url={endpoint}",
        "-e",
        f"backup_root={root}",
        *extra,
    )


def test_backup_uses_the_s3_ca_bundle(https_s3, tmp_backup_root):
    run = _backup_check(https_s3, tmp_backup_root, "-e", f"s3_ca_bundle={TLS_DIR / 'ca.crt'}")
    assert run.rc == 0, run
    assert "CERTIFICATE_VERIFY_FAILED" not in run.out


def test_backup_uses_s3_validate_certs(https_s3, tmp_backup_root):
    run = _backup_check(https_s3, tmp_backup_root, "-e", "s3_validate_certs=false")
    assert run.rc == 0, run


def test_backup_with_a_missing_ca_bundle_fails_on_it(https_s3, tmp_backup_root):
    # the option reaches the module: a CA file that does not exist is the error, not the untrusted certificate
    run = _backup_check(https_s3, tmp_backup_root, "-e", "s3_ca_bundle=/nonexistent/runbook-ca.pem")
    assert run.rc != 0, run
    assert "No such file or directory" in run.out, run
    assert "CERTIFICATE_VERIFY_FAILED" not in run.out, run


def test_dr_restore_uses_s3_validate_certs(https_s3, lab):
    # verify only; the DR set id does not exist: the S3 listing must get through TLS to say so
    run = run_playbook(
        "dr_restore.yml",
        "--tags",
        "dr_restore_select",
        "-e",
        f"s3_endpoint_url={https_s3}",
        "-e",
        "s3_validate_certs=false",
        "-e",
        "dr_restore_root=s3://shop-offsite/runbook",
        "-e",
        f"dr_restore_backup_id={UNKNOWN_ID}",
    )
    assert run.rc != 0, run
    assert UNKNOWN_ID in run.out, run
    assert "CERTIFICATE_VERIFY_FAILED" not in run.out and "TLS verification" not in run.out, run
