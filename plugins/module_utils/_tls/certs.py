# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TLS certificates (private): parsing PEM certificates and private keys (with the ``cryptography``
library, as community.crypto does), the key/certificate match, and the facts of a certificate
(SHA-256 fingerprints, serial, validity, names).

Helpers take plain values, never the AnsibleModule. Every foreseeable fault is raised as
:class:`TlsError`, phrased for the operator; no message, return value or repr ever contains private
key material (keys are only compared in memory).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
import traceback
from typing import Any

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
