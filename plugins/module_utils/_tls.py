# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TLS certificate helpers for tls_certificate_install (private).

Parsing (PEM certificates and private keys, with the ``cryptography`` library as community.crypto
does), key/certificate match, validity window, host-name match (RFC 6125: SAN only, one wildcard in
the leftmost label), SHA-256 fingerprints, the ``openssl verify`` command line and its verdict, the
certificate a TLS server presents, and atomic file replacement with snapshot/restore.

Helpers take plain values, never the AnsibleModule. Every foreseeable fault is raised as
:class:`TlsError`, phrased for the operator; no message, return value or repr ever contains private
key material (keys are only compared in memory).
"""

from __future__ import annotations

import datetime as _dt
import grp
import hashlib
import ipaddress
import os
import pwd
import re
import socket
import ssl
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from ansible_collections.runbook.stack.plugins.module_utils._common.files import atomic_write

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtensionOID, NameOID

    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported by the module via missing_required_lib
    x509 = None
    serialization = None
    ExtensionOID = NameOID = None
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()


KEY_MODE = 0o600
_PEM_CERT_RE = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL)


class TlsError(Exception):
    """A foreseeable TLS/certificate fault, already phrased for the operator."""


# ------------------------------------------------------------------------------------------------
# parsing
# ------------------------------------------------------------------------------------------------


def read_file(path: str, what: str) -> bytes:
    """Bytes of ``path``; TlsError naming the option and the file when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise TlsError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def load_certificates(data: bytes, where: str) -> list[Any]:
    """Every PEM certificate in ``data`` (leaf first, as written); ``where`` names the source."""
    blocks = _PEM_CERT_RE.findall(data)
    if not blocks:
        raise TlsError(f"{where} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    certs = []
    for index, block in enumerate(blocks, start=1):
        try:
            certs.append(x509.load_pem_x509_certificate(block))
        except ValueError as exc:
            raise TlsError(f"{where}: certificate {index} cannot be parsed ({exc})") from None
    return certs


def load_private_key(data: bytes, where: str) -> Any:
    """The unencrypted PEM private key in ``data``. The message never quotes the data."""
    if b"ENCRYPTED" in data:
        raise TlsError(f"{where} is an encrypted private key: give the key unencrypted (mode 0600 protects it)")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise TlsError(f"{where} is not a readable unencrypted PEM private key") from None
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm for exotic keys
        raise TlsError(f"{where}: unsupported private key ({type(exc).__name__})") from None


def cert_pem(certs: list[Any]) -> bytes:
    """PEM of ``certs``, concatenated in order."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def cert_der(cert: Any) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def public_key_der(obj: Any) -> bytes:
    """SubjectPublicKeyInfo DER of a certificate's or a private key's public key."""
    key = obj.public_key()
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def private_key_der(key: Any) -> bytes:
    """The key as unencrypted PKCS#8 DER, only for comparing two keys in memory."""
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def key_matches(cert: Any, key: Any) -> bool:
    """Whether ``key`` is the private key of ``cert`` (their public keys are identical)."""
    return public_key_der(cert) == public_key_der(key)


# ------------------------------------------------------------------------------------------------
# facts about a certificate
# ------------------------------------------------------------------------------------------------


def fingerprint(der: bytes) -> str:
    """SHA-256 of DER bytes as ``AB:CD:...`` (the form ``openssl x509 -fingerprint -sha256`` prints)."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def hex_serial(number: int) -> str:
    """A serial number as even-length upper-case hex (the form ``openssl x509 -serial`` prints)."""
    text = format(int(number), "X")
    return text if len(text) % 2 == 0 else "0" + text


def serial_hex(cert: Any) -> str:
    """The certificate's serial number in the form of :func:`hex_serial`."""
    return hex_serial(cert.serial_number)


def not_before(cert: Any) -> _dt.datetime:
    value = getattr(cert, "not_valid_before_utc", None)
    return value if value is not None else cert.not_valid_before.replace(tzinfo=_dt.timezone.utc)


def not_after(cert: Any) -> _dt.datetime:
    value = getattr(cert, "not_valid_after_utc", None)
    return value if value is not None else cert.not_valid_after.replace(tzinfo=_dt.timezone.utc)


def iso(when: _dt.datetime) -> str:
    return when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def san_names(cert: Any) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of the subjectAltName extension; empty lists without one."""
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return [], []
    dns = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    ips = [str(n) for n in san.get_values_for_type(x509.IPAddress)]
    return dns, ips


def common_name(cert: Any) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def describe_cert(cert: Any) -> dict[str, Any]:
    """The public facts returned and shown in diffs (never anything about the private key)."""
    dns, ips = san_names(cert)
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": serial_hex(cert),
        "fingerprint_sha256": fingerprint(cert_der(cert)),
        "not_before": iso(not_before(cert)),
        "not_after": iso(not_after(cert)),
        "hostnames": dns + ips,
        "public_key_sha256": fingerprint(public_key_der(cert)),
    }


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


# ------------------------------------------------------------------------------------------------
# files: owners, modes, snapshots, atomic writes, backups
# ------------------------------------------------------------------------------------------------


def parse_mode(value: Any, what: str = "mode") -> int:
    """An octal file mode given as ``'0644'``, ``'644'`` or the int YAML makes of ``0644``."""
    if isinstance(value, bool):
        raise TlsError(f"{what} must be an octal mode such as '0644', got {value!r}")
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        if not re.fullmatch(r"0?[0-7]{3,4}", text):
            raise TlsError(f"{what} must be an octal mode such as '0644', got {value!r}")
        mode = int(text, 8)
    if not 0 <= mode <= 0o7777:
        raise TlsError(f"{what} must be an octal mode such as '0644', got {value!r}")
    return mode


def resolve_owner(owner: str | None, group: str | None) -> tuple[int | None, int | None]:
    """(uid, gid) of a user / group name or number; None for what is not given."""
    uid = gid = None
    if owner not in (None, ""):
        text = str(owner)
        try:
            uid = int(text) if text.isdigit() else pwd.getpwnam(text).pw_uid
        except KeyError:
            raise TlsError(f"owner {text!r} is not a user on this host") from None
    if group not in (None, ""):
        text = str(group)
        try:
            gid = int(text) if text.isdigit() else grp.getgrnam(text).gr_gid
        except KeyError:
            raise TlsError(f"group {text!r} is not a group on this host") from None
    return uid, gid


@dataclass(frozen=True)
class FileState:
    """A destination file as it was before the run; ``data`` None when it did not exist."""

    path: str
    data: bytes | None = field(default=None, repr=False)
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None

    @property
    def exists(self) -> bool:
        return self.data is not None


def snapshot(path: str, what: str) -> FileState:
    """The current content and attributes of ``path`` (a missing file is a valid state)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return FileState(path)
    except OSError as exc:
        raise TlsError(f"cannot stat {what} {path}: {exc.strerror or exc}") from None
    if not os.path.isfile(path):
        raise TlsError(f"{what} {path} exists and is not a regular file")
    return FileState(path, read_file(path, what), st.st_mode & 0o7777, st.st_uid, st.st_gid)


def check_writable_dir(path: str, what: str) -> None:
    """TlsError when the directory of ``path`` is missing or not writable (checked before any write)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise TlsError(f"the directory of {what} {path} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise TlsError(f"the directory of {what} {path} is not writable")


def write_file(path: str, data: bytes, mode: int, uid: int | None, gid: int | None, what: str) -> None:
    """atomic_write with the fault phrased as TlsError naming the file."""
    try:
        atomic_write(path, data, mode, uid, gid)
    except OSError as exc:
        raise TlsError(f"cannot write {what} {path}: {exc.strerror or exc}") from None


def restore(state: FileState) -> None:
    """Put a snapshot back: the old bytes, mode and owner, or no file when there was none."""
    if state.data is None:
        try:
            os.unlink(state.path)
        except FileNotFoundError:
            pass
        return
    atomic_write(state.path, state.data, state.mode if state.mode is not None else KEY_MODE, state.uid, state.gid)


def backup_path(path: str, backup: str, stamp: str) -> str:
    """Where the backup of ``path`` goes: ``<backup>/<name>.<stamp>`` when ``backup`` is an
    absolute directory, else ``<path><backup>`` (a suffix such as ``.bak``)."""
    if os.path.isabs(backup):
        return os.path.join(backup, f"{os.path.basename(path)}.{stamp}")
    if "/" in backup:
        raise TlsError(f"backup {backup!r} must be an absolute directory or a file-name suffix such as '.bak'")
    return path + backup


def write_backup(state: FileState, backup: str, stamp: str, what: str) -> str | None:
    """Copy a snapshot to its backup path (same mode and owner); None when there was no file."""
    if state.data is None:
        return None
    dest = backup_path(state.path, backup, stamp)
    directory = os.path.dirname(dest)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        atomic_write(dest, state.data, state.mode if state.mode is not None else KEY_MODE, state.uid, state.gid)
    except OSError as exc:
        raise TlsError(f"cannot back up {what} {state.path} to {dest}: {exc.strerror or exc}") from None
    return dest


def same_certificates(data: bytes | None, certs: list[Any]) -> bool:
    """Whether PEM ``data`` holds exactly ``certs`` (same DER, same order), whatever its layout."""
    if data is None:
        return False
    try:
        current = load_certificates(data, "current file")
    except TlsError:
        return False
    return [cert_der(c) for c in current] == [cert_der(c) for c in certs]


def same_private_key(data: bytes | None, key: Any) -> bool:
    """Whether PEM ``data`` holds ``key`` (compared as PKCS#8 DER in memory, any PEM flavour)."""
    if data is None:
        return False
    try:
        current = load_private_key(data, "current key")
    except TlsError:
        return False
    return private_key_der(current) == private_key_der(key)
