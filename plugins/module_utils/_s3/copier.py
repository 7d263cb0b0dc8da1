# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parallel server-side copies: :class:`Copier` runs :class:`CopyJob` s with CopyObject or a
multipart upload of UploadPartCopy parts (private)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._s3.connection import S3Conn
from ansible_collections.runbook.stack.plugins.module_utils._s3.copy_plan import (
    DEFAULT_MULTIPART_THRESHOLD,
    DEFAULT_PART_SIZE,
    MAX_SINGLE_COPY,
    check_copy_options,
    part_ranges,
    plain_etag,
)
from ansible_collections.runbook.stack.plugins.module_utils._s3.errors import S3Error, error_code, s3_call, translate
from ansible_collections.runbook.stack.plugins.module_utils._s3.sigv4 import _HEAD_FIELDS, CopyTransport

try:
    import botocore.exceptions
except ImportError:  # pragma: no cover - errors.HAS_BOTO3 reports it
    pass


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
    @s3_call("read", bucket="{job.src_bucket}", key="{job.src_key}")
    def _head(self, job: CopyJob) -> dict[str, Any] | None:
        return self.transport.head(job.src_bucket, job.src_key, job.src_version)

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
        upload_id = self._create_upload(job, extra)
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
            resp = self._complete_upload(job, upload_id, parts)
            with self._lock:
                self._uploads.pop(upload_id, None)
            return plain_etag(resp.get("ETag"))
        except BaseException:
            self._abort(upload_id)
            raise

    @s3_call("start a multipart upload", bucket="{job.dst_bucket}", key="{job.dst_key}")
    def _create_upload(self, job: CopyJob, extra: dict[str, Any]) -> str:
        return self.cli.create_multipart_upload(Bucket=job.dst_bucket, Key=job.dst_key, **extra)["UploadId"]

    @s3_call("complete a multipart upload", bucket="{job.dst_bucket}", key="{job.dst_key}")
    def _complete_upload(self, job: CopyJob, upload_id: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
        return self.cli.complete_multipart_upload(
            Bucket=job.dst_bucket, Key=job.dst_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )

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
