# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup sets under an S3 prefix (the Storage interface of _backup_set), and the one place that
lists and deletes S3 objects for every module (private)."""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterable, Iterator
from typing import Any, Callable

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    HASH_CHUNK,
    MANIFEST,
    BackupSetError,
    Storage,
    set_rel,
    utcnow,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.writer import allocate_backup_id
from ansible_collections.runbook.stack.plugins.module_utils._s3.connection import (
    S3Conn,
    _no_expect_for_empty_body,
    client,
)
from ansible_collections.runbook.stack.plugins.module_utils._s3.errors import S3Error, error_code, s3_call, translate
from ansible_collections.runbook.stack.plugins.module_utils._s3.retention import DELETE_BATCH_MAX, batches

# per-key failures of DeleteObjects named in the message
ERROR_KEYS_SHOWN = 10


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
    secret-free message), which is what BackupSet expects of any storage. :meth:`list_objects`,
    :meth:`has_objects` and :meth:`delete_keys` work on full keys of the bucket and raise S3Error:
    every module lists and deletes through them (:meth:`bucket_root` when it has a bucket name)."""

    def __init__(self, url: str, info: S3Conn, cli: Any = None) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.info = info
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.client = cli if cli is not None else client(info)

    @classmethod
    def bucket_root(cls, bucket: str, info: S3Conn, cli: Any) -> S3Storage:
        """The whole of ``bucket`` with the client ``cli``, for a module that takes a bucket name and
        works with full keys; the name goes to S3 as it is (S3 refuses an invalid one, in its words)."""
        storage = cls.__new__(cls)
        storage.bucket, storage.prefix, storage.info, storage.client = bucket, "", info, cli
        storage.url = f"s3://{bucket}"
        return storage

    def key(self, rel: str) -> str:
        parts = [p for p in f"{self.prefix}/{rel}".split("/") if p]
        return "/".join(parts)

    def _dir_prefix(self, rel: str) -> str:
        key = self.key(rel)
        return f"{key}/" if key else ""

    def _fail(self, exc: BaseException, verb: str, key: str | None = None) -> OSError:
        return OSError(str(translate(exc, self.info, verb, bucket=self.bucket, key=key)))

    # -- listing and deleting by full key (S3Error) ------------------------------------------------
    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        """The one ListObjectsV2 loop: every object whose key starts with ``prefix`` (faults untranslated)."""
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    def _any(self, prefix: str) -> bool:
        resp = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        return bool(resp.get("KeyCount") or resp.get("Contents"))

    @s3_call("list objects under prefix {prefix!r}")
    def list_objects(self, prefix: str) -> list[dict[str, Any]]:
        """Every object whose key starts with ``prefix``, a plain key prefix of the bucket (not below
        the root): ListObjectsV2 entries (Key, Size, ETag, LastModified)."""
        return list(self._objects(prefix))

    @s3_call("list prefix {prefix!r}")
    def has_objects(self, prefix: str) -> bool:
        """Whether any key of the bucket starts with ``prefix``."""
        return self._any(prefix)

    def delete_keys(self, keys: list[str], batch_size: int = DELETE_BATCH_MAX) -> int:
        """Delete full keys in DeleteObjects batches of ``batch_size``; returns how many were deleted.

        A batch the server refuses as a whole stops here (S3Error with the count deleted before); keys
        the server refuses one by one do not stop the other batches: S3Error naming them at the end."""
        deleted = 0
        failures: list[str] = []
        for batch in batches(keys, batch_size):
            try:
                resp = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            except Exception as exc:  # pylint: disable=broad-except  # translated, with the count so far
                err = translate(exc, self.info, f"delete {len(batch)} objects", bucket=self.bucket)
                raise S3Error(f"{err} ({deleted} objects were deleted before)") from None
            errors = resp.get("Errors") or []
            failures.extend(f"{e.get('Key')!r} ({e.get('Code')}: {e.get('Message')})" for e in errors)
            deleted += len(batch) - len(errors)
        if failures:
            shown = ", ".join(failures[:ERROR_KEYS_SHOWN])
            more = f" and {len(failures) - ERROR_KEYS_SHOWN} more" if len(failures) > ERROR_KEYS_SHOWN else ""
            raise S3Error(
                f"cannot delete {len(failures)} objects in bucket {self.bucket!r} at {self.info.where}: {shown}{more} "
                f"({deleted} objects were deleted)"
            )
        return deleted

    # -- the Storage interface (relative paths; OSError / BackupSetError) ---------------------------
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
            yield from self._objects(prefix)
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
            found = self._any(self._dir_prefix(rel))
        except Exception as exc:  # pylint: disable=broad-except  # translated
            if error_code(exc) in ("NoSuchBucket", "404"):
                return False
            raise BackupSetError(str(translate(exc, self.info, "list", bucket=self.bucket))) from None
        return found or not rel.strip("/")

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

    def remove_tree(self, rel: str) -> None:
        manifest = f"{rel.rstrip('/')}/{MANIFEST}"
        keys = [o["Key"] for o in self.iter_objects(rel)]
        manifest_key = self.key(manifest)
        if manifest_key in keys:  # the manifest goes first: an interrupted removal is never a sealed set
            self.delete_keys([manifest_key])
            keys.remove(manifest_key)
        if keys:
            self.delete_keys(keys)

    def remove_set(self, rel: str) -> None:
        """:meth:`remove_tree` (manifest first), then the directory markers of the set.

        S3 has no directories, but SeaweedFS keeps one for every prefix objects were written under and
        lists it after the objects are gone, where it would look like an incomplete set. Deleting the
        keys ``<dir>/`` (deepest first) removes them; on other servers these deletes change nothing."""
        base = self.key(rel)
        markers = {f"{base}/"}
        for obj in self.iter_objects(rel):
            parts = obj["Key"][len(base) + 1 :].split("/")[:-1]
            markers.update(f"{base}/{'/'.join(parts[:n])}/" for n in range(1, len(parts) + 1))
        self.remove_tree(rel)
        try:
            self.delete_keys(sorted(markers, key=lambda k: (-k.count("/"), k)))
        except S3Error:
            pass  # only cosmetic: a left-over marker holds no data and is removed by the next prune

    # -- writing a new set -----------------------------------------------------------------------
    @s3_call("list the backup prefix")
    def _set_is_free(self, rel: str) -> bool:
        return not self._any(self._dir_prefix(rel))

    def allocate_set(
        self, kind: str, source: str, now: Callable[[], _dt.datetime] = utcnow, max_wait_s: float = 5.0
    ) -> tuple[_dt.datetime, str]:
        """(start time, backup id) of a new set of ``source`` whose prefix holds no object yet: the id
        allocation of ``LocalSetWriter.create`` (:func:`allocate_backup_id`), where a free prefix takes
        the place of a new directory. S3Error when the listing fails or no second was free in time."""

        def exhausted(backup_id: str) -> S3Error:
            where = f"s3://{self.bucket}/{self._dir_prefix(set_rel(kind, source, backup_id))}"
            return S3Error(f"cannot allocate a backup id: {where} already has objects")

        return allocate_backup_id(
            lambda backup_id: self._set_is_free(set_rel(kind, source, backup_id)), exhausted, now, max_wait_s
        )


def open_s3_root(url: str, info: S3Conn, concurrency: int) -> S3Storage:
    """The S3 backup root ``url`` with one client for ``concurrency`` threads; S3Error when the
    bucket does not exist."""
    cli = client(info, max_pool_connections=concurrency + 2)
    cli.meta.events.register("before-send.s3.PutObject", _no_expect_for_empty_body)
    storage = S3Storage(url, info, cli=cli)
    if not storage.exists(""):
        raise S3Error(f"bucket {storage.bucket!r} does not exist at {info.where}")
    return storage


def remove_backup_set(storage: Storage, rel: str) -> None:
    """Deprecated, goes with the _s3 shim: ``storage.remove_set(rel)``."""
    storage.remove_set(rel)
