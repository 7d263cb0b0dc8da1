# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 connection, error translation and pure selection helpers shared by the s3_* modules (private).

Helpers take plain values, never the AnsibleModule; only a module's main() touches params and
fail_json. Every foreseeable fault is raised as :class:`S3Error` with a message that names the
endpoint, bucket or key and the cause, and never contains the secret key or session token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import traceback
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.basic import env_fallback

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    HASH_CHUNK,
    MANIFEST,
    BackupSetError,
    Storage,
)
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


# ---------------------------------------------------------------------------------------------
# backup sets under an S3 prefix (the Storage interface of _backup_set)
# ---------------------------------------------------------------------------------------------


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/some/prefix``; the prefix has no leading or trailing '/'."""
    text = str(url or "").strip()
    if not text.startswith("s3://"):
        raise S3Error(f"{text!r} is not an s3:// URL (expected s3://bucket/prefix)")
    bucket, _sep, prefix = text[len("s3://") :].partition("/")
    if not bucket or "/" in bucket or any(c.isspace() for c in bucket):
        raise S3Error(f"{text!r} has no valid bucket name (expected s3://bucket/prefix)")
    prefix = "/".join(p for p in prefix.split("/") if p)
    if any(p in (".", "..") for p in prefix.split("/")):
        raise S3Error(f"{text!r}: '.' and '..' are not allowed in the prefix")
    return bucket, prefix


def _not_found(exc: BaseException) -> bool:
    return error_code(exc) in ("404", "NoSuchKey", "NotFound")


class S3Storage(Storage):
    """Backup sets under ``s3://bucket/prefix``: directories are key prefixes ending in '/'.

    Reads of a missing key raise FileNotFoundError and other faults OSError (with the translated,
    secret-free message), which is what BackupSet expects of any storage."""

    def __init__(self, url: str, info: S3Conn, cli: Any = None) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.info = info
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.client = cli if cli is not None else client(info)

    def key(self, rel: str) -> str:
        parts = [p for p in f"{self.prefix}/{rel}".split("/") if p]
        return "/".join(parts)

    def _dir_prefix(self, rel: str) -> str:
        key = self.key(rel)
        return f"{key}/" if key else ""

    def _fail(self, exc: BaseException, verb: str, key: str | None = None) -> OSError:
        return OSError(str(translate(exc, self.info, verb, bucket=self.bucket, key=key)))

    def list_dirs(self, rel: str) -> list[str]:
        prefix = self._dir_prefix(rel)
        names: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                for common in page.get("CommonPrefixes", []):
                    name = common["Prefix"][len(prefix) :].rstrip("/")
                    if name:
                        names.append(name)
        except Exception as exc:  # pylint: disable=broad-except  # translated
            raise BackupSetError(
                str(translate(exc, self.info, f"list prefix {prefix!r}", bucket=self.bucket))
            ) from None
        return sorted(names)

    def iter_objects(self, rel: str) -> Iterable[dict[str, Any]]:
        """Every object below the directory ``rel`` (ListObjectsV2 entries, key unchanged)."""
        prefix = self._dir_prefix(rel)
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                yield from page.get("Contents", [])
        except Exception as exc:  # pylint: disable=broad-except  # translated
            raise self._fail(exc, f"list prefix {prefix!r}") from None

    def file_sizes(self, rel: str) -> dict[str, int] | None:
        prefix = self._dir_prefix(rel)
        return {o["Key"][len(prefix) :]: int(o.get("Size", 0)) for o in self.iter_objects(rel)}

    def read_bytes(self, rel: str) -> bytes:
        key = self.key(rel)
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:  # pylint: disable=broad-except  # translated
            if _not_found(exc):
                raise FileNotFoundError(key) from None
            raise self._fail(exc, "read", key) from None

    def write_atomic(self, rel: str, data: bytes) -> None:
        # a PUT is atomic on S3: readers see the old object, no object, or the whole new one
        key = self.key(rel)
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        except Exception as exc:  # pylint: disable=broad-except  # translated
            raise self._fail(exc, "write", key) from None

    def _head(self, rel: str) -> dict[str, Any]:
        key = self.key(rel)
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:  # pylint: disable=broad-except  # translated
            if _not_found(exc):
                raise FileNotFoundError(key) from None
            raise self._fail(exc, "read the size of", key) from None

    def exists(self, rel: str) -> bool:
        """True for an object or a non-empty directory (prefix); the bucket itself for rel ''."""
        if rel.strip("/"):
            try:
                self._head(rel)
                return True
            except FileNotFoundError:
                pass
        try:
            resp = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._dir_prefix(rel), MaxKeys=1)
        except Exception as exc:  # pylint: disable=broad-except  # translated
            if error_code(exc) in ("NoSuchBucket", "404"):
                return False
            raise BackupSetError(str(translate(exc, self.info, "list", bucket=self.bucket))) from None
        return bool(resp.get("KeyCount") or resp.get("Contents")) or not rel.strip("/")

    def size(self, rel: str) -> int:
        return int(self._head(rel).get("ContentLength", 0))

    def sha256(self, rel: str) -> str:
        key = self.key(rel)
        digest = hashlib.sha256()
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            for chunk in iter(lambda: body.read(HASH_CHUNK), b""):
                digest.update(chunk)
        except Exception as exc:  # pylint: disable=broad-except  # translated
            if _not_found(exc):
                raise FileNotFoundError(key) from None
            raise self._fail(exc, "read", key) from None
        return digest.hexdigest()

    def delete_keys(self, keys: list[str]) -> int:
        """Delete full keys in DeleteObjects batches; S3Error naming the keys that failed."""
        deleted = 0
        for batch in batches(keys, DELETE_BATCH_MAX):
            try:
                resp = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            except Exception as exc:  # pylint: disable=broad-except  # translated
                raise translate(exc, self.info, f"delete {len(batch)} objects", bucket=self.bucket) from None
            errors = resp.get("Errors") or []
            if errors:
                shown = ", ".join(f"{e.get('Key')!r} ({e.get('Code')})" for e in errors[:5])
                raise S3Error(f"cannot delete {len(errors)} objects in bucket {self.bucket!r}: {shown}")
            deleted += len(batch)
        return deleted

    def remove_tree(self, rel: str) -> None:
        manifest = f"{rel.rstrip('/')}/{MANIFEST}"
        keys = [o["Key"] for o in self.iter_objects(rel)]
        manifest_key = self.key(manifest)
        if manifest_key in keys:  # the manifest goes first: an interrupted removal is never a sealed set
            self.delete_keys([manifest_key])
            keys.remove(manifest_key)
        if keys:
            self.delete_keys(keys)
