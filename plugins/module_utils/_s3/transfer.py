# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moving the files of a backup set between a local directory and S3 (backup_upload,
backup_download): part plans, S3's ETag rule, file digests, and :class:`SetTransfer`, the parallel
engine (private)."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import FILE_MODE, HASH_CHUNK, BackupSetError
from ansible_collections.runbook.stack.plugins.module_utils._s3.connection import S3Conn
from ansible_collections.runbook.stack.plugins.module_utils._s3.copy_plan import MIB, part_ranges, plain_etag
from ansible_collections.runbook.stack.plugins.module_utils._s3.errors import S3Error, is_transient, s3_call, translate

TRANSFER_CONCURRENCY = 8
TRANSFER_THRESHOLD = 64 * MIB
TRANSFER_PART_SIZE = 64 * MIB
SHA256_METADATA = "sha256"  # user metadata (x-amz-meta-sha256) of every uploaded object
TRANSFER_ATTEMPTS = 4  # per request, on top of botocore's own retry
_TRANSIENT_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "500", "502", "503"})


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

    @s3_call("start the upload of {f.path}", key="{f.key}")
    def _create(self, f: SetFile) -> str:
        resp = self.cli.create_multipart_upload(Bucket=self.bucket, Key=f.key, Metadata={SHA256_METADATA: f.sha256})
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

    @s3_call("check the upload of {f.path}", key="{f.key}")
    def _head(self, f: SetFile) -> dict[str, Any]:
        return self.cli.head_object(Bucket=self.bucket, Key=f.key)

    def check_arrived(self, files: list[SetFile]) -> None:
        """HEAD every object: its size, its ETag (expected from the local MD5s and the part size used)
        and its sha256 metadata must match; S3Error naming the first file that does not."""

        def one(f: SetFile) -> None:
            head = self._head(f)
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
