# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 connection, error translation and pure selection helpers shared by the s3_* modules (private).

Helpers take plain values, never the AnsibleModule; only a module's main() touches params and
fail_json. Every foreseeable fault is raised as :class:`S3Error` with a message that names the
endpoint, bucket or key and the cause, and never contains the secret key or session token.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import html
import http.client
import json
import os
import re
import socket
import ssl
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.basic import env_fallback

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    FILE_MODE,
    HASH_CHUNK,
    KIND_RE,
    MANIFEST,
    OBJECTS_DIR,
    BackupSet,
    BackupSetError,
    LocalStorage,
    Storage,
    find_set,
    fsync_tree,
    hash_files,
    iso,
    keep_name,
    make_private_dirs,
    remove_tree,
    secure_tree,
    set_rel,
)
from ansible_collections.runbook.stack.plugins.module_utils._common.files import atomic_write, fsync_dir
from ansible_collections.runbook.stack.plugins.module_utils._common.steps import Steps
from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line

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


# ---------------------------------------------------------------------------------------------
# server-side copies (s3_snapshot, s3_restore): pure planning helpers
# ---------------------------------------------------------------------------------------------

MIB = 1024 * 1024
GIB = 1024 * MIB
MIN_PART_SIZE = 5 * MIB  # S3 minimum for every part but the last
MAX_PART_SIZE = 5 * GIB
MAX_PARTS = 10000
MAX_SINGLE_COPY = 5 * GIB  # CopyObject refuses larger sources
MAX_CONCURRENCY = 256
DEFAULT_MULTIPART_THRESHOLD = 5 * GIB
DEFAULT_PART_SIZE = 256 * MIB
RESTORE_MODES = ("missing", "overwrite", "mirror")


def check_copy_options(concurrency: int, multipart_threshold: int, part_size: int) -> None:
    """S3Error naming the option when a copy tuning value is out of range."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise S3Error(f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {concurrency}")
    if not MIN_PART_SIZE <= multipart_threshold <= MAX_SINGLE_COPY:
        raise S3Error(
            f"multipart_threshold must be between {MIN_PART_SIZE} (5 MiB) and {MAX_SINGLE_COPY} (5 GiB) bytes, "
            f"got {multipart_threshold}"
        )
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise S3Error(
            f"part_size must be between {MIN_PART_SIZE} (5 MiB) and {MAX_PART_SIZE} (5 GiB) bytes, got {part_size}"
        )


def part_ranges(size: int, part_size: int) -> list[tuple[int, int]]:
    """Inclusive byte ranges for UploadPartCopy; the part size grows when ``size`` would need more
    than 10,000 parts."""
    if size <= 0:
        raise S3Error(f"a multipart copy needs a non-empty object, got {size} bytes")
    part_size = max(part_size, MIN_PART_SIZE, -(-size // MAX_PARTS))
    return [(start, min(start + part_size, size) - 1) for start in range(0, size, part_size)]


def plain_etag(etag: Any) -> str:
    """An ETag without the surrounding quotes ('' when unknown)."""
    return str(etag or "").strip().strip('"')


def is_md5_etag(etag: Any) -> bool:
    """True for a single-part ETag (32 hex digits, the MD5 of the content); multipart ETags end in -N."""
    text = plain_etag(etag)
    return len(text) == 32 and all(c in "0123456789abcdefABCDEF" for c in text)


def same_content(size: int, etag: Any, want_size: int, known_etags: Iterable[Any]) -> bool:
    """Whether an object (``size``, ``etag``) holds the content described by ``want_size`` and the
    ETags known for it (the source ETag of the snapshot and the ETag of the backup copy).

    - a different size is always different;
    - an ETag equal to one of the known ETags is the same;
    - when the object and a known ETag are both plain MD5s and none is equal, it is different;
    - otherwise the ETags are not comparable (a multipart ETag depends on the part sizes, not only
      on the content) and the size alone decides: the object is taken as the same.
    """
    if int(size) != int(want_size):
        return False
    have = plain_etag(etag)
    known = [plain_etag(e) for e in known_etags if plain_etag(e)]
    if have and have in known:
        return True
    # both plain MD5s and none equal: other content; else not comparable, the size decided
    return not (is_md5_etag(have) and any(is_md5_etag(k) for k in known))


def split_backup_prefix(backup_prefix: str) -> tuple[str, str]:
    """(root prefix, kind) of ``backup_prefix``: its last component is the backup kind (``s3``)."""
    parts = [p for p in str(backup_prefix or "").split("/") if p]
    if not parts:
        raise S3Error("backup_prefix must not be empty: its last component is the backup kind, e.g. 's3'")
    kind = parts[-1]
    if not KIND_RE.match(kind):
        raise S3Error(
            f"backup_prefix {backup_prefix!r}: its last component {kind!r} is the backup kind and must be "
            "lower-case letters, digits and _, starting with a letter (e.g. 's3' or 'backups/s3')"
        )
    if any(p in (".", "..") for p in parts):
        raise S3Error(f"backup_prefix {backup_prefix!r}: '.' and '..' are not allowed")
    return "/".join(parts[:-1]), kind


def check_no_overlap(bucket: str, prefix: str, backup_bucket: str, backup_prefix: str) -> None:
    """S3Error when backups under ``backup_prefix`` would fall under the copied ``prefix`` (or the
    other way round) in the same bucket: a snapshot would then copy earlier backups, or a restore
    would write into the backups."""
    if bucket != backup_bucket:
        return
    area = "/".join(p for p in backup_prefix.split("/") if p) + "/"
    if area.startswith(prefix) or prefix.startswith(area):
        raise S3Error(
            f"backup_prefix {backup_prefix!r} overlaps prefix {prefix!r} in bucket {bucket!r}: the backups would be "
            "part of the data they back up; use another backup_bucket or a prefix that does not contain the backups"
        )


def set_prefix(backup_prefix: str, source_bucket: str, backup_id: str) -> str:
    """Key prefix (ending in '/') of the snapshot set of ``source_bucket``:
    ``<backup_prefix>/<encoded bucket>/<backup_id>/``."""
    root, kind = split_backup_prefix(backup_prefix)
    rel = set_rel(kind, source_bucket, backup_id)
    return f"{root}/{rel}/" if root else f"{rel}/"


def backup_key(prefix_of_set: str, key: str) -> str:
    """Where a source key is stored in a snapshot set (``objects/`` keeps it apart from the manifest)."""
    return f"{prefix_of_set}{OBJECTS_DIR}/{key}"


def map_key(key: str, from_prefix: str, to_prefix: str) -> str:
    """``key`` with ``from_prefix`` replaced by ``to_prefix`` (plain string prefixes, as S3 has them)."""
    if not key.startswith(from_prefix):
        raise S3Error(f"key {key!r} does not start with the snapshot prefix {from_prefix!r}")
    return to_prefix + key[len(from_prefix) :]


@dataclass
class RestorePlan:
    copy: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (manifest entry, target key)
    delete: list[str] = field(default_factory=list)
    skipped: int = 0
    # target objects the restore replaces with other content or deletes: (key, size, ETag), by key
    replaced: list[tuple[str, int, str]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(int(entry["size"]) for entry, _key in self.copy)


def plan_restore(
    entries: list[dict[str, Any]],
    target: dict[str, tuple[int, str]],
    mode: str,
    from_prefix: str,
    to_prefix: str,
) -> RestorePlan:
    """What a restore copies and deletes.

    ``entries``: the manifest's objects (key, size, etag, backup_etag); ``target``: {key: (size, etag)}
    of every object under ``to_prefix`` in the target bucket.

    - ``missing``: copy the keys that are absent or hold other content (see :func:`same_content`);
    - ``overwrite``: copy every key;
    - ``mirror``: like ``missing``, and delete the target keys under ``to_prefix`` that the snapshot
      does not have, except those in a kept area (:func:`is_kept_key`).

    ``replaced`` lists the target objects whose content the copies change (an equal object that
    ``overwrite`` copies again is not replaced) and the deleted ones: what a restore keeps.
    """
    if mode not in RESTORE_MODES:
        raise S3Error(f"unknown mode {mode!r}: expected one of {', '.join(RESTORE_MODES)}")
    plan = RestorePlan()
    wanted: set[str] = set()
    for entry in entries:
        key = map_key(entry["key"], from_prefix, to_prefix)
        wanted.add(key)
        have = target.get(key)
        known = (entry.get("etag"), entry.get("backup_etag"))
        same = have is not None and same_content(have[0], have[1], entry["size"], known)
        if have is not None and not same:
            plan.replaced.append((key, int(have[0]), plain_etag(have[1])))
        if mode != "overwrite" and same:
            plan.skipped += 1
            continue
        plan.copy.append((entry, key))
    if mode == "mirror":
        plan.delete = sorted(k for k in target if k not in wanted and not is_kept_key(k, to_prefix))
        plan.replaced.extend((k, int(target[k][0]), plain_etag(target[k][1])) for k in plan.delete)
    plan.replaced.sort()
    return plan


# Objects a restore replaces or deletes are kept in their bucket under pre-restore-<backup_id>/ (then
# pre-restore-<backup_id>.2/, .3/, ... when an earlier restore of the same set kept some already),
# each at its own key: s3://<bucket>/pre-restore-<id>/<key>. Snapshots, restores and retention of
# the live data leave these areas alone.
KEEP_PREFIX = "pre-restore-"
KEEP_LIMIT = 99
_KEPT_RE = re.compile(r"^pre-restore-[0-9]{8}T[0-9]{6}Z(\.[0-9]+)?/")


def keep_prefix_name(backup_id: str, suffix: str = "") -> str:
    """``pre-restore-<backup_id><suffix>/``: where a restore of ``backup_id`` keeps what it replaces."""
    return f"{KEEP_PREFIX}{backup_id}{suffix}/"


def is_kept_key(key: str, selected_prefix: str = "") -> bool:
    """Whether ``key`` lies in an area where s3_restore kept replaced objects (``pre-restore-<id>[.N]/``
    at the bucket root) that a selection by ``selected_prefix`` must leave alone: snapshots, restores
    and retention of the live data never include them; a selection whose prefix starts with
    ``pre-restore-`` (the operator names the kept area itself) does."""
    return not selected_prefix.startswith(KEEP_PREFIX) and bool(_KEPT_RE.match(key))


def restore_diff(plan: RestorePlan, bucket: str, keep_prefix: str | None, backup_id: str, limit: int) -> dict[str, str]:
    """Ansible's before/after diff of a restore: the objects it changes, at most ``limit`` keys (by key)."""
    replaced = {key: size for key, size, _etag in plan.replaced}
    copied = {key: int(entry["size"]) for entry, key in plan.copy}
    keys = sorted(set(replaced) | set(copied))
    before: list[str] = []
    after: list[str] = []
    for key in keys[:limit]:
        if key in replaced:
            before.append(f"{key} ({replaced[key]} bytes)")
        if key in copied:
            after.append(f"{key} ({copied[key]} bytes, from the snapshot)")
        if key in replaced and keep_prefix:
            after.append(f"{keep_prefix}{key} ({replaced[key]} bytes, kept)")
    if len(keys) > limit:
        more = f"... and {len(keys) - limit} more objects"
        before.append(more)
        after.append(more)
    return {
        "before_header": f"s3://{bucket}",
        "after_header": f"s3://{bucket} (backup {backup_id})",
        "before": "".join(f"{line}\n" for line in before),
        "after": "".join(f"{line}\n" for line in after),
    }


def verify_restore(
    entries: list[dict[str, Any]],
    target: dict[str, tuple[int, str]],
    from_prefix: str,
    to_prefix: str,
    copied: dict[str, str] | None = None,
) -> list[str]:
    """Problems (empty when fine): every manifest key must be in ``target`` with its size, and with a
    matching ETag where the ETags are comparable; ``copied`` maps a target key to the ETag its copy
    returned, which is then one more known ETag for that key."""
    problems: list[str] = []
    for entry in entries:
        key = map_key(entry["key"], from_prefix, to_prefix)
        have = target.get(key)
        if have is None:
            problems.append(f"{key!r} is missing")
            continue
        known = (entry.get("etag"), entry.get("backup_etag"), (copied or {}).get(key))
        if int(have[0]) != int(entry["size"]):
            problems.append(f"{key!r} has {have[0]} bytes, the snapshot {entry['size']}")
        elif not same_content(have[0], have[1], entry["size"], known):
            problems.append(f"{key!r} has ETag {plain_etag(have[1])}, the snapshot {plain_etag(entry.get('etag'))}")
    return problems


def snapshot_entry(listed: dict[str, Any], backup_etag: str, head: dict[str, Any] | None = None) -> dict[str, Any]:
    """One ``objects[]`` entry of a snapshot manifest from a ListObjectsV2 entry (and a HEAD, if any)."""
    modified = listed.get("LastModified")
    return {
        "key": listed["Key"],
        "size": int(listed.get("Size", 0)),
        "etag": plain_etag(listed.get("ETag")),
        "backup_etag": plain_etag(backup_etag),
        "last_modified": iso(modified) if isinstance(modified, dt.datetime) else modified,
        "content_type": (head or {}).get("ContentType"),
        "metadata": (head or {}).get("Metadata"),
    }


def sample(items: Iterable[Any], count: int = 10) -> list[Any]:
    out = []
    for item in items:
        if len(out) >= count:
            break
        out.append(item)
    return out


# ---------------------------------------------------------------------------------------------
# server-side copies: execution
# ---------------------------------------------------------------------------------------------


def list_objects(cli: Any, info: S3Conn, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Every object under ``prefix`` (ListObjectsV2 entries: Key, Size, ETag, LastModified)."""
    out: list[dict[str, Any]] = []
    try:
        for page in cli.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out.extend(page.get("Contents", []))
    except Exception as exc:  # pylint: disable=broad-except  # translated
        raise translate(exc, info, f"list objects under prefix {prefix!r}", bucket=bucket) from None
    return out


def free_keep_prefix(cli: Any, info: S3Conn, bucket: str, backup_id: str) -> str:
    """The first of ``pre-restore-<id>/``, ``pre-restore-<id>.2/``, ... that holds no object in
    ``bucket``: what an earlier restore of the same set kept is never overwritten."""

    def taken(prefix: str) -> bool:
        try:
            resp = cli.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except Exception as exc:  # pylint: disable=broad-except  # translated
            raise translate(exc, info, f"list prefix {prefix!r}", bucket=bucket) from None
        return bool(resp.get("KeyCount") or resp.get("Contents"))

    name, last = keep_name(lambda suffix: keep_prefix_name(backup_id, suffix), taken, ".", KEEP_LIMIT)
    if last is not None:
        raise S3Error(
            f"prefixes {name} to {last} of bucket {bucket!r} all hold objects kept by earlier restores of this "
            "set: remove the ones no longer needed, so that what this restore replaces can be kept"
        )
    return name


def delete_objects(cli: Any, info: S3Conn, bucket: str, keys: list[str]) -> int:
    """Delete full keys in DeleteObjects batches of 1000; S3Error naming the keys that failed."""
    deleted = 0
    for batch in batches(keys, DELETE_BATCH_MAX):
        try:
            resp = cli.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
        except Exception as exc:  # pylint: disable=broad-except  # translated
            err = translate(exc, info, f"delete {len(batch)} objects", bucket=bucket)
            raise S3Error(f"{err} ({deleted} objects were deleted before)") from None
        errors = resp.get("Errors") or []
        if errors:
            shown = ", ".join(f"{e.get('Key')!r} ({e.get('Code')})" for e in errors[:10])
            raise S3Error(f"cannot delete {len(errors)} objects in bucket {bucket!r} at {info.where}: {shown}")
        deleted += len(batch)
    return deleted


_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_HEAD_FIELDS = {
    "ContentType": "content-type",
    "ContentEncoding": "content-encoding",
    "ContentDisposition": "content-disposition",
    "ContentLanguage": "content-language",
    "CacheControl": "cache-control",
}
_XML_TAG = re.compile(rb"<(Code|Message|ETag)>(.*?)</\1>", re.S)


class CopyTransport:
    """A lean, thread-safe S3 request path for the per-object requests of a copy (CopyObject,
    UploadPartCopy): SigV4 signed with the hmac module and sent on one keep-alive connection per thread.

    Why not boto3 for these: botocore spends about 1.5 ms of CPU per request (endpoint rules,
    event hooks, parsing) under the GIL; on a 2-core host that alone made 2,000 copies take 1.45x as
    long as rclone. This path needs about 0.3 ms. Listing, multipart create/complete/abort, HEAD
    and deletes stay on boto3. Faults are raised as botocore exceptions so :func:`translate` words them.
    """

    def __init__(self, info: S3Conn, endpoint_url: str) -> None:
        self.info = info
        parts = urllib.parse.urlsplit(endpoint_url)
        self.https = parts.scheme == "https"
        self.endpoint_url = endpoint_url
        self.netloc = parts.netloc.rpartition("@")[2]
        self.port = parts.port
        self.port_suffix = f":{parts.port}" if parts.port else ""
        self.base_path = parts.path.rstrip("/")
        self.virtual = info.addressing_style == "virtual" or (
            info.addressing_style == "auto" and info.endpoint_url is None
        )
        session = boto3.session.Session(
            aws_access_key_id=info.access_key,
            aws_secret_access_key=info.secret_key,
            aws_session_token=info.session_token,
            region_name=info.region,
        )
        self._credentials = session.get_credentials()
        self._keys: dict[tuple[str, str], bytes] = {}
        self._local = threading.local()
        self._ssl: ssl.SSLContext | None = None
        if self.https:
            self._ssl = ssl.create_default_context(cafile=info.ca_bundle if info.validate_certs else None)
            if not info.validate_certs:  # validate_certs: false asked for it
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE

    # -- signing ---------------------------------------------------------------------------------
    def _signing_key(self, secret: str, day: str) -> bytes:
        cached = self._keys.get((secret, day))
        if cached is None:
            cached = ("AWS4" + secret).encode()
            for part in (day, self.info.region, "s3", "aws4_request"):
                cached = hmac.new(cached, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, day): cached}
        return cached

    def _target(self, bucket: str, key: str) -> tuple[str, str]:
        """(host header, URI-encoded path) for an object."""
        quoted = urllib.parse.quote(key, safe="/~")
        if self.virtual:
            return f"{bucket}.{self.netloc}", f"{self.base_path}/{quoted}"
        return self.netloc, f"{self.base_path}/{urllib.parse.quote(bucket, safe='~')}/{quoted}"

    def _connection(self, host: str) -> http.client.HTTPConnection:
        """This thread's keep-alive connection to ``host`` (the Host header: name[:port])."""
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        conn = conns.get(host)
        if conn is None:
            name = host[: -len(self.port_suffix)] if self.port_suffix and host.endswith(self.port_suffix) else host
            name = name.strip("[]")
            if self.https:
                conn = http.client.HTTPSConnection(
                    name, self.port, timeout=self.info.connect_timeout, context=self._ssl
                )
            else:
                conn = http.client.HTTPConnection(name, self.port, timeout=self.info.connect_timeout)
            conns[host] = conn
        return conn

    def _drop(self, host: str) -> None:
        conns = getattr(self._local, "conns", None) or {}
        conn = conns.pop(host, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for host in list((getattr(self._local, "conns", None) or {}).keys()):
            self._drop(host)

    def request(
        self, method: str, bucket: str, key: str, headers: dict[str, str], query: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one signed request with an empty body; (status, lower-case headers, body). Connection
        faults are retried twice on a fresh connection, 500/503 answers twice after a short pause."""
        if self._credentials is None:
            raise botocore.exceptions.NoCredentialsError()
        host, path = self._target(bucket, key)
        canonical_query = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
            for k, v in sorted((query or {}).items())
        )
        url = f"{path}?{canonical_query}" if canonical_query else path
        last_exc: BaseException | None = None
        for attempt in range(3):
            if attempt:
                time.sleep(0.2 * attempt)
            signed = self._sign(method, host, path, canonical_query, headers)
            conn = self._connection(host)
            try:
                if conn.sock is None:
                    conn.connect()
                    conn.sock.settimeout(self.info.read_timeout)
                conn.request(method, url, headers=signed)
                resp = conn.getresponse()
                body = resp.read()
            except (socket.timeout, TimeoutError) as exc:
                self._drop(host)
                last_exc = botocore.exceptions.ReadTimeoutError(endpoint_url=self.endpoint_url, error=str(exc))
                continue
            except (OSError, http.client.HTTPException) as exc:
                self._drop(host)
                last_exc = botocore.exceptions.EndpointConnectionError(endpoint_url=self.endpoint_url, error=str(exc))
                continue
            if resp.status in (500, 502, 503, 504) and attempt < 2:
                last_exc = self._client_error(resp.status, body, method)
                continue
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
        raise last_exc if last_exc is not None else RuntimeError("no attempt was made")

    def _sign(self, method: str, host: str, path: str, query: str, extra: dict[str, str]) -> dict[str, str]:
        frozen = self._credentials.get_frozen_credentials()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        day = stamp[:8]
        headers = {"host": host, "x-amz-content-sha256": _EMPTY_SHA256, "x-amz-date": stamp}
        if frozen.token:
            headers["x-amz-security-token"] = frozen.token
        headers.update((k.lower(), v) for k, v in extra.items())
        names = sorted(headers)
        signed_names = ";".join(names)
        canonical = "\n".join(
            (
                method,
                path,
                query,
                "".join(f"{n}:{' '.join(str(headers[n]).split())}\n" for n in names),
                signed_names,
                _EMPTY_SHA256,
            )
        )
        scope = f"{day}/{self.info.region}/s3/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(frozen.secret_key, day), to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={frozen.access_key}/{scope}, SignedHeaders={signed_names}, "
            f"Signature={signature}"
        )
        headers["content-length"] = "0"
        return headers

    @staticmethod
    def _client_error(status: int, body: bytes, operation: str) -> BaseException:
        found = {m.group(1).decode(): m.group(2).decode("utf-8", "replace") for m in _XML_TAG.finditer(body[:4096])}
        error = {"Code": found.get("Code") or str(status), "Message": html.unescape(found.get("Message", ""))}
        return botocore.exceptions.ClientError(
            {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
        )

    def head(self, bucket: str, key: str, version_id: str = "") -> dict[str, Any] | None:
        """HEAD of an object (of one version of it) in boto3's shape (ContentLength, ETag, ContentType,
        Metadata), None when absent."""
        status, headers, body = self.request("HEAD", bucket, key, {}, {"versionId": version_id} if version_id else None)
        if status == 404:
            return None
        if status != 200:
            raise self._client_error(status, body, "HeadObject")
        out: dict[str, Any] = {
            "ContentLength": int(headers.get("content-length", 0)),
            "ETag": plain_etag(headers.get("etag")),
            "Metadata": {k[len("x-amz-meta-") :]: v for k, v in headers.items() if k.startswith("x-amz-meta-")},
        }
        for name, header in _HEAD_FIELDS.items():
            if headers.get(header):
                out[name] = headers[header]
        return out

    def copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        if_match: str | None = None,
        part: tuple[str, int, tuple[int, int]] | None = None,
        src_version: str = "",
    ) -> str:
        """CopyObject (metadata and content type kept: MetadataDirective COPY), or with ``part`` =
        (upload id, part number, byte range) one UploadPartCopy; returns the new (part) ETag.
        ``src_version``: copy that version of the source (a version id), else its current one."""
        source = urllib.parse.quote(f"{src_bucket}/{src_key}", safe="/~")
        if src_version:
            source += f"?versionId={urllib.parse.quote(src_version, safe='')}"
        headers = {"x-amz-copy-source": source}
        if if_match:
            headers["x-amz-copy-source-if-match"] = f'"{plain_etag(if_match)}"'
        query = None
        operation = "CopyObject"
        if part is None:
            headers["x-amz-metadata-directive"] = "COPY"
        else:
            upload_id, number, (start, end) = part
            headers["x-amz-copy-source-range"] = f"bytes={start}-{end}"
            query = {"partNumber": str(number), "uploadId": upload_id}
            operation = "UploadPartCopy"
        status, _headers, body = self.request("PUT", dst_bucket, dst_key, headers, query)
        # a copy can answer 200 and still fail: the error is then in the body
        if status != 200 or b"<Error>" in body[:512]:
            raise self._client_error(status if status != 200 else 500, body, operation)
        found = {m.group(1).decode(): m.group(2).decode("utf-8", "replace") for m in _XML_TAG.finditer(body[:4096])}
        return plain_etag(html.unescape(found.get("ETag", "")))


@dataclass
class CopyJob:
    src_bucket: str
    src_key: str
    dst_bucket: str
    dst_key: str
    size: int
    etag: str = ""  # expected source ETag (x-amz-copy-source-if-match); '' = no condition
    src_version: str = ""  # copy this version of the source ('' = its current one)
    refresh: bool = False  # on a changed source: HEAD it and copy the new version (snapshot)
    want_head: bool = False  # HEAD the source first (content type and metadata for the manifest)
    # filled in by the copy
    new_etag: str = ""
    multipart: bool = False
    vanished: bool = False  # the source was deleted after the listing (refresh jobs only)
    head: dict[str, Any] | None = None  # the HEAD of the source when refresh had to take one


class Cancelled(Exception):
    """A copy job skipped because another one failed or the run was interrupted."""


class Copier:
    """Parallel server-side copies: CopyObject below ``multipart_threshold``, else a multipart upload
    with UploadPartCopy parts (aborted on any failure). One thread pool for objects, one for parts."""

    def __init__(
        self,
        info: S3Conn,
        cli: Any,
        concurrency: int,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        check_copy_options(concurrency, multipart_threshold, part_size)
        self.info = info
        self.cli = cli
        self.concurrency = concurrency
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.transport = CopyTransport(info, cli.meta.endpoint_url)
        self.stop = threading.Event()
        self._uploads: dict[str, tuple[str, str]] = {}  # upload id -> (bucket, key), open ones
        self._lock = threading.Lock()
        self._part_pool: ThreadPoolExecutor | None = None

    # -- one object ------------------------------------------------------------------------------
    def _head(self, job: CopyJob) -> dict[str, Any] | None:
        try:
            return self.transport.head(job.src_bucket, job.src_key, job.src_version)
        except Exception as exc:  # pylint: disable=broad-except  # translated
            raise translate(exc, self.info, "read", bucket=job.src_bucket, key=job.src_key) from None

    def _copy_once(self, job: CopyJob) -> str:
        if job.size >= self.multipart_threshold or job.size > MAX_SINGLE_COPY:
            job.multipart = True
            return self._multipart(job)
        job.multipart = False
        return self.transport.copy(
            job.src_bucket, job.src_key, job.dst_bucket, job.dst_key, if_match=job.etag, src_version=job.src_version
        )

    def run_job(self, job: CopyJob) -> CopyJob:
        if self.stop.is_set():
            raise Cancelled(job.src_key)
        if job.want_head and job.head is None:
            head = self._head(job)
            if head is None:
                job.vanished = True
                return job
            job.head, job.size, job.etag = head, int(head["ContentLength"]), plain_etag(head["ETag"])
        for attempt in range(4):
            try:
                job.new_etag = self._copy_once(job)
                return job
            except Exception as exc:  # pylint: disable=broad-except  # sorted below, translated
                code = error_code(exc)
                if job.refresh and code in ("PreconditionFailed", "412", "NoSuchKey", "404") and attempt < 3:
                    head = self._head(job)  # the source changed or went away since the listing
                    if head is None:
                        job.vanished = True
                        return job
                    job.head = head
                    job.size = int(head.get("ContentLength", 0))
                    job.etag = plain_etag(head.get("ETag"))
                    continue
                if isinstance(exc, (S3Error, Cancelled)):
                    raise
                if code in ("PreconditionFailed", "412"):
                    raise S3Error(
                        f"cannot copy key {job.src_key!r} of bucket {job.src_bucket!r}: it changed since it was "
                        f"listed (ETag is no longer {job.etag})"
                    ) from None
                raise translate(
                    exc, self.info, f"copy to {job.dst_bucket}/{job.dst_key}", bucket=job.src_bucket, key=job.src_key
                ) from None
        raise S3Error(f"cannot copy key {job.src_key!r} of bucket {job.src_bucket!r}: it keeps changing")

    def _multipart(self, job: CopyJob) -> str:
        head = job.head or self._head(job)
        if head is None:
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "NoSuchKey", "Message": "gone"}, "ResponseMetadata": {"HTTPStatusCode": 404}},
                "HeadObject",
            )
        job.head = head
        # a multipart upload does not copy metadata: pass the source's on
        extra: dict[str, Any] = {"Metadata": head.get("Metadata") or {}}
        for name in _HEAD_FIELDS:
            if head.get(name):
                extra[name] = head[name]
        try:
            upload_id = self.cli.create_multipart_upload(Bucket=job.dst_bucket, Key=job.dst_key, **extra)["UploadId"]
        except Exception as exc:  # pylint: disable=broad-except  # translated
            raise translate(
                exc, self.info, "start a multipart upload", bucket=job.dst_bucket, key=job.dst_key
            ) from None
        with self._lock:
            self._uploads[upload_id] = (job.dst_bucket, job.dst_key)
        try:
            ranges = part_ranges(job.size, self.part_size)
            if self._part_pool is None:
                raise Cancelled(job.src_key)
            futures = [
                self._part_pool.submit(self._part, job, upload_id, number, rng)
                for number, rng in enumerate(ranges, start=1)
            ]
            parts = [{"PartNumber": n, "ETag": f'"{f.result()}"'} for n, f in enumerate(futures, start=1)]
            try:
                resp = self.cli.complete_multipart_upload(
                    Bucket=job.dst_bucket, Key=job.dst_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
            except Exception as exc:  # pylint: disable=broad-except  # translated
                raise translate(
                    exc, self.info, "complete a multipart upload", bucket=job.dst_bucket, key=job.dst_key
                ) from None
            with self._lock:
                self._uploads.pop(upload_id, None)
            return plain_etag(resp.get("ETag"))
        except BaseException:
            self._abort(upload_id)
            raise

    def _part(self, job: CopyJob, upload_id: str, number: int, rng: tuple[int, int]) -> str:
        if self.stop.is_set():
            raise Cancelled(job.src_key)
        return self.transport.copy(
            job.src_bucket,
            job.src_key,
            job.dst_bucket,
            job.dst_key,
            if_match=job.etag,
            part=(upload_id, number, rng),
            src_version=job.src_version,
        )

    def _abort(self, upload_id: str) -> None:
        with self._lock:
            where = self._uploads.pop(upload_id, None)
        if where is None:
            return
        try:
            self.cli.abort_multipart_upload(Bucket=where[0], Key=where[1], UploadId=upload_id)
        except Exception:  # pylint: disable=broad-except  # best effort; the caller reports the first fault
            pass

    def abort_all(self) -> None:
        for upload_id in list(self._uploads):
            self._abort(upload_id)

    # -- many objects ----------------------------------------------------------------------------
    def run(self, jobs: list[CopyJob]) -> list[CopyJob]:
        """Copy every job; the first fault stops the others and is raised (open uploads aborted)."""
        if not jobs:
            return []
        self.stop.clear()
        first_error: BaseException | None = None
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="s3-part") as part_pool:
            self._part_pool = part_pool
            pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs)), thread_name_prefix="s3-copy")
            try:
                # the big ones first, so that they do not finish alone at the end
                ordered = sorted(jobs, key=lambda j: -j.size)
                futures = [pool.submit(self.run_job, job) for job in ordered]
                for future in futures:
                    try:
                        future.result()
                    except Cancelled:
                        continue
                    except Exception as exc:  # pylint: disable=broad-except  # first one raised below
                        if first_error is None:
                            first_error = exc
                            self.stop.set()
            except BaseException:
                self.stop.set()
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                self._part_pool = None
                if self.stop.is_set():
                    self.abort_all()
        if first_error is not None:
            raise first_error
        return jobs


# ---------------------------------------------------------------------------------------------
# backup sets between a local root and an S3 root (backup_upload, backup_download)
# ---------------------------------------------------------------------------------------------

TRANSFER_CONCURRENCY = 8
TRANSFER_THRESHOLD = 64 * MIB
TRANSFER_PART_SIZE = 64 * MIB
SHA256_METADATA = "sha256"  # user metadata (x-amz-meta-sha256) of every uploaded object
TRANSFER_ATTEMPTS = 4  # per request, on top of botocore's own retry
_TRANSIENT_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "500", "502", "503"})


def is_transient(exc: BaseException) -> bool:
    """A fault worth one more try of the same request (the server is busy or dropped the connection)."""
    if error_code(exc) in _TRANSIENT_CODES:
        return True
    return HAS_BOTO3 and isinstance(
        exc,
        (
            botocore.exceptions.ConnectionClosedError,
            botocore.exceptions.ReadTimeoutError,
            botocore.exceptions.IncompleteReadError,
            botocore.exceptions.ResponseStreamingError,
        ),
    )


def transfer_plan(size: int, multipart_threshold: int, part_size: int) -> tuple[bool, list[tuple[int, int]]]:
    """(multipart, [(offset, length), ...]) for moving a file of ``size`` bytes.

    Below ``multipart_threshold``: one PUT (or GET) of the whole file, ``(False, [(0, size)])``. From
    the threshold on: parts of ``part_size`` bytes, the last one shorter (the part size grows, as in
    part_ranges(), when the file would need more than 10,000 parts)."""
    if size < 0:
        raise S3Error(f"a file size cannot be negative, got {size}")
    if size < multipart_threshold:
        return False, [(0, size)]
    return True, [(start, end - start + 1) for start, end in part_ranges(size, part_size)]


def _md5(data: bytes = b"") -> Any:
    return hashlib.md5(data, usedforsecurity=False)  # S3's ETag algorithm, not a security function


def multipart_etag(part_md5s: list[bytes], multipart: bool) -> str:
    """The ETag S3 gives an object uploaded in these parts (MD5 digests, in part order).

    One PUT: the MD5 of the content. Multipart: the MD5 of the concatenated part MD5s, then ``-N``;
    it depends on the part size, so it is only comparable for the part size actually used."""
    if not multipart:
        if len(part_md5s) != 1:
            raise S3Error(f"a single PUT has exactly one MD5, got {len(part_md5s)}")
        return part_md5s[0].hex()
    if not part_md5s:
        raise S3Error("a multipart upload has at least one part")
    return f"{_md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"


def file_digests(path: str, parts: list[tuple[int, int]]) -> tuple[str, list[bytes]]:
    """(SHA-256 hex of the whole file, MD5 digest of each part) in one sequential read.

    ValueError when the file is shorter or longer than the parts say."""
    sha = hashlib.sha256()
    md5s: list[bytes] = []
    with open(path, "rb") as fh:
        for _offset, length in parts:
            md5 = _md5()
            left = length
            while left:
                chunk = fh.read(min(HASH_CHUNK, left))
                if not chunk:
                    raise ValueError("the file is shorter than its manifest size")
                sha.update(chunk)
                md5.update(chunk)
                left -= len(chunk)
            md5s.append(md5.digest())
        if fh.read(1):
            raise ValueError("the file is longer than its manifest size")
    return sha.hexdigest(), md5s


@dataclass
class SetFile:
    """One payload file of a backup set on its way between a local directory and S3."""

    path: str  # as in the manifest, relative to the set
    local: str  # filesystem path (the source of an upload, the target of a download)
    key: str  # full S3 key
    size: int
    sha256: str
    multipart: bool
    parts: list[tuple[int, int]]
    # MD5 of each part: from file_digests() when the local file was verified, else of the bytes sent
    part_md5: list[bytes] | None = None

    @property
    def expected_etag(self) -> str | None:
        return multipart_etag(self.part_md5, self.multipart) if self.part_md5 is not None else None


def set_files(
    manifest: dict[str, Any], local_base: str, key_base: str, multipart_threshold: int, part_size: int
) -> list[SetFile]:
    """A SetFile for every file of the manifest, the largest first (they do not finish alone at the end)."""
    out = []
    for entry in manifest["files"]:
        multipart, parts = transfer_plan(int(entry["size"]), multipart_threshold, part_size)
        out.append(
            SetFile(
                path=entry["path"],
                local=os.path.join(local_base, *entry["path"].split("/")),
                key=f"{key_base}/{entry['path']}",
                size=int(entry["size"]),
                sha256=entry["sha256"],
                multipart=multipart,
                parts=parts,
            )
        )
    return sorted(out, key=lambda f: (-f.size, f.path))


class _Stopped(Exception):
    """Another transfer of the set failed first; this one did not start."""


class SetTransfer:
    """Moves the files of one backup set with one shared client: ``concurrency`` parts (or whole
    small files) at a time. The first fault stops the rest and is raised; multipart uploads left
    open are aborted."""

    def __init__(self, info: S3Conn, cli: Any, bucket: str, concurrency: int) -> None:
        self.info = info
        self.cli = cli
        self.bucket = bucket
        self.concurrency = concurrency
        self.stop = threading.Event()

    def _guard(self, task: Any) -> Any:
        if self.stop.is_set():
            raise _Stopped()
        try:
            return task()
        except BaseException:
            self.stop.set()  # before this worker takes the next task
            raise

    def run(self, tasks: list[Any], on_done: Any = None) -> list[Any]:
        """Run the callables ``tasks`` in the pool; ``on_done(index, result)`` in this thread."""
        results: list[Any] = [None] * len(tasks)
        if not tasks:
            return results
        self.stop.clear()
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(tasks)), thread_name_prefix="s3-set")
        try:
            index: dict[Future[Any], int] = {pool.submit(self._guard, t): i for i, t in enumerate(tasks)}
            pending = set(index)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    exc = future.exception()
                    if isinstance(exc, _Stopped):
                        continue  # the fault that stopped it is in this or a later batch
                    if exc is not None:
                        raise exc
                    results[index[future]] = future.result()
                    if on_done is not None:
                        on_done(index[future], results[index[future]])
        except BaseException:
            self.stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return results

    # -- upload ----------------------------------------------------------------------------------
    def upload(self, files: list[SetFile]) -> None:
        """PUT (or multipart-upload) every file with its sha256 as user metadata and Content-MD5 on
        every request; a part whose bytes differ from the verified ones stops the upload."""
        uploads: dict[str, str] = {}  # path -> UploadId, open ones
        owners: list[tuple[SetFile, int]] = [(f, i) for f in files for i in range(len(f.parts))]
        sent: dict[str, dict[int, tuple[bytes, str]]] = {f.path: {} for f in files}

        def done(task: int, result: tuple[bytes, str]) -> None:
            f, idx = owners[task]
            sent[f.path][idx] = result
            if f.multipart and len(sent[f.path]) == len(f.parts):
                self._complete(f, uploads.pop(f.path), sent[f.path])

        try:
            for f in files:
                if f.multipart:
                    uploads[f.path] = self._create(f)
            tasks = [(lambda f=f, i=i: self._send(f, i, uploads.get(f.path))) for f, i in owners]
            self.run(tasks, done)
        except BaseException:
            for f in files:
                if f.path in uploads:
                    self._abort(f.key, uploads.pop(f.path))
            raise
        for f in files:
            if f.part_md5 is None:
                f.part_md5 = [sent[f.path][i][0] for i in range(len(f.parts))]

    def _create(self, f: SetFile) -> str:
        try:
            resp = self.cli.create_multipart_upload(Bucket=self.bucket, Key=f.key, Metadata={SHA256_METADATA: f.sha256})
        except Exception as exc:  # pylint: disable=broad-except  # translated
            raise translate(exc, self.info, f"start the upload of {f.path}", bucket=self.bucket, key=f.key) from None
        return str(resp["UploadId"])

    def _send(self, f: SetFile, idx: int, upload_id: str | None) -> tuple[bytes, str]:
        offset, length = f.parts[idx]
        try:
            with open(f.local, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                fh.seek(offset)
                data = fh.read(length)
        except OSError as exc:
            raise BackupSetError(f"cannot read {f.path}: {exc.strerror or exc}") from None
        if size != f.size or len(data) != length:
            raise BackupSetError(f"{f.path} changed during the upload: {size} bytes, the manifest says {f.size}")
        md5 = _md5(data).digest()
        if f.part_md5 is not None and md5 != f.part_md5[idx]:
            raise BackupSetError(f"{f.path} changed after it was verified (bytes {offset}..{offset + length - 1})")
        content_md5 = base64.b64encode(md5).decode("ascii")

        def send() -> Any:
            if upload_id is None:
                return self.cli.put_object(
                    Bucket=self.bucket,
                    Key=f.key,
                    Body=data,
                    ContentMD5=content_md5,
                    Metadata={SHA256_METADATA: f.sha256},
                )
            return self.cli.upload_part(
                Bucket=self.bucket,
                Key=f.key,
                UploadId=upload_id,
                PartNumber=idx + 1,
                Body=data,
                ContentMD5=content_md5,
            )

        resp = self._retrying(send, f"upload {f.path}", f.key)
        return md5, plain_etag(resp.get("ETag"))

    def _retrying(self, call: Any, verb: str, key: str) -> Any:
        """call() with up to TRANSFER_ATTEMPTS tries on transient faults (5xx, SlowDown, a dropped
        connection), backing off; the data is in memory, so a part is simply sent again."""
        for attempt in range(TRANSFER_ATTEMPTS):
            try:
                return call()
            except (S3Error, BackupSetError):
                raise
            except Exception as exc:  # pylint: disable=broad-except  # translated
                if attempt + 1 < TRANSFER_ATTEMPTS and is_transient(exc) and not self.stop.is_set():
                    time.sleep(0.5 * 2**attempt)
                    continue
                raise translate(exc, self.info, verb, bucket=self.bucket, key=key) from None
        raise S3Error(f"cannot {verb}: no attempt left")  # not reached

    def _complete(self, f: SetFile, upload_id: str, sent: dict[int, tuple[bytes, str]]) -> None:
        parts = [{"PartNumber": i + 1, "ETag": f'"{sent[i][1]}"'} for i in range(len(f.parts))]
        try:
            self.cli.complete_multipart_upload(
                Bucket=self.bucket, Key=f.key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except Exception as exc:  # pylint: disable=broad-except  # translated
            self._abort(f.key, upload_id)
            raise translate(exc, self.info, f"complete the upload of {f.path}", bucket=self.bucket, key=f.key) from None

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.cli.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception:  # pylint: disable=broad-except  # best effort; the first fault is what the user sees
            pass

    def abort_stale_uploads(self, prefix: str) -> int:
        """Abort multipart uploads left open under ``prefix`` by an interrupted run (best effort)."""
        aborted = 0
        try:
            for page in self.cli.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    self._abort(upload["Key"], upload["UploadId"])
                    aborted += 1
        except Exception:  # pylint: disable=broad-except  # not every server lists uploads; nothing depends on it
            pass
        return aborted

    def check_arrived(self, files: list[SetFile]) -> None:
        """HEAD every object: its size, its ETag (expected from the local MD5s and the part size used)
        and its sha256 metadata must match; S3Error naming the first file that does not."""

        def one(f: SetFile) -> None:
            try:
                head = self.cli.head_object(Bucket=self.bucket, Key=f.key)
            except Exception as exc:  # pylint: disable=broad-except  # translated
                raise translate(
                    exc, self.info, f"check the upload of {f.path}", bucket=self.bucket, key=f.key
                ) from None
            size = int(head.get("ContentLength", -1))
            etag = plain_etag(head.get("ETag"))
            if size != f.size:
                raise S3Error(f"upload of {f.path} did not arrive intact: {size} bytes at {f.key!r}, expected {f.size}")
            if etag != f.expected_etag:
                raise S3Error(
                    f"checksum mismatch on arrival of {f.path}: ETag {etag!r} at {f.key!r}, expected {f.expected_etag!r}"
                )
            found = (head.get("Metadata") or {}).get(SHA256_METADATA)
            if found != f.sha256:
                raise S3Error(
                    f"upload of {f.path}: object {f.key!r} has sha256 metadata {found!r}, expected {f.sha256}"
                )

        self.run([(lambda f=f: one(f)) for f in files])

    # -- download --------------------------------------------------------------------------------
    def download(self, files: list[SetFile]) -> None:
        """GET every object into ``SetFile.local`` (created here, 0600); files from the multipart
        threshold on are fetched as ranged GETs of one part each, in parallel."""
        for f in files:
            try:
                os.close(os.open(f.local, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
            except OSError as exc:
                raise BackupSetError(f"cannot create {f.path}: {exc.strerror or exc}") from None
        owners = [(f, i) for f in files for i in range(len(f.parts)) if f.parts[i][1] > 0]
        self.run([(lambda f=f, i=i: self._fetch(f, i)) for f, i in owners])

    def _fetch(self, f: SetFile, idx: int) -> None:
        offset, length = f.parts[idx]
        extra = {"Range": f"bytes={offset}-{offset + length - 1}"} if f.multipart else {}
        verb = f"download {f.path}"
        try:
            fd = os.open(f.local, os.O_WRONLY)
        except OSError as exc:
            raise BackupSetError(f"cannot write {f.path}: {exc.strerror or exc}") from None

        def fetch() -> int:  # the whole range again on a retry: the writes land at the same offsets
            body = self.cli.get_object(Bucket=self.bucket, Key=f.key, **extra)["Body"]
            got = 0
            while True:
                chunk = body.read(min(HASH_CHUNK, length - got + 1))
                if not chunk:
                    return got
                if got + len(chunk) > length:
                    raise S3Error(f"cannot {verb}: object {f.key!r} is larger than the {f.size} bytes of the manifest")
                try:
                    os.pwrite(fd, chunk, offset + got)
                except OSError as exc:
                    raise BackupSetError(f"cannot write {f.path}: {exc.strerror or exc}") from None
                got += len(chunk)

        try:
            got = self._retrying(fetch, verb, f.key)
        finally:
            os.close(fd)
        if got != length:
            raise S3Error(f"cannot {verb}: object {f.key!r} ended after {got} of {length} bytes")


def _no_expect_for_empty_body(request: Any, **_kwargs: Any) -> None:
    """botocore sends ``Expect: 100-continue`` even on a PUT of 0 bytes; SeaweedFS answers it at
    once and the kept-alive connection then stalls the next request until the read timeout."""
    if str(request.headers.get("Content-Length")) == "0":
        request.headers.pop("Expect", None)


def open_s3_root(url: str, info: S3Conn, concurrency: int) -> S3Storage:
    """The S3 backup root ``url`` with one client for ``concurrency`` threads; S3Error when the
    bucket does not exist."""
    cli = client(info, max_pool_connections=concurrency + 2)
    cli.meta.events.register("before-send.s3.PutObject", _no_expect_for_empty_body)
    storage = S3Storage(url, info, cli=cli)
    if not storage.exists(""):
        raise S3Error(f"bucket {storage.bucket!r} does not exist at {info.where}")
    return storage


def set_manifest_bytes(storage: Storage, backup_set: BackupSet) -> bytes:
    """The manifest file of a loaded, valid set, byte for byte (it is copied as it is)."""
    try:
        raw = storage.read_bytes(f"{backup_set.rel}/{MANIFEST}")
        same = json.loads(raw.decode("utf-8")) == backup_set.manifest
    except (OSError, ValueError) as exc:
        raise BackupSetError(f"cannot read the manifest of {backup_set.location}: {exc}") from None
    if not same:
        raise BackupSetError(f"the manifest of {backup_set.location} changed while it was read")
    if backup_set.manifest and "objects" in backup_set.manifest:
        raise BackupSetError(
            f"{backup_set.location} is an S3 snapshot set (manifest 'objects'); it stays on S3 and cannot be copied"
        )
    return raw


def _hash_workers(concurrency: int) -> int:
    return max(1, min(concurrency, os.cpu_count() or 2))


def _outcome(backup_set: BackupSet, location: str, files: list[SetFile], skipped: int, found: str) -> dict[str, Any]:
    return {
        "backup_id": backup_set.backup_id,
        "kind": backup_set.kind,
        "source": backup_set.source,
        "location": location,
        "files": len(files),
        "bytes": sum(f.size for f in files),
        "multipart_files": sum(1 for f in files if f.multipart),
        "skipped_files": skipped,
        "found": found,
    }


def destination_state(dest: S3Storage, backup_set: BackupSet, raw: bytes) -> tuple[str, dict[str, tuple[int, str]]]:
    """What an S3 root holds at a set's place, and its objects ({path: (size, ETag)}):

    ``absent`` nothing; ``incomplete`` objects but no manifest (an interrupted upload);
    ``identical`` a valid set with the same manifest bytes; ``damaged`` the same manifest but files
    missing or of the wrong size. A different manifest raises BackupSetError: it is never overwritten."""
    base = f"{dest.key(backup_set.rel)}/"
    listed = {
        o["Key"][len(base) :]: (int(o.get("Size", 0)), plain_etag(o.get("ETag")))
        for o in dest.iter_objects(backup_set.rel)
    }
    if MANIFEST not in listed:
        return ("incomplete" if listed else "absent"), listed
    there = dest.read_bytes(f"{backup_set.rel}/{MANIFEST}")
    if there != raw:
        raise BackupSetError(
            f"{dest.url}/{backup_set.rel} already holds a different manifest for backup id {backup_set.backup_id}; "
            "a set is never overwritten (remove it first if it is unwanted)"
        )
    remote = BackupSet(dest, backup_set.kind, backup_set.source_dir, backup_set.backup_id).load()
    return ("identical" if remote.valid else "damaged"), listed


def upload_set(
    backup_set: BackupSet,
    dest: S3Storage,
    *,
    concurrency: int = TRANSFER_CONCURRENCY,
    multipart_threshold: int = TRANSFER_THRESHOLD,
    part_size: int = TRANSFER_PART_SIZE,
    verify_local: bool = True,
    check_mode: bool = False,
) -> dict[str, Any]:
    """Copy a valid local set to the S3 root ``dest``, manifest last; returns the module result.
    Never overwrites a different set with the same id."""
    check_copy_options(concurrency, multipart_threshold, part_size)
    started = time.monotonic()
    steps = Steps()
    base = backup_set.storage.local_path(backup_set.rel)
    if not base or backup_set.manifest is None:
        raise BackupSetError("only a valid local backup set can be uploaded")
    raw = set_manifest_bytes(backup_set.storage, backup_set)
    location = f"{dest.url}/{backup_set.rel}"
    key_base = dest.key(backup_set.rel)
    found, listed = destination_state(dest, backup_set, raw)
    files = set_files(backup_set.manifest, base, key_base, multipart_threshold, part_size)
    steps.mark(f"inspect the destination ({found})")
    if found == "identical":
        out = _outcome(backup_set, location, [], len(files), found)
        return out | {"changed": False, "steps": steps.items, "duration_s": round(time.monotonic() - started, 3)}

    if verify_local:

        def digest(f: SetFile) -> None:
            try:
                size = os.stat(f.local).st_size
                sha, md5s = file_digests(f.local, f.parts) if size == f.size else ("", [])
            except (OSError, ValueError) as exc:
                raise BackupSetError(f"cannot verify {f.path}: {getattr(exc, 'strerror', None) or exc}") from None
            if size != f.size:
                raise BackupSetError(f"size mismatch on {f.path}: manifest {f.size} bytes, found {size}")
            if sha != f.sha256:
                raise BackupSetError(f"checksum mismatch on {f.path}")
            f.part_md5 = md5s

        hasher = SetTransfer(dest.info, dest.client, dest.bucket, _hash_workers(concurrency))
        hasher.run([(lambda f=f: digest(f)) for f in files])
        steps.mark(f"verify the local set (SHA-256 and part MD5 of {len(files)} files)")

    # objects an interrupted run already stored with the right size and ETag are not sent again
    skip = [f for f in files if f.expected_etag is not None and listed.get(f.path) == (f.size, f.expected_etag)]
    todo = [f for f in files if f not in skip]
    out = _outcome(backup_set, location, todo, len(skip), found)
    if not check_mode:
        engine = SetTransfer(dest.info, dest.client, dest.bucket, concurrency)
        if found == "damaged":  # the manifest goes first: while files are replaced, it is no valid set
            dest.delete_keys([f"{key_base}/{MANIFEST}"])
        if found != "absent":
            engine.abort_stale_uploads(f"{key_base}/")
        engine.upload(todo)
        steps.mark(f"upload {len(todo)} files ({out['bytes']} bytes), {len(skip)} already there")
        engine.check_arrived(files)
        steps.mark(f"check size, ETag and sha256 metadata of {len(files)} objects")
        manifest = SetFile(MANIFEST, "", f"{key_base}/{MANIFEST}", len(raw), hashlib.sha256(raw).hexdigest(), False, [])
        manifest.part_md5 = [_md5(raw).digest()]
        try:
            dest.client.put_object(
                Bucket=dest.bucket,
                Key=manifest.key,
                Body=raw,
                ContentMD5=base64.b64encode(manifest.part_md5[0]).decode("ascii"),
                ContentType="application/json",
                Metadata={SHA256_METADATA: manifest.sha256},
            )
        except Exception as exc:  # pylint: disable=broad-except  # translated
            raise translate(exc, dest.info, "write the manifest", bucket=dest.bucket, key=manifest.key) from None
        engine.check_arrived([manifest])
        steps.mark("write and check the manifest")
    return out | {"changed": True, "steps": steps.items, "duration_s": round(time.monotonic() - started, 3)}


def download_set(
    src: S3Storage,
    kind: str,
    source: str,
    backup_id: str,
    dest_root: str,
    *,
    concurrency: int = TRANSFER_CONCURRENCY,
    multipart_threshold: int = TRANSFER_THRESHOLD,
    part_size: int = TRANSFER_PART_SIZE,
    check_mode: bool = False,
) -> dict[str, Any]:
    """Copy a valid set (``latest``: the newest valid one) from the S3 root ``src`` to ``dest_root``:
    into ``<backup_id>.partial-*`` beside its place, every SHA-256 checked, manifest last, renamed
    into place. Never replaces a different local set with the same id."""
    check_copy_options(concurrency, multipart_threshold, part_size)
    started = time.monotonic()
    steps = Steps()
    found_set = find_set(src, kind, source, backup_id)
    raw = set_manifest_bytes(src, found_set)
    manifest = found_set.manifest or {}
    root = os.path.abspath(os.path.expanduser(dest_root))
    final = os.path.join(root, *found_set.rel.split("/"))
    plan = set_files(manifest, final, src.key(found_set.rel), multipart_threshold, part_size)
    found = "absent"
    if os.path.lexists(final):
        local = BackupSet(LocalStorage(root), found_set.kind, found_set.source_dir, found_set.backup_id).load()
        try:
            same = local.valid and LocalStorage(root).read_bytes(f"{local.rel}/{MANIFEST}") == raw
        except OSError:
            same = False
        if not same:
            why = local.error or "its manifest differs"
            raise BackupSetError(
                f"{final} already exists and is not this set ({why}); it is never replaced: move or remove it first"
            )
        found = "identical"
    steps.mark(f"find the set at {src.url} and inspect the destination ({found})")
    if found == "identical":
        out = _outcome(found_set, final, [], len(plan), found)
        return out | {"changed": False, "steps": steps.items, "duration_s": round(time.monotonic() - started, 3)}
    out = _outcome(found_set, final, plan, 0, found)
    if check_mode:
        return out | {"changed": True, "steps": steps.items, "duration_s": round(time.monotonic() - started, 3)}

    parent = os.path.dirname(final)
    try:
        make_private_dirs(parent)  # <root>/<kind>/<source> as LocalSetWriter makes them: 0700
        tmp = tempfile.mkdtemp(prefix=f"{found_set.backup_id}.partial-", dir=parent)
    except OSError as exc:
        raise BackupSetError(f"cannot create a directory under {parent}: {exc.strerror or exc}") from None
    try:
        files = set_files(manifest, tmp, src.key(found_set.rel), multipart_threshold, part_size)
        for f in files:
            make_private_dirs(os.path.dirname(f.local))
        SetTransfer(src.info, src.client, src.bucket, concurrency).download(files)
        steps.mark(f"download {len(files)} files ({out['bytes']} bytes)")
        hashed = hash_files(tmp, [f.path for f in files], workers=_hash_workers(concurrency))
        for f, got in zip(files, hashed):
            if got["size"] != f.size:
                raise BackupSetError(f"size mismatch on {f.path}: manifest {f.size} bytes, downloaded {got['size']}")
            if got["sha256"] != f.sha256:
                raise BackupSetError(f"checksum mismatch on {f.path}: the object {f.key!r} does not match the manifest")
        steps.mark(f"SHA-256 of {len(files)} files against the manifest")
        secure_tree(tmp)
        fsync_tree(tmp)
        atomic_write(os.path.join(tmp, MANIFEST), raw)
        os.rename(tmp, final)
        fsync_dir(parent)
        steps.mark("fsync, write the manifest, rename into place")
    except BaseException:
        try:
            remove_tree(tmp)
        except OSError:
            pass
        raise
    return out | {"changed": True, "steps": steps.items, "duration_s": round(time.monotonic() - started, 3)}


def remove_backup_set(storage: Storage, rel: str) -> None:
    """storage.remove_tree(rel) (manifest first); on S3 also the directory markers of the set.

    S3 has no directories, but SeaweedFS keeps one for every prefix objects were written under and
    lists it after the objects are gone, where it would look like an incomplete set. Deleting the
    keys ``<dir>/`` (deepest first) removes them; on other servers these deletes change nothing."""
    if not isinstance(storage, S3Storage):
        storage.remove_tree(rel)
        return
    base = storage.key(rel)
    markers = {f"{base}/"}
    for obj in storage.iter_objects(rel):
        parts = obj["Key"][len(base) + 1 :].split("/")[:-1]
        markers.update(f"{base}/{'/'.join(parts[:n])}/" for n in range(1, len(parts) + 1))
    storage.remove_tree(rel)
    try:
        storage.delete_keys(sorted(markers, key=lambda k: (-k.count("/"), k)))
    except S3Error:
        pass  # only cosmetic: a left-over marker holds no data and is removed by the next prune
