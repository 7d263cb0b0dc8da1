"""playbooks/cert_renewal.yml (role runbook.stack.cert_renewal) against a private nginx.

The lab's proxy and its certificates are never touched (other tests stop and start the lab at the
same time): each test starts its own nginx master (the ``Nginx`` helper of
test_tls_certificate_install: own prefix, config and pid file under tmp_path, a free loopback
port) with a certificate of a test CA that expires in a chosen number of days, writes an inventory
with one host in group ``proxy`` (local connection) and a vars file pointing
``cert_renewal_certificates`` at that nginx, and runs the playbook. What is served is read with
Python's ssl module, independently of the role; what the role recorded is read from the
``set_stats`` data the playbook publishes (shown with ANSIBLE_SHOW_CUSTOM_STATS).
"""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import PYTHON, custom_stats, run_playbook
from cryptography import x509
from test_tls_certificate_install import HOST, Nginx, fp, key_pem, make_cert, make_key, pem, served_fingerprint

pytestmark = [pytest.mark.playbook]

HOSTNAME = "renewal-host"


def served_serial(port: int, sni: str = HOST) -> int:
    """Serial number of the leaf certificate served on 127.0.0.1:port (Python ssl, no verification)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def serial_hex(cert: x509.Certificate) -> str:
    text = format(cert.serial_number, "X")
    return "0" + text if len(text) % 2 else text


@pytest.fixture(scope="module")
def pki() -> SimpleNamespace:
    root_key, inter_key = make_key(), make_key()
    root = make_cert("Renewal Test Root", root_key, ca=True, days=3650)
    inter = make_cert("Renewal Test Intermediate", inter_key, issuer=root, issuer_key=root_key, ca=True, days=1000)

    def leaf(days: float = 90, dns: tuple[str, ...] = (HOST,), start_days: float = -1, serial: int | None = None):
        key = make_key()
        cert = make_cert(
            dns[0], key, issuer=inter, issuer_key=inter_key, dns=dns, days=days, start_days=start_days, serial=serial
        )
        return cert, key

    return SimpleNamespace(root=root, inter=inter, leaf=leaf)


class Renewal:
    """A private nginx serving a certificate, the new pair waiting for it, and a playbook run."""

    def __init__(self, base: Path, pki: SimpleNamespace, days: float, serial: int | None = None) -> None:
        self.base = base
        self.pki = pki
        self.nginx = Nginx(base / "nginx")
        self.old_cert, self.old_key = pki.leaf(days=days, serial=serial)
        self.renew_dir = base / "renew"
        self.new_cert = self.new_key = None
        self.inventory = base / "inventory.yml"
        self.vars_file = base / "vars.yml"

    def start(self) -> None:
        self.nginx.start(self.old_cert, self.old_key)
        self.inventory.write_text(
            json.dumps(
                {
                    "all": {
                        "children": {
                            "proxy": {
                                "hosts": {
                                    HOSTNAME: {
                                        "ansible_connection": "local",
                                        "ansible_python_interpreter": str(PYTHON),
                                    }
                                }
                            }
                        }
                    }
                }
            )
        )
        self.write_vars()

    def put_new_pair(self, cert, key) -> None:
        """What an ACME client or the CA team would do: the new pair (and chain) in the renew dir."""
        self.renew_dir.mkdir(parents=True, exist_ok=True)
        (self.renew_dir / "cert.pem").write_bytes(pem(cert))
        (self.renew_dir / "key.pem").write_bytes(key_pem(key))
        (self.renew_dir / "chain.pem").write_bytes(pem(self.pki.inter))
        (self.renew_dir / "ca.pem").write_bytes(pem(self.pki.root))
        self.new_cert, self.new_key = cert, key

    def write_vars(self, **extra: Any) -> None:
        entry = {
            "name": "www",
            "cert_path": str(self.nginx.cert),
            "key_path": str(self.nginx.key),
            "hostnames": [HOST],
            "verify_host": "127.0.0.1",
            "verify_port": self.nginx.port,
            "server_name": HOST,
            "validate_command": self.nginx.validate_command,
            "reload_command": self.nginx.reload_command,
            "ca_bundle": str(self.renew_dir / "ca.pem"),
            "new_cert_src": str(self.renew_dir / "cert.pem"),
            "new_key_src": str(self.renew_dir / "key.pem"),
            "new_chain_src": str(self.renew_dir / "chain.pem"),
        }
        entry.update(extra)
        self.vars_file.write_text(json.dumps({"cert_renewal_certificates": [entry]}))

    def run(self, *args: str):
        run = run_playbook("cert_renewal.yml", "-e", f"@{self.vars_file}", *args, inventory=str(self.inventory))
        run.stats = custom_stats(run.out)
        return run

    def served(self) -> str:
        return served_fingerprint(self.nginx.port)


def results(run) -> list[dict[str, Any]]:
    assert run.stats is not None, f"no custom stats in the output:\n{run}"
    return run.stats["runbook_cert_renewal"][HOSTNAME]


@pytest.fixture
def renewal(tmp_path, pki, monkeypatch):
    """``renewal(days)``: a private nginx serving a certificate that expires in ``days`` days."""
    monkeypatch.setenv("ANSIBLE_SHOW_CUSTOM_STATS", "true")
    started: list[Renewal] = []

    def make(days: float, serial: int | None = None) -> Renewal:
        setup = Renewal(tmp_path / f"r{len(started)}", pki, days, serial)
        started.append(setup)
        setup.start()
        return setup

    try:
        yield make
    finally:
        for setup in started:
            setup.nginx.stop()


# ------------------------------------------------------------------------------------------------
# due, not due, check mode, rerun
# ------------------------------------------------------------------------------------------------


def test_expiring_certificate_is_renewed_and_rerun_changes_nothing(renewal, pki):
    r = renewal(days=10)
    r.put_new_pair(*pki.leaf(days=90))
    run = r.run()
    assert run.rc == 0, run
    assert run.changed(HOSTNAME) >= 1
    # served now: the new certificate, seen by Python's ssl (not by the role or the module)
    assert served_serial(r.nginx.port) == r.new_cert.serial_number
    assert r.served() == fp(r.new_cert)
    assert r.nginx.cert.read_bytes() == pem(r.new_cert, pki.inter)  # fullchain by default
    assert r.nginx.key.read_bytes() == key_pem(r.new_key)
    (result,) = results(run)
    assert result["action"] == "renewed" and result["due"] is True
    assert result["old_serial"] == serial_hex(r.old_cert)
    assert result["new_serial"] == serial_hex(r.new_cert)
    assert result["old_not_after"] == r.old_cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert result["new_not_after"] == r.new_cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert 9.5 < result["days_left"] < 10.5 and 89 < result["new_days_left"] < 91
    assert "within cert_renewal_days=30" in result["reason"]
    assert result["served_fingerprint"] == fp(r.new_cert)
    assert "PRIVATE KEY" not in run.out

    again = r.run()
    assert again.rc == 0, again
    assert again.changed(HOSTNAME) == 0
    (result,) = results(again)
    assert result["action"] == "skipped" and result["due"] is False
    assert result["old_serial"] == serial_hex(r.new_cert)
    assert served_serial(r.nginx.port) == r.new_cert.serial_number


def test_certificate_valid_for_300_days_is_not_renewed(renewal, pki):
    r = renewal(days=300)
    r.put_new_pair(*pki.leaf(days=90))
    before = r.nginx.snapshot()
    run = r.run()
    assert run.rc == 0, run
    assert run.changed(HOSTNAME) == 0
    assert r.nginx.snapshot() == before
    assert served_serial(r.nginx.port) == r.old_cert.serial_number
    (result,) = results(run)
    assert result["action"] == "skipped" and result["due"] is False
    assert 299 < result["days_left"] < 301
    assert result["new_serial"] is None
    assert "more than cert_renewal_days=30" in result["reason"]
    assert "www: skipped" in run.out


def test_force_renews_a_certificate_that_is_not_due(renewal, pki):
    r = renewal(days=300)
    r.put_new_pair(*pki.leaf(days=90))
    run = r.run("-e", "cert_renewal_force=true")
    assert run.rc == 0, run
    assert served_serial(r.nginx.port) == r.new_cert.serial_number
    (result,) = results(run)
    assert result["action"] == "renewed" and "forced" in result["reason"]


def test_check_mode_reports_and_changes_nothing(renewal, pki):
    r = renewal(days=10)
    r.put_new_pair(*pki.leaf(days=90))
    before = r.nginx.snapshot()
    run = r.run("--check")
    assert run.rc == 0, run
    assert run.changed(HOSTNAME) >= 1  # predicted
    assert r.nginx.snapshot() == before
    assert served_serial(r.nginx.port) == r.old_cert.serial_number
    (result,) = results(run)
    assert result["action"] == "would_renew"
    assert result["new_serial"] == serial_hex(r.new_cert)
    assert result["served_fingerprint"] == fp(r.old_cert)
    # the real run after it does renew
    run = r.run()
    assert run.rc == 0, run
    assert served_serial(r.nginx.port) == r.new_cert.serial_number


# ------------------------------------------------------------------------------------------------
# bad new pairs: the play fails naming the cause; the old certificate stays in place and served
# ------------------------------------------------------------------------------------------------


def wrong_key(pki):
    cert, _key = pki.leaf(days=90)
    return cert, make_key()


def expired(pki):
    return pki.leaf(days=-2, start_days=-60)


def wrong_host_name(pki):
    return pki.leaf(days=90, dns=("other.example.org",))


def too_short(pki):
    return pki.leaf(days=20)


@pytest.mark.parametrize(
    ("make_pair", "cause"),
    [
        (wrong_key, "does not belong to certificate_src"),
        (expired, "has expired: its Not After is"),
        (wrong_host_name, f"is not valid for {HOST} (its names: other.example.org)"),
        (too_short, "sooner than min_days_valid=30"),
    ],
    ids=["wrong-key", "expired", "wrong-host-name", "expires-too-soon"],
)
def test_bad_new_pair_fails_and_the_old_certificate_stays(renewal, pki, make_pair, cause):
    r = renewal(days=10)
    r.put_new_pair(*make_pair(pki))
    before = r.nginx.snapshot()
    run = r.run()
    assert run.rc != 0, run
    assert "1 of 1 due certificate(s) not renewed" in run.out, run
    assert f"www ({r.nginx.cert}, expires in" in run.out
    assert "refused to install the certificate, nothing was written" in run.out
    assert cause in run.out, run
    assert r.nginx.snapshot() == before
    assert served_serial(r.nginx.port) == r.old_cert.serial_number
    (result,) = results(run)  # published for AWX even though the play failed
    assert result["action"] == "failed" and cause in result["msg"]
    assert "PRIVATE KEY" not in run.out


def test_failing_validation_rolls_back_and_the_old_certificate_is_served(renewal, pki):
    r = renewal(days=10)
    r.put_new_pair(*pki.leaf(days=90))
    r.write_vars(validate_command=["sh", "-c", "echo 'nginx: [emerg] renewal test' >&2; exit 1"])
    before = r.nginx.snapshot()
    run = r.run()
    assert run.rc != 0, run
    assert "failed (rc=1): nginx: [emerg] renewal test" in run.out
    assert "Rolled back: the previous files are back in place" in run.out
    assert r.nginx.snapshot() == before
    assert served_serial(r.nginx.port) == r.old_cert.serial_number
    (result,) = results(run)
    assert result["action"] == "failed" and result["rolled_back"] is True


def test_missing_new_pair_fails_naming_the_file(renewal):
    r = renewal(days=10)
    before = r.nginx.snapshot()
    run = r.run()
    assert run.rc != 0, run
    assert f"cannot read certificate_src {r.renew_dir / 'cert.pem'}" in run.out, run
    assert r.nginx.snapshot() == before
    assert served_serial(r.nginx.port) == r.old_cert.serial_number


def test_unreadable_installed_certificate_fails_before_anything_is_installed(renewal, pki):
    r = renewal(days=10)
    r.put_new_pair(*pki.leaf(days=90))
    r.write_vars(cert_path=str(r.nginx.key))  # a wrong path: the key is no certificate
    before = r.nginx.snapshot()
    run = r.run()
    assert run.rc != 0, run
    assert f"cannot read the installed certificate, nothing was renewed: www ({r.nginx.key})" in run.out, run
    assert r.nginx.snapshot() == before
    assert served_serial(r.nginx.port) == r.old_cert.serial_number


def test_served_certificate_that_differs_from_disk_fails_verification(renewal, pki):
    # not due, but the file on disk was replaced without a reload: the VERIFY play notices.
    # Both serials have an odd number of hex digits, so the message must show openssl's leading zero.
    r = renewal(days=300, serial=0x987B57EF7A209438162F1BE316D9189980B848F)
    other, other_key = pki.leaf(days=200, serial=0x5188B953A977328D3E4423BD5C3F283121A9326)
    r.nginx.cert.write_bytes(pem(other))
    r.nginx.key.write_bytes(key_pem(other_key))
    r.put_new_pair(*pki.leaf(days=90))
    run = r.run()
    assert run.rc != 0, run
    assert (
        f"serves serial 0987B57EF7A209438162F1BE316D9189980B848F, but {r.nginx.cert} holds 05188B953A977328D3E4423BD5C3F283121A9326"
        in run.out
    ), run
    assert served_serial(r.nginx.port) == r.old_cert.serial_number
