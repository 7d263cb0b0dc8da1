# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CopyTransport: the hand-written SigV4 request path for the per-object requests of a server-side
copy (CopyObject, UploadPartCopy, HEAD), isolated from the boto3 code (private)."""

from __future__ import annotations

import hashlib
import hmac
import html
import http.client
import re
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._s3.connection import S3Conn
from ansible_collections.runbook.stack.plugins.module_utils._s3.copy_plan import plain_etag

try:
    import boto3
    import botocore.exceptions
except ImportError:  # pragma: no cover - errors.HAS_BOTO3 reports it
    pass

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
