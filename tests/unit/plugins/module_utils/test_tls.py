"""Pure helpers of _tls.py: parsing, key match, host names, validity, chains, files (no network).

Certificates are made here with ``cryptography``; the builder (``make_key``, ``make_cert``,
``key_pem``) is also used by the integration tests of tls_certificate_install.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.runbook.stack.plugins.module_utils import _tls as tls

UTC = dt.timezone.utc


# ------------------------------------------------------------------------------------------------
# a small PKI builder
# ------------------------------------------------------------------------------------------------


def make_key(kind: str = "ec"):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def make_cert(
    cn: str,
    key,
    issuer=None,
    issuer_key=None,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    days: float = 90,
    start_days: float = -1,
    ca: bool = False,
    now: dt.datetime | None = None,
    serial: int | None = None,
):
    """A certificate for ``key``: self-signed without ``issuer``; SAN from ``dns``/``ips``; random serial by default."""
    import ipaddress

    now = now or dt.datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=start_days))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    names = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key if issuer_key is not None else key, hashes.SHA256())


def key_pem(key, fmt: str = "pkcs8") -> bytes:
    form = serialization.PrivateFormat.PKCS8 if fmt == "pkcs8" else serialization.PrivateFormat.TraditionalOpenSSL
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())


def pem(*certs) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@pytest.fixture(scope="module")
def pki():
    root_key, inter_key = make_key(), make_key()
    root = make_cert("Test Root", root_key, ca=True, days=3650)
    inter = make_cert("Test Intermediate", inter_key, issuer=root, issuer_key=root_key, ca=True, days=1000)
    leaf_key = make_key("rsa")
    leaf = make_cert(
        "www.example.test",
        leaf_key,
        issuer=inter,
        issuer_key=inter_key,
        dns=("www.example.test", "*.apps.example.test"),
        ips=("192.0.2.10",),
    )
    return dict(root=root, root_key=root_key, inter=inter, inter_key=inter_key, leaf=leaf, leaf_key=leaf_key)


# ------------------------------------------------------------------------------------------------
# host names
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("www.example.com", "www.example.com", True),
        ("WWW.Example.COM", "www.example.com.", True),
        ("www.example.com", "example.com", False),
        ("*.example.com", "www.example.com", True),
        ("*.example.com", "WWW.EXAMPLE.COM", True),
        ("*.example.com", "example.com", False),  # the bare domain is not covered
        ("*.example.com", "a.b.example.com", False),  # one label only
        ("*.example.com", ".example.com", False),
        ("*.com", "example.com", False),  # too broad: at least two labels after the wildcard
        ("w*.example.com", "www.example.com", False),  # partial-label wildcards are not honoured
        ("www.*.example.com", "www.a.example.com", False),  # only in the leftmost label
        ("*.*.example.com", "a.b.example.com", False),
        ("*.example.com", "*.example.com", False),  # a host name is never a pattern
        ("", "example.com", False),
    ],
)
def test_hostname_matches(pattern, host, expected):
    assert tls.hostname_matches(pattern, host) is expected


def test_san_names_wildcard_and_ip(pki):
    leaf = pki["leaf"]
    assert tls.missing_hostnames(leaf, ["www.example.test", "api.apps.example.test", "192.0.2.10"]) == []
    assert tls.missing_hostnames(
        leaf, ["example.test", "x.y.apps.example.test", "192.0.2.11", "apps.example.test"]
    ) == [
        "example.test",
        "x.y.apps.example.test",
        "192.0.2.11",
        "apps.example.test",
    ]
    facts = tls.describe_cert(leaf)
    assert facts["hostnames"] == ["www.example.test", "*.apps.example.test", "192.0.2.10"]


def test_common_name_alone_does_not_count():
    key = make_key()
    cert = make_cert("legacy.example.test", key)  # no subjectAltName
    assert tls.common_name(cert) == "legacy.example.test"
    assert tls.missing_hostnames(cert, ["legacy.example.test"]) == ["legacy.example.test"]


# ------------------------------------------------------------------------------------------------
# keys, facts, validity
# ------------------------------------------------------------------------------------------------


def test_key_matches_rsa_and_ec(pki):
    assert tls.key_matches(pki["leaf"], pki["leaf_key"])
    assert not tls.key_matches(pki["leaf"], make_key("rsa"))
    assert tls.key_matches(pki["inter"], pki["inter_key"])
    assert not tls.key_matches(pki["inter"], pki["root_key"])


def test_fingerprint_serial_and_facts(pki):
    leaf = pki["leaf"]
    der = leaf.public_bytes(serialization.Encoding.DER)
    fp = tls.fingerprint(der)
    assert fp == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert len(fp) == 95
    serial = tls.serial_hex(leaf)
    assert len(serial) % 2 == 0 and int(serial, 16) == leaf.serial_number and serial == serial.upper()
    facts = tls.describe_cert(leaf)
    assert facts["fingerprint_sha256"] == fp
    assert facts["subject"] == "CN=www.example.test" and facts["issuer"] == "CN=Test Intermediate"
    assert facts["not_after"].endswith("Z")
    assert set(facts) == {
        "subject",
        "issuer",
        "serial",
        "fingerprint_sha256",
        "not_before",
        "not_after",
        "hostnames",
        "public_key_sha256",
    }


def test_check_validity():
    key = make_key()
    now = dt.datetime.now(UTC)
    tls.check_validity(make_cert("ok", key, days=30), 1, "certificate_src x")
    with pytest.raises(tls.TlsError, match=r"certificate_src x has expired: its Not After is \d{4}-"):
        tls.check_validity(make_cert("old", key, days=-1, start_days=-30), 1, "certificate_src x")
    with pytest.raises(tls.TlsError, match="is not valid yet"):
        tls.check_validity(make_cert("future", key, start_days=2, days=30), 1, "c")
    with pytest.raises(tls.TlsError, match=r"in 5\.0 days, sooner than min_days_valid=14"):
        tls.check_validity(make_cert("soon", key, days=5, now=now), 14, "c", now=now)


# ------------------------------------------------------------------------------------------------
# parsing
# ------------------------------------------------------------------------------------------------


def test_load_certificates_fullchain_and_garbage(pki):
    certs = tls.load_certificates(b"junk before\n" + pem(pki["leaf"], pki["inter"]), "certificate_src /x")
    assert [c.subject for c in certs] == [pki["leaf"].subject, pki["inter"].subject]
    with pytest.raises(tls.TlsError, match=r"certificate_src /x holds no PEM certificate"):
        tls.load_certificates(b"not a certificate", "certificate_src /x")
    broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(tls.TlsError, match="certificate 1 cannot be parsed"):
        tls.load_certificates(broken, "c")


def test_load_private_key_never_quotes_the_data(pki):
    data = key_pem(pki["leaf_key"])
    assert tls.key_matches(pki["leaf"], tls.load_private_key(data, "k"))
    assert tls.key_matches(pki["leaf"], tls.load_private_key(key_pem(pki["leaf_key"], "pkcs1"), "k"))
    damaged = data[:200] + b"!!" + data[202:]
    with pytest.raises(tls.TlsError) as err:
        tls.load_private_key(damaged, "private_key_src /k.pem")
    assert "private_key_src /k.pem is not a readable unencrypted PEM private key" in str(err.value)
    body = b"".join(data.splitlines()[1:-1]).decode()
    assert body[:40] not in str(err.value)
    encrypted = pki["leaf_key"].private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(tls.TlsError, match="encrypted private key"):
        tls.load_private_key(encrypted, "k")


def test_same_certificates_and_key_ignore_layout(pki):
    crlf = pem(pki["leaf"]).replace(b"\n", b"\r\n")
    assert tls.same_certificates(crlf, [pki["leaf"]])
    assert not tls.same_certificates(pem(pki["leaf"]), [pki["leaf"], pki["inter"]])
    assert not tls.same_certificates(None, [pki["leaf"]])
    assert not tls.same_certificates(b"garbage", [pki["leaf"]])
    assert tls.same_private_key(key_pem(pki["leaf_key"], "pkcs1"), pki["leaf_key"])
    assert not tls.same_private_key(key_pem(make_key("rsa")), pki["leaf_key"])
    assert not tls.same_private_key(b"garbage", pki["leaf_key"])


# ------------------------------------------------------------------------------------------------
# chains and openssl verify
# ------------------------------------------------------------------------------------------------


def test_chain_problem(pki):
    assert tls.chain_problem(pki["leaf"], [pki["inter"]]) is None
    assert tls.chain_problem(pki["leaf"], [pki["inter"], pki["root"]]) is None
    problem = tls.chain_problem(pki["leaf"], [pki["root"]])
    assert "chain certificate 1 (CN=Test Root) is not the issuer of the certificate" in problem
    assert "chain certificate 2" in tls.chain_problem(pki["leaf"], [pki["inter"], pki["inter"]])
    # same name, other key: the signature check catches an impostor intermediate
    impostor_key = make_key()
    impostor = make_cert("Test Intermediate", impostor_key, issuer=pki["root"], issuer_key=pki["root_key"], ca=True)
    assert "does not verify" in tls.chain_problem(pki["leaf"], [impostor])


def test_openssl_verify_argv_and_verdict():
    assert tls.openssl_verify_argv("/usr/bin/openssl", "/ca.pem", "/leaf.pem", "/chain.pem") == [
        "/usr/bin/openssl",
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        "/ca.pem",
        "-untrusted",
        "/chain.pem",
        "/leaf.pem",
    ]
    assert "-untrusted" not in tls.openssl_verify_argv("openssl", "/ca.pem", "/leaf.pem", None)
    assert tls.openssl_verify_problem(0, "/leaf.pem: OK\n", "") is None
    stderr = "CN = www\nerror 20 at 0 depth lookup: unable to get local issuer certificate\nerror /leaf.pem: verification failed\n"
    problem = tls.openssl_verify_problem(2, "", stderr)
    assert problem.startswith("error 20 at 0 depth lookup: unable to get local issuer certificate")
    assert tls.openssl_verify_problem(1, "", "") == "openssl verify exited with 1"


# ------------------------------------------------------------------------------------------------
# served certificate (fetch faked)
# ------------------------------------------------------------------------------------------------


def test_wait_served_polls_until_the_new_certificate(pki):
    old_der = make_cert("old", make_key()).public_bytes(serialization.Encoding.DER)
    new_der = pki["leaf"].public_bytes(serialization.Encoding.DER)
    # refused while restarting, the old one, then the new one, an old worker still draining, new x3
    answers = [tls.TlsError("refused"), old_der, new_der, old_der, new_der, new_der, new_der]

    def fetch(host, port, sni, timeout):
        assert (host, port, sni, timeout) == ("127.0.0.1", 8443, "www.example.test", 2.0)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    facts = tls.wait_served(
        "127.0.0.1", 8443, "www.example.test", tls.fingerprint(new_der), 2.0, 5, 0, fetch, confirm_delay=0
    )
    assert facts["matches"] is True and facts["attempts"] == 7 and facts["serial"] == tls.serial_hex(pki["leaf"])
    assert answers == []

    stale = tls.wait_served("h", 1, None, tls.fingerprint(new_der), 1, 3, 0, lambda *a: old_der)
    assert stale["matches"] is False and stale["attempts"] == 3 and stale["subject"] == "CN=old"

    def down(*_args):
        raise tls.TlsError("cannot fetch the certificate served on h:1: refused")

    with pytest.raises(tls.TlsError, match=r"refused \(after 2 attempts\)"):
        tls.wait_served("h", 1, None, "x", 1, 2, 0, down)


# ------------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "mode"), [("0644", 0o644), ("640", 0o640), (0o600, 0o600), ("0755", 0o755)])
def test_parse_mode(value, mode):
    assert tls.parse_mode(value) == mode


@pytest.mark.parametrize("value", ["u+rw", "999", True, "", 0o17777])
def test_parse_mode_refuses(value):
    with pytest.raises(tls.TlsError, match="octal mode"):
        tls.parse_mode(value)


def test_resolve_owner():
    assert tls.resolve_owner(None, None) == (None, None)
    assert tls.resolve_owner("0", "0") == (0, 0)
    assert tls.resolve_owner("root", None) == (0, None)
    with pytest.raises(tls.TlsError, match="not a user"):
        tls.resolve_owner("no-such-user-rbtest", None)
    with pytest.raises(tls.TlsError, match="not a group"):
        tls.resolve_owner(None, "no-such-group-rbtest")


def test_atomic_write_snapshot_restore(tmp_path):
    path = str(tmp_path / "www.key")
    tls.atomic_write(path, b"secret one\n", tls.KEY_MODE)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    before = tls.snapshot(path, "private_key_dest")
    assert before.exists and before.mode == 0o600 and "secret" not in repr(before)
    tls.atomic_write(path, b"secret two\n", 0o644)
    tls.restore(before)
    with open(path, "rb") as fh:
        assert fh.read() == b"secret one\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["www.key"]  # no temp file left behind

    missing = tls.snapshot(str(tmp_path / "new.pem"), "certificate_dest")
    assert not missing.exists
    tls.atomic_write(missing.path, b"x", 0o644)
    tls.restore(missing)
    assert not os.path.exists(missing.path)


def test_check_writable_dir_and_snapshot_errors(tmp_path):
    with pytest.raises(tls.TlsError, match=r"the directory of certificate_dest .*/nope/c.pem does not exist"):
        tls.check_writable_dir(str(tmp_path / "nope" / "c.pem"), "certificate_dest")
    (tmp_path / "adir").mkdir()
    with pytest.raises(tls.TlsError, match="is not a regular file"):
        tls.snapshot(str(tmp_path / "adir"), "certificate_dest")
    with pytest.raises(tls.TlsError, match=r"cannot read certificate_src .*/missing.pem: No such file"):
        tls.read_file(str(tmp_path / "missing.pem"), "certificate_src")


def test_backups(tmp_path):
    path = str(tmp_path / "www.key")
    tls.atomic_write(path, b"k\n", tls.KEY_MODE)
    state = tls.snapshot(path, "private_key_dest")
    assert tls.backup_path("/etc/tls/www.pem", "/var/backups/tls", "20260101T000000Z") == (
        "/var/backups/tls/www.pem.20260101T000000Z"
    )
    assert tls.backup_path("/etc/tls/www.pem", ".bak", "x") == "/etc/tls/www.pem.bak"
    with pytest.raises(tls.TlsError, match="absolute directory or a file-name suffix"):
        tls.backup_path("/etc/tls/www.pem", "rel/dir", "x")
    copy = tls.write_backup(state, str(tmp_path / "backups"), "20260101T000000Z", "private_key_dest")
    assert copy == str(tmp_path / "backups" / "www.key.20260101T000000Z")
    assert stat.S_IMODE(os.stat(copy).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "backups").st_mode) == 0o700
    assert tls.write_backup(tls.FileState(str(tmp_path / "none")), ".bak", "x", "c") is None


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_verify_chain_drives_openssl(pki, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(pem(pki["root"]))
    ran = []

    def run(argv):
        ran.append(argv)
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    openssl = shutil.which("openssl")
    assert tls.verify_chain(run, openssl, str(bundle), pki["leaf"], [pki["inter"]]) is None
    assert ran[0][:6] == [openssl, "verify", "-purpose", "sslserver", "-CAfile", str(bundle)]
    problem = tls.verify_chain(run, openssl, str(bundle), pki["leaf"], [])  # intermediate missing
    assert "unable to get local issuer certificate" in problem
    assert "runbook-tls-" not in problem
    rogue_key = make_key()
    rogue = make_cert("Rogue", rogue_key, ca=True)
    other = make_cert("www.example.test", make_key(), issuer=rogue, issuer_key=rogue_key, dns=("www.example.test",))
    assert tls.verify_chain(run, openssl, str(bundle), other, [rogue]) is not None
