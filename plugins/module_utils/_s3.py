# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 connection, error translation and pure selection helpers shared by the s3_* modules (private).

Helpers take plain values, never the AnsibleModule; only a module's main() touches params and
fail_json. Every foreseeable fault is raised as :class:`S3Error` with a message that names the
endpoint, bucket or key and the cause, and never contains the secret key or session token.
"""

from __future__ import annotations

import datetime as dt
import traceback
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.basic import env_fallback

from ansible_collections.runbook.stack.plugins.module_utils._text import one_line

try:
    import boto3
    import botocore.config
    import botocore.exceptions

    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported by the module via missing_required_lib
    boto3 = None
    botocore = None
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = traceback.format_exc()

# DeleteObjects accepts at most this many keys per request.
DELETE_BATCH_MAX = 1000


class S3Error(Exception):
    """A foreseeable S3 fault, already phrased for the operator."""


def s3_argument_spec() -> dict[str, Any]:
    """Connection options shared by every s3_* module (doc fragment: runbook.stack.s3)."""
    return dict(
        endpoint_url=dict(type="str", fallback=(env_fallback, ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])),
        access_key=dict(
            type="str", no_log=False, aliases=["aws_access_key_id"], fallback=(env_fallback, ["AWS_ACCESS_KEY_ID"])
        ),
        secret_key=dict(type="str", no_log=True, fallback=(env_fallback, ["AWS_SECRET_ACCESS_KEY"])),
        session_token=dict(type="str", no_log=True, fallback=(env_fallback, ["AWS_SESSION_TOKEN"])),
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


def client(info: S3Conn) -> Any:
    """A boto3 S3 client with bounded timeouts and retries (a dead endpoint fails within seconds)."""
    config = botocore.config.Config(
        region_name=info.region,
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
    try:
        session = boto3.session.Session(
            aws_access_key_id=info.access_key,
            aws_secret_access_key=info.secret_key,
            aws_session_token=info.session_token,
            region_name=info.region,
        )
        return session.client("s3", endpoint_url=info.endpoint_url, verify=verify, config=config)
    except Exception as exc:  # pylint: disable=broad-except  # botocore raises several types here
        raise translate(exc, info, "create an S3 client") from None


# S3 error codes and what they mean to an operator.
_CODE_TEXT = {
    "NoSuchBucket": "bucket {bucket} does not exist",
    "NoSuchKey": "object {key} does not exist in bucket {bucket}",
    "SignatureDoesNotMatch": "access denied: the access key or secret key is wrong",
    "InvalidAccessKeyId": "access denied: the access key is unknown to the server",
    "InvalidClientTokenId": "access denied: the access key is unknown to the server",
    "ExpiredToken": "access denied: the session token has expired",
    "InvalidToken": "access denied: the session token is invalid",
    "AccessDenied": "access denied to {what}",
    "AllAccessDisabled": "access denied to {what}",
    "PermanentRedirect": "bucket {bucket} is in another region or needs another endpoint",
    "AuthorizationHeaderMalformed": "the request was signed for the wrong region (region option)",
}
_HTTP_TEXT = {"404": "bucket {bucket} does not exist", "403": "access denied to {what}"}
_CREDENTIAL_CODES = frozenset(
    {"SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidClientTokenId", "ExpiredToken", "InvalidToken"}
)


def error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ClientError (``NoSuchBucket``, ``403``, ...), else None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = (response.get("Error") or {}).get("Code")
    if code:
        return str(code)
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return str(status) if status else None


def is_credential_error(exc: BaseException) -> bool:
    return error_code(exc) in _CREDENTIAL_CODES


def translate(
    exc: BaseException, info: S3Conn, verb: str, bucket: str | None = None, key: str | None = None
) -> S3Error:
    """One S3Error for any botocore fault: 'cannot <verb> (<endpoint>, bucket 'b', key 'k'): <cause>'."""
    secrets = info.secrets
    bucket_text = repr(bucket) if bucket is not None else "(none)"
    key_text = repr(key) if key is not None else "(none)"
    what = f"key {key_text} in bucket {bucket_text}" if key is not None else f"bucket {bucket_text}"
    if bucket is None:
        what = info.where
    cause: str
    code = error_code(exc)
    if code:
        template = _CODE_TEXT.get(code or "") or _HTTP_TEXT.get(code or "")
        if code == "404" and key is not None:  # HEAD requests carry no error body: 404 on a key is the key
            template = _CODE_TEXT["NoSuchKey"]
        if template:
            cause = f"{template.format(bucket=bucket_text, key=key_text, what=what)} ({code})"
        else:
            message = ((getattr(exc, "response", None) or {}).get("Error") or {}).get("Message") or str(exc)
            cause = f"{message} ({code})" if code else str(message)
    elif HAS_BOTO3 and isinstance(exc, botocore.exceptions.NoCredentialsError):
        cause = "no credentials: set access_key and secret_key (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
    elif HAS_BOTO3 and isinstance(
        exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError)
    ):
        cause = f"endpoint {info.where} is unreachable: {exc}"
    elif HAS_BOTO3 and isinstance(exc, botocore.exceptions.ReadTimeoutError):
        cause = f"endpoint {info.where} did not answer within {info.read_timeout} s"
    elif HAS_BOTO3 and isinstance(exc, botocore.exceptions.SSLError):
        cause = f"TLS verification of {info.where} failed (validate_certs, ca_bundle): {exc}"
    elif HAS_BOTO3 and isinstance(exc, botocore.exceptions.ParamValidationError):
        cause = f"invalid request parameters: {exc}"
    elif HAS_BOTO3 and isinstance(exc, botocore.exceptions.InvalidRegionError):
        cause = f"invalid region {info.region!r}"
    elif isinstance(exc, ValueError) and "endpoint" in str(exc).lower():
        cause = f"endpoint_url {info.endpoint_url!r} is not valid: {exc}"
    else:
        cause = f"{type(exc).__name__}: {exc}"
    target = f"at {info.where}"
    if bucket is not None:
        target += f", bucket {bucket_text}"
    if key is not None:
        target += f", key {key_text}"
    return S3Error(one_line(f"cannot {verb} ({target}): {cause}", *secrets))


def is_unreachable(exc: BaseException) -> bool:
    """True for faults that mean the endpoint cannot be reached (as opposed to a refusal by the server)."""
    if not HAS_BOTO3:
        return False
    return isinstance(
        exc,
        (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError,
            botocore.exceptions.SSLError,
            botocore.exceptions.ConnectionClosedError,
        ),
    )


# ---------------------------------------------------------------------------------------------
# pure selection helpers
# ---------------------------------------------------------------------------------------------


def age_cutoff(now: dt.datetime, older_than_days: float) -> dt.datetime:
    """Objects last modified strictly before this instant are old enough to delete."""
    if older_than_days < 0:
        raise S3Error(f"older_than_days must be 0 or more, got {older_than_days}")
    return now - dt.timedelta(days=older_than_days)


def select_for_retention(
    objects: Iterable[dict[str, Any]], now: dt.datetime, older_than_days: float, min_keep: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(to_delete, to_keep) among ``objects`` (dicts with Key, LastModified, Size).

    The ``min_keep`` newest objects (by LastModified, ties broken by key) are always kept; of the
    others, those last modified before ``now - older_than_days`` are deleted. Both lists are sorted
    oldest first.
    """
    if min_keep < 0:
        raise S3Error(f"min_keep must be 0 or more, got {min_keep}")
    cutoff = age_cutoff(now, older_than_days)
    ordered = sorted(objects, key=lambda o: (o["LastModified"], o["Key"]))
    protected = ordered[len(ordered) - min_keep :] if min_keep else []
    candidates = ordered[: len(ordered) - len(protected)]
    delete = [o for o in candidates if o["LastModified"] < cutoff]
    delete_keys = {o["Key"] for o in delete}
    keep = [o for o in ordered if o["Key"] not in delete_keys]
    return delete, keep


def batches(items: list[Any], size: int) -> list[list[Any]]:
    if not 0 < size <= DELETE_BATCH_MAX:
        raise S3Error(f"batch_size must be between 1 and {DELETE_BATCH_MAX}, got {size}")
    return [items[i : i + size] for i in range(0, len(items), size)]
