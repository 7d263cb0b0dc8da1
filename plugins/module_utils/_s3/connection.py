# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 connection options, their validation and the bounded boto3 client (private).

Helpers take plain values, never the AnsibleModule; only a module's main() touches params and
fail_json. Faults are raised as :class:`~.errors.S3Error`.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.basic import env_fallback

from ansible_collections.runbook.stack.plugins.module_utils._s3.errors import S3Error, s3_call

try:
    import boto3
    import botocore.config
except ImportError:  # pragma: no cover - errors.HAS_BOTO3 reports it
    pass


def s3_argument_spec() -> dict[str, Any]:
    """Connection options shared by every s3_* module (doc fragment: runbook.stack.s3)."""
    return dict(
        endpoint_url=dict(type="str", fallback=(env_fallback, ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])),
        access_key=dict(
            type="str", no_log=False, aliases=["aws_access_key_id"], fallback=(env_fallback, ["AWS_ACCESS_KEY_ID"])
        ),
        secret_key=dict(type="str", no_log=True, fallback=(env_fallback, ["AWS_SECRET_ACCESS_KEY"])),
        session_token=dict(
            type="str", no_log=True, fallback=(env_fallback, ["AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"])
        ),
        region=dict(type="str", default="us-east-1", fallback=(env_fallback, ["AWS_REGION", "AWS_DEFAULT_REGION"])),
        validate_certs=dict(type="bool", default=True),
        ca_bundle=dict(type="path", fallback=(env_fallback, ["AWS_CA_BUNDLE"])),
        addressing_style=dict(type="str", default="path", choices=["auto", "path", "virtual"]),
        connect_timeout=dict(type="float", default=5),
        read_timeout=dict(type="float", default=30),
    )


def validate_endpoint_url(url: str | None) -> str | None:
    """The endpoint URL without a trailing slash; S3Error naming endpoint_url when it is not http(s)://host."""
    if url is None or url == "":
        return None
    text = str(url).strip()
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise S3Error(f"endpoint_url {text!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise S3Error(f"endpoint_url {text!r} is not a valid URL: the scheme must be http or https")
    if not parts.hostname or any(c.isspace() for c in text):
        raise S3Error(f"endpoint_url {text!r} is not a valid URL: it needs a host, e.g. https://s3.example.com:9000")
    if port == 0:
        raise S3Error(f"endpoint_url {text!r} is not a valid URL: port 0")
    return text.rstrip("/")


@dataclass(frozen=True)
class S3Conn:
    endpoint_url: str | None
    access_key: str | None
    secret_key: str | None = field(repr=False)
    session_token: str | None = field(repr=False)
    region: str = "us-east-1"
    validate_certs: bool = True
    ca_bundle: str | None = None
    addressing_style: str = "path"
    connect_timeout: float = 5
    read_timeout: float = 30

    @property
    def where(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region})"

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.secret_key, self.session_token) if s)


def conn_info(params: dict[str, Any]) -> S3Conn:
    """S3Conn from module params (validated values, not the module)."""
    for name in ("connect_timeout", "read_timeout"):
        value = params.get(name)
        if value is not None and value <= 0:
            raise S3Error(f"{name} must be a positive number of seconds, got {value}")
    if bool(params.get("access_key")) != bool(params.get("secret_key")):
        raise S3Error("access_key and secret_key must be set together")
    return S3Conn(
        endpoint_url=validate_endpoint_url(params.get("endpoint_url")),
        access_key=params.get("access_key") or None,
        secret_key=params.get("secret_key") or None,
        session_token=params.get("session_token") or None,
        region=params.get("region") or "us-east-1",
        validate_certs=params.get("validate_certs", True) is not False,
        ca_bundle=params.get("ca_bundle") or None,
        addressing_style=params.get("addressing_style") or "path",
        connect_timeout=float(params.get("connect_timeout") or 5),
        read_timeout=float(params.get("read_timeout") or 30),
    )


@s3_call("create an S3 client")
def client(info: S3Conn, max_pool_connections: int | None = None) -> Any:
    """A boto3 S3 client with bounded timeouts and retries (a dead endpoint fails within seconds).

    ``max_pool_connections``: size of the client's connection pool when several threads share it."""
    config = botocore.config.Config(
        region_name=info.region,
        max_pool_connections=max(10, int(max_pool_connections or 10)),
        connect_timeout=info.connect_timeout,
        read_timeout=info.read_timeout,
        retries={"max_attempts": 2, "mode": "standard"},
        s3={"addressing_style": info.addressing_style},
        signature_version="s3v4",
        # MinIO, SeaweedFS and Ceph do not all accept the CRC checksums newer botocore sends by default
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    verify: bool | str = info.ca_bundle if (info.validate_certs and info.ca_bundle) else info.validate_certs
    session = boto3.session.Session(
        aws_access_key_id=info.access_key,
        aws_secret_access_key=info.secret_key,
        aws_session_token=info.session_token,
        region_name=info.region,
    )
    return session.client("s3", endpoint_url=info.endpoint_url, verify=verify, config=config)


def _no_expect_for_empty_body(request: Any, **_kwargs: Any) -> None:
    """botocore sends ``Expect: 100-continue`` even on a PUT of 0 bytes; SeaweedFS answers it at
    once and the kept-alive connection then stalls the next request until the read timeout."""
    if str(request.headers.get("Content-Length")) == "0":
        request.headers.pop("Expect", None)
