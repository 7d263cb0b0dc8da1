"""tls_certificate_install against a real, private nginx (Debian package nginx-light).

The ``nginx`` fixture starts its own nginx master (own prefix, config, pid file and error log under
tmp_path, a free loopback port, ``daemon off``) serving the files the module installs, and always
stops it in teardown; the system's nginx service is never touched. Certificates come from a test CA
built with ``cryptography`` (the builder of the _tls unit tests). The served certificate is read
with Python's ssl module, independently of the module's own check.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

_spec = importlib.util.spec_from_file_location(
    "runbook_tls_pki", Path(__file__).resolve().parents[1] / "unit" / "plugins" / "module_utils" / "test_tls.py"
)
pki_builder = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pki_builder)
make_key, make_cert, key_pem, pem = pki_builder.make_key, pki_builder.make_cert, pki_builder.key_pem, pki_builder.pem

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HOST = "www.example.test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def served_fingerprint(port: int, sni: str = HOST) -> str:
    """SHA-256 (AB:CD:...) of the leaf certificate served on 127.0.0.1:port for ``sni``.

    Asked three times, 0.2 s apart, and the answer must agree: right after a reload, a worker of
    the old configuration may still take a connection while it drains (the module waits for
    three matching handshakes in a row before it reports the new certificate as served)."""
    seen = [_served_once(port, sni)]
    for _attempt in range(2):
        time.sleep(0.2)
        seen.append(_served_once(port, sni))
    if len(set(seen)) != 1:
        raise AssertionError(f"nginx served different certificates on consecutive connections: {seen}")
    return seen[0]


def _served_once(port: int, sni: str) -> str:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def fp(cert) -> str:
    from cryptography.hazmat.primitives import serialization

    der = cert.public_bytes(serialization.Encoding.DER)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


# ------------------------------------------------------------------------------------------------
# fixtures: a test CA and a private nginx
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca():
    root_key, inter_key = make_key(), make_key()
    root = make_cert("Runbook Test Root", root_key, ca=True, days=3650)
    inter = make_cert("Runbook Test Intermediate", inter_key, issuer=root, issuer_key=root_key, ca=True, days=1000)

    def leaf(dns=(HOST, "*.apps.example.test"), days=90, start_days=-1, issuer=inter, issuer_key=inter_key):
        key = make_key()
        return make_cert(
            dns[0], key, issuer=issuer, issuer_key=issuer_key, dns=dns, days=days, start_days=start_days
        ), key

    return dict(root=root, inter=inter, leaf=leaf)


class Nginx:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.tls_dir = base / "tls"
        self.cert = self.tls_dir / "www.pem"
        self.key = self.tls_dir / "www.key"
        self.conf = base / "nginx.conf"
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    def argv(self, *extra: str) -> list[str]:
        return [NGINX, "-p", str(self.base), "-c", str(self.conf), "-e", str(self.base / "error.log"), *extra]

    @property
    def reload_command(self) -> list[str]:
        return self.argv("-s", "reload")

    @property
    def validate_command(self) -> list[str]:
        return self.argv("-t", "-q")

    def write_conf(self) -> None:
        b = self.base
        self.conf.write_text(
            f"""daemon off;
worker_processes 1;
pid {b}/nginx.pid;
error_log {b}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {b}/tmp/body;
  proxy_temp_path {b}/tmp/proxy;
  fastcgi_temp_path {b}/tmp/fastcgi;
  uwsgi_temp_path {b}/tmp/uwsgi;
  scgi_temp_path {b}/tmp/scgi;
  server {{
    listen 127.0.0.1:{self.port} ssl;
    server_name {HOST};
    ssl_certificate {self.cert};
    ssl_certificate_key {self.key};
    return 200 "ok\\n";
  }}
}}
"""
        )

    def start(self, cert, key) -> None:
        (self.base / "tmp").mkdir(parents=True, exist_ok=True)
        self.tls_dir.mkdir(parents=True, exist_ok=True)
        self.cert.write_bytes(pem(cert))
        self.key.write_bytes(key_pem(key))
        os.chmod(self.key, 0o600)
        self.write_conf()
        self.proc = subprocess.Popen(
            self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: {self.error_log()}")
            try:
                if served_fingerprint(self.port) == fp(cert):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"nginx did not serve on 127.0.0.1:{self.port}: {self.error_log()}")

    def error_log(self) -> str:
        path = self.base / "error.log"
        return path.read_text()[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)  # graceful: the master stops its workers
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the session this fixture started, by its id
            self.proc.wait(timeout=10)

    def snapshot(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.tls_dir.iterdir())}


@pytest.fixture
def nginx(tmp_path, ca):
    server = Nginx(tmp_path / "nginx")
    cert, key = ca["leaf"]()
    try:
        server.start(cert, key)
        server.old_cert, server.old_key = cert, key
        yield server
    finally:
        server.stop()


@pytest.fixture
def new_pair(tmp_path, ca):
    """A fresh leaf (and its key and the chain) as files under tmp_path/new."""
    cert, key = ca["leaf"]()
    return write_pair(tmp_path / "new", cert, key, ca)


def write_pair(directory: Path, cert, key, ca) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_bytes(pem(cert))
    (directory / "key.pem").write_bytes(key_pem(key))
    (directory / "chain.pem").write_bytes(pem(ca["inter"]))
    (directory / "ca.pem").write_bytes(pem(ca["root"]))
    return dict(cert=cert, key=key, dir=directory)


def install_args(server: Nginx, pair: dict[str, Any], **extra: Any) -> dict[str, Any]:
    d = pair["dir"]
    args = dict(
        certificate_src=str(d / "cert.pem"),
        private_key_src=str(d / "key.pem"),
        chain_src=str(d / "chain.pem"),
        ca_bundle=str(d / "ca.pem"),
        certificate_dest=str(server.cert),
        private_key_dest=str(server.key),
        fullchain=True,
        hostnames=[HOST, "api.apps.example.test"],
        validate_command=server.validate_command,
        reload_command=server.reload_command,
        verify_port=server.port,
        verify_retries=10,
    )
    args.update(extra)
    return args


def key_texts(*keys) -> list[str]:
    """Distinctive pieces of each private key in PEM (any line of base64 would be a leak)."""
    pieces = []
    for key in keys:
        for fmt in ("pkcs8", "pkcs1"):
            lines = key_pem(key, fmt).decode().splitlines()[1:-1]
            pieces += [line for line in lines if len(line) > 20]
    return pieces


def assert_no_key_material(result: dict[str, Any], *keys) -> None:
    text = result["_stdout"] + result["_stderr"]
    assert "PRIVATE KEY" not in text
    for piece in key_texts(*keys):
        assert piece not in text


def assert_no_traceback(result: dict[str, Any]) -> None:
    assert "Traceback" not in result["_stdout"] + result["_stderr"]


# ------------------------------------------------------------------------------------------------
# the happy path: check mode, install, rerun
# ------------------------------------------------------------------------------------------------


def test_check_mode_changes_nothing(nginx, new_pair, module):
    before = nginx.snapshot()
    result = module("tls_certificate_install", install_args(nginx, new_pair), check_mode=True, diff=True)
    assert result["_rc"] == 0, result.get("msg")
    assert result["changed"] is True
    assert result["files_changed"] == [str(nginx.cert), str(nginx.key)]
    assert result["reloaded"] is True  # predicted
    assert nginx.snapshot() == before  # byte-identical
    assert served_fingerprint(nginx.port) == fp(nginx.old_cert)
    assert result["served"]["fingerprint_sha256"] == fp(nginx.old_cert) and result["served"]["matches"] is False
    assert result["diff"]["before"]["certificate"]["fingerprint_sha256"] == fp(nginx.old_cert)
    assert result["diff"]["after"]["certificate"]["fingerprint_sha256"] == fp(new_pair["cert"])
    assert result["diff"]["after"]["chain"] == [fp(pki_builder_inter(new_pair))]
    assert not any("nginx" in " ".join(c) and "reload" in c for c in result["commands"])
    assert_no_key_material(result, nginx.old_key, new_pair["key"])


def test_install_reload_verify_then_rerun_unchanged(nginx, new_pair, module, tmp_path):
    backups = tmp_path / "backups"
    old_cert_bytes = nginx.cert.read_bytes()
    old_key_bytes = nginx.key.read_bytes()
    result = module("tls_certificate_install", install_args(nginx, new_pair, backup=str(backups)), diff=True)
    assert result["_rc"] == 0, result.get("msg")
    assert result["changed"] is True and result["reloaded"] is True
    new = new_pair["cert"]
    # the served certificate is the new one, seen independently of the module
    assert served_fingerprint(nginx.port) == fp(new)
    assert result["served"]["matches"] is True
    assert result["served"]["fingerprint_sha256"] == fp(new)
    assert result["new"]["serial"] == format(new.serial_number, "X").rjust(len(result["new"]["serial"]), "0")
    assert result["old"]["fingerprint_sha256"] == fp(nginx.old_cert)
    assert result["old"]["serial"] != result["new"]["serial"]
    assert result["new"]["hostnames"] == [HOST, "*.apps.example.test"]
    assert result["new"]["not_after"].endswith("Z")
    assert result["duration_s"] > 0
    # fullchain: leaf then intermediate; key 0600, cert 0644
    assert nginx.cert.read_bytes() == pem(new, pki_builder_inter(new_pair))
    assert stat.S_IMODE(nginx.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(nginx.cert.stat().st_mode) == 0o644
    # backups hold the previous files, the key's copy 0600 too
    assert Path(result["backup"]["certificate"]).read_bytes() == old_cert_bytes
    assert Path(result["backup"]["private_key"]).read_bytes() == old_key_bytes
    assert stat.S_IMODE(Path(result["backup"]["private_key"]).stat().st_mode) == 0o600
    assert_no_key_material(result, nginx.old_key, new_pair["key"])

    again = module("tls_certificate_install", install_args(nginx, new_pair, backup=str(backups)))
    assert again["_rc"] == 0, again.get("msg")
    assert again["changed"] is False and again["files_changed"] == [] and again["reloaded"] is False
    assert again["served"]["matches"] is True  # still verified when nothing changes
    assert again["backup"] == {}
    assert not any(c[-2:] == ["-s", "reload"] for c in again["commands"])


def pki_builder_inter(pair):
    """The intermediate the new pair's chain file holds."""
    from cryptography import x509

    return x509.load_pem_x509_certificate((pair["dir"] / "chain.pem").read_bytes())


def test_key_content_with_separate_chain_dest(nginx, ca, tmp_path, module):
    cert, key = ca["leaf"]()
    pair = write_pair(tmp_path / "pair", cert, key, ca)
    chain_dest = nginx.tls_dir / "chain.pem"
    args = install_args(nginx, pair, fullchain=False, chain_dest=str(chain_dest))
    del args["private_key_src"]
    args["private_key_content"] = key_pem(key).decode()
    result = module("tls_certificate_install", args)
    assert result["_rc"] == 0, result.get("msg")
    assert nginx.cert.read_bytes() == pem(cert)
    assert chain_dest.read_bytes() == pem(ca["inter"])
    assert served_fingerprint(nginx.port) == fp(cert)
    assert_no_key_material(result, key, nginx.old_key)
    # the same pair in place (content form) is no change
    again = module("tls_certificate_install", args)
    assert again["changed"] is False, again


def test_same_pair_in_another_pem_layout_is_unchanged(nginx, module, tmp_path, ca):
    # the running pair, given back as PKCS#1 key and a certificate file with CRLF line ends
    d = tmp_path / "same"
    d.mkdir()
    (d / "cert.pem").write_bytes(pem(nginx.old_cert).replace(b"\n", b"\r\n"))
    (d / "key.pem").write_bytes(key_pem(nginx.old_key, "pkcs1"))
    before = nginx.snapshot()
    result = module(
        "tls_certificate_install",
        dict(
            certificate_src=str(d / "cert.pem"),
            private_key_src=str(d / "key.pem"),
            certificate_dest=str(nginx.cert),
            private_key_dest=str(nginx.key),
            hostnames=[HOST],
            reload_command=nginx.reload_command,
            verify_port=nginx.port,
        ),
    )
    assert result["_rc"] == 0, result.get("msg")
    assert result["changed"] is False and result["served"]["matches"] is True
    assert nginx.snapshot() == before


# ------------------------------------------------------------------------------------------------
# bad input: refused, nothing written, the old certificate still served
# ------------------------------------------------------------------------------------------------


def _refused(module, nginx, args, *expect: str) -> dict[str, Any]:
    before = nginx.snapshot()
    result = module("tls_certificate_install", args)
    assert result["_rc"] != 0 and result.get("failed"), result
    assert result["msg"].startswith("refused to install the certificate, nothing was written: "), result["msg"]
    for text in expect:
        assert text in result["msg"], result["msg"]
    assert nginx.snapshot() == before
    assert served_fingerprint(nginx.port) == fp(nginx.old_cert)
    assert not any(c[-2:] == ["-s", "reload"] for c in result["commands"])
    assert_no_traceback(result)
    return result


def test_wrong_key_is_refused(nginx, ca, tmp_path, module):
    cert, _key = ca["leaf"]()
    other = make_key()
    pair = write_pair(tmp_path / "p", cert, other, ca)
    result = _refused(
        module,
        nginx,
        install_args(nginx, pair),
        f"private_key_src {pair['dir'] / 'key.pem'} does not belong to certificate_src {pair['dir'] / 'cert.pem'}",
        "public keys differ",
    )
    assert_no_key_material(result, other, nginx.old_key)


def test_expired_certificate_is_refused(nginx, ca, tmp_path, module):
    cert, key = ca["leaf"](days=-2, start_days=-60)
    pair = write_pair(tmp_path / "p", cert, key, ca)
    _refused(module, nginx, install_args(nginx, pair), "has expired: its Not After is", str(pair["dir"] / "cert.pem"))


def test_expiring_too_soon_is_refused(nginx, ca, tmp_path, module):
    cert, key = ca["leaf"](days=10)
    pair = write_pair(tmp_path / "p", cert, key, ca)
    _refused(module, nginx, install_args(nginx, pair, min_days_valid=30), "sooner than min_days_valid=30")


def test_wrong_host_name_is_refused(nginx, ca, tmp_path, module):
    cert, key = ca["leaf"](dns=("other.example.org",))
    pair = write_pair(tmp_path / "p", cert, key, ca)
    _refused(
        module,
        nginx,
        install_args(nginx, pair),
        f"is not valid for {HOST}, api.apps.example.test (its names: other.example.org)",
    )


def test_chain_that_does_not_build_is_refused(nginx, ca, tmp_path, module):
    rogue_key = make_key()
    rogue_root = make_cert("Rogue Root", rogue_key, ca=True)
    cert, key = ca["leaf"](issuer=rogue_root, issuer_key=rogue_key)
    pair = write_pair(tmp_path / "p", cert, key, ca)
    _refused(module, nginx, install_args(nginx, pair), f"does not build to ca_bundle {pair['dir'] / 'ca.pem'}", "error")


def test_unreadable_source_is_refused(nginx, new_pair, module):
    args = install_args(nginx, new_pair, certificate_src=str(new_pair["dir"] / "missing.pem"))
    _refused(module, nginx, args, f"cannot read certificate_src {new_pair['dir'] / 'missing.pem'}: No such file")


# ------------------------------------------------------------------------------------------------
# failures after writing: rolled back, the old certificate served again
# ------------------------------------------------------------------------------------------------


def _rolled_back(result: dict[str, Any], nginx: Nginx, before: dict[str, bytes]) -> None:
    assert result["_rc"] != 0 and result.get("failed"), result
    assert result["rolled_back"] is True
    assert nginx.snapshot() == before  # the previous files, byte for byte
    assert stat.S_IMODE(nginx.key.stat().st_mode) == 0o600
    assert served_fingerprint(nginx.port) == fp(nginx.old_cert)
    assert_no_traceback(result)


def test_failing_validate_command_rolls_back(nginx, new_pair, module):
    before = nginx.snapshot()
    args = install_args(
        nginx, new_pair, validate_command=["sh", "-c", "echo 'nginx: [emerg] deliberately broken' >&2; exit 1"]
    )
    result = module("tls_certificate_install", args)
    _rolled_back(result, nginx, before)
    assert (
        "validate_command sh -c" in result["msg"]
        and "failed (rc=1): nginx: [emerg] deliberately broken" in result["msg"]
    )
    assert "the previous files are back in place (the service had not been reloaded)" in result["msg"]
    assert "the previous certificate (serial " in result["msg"] and "is served again" in result["msg"]
    assert_no_key_material(result, nginx.old_key, new_pair["key"])


def test_broken_nginx_config_rolls_back(nginx, new_pair, module, tmp_path):
    broken = tmp_path / "broken.conf"
    broken.write_text("events { this is not nginx config }\n")
    before = nginx.snapshot()
    validate = [NGINX, "-t", "-p", str(nginx.base), "-c", str(broken), "-e", str(nginx.base / "error.log")]
    result = module("tls_certificate_install", install_args(nginx, new_pair, validate_command=validate))
    _rolled_back(result, nginx, before)
    assert "emerg" in result["msg"]


def test_reload_that_does_not_load_the_new_cert_rolls_back(nginx, new_pair, module):
    before = nginx.snapshot()
    result = module("tls_certificate_install", install_args(nginx, new_pair, reload_command=["true"], verify_retries=2))
    _rolled_back(result, nginx, before)
    assert f"after the reload 127.0.0.1:{nginx.port} still serves serial" in result["msg"]
    assert "not the new certificate" in result["msg"]
    assert "reloaded with them" in result["msg"] and "is served again" in result["msg"]
    assert result["served"]["fingerprint_sha256"] == fp(nginx.old_cert)
    assert_no_key_material(result, nginx.old_key, new_pair["key"])


def test_failing_reload_rolls_back_and_reloads_the_old_files(nginx, new_pair, module, tmp_path):
    marker = tmp_path / "reloads"
    # fails the first time (after loading nothing), works the second time (the rollback)
    script = f"if [ -e {marker} ]; then exec {' '.join(nginx.reload_command)}; fi; touch {marker}; echo 'reload refused' >&2; exit 3"
    before = nginx.snapshot()
    result = module("tls_certificate_install", install_args(nginx, new_pair, reload_command=["sh", "-c", script]))
    _rolled_back(result, nginx, before)
    assert "failed (rc=3): reload refused" in result["msg"]
    assert "reloaded with them" in result["msg"]


# ------------------------------------------------------------------------------------------------
# argument handling
# ------------------------------------------------------------------------------------------------


def test_missing_program_and_chain_without_destination(nginx, new_pair, module):
    _refused(module, nginx, install_args(nginx, new_pair, validate_command=["no-such-validator"]), "not found")
    _refused(module, nginx, install_args(nginx, new_pair, fullchain=False), "has nowhere to go")


def test_installed_but_not_served_is_reloaded(nginx, new_pair, module):
    # the new files are in place (copied by hand) but nginx was never reloaded
    nginx.cert.write_bytes(pem(new_pair["cert"], pki_builder_inter(new_pair)))
    nginx.key.write_bytes(key_pem(new_pair["key"]))
    os.chmod(nginx.key, 0o600)
    assert served_fingerprint(nginx.port) == fp(nginx.old_cert)
    args = install_args(nginx, new_pair)
    no_reload = {k: v for k, v in args.items() if k != "reload_command"}
    refused = module("tls_certificate_install", no_reload)
    assert refused["_rc"] != 0 and "serves another one" in refused["msg"], refused
    predicted = module("tls_certificate_install", args, check_mode=True)
    assert predicted["changed"] is True and predicted["files_changed"] == [] and predicted["reloaded"] is True
    assert served_fingerprint(nginx.port) == fp(nginx.old_cert)
    result = module("tls_certificate_install", args)
    assert result["_rc"] == 0, result.get("msg")
    assert result["changed"] is True and result["files_changed"] == [] and result["reloaded"] is True
    assert served_fingerprint(nginx.port) == fp(new_pair["cert"])
