# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TLS checks (private): validity window, host-name match (RFC 6125: SAN only, one wildcard in the
leftmost label), the chain, the ``openssl verify`` command line and its verdict, and the certificate
a TLS server presents."""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import socket
import ssl
import tempfile
import time
from typing import Any, Callable

from ansible_collections.runbook.stack.plugins.module_utils._tls.certs import (
    TlsError,
    cert_pem,
    fingerprint,
    iso,
    not_after,
    not_before,
    san_names,
    serial_hex,
    x509,
)

# ------------------------------------------------------------------------------------------------
# checks
# ------------------------------------------------------------------------------------------------


def _normalize_host(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    try:
        return name.encode("idna").decode("ascii") if name and "*" not in name else name
    except UnicodeError:
        return name


def _ip(value: str) -> Any:
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def hostname_matches(pattern: str, hostname: str) -> bool:
    """RFC 6125 matching of one SAN DNS name against one host name.

    Case-insensitive, trailing dot ignored. A wildcard is only honoured as the whole leftmost
    label (``*.example.com``) with at least two labels after it; it matches exactly one label, so
    ``*.example.com`` matches ``www.example.com`` but neither ``example.com`` nor
    ``a.b.example.com``. Partial-label wildcards (``w*.example.com``) match nothing.
    """
    pattern = _normalize_host(pattern)
    host = _normalize_host(hostname)
    if not pattern or not host or "*" in host:
        return False
    if "*" not in pattern:
        return pattern == host
    p_labels = pattern.split(".")
    h_labels = host.split(".")
    if p_labels[0] != "*" or "*" in ".".join(p_labels[1:]) or len(p_labels) < 3:
        return False
    if len(h_labels) != len(p_labels) or not h_labels[0]:
        return False
    return h_labels[1:] == p_labels[1:]


def host_covered(cert: Any, hostname: str) -> bool:
    """Whether ``cert`` is valid for ``hostname`` (a DNS name or an IP address) by its SAN."""
    dns, ips = san_names(cert)
    address = _ip(hostname)
    if address is not None:
        return any(_ip(ip) == address for ip in ips)
    return any(hostname_matches(name, hostname) for name in dns)


def missing_hostnames(cert: Any, hostnames: list[str]) -> list[str]:
    """The host names ``cert`` is not valid for (SAN only: the subject CN is not consulted)."""
    return [h for h in hostnames if not host_covered(cert, h)]


def check_validity(cert: Any, min_days: float, where: str, now: _dt.datetime | None = None) -> None:
    """TlsError when ``cert`` is not valid yet, expired, or expires within ``min_days`` days."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    start, end = not_before(cert), not_after(cert)
    if start > now:
        raise TlsError(f"{where} is not valid yet: its Not Before is {iso(start)}")
    if end <= now:
        raise TlsError(f"{where} has expired: its Not After is {iso(end)}")
    if end < now + _dt.timedelta(days=min_days):
        days = (end - now).total_seconds() / 86400
        raise TlsError(f"{where} expires on {iso(end)}, in {days:.1f} days, sooner than min_days_valid={min_days:g}")


def chain_problem(leaf: Any, chain: list[Any]) -> str | None:
    """Why ``chain`` is not in order (each certificate issued by the next), or None.

    Used when no CA bundle is given: it catches a chain of another certificate or in the wrong
    order, which servers send as they are and clients then reject.
    """
    child = leaf
    for index, parent in enumerate(chain, start=1):
        who = "the certificate" if index == 1 else f"chain certificate {index - 1}"
        if child.issuer != parent.subject:
            return (
                f"chain certificate {index} ({parent.subject.rfc4514_string()}) is not the issuer of {who} "
                f"(issued by {child.issuer.rfc4514_string()})"
            )
        verify = getattr(child, "verify_directly_issued_by", None)  # cryptography 40 and later
        if verify is not None:
            try:
                verify(parent)
            except Exception:  # signature or key-type mismatch
                return f"the signature of {who} does not verify with the key of chain certificate {index}"
        child = parent
    return None


def openssl_verify_argv(openssl: str, ca_bundle: str, cert_path: str, chain_path: str | None) -> list[str]:
    """``openssl verify`` of the leaf against the CA bundle, the chain as untrusted intermediates."""
    argv = [openssl, "verify", "-purpose", "sslserver", "-CAfile", ca_bundle]
    if chain_path:
        argv += ["-untrusted", chain_path]
    return [*argv, cert_path]


def openssl_verify_problem(rc: int, stdout: str, stderr: str) -> str | None:
    """The reason ``openssl verify`` gave for refusing the chain, or None when it accepted it."""
    if rc == 0 and stdout.rstrip().endswith("OK"):
        return None
    lines = [line.strip() for line in (stderr + "\n" + stdout).splitlines() if line.strip()]
    reasons = [line for line in lines if line.startswith("error ") or "error" in line.lower()]
    text = "; ".join(reasons or lines) or f"openssl verify exited with {rc}"
    return " ".join(text.split())[:600]


def verify_chain(
    run: Callable[[list[str]], tuple[int, str, str]], openssl: str, ca_bundle: str, leaf: Any, chain: list[Any]
) -> str | None:
    """Let ``openssl verify`` build the chain of ``leaf`` to ``ca_bundle``; None when it does, else why not.

    ``run`` runs an argv list and returns (rc, stdout, stderr) (the module's run_command). The
    certificates go to a private temporary directory, which the returned reason does not mention."""
    with tempfile.TemporaryDirectory(prefix="runbook-tls-") as tmp:
        leaf_path = os.path.join(tmp, "certificate.pem")
        chain_path = os.path.join(tmp, "chain.pem") if chain else None
        with open(leaf_path, "wb") as fh:
            fh.write(cert_pem([leaf]))
        if chain_path:
            with open(chain_path, "wb") as fh:
                fh.write(cert_pem(chain))
        rc, out, err = run(openssl_verify_argv(openssl, ca_bundle, leaf_path, chain_path))
        problem = openssl_verify_problem(rc, out, err)
        return problem.replace(tmp + os.sep, "") if problem else None


# ------------------------------------------------------------------------------------------------
# the certificate a server presents
# ------------------------------------------------------------------------------------------------


def fetch_served_cert(host: str, port: int, sni: str | None, timeout: float) -> bytes:
    """DER of the leaf certificate ``host:port`` presents for SNI ``sni`` (not validated)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    server_hostname = sni if sni and _ip(sni) is None else None
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:  # noqa: SIM117 - Python 3.8 syntax
            with context.wrap_socket(sock, server_hostname=server_hostname) as tls:
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot fetch the certificate served on {host}:{port}: {exc}") from None
    if not der:
        raise TlsError(f"{host}:{port} presented no certificate")
    return der


def served_facts(der: bytes) -> dict[str, Any]:
    cert = x509.load_der_x509_certificate(der)
    return {
        "fingerprint_sha256": fingerprint(der),
        "serial": serial_hex(cert),
        "subject": cert.subject.rfc4514_string(),
        "not_after": iso(not_after(cert)),
    }


def wait_served(
    host: str,
    port: int,
    sni: str | None,
    want_fingerprint: str,
    timeout: float,
    retries: int,
    delay: float = 1.0,
    fetch: Callable[[str, int, str | None, float], bytes] = fetch_served_cert,
    confirmations: int = 3,
    confirm_delay: float = 0.2,
) -> dict[str, Any]:
    """Poll ``host:port`` until it serves the certificate with ``want_fingerprint`` on
    ``confirmations`` connections in a row.

    After a reload, workers of the old configuration can still accept a few connections while they
    drain; one matching handshake is not proof. Only mismatches and connection failures use up
    ``retries``. Returns the served facts with ``matches`` and ``attempts``; the last one seen
    (``matches`` false) when it never matched. TlsError only when no attempt could connect.
    """
    last: dict[str, Any] | None = None
    error = None
    attempts = streak = failures = 0
    while True:
        attempts += 1
        try:
            last = served_facts(fetch(host, port, sni, timeout))
            error = None
        except TlsError as exc:
            error = exc
        if last is not None and error is None and last["fingerprint_sha256"] == want_fingerprint:
            streak += 1
            if streak >= max(1, confirmations):
                break
            time.sleep(confirm_delay)
            continue
        streak = 0
        failures += 1
        if failures >= max(1, retries):
            break
        time.sleep(delay)
    if last is None:
        raise TlsError(f"{error} (after {attempts} attempts)")
    matches = streak >= max(1, confirmations)
    return {**last, "matches": matches, "attempts": attempts, "error": None}
