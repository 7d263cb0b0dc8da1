# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the backup-set transfer helpers of _s3 (ETags, part plans, the parallel engine);
no network: the engine runs against an in-memory fake of the S3 calls it makes."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import BackupSetError
from ansible_collections.runbook.stack.plugins.module_utils._s3 import connection, copy_plan, errors, transfer

MIB = 1024 * 1024


def s3_etag(data: bytes, part_size: int | None) -> str:
    """The ETag as S3 documents it, written independently of the code under test."""
    if part_size is None:
        return hashlib.md5(data).hexdigest()
    digests = [hashlib.md5(data[i : i + part_size]).digest() for i in range(0, len(data), part_size)]
    return hashlib.md5(b"".join(digests)).hexdigest() + f"-{len(digests)}"


# --- planning ----------------------------------------------------------------------------------


def test_transfer_plan_single_below_threshold_parts_from_it():
    assert transfer.transfer_plan(0, 5 * MIB, 5 * MIB) == (False, [(0, 0)])
    assert transfer.transfer_plan(5 * MIB - 1, 5 * MIB, 5 * MIB) == (False, [(0, 5 * MIB - 1)])
    assert transfer.transfer_plan(5 * MIB, 5 * MIB, 5 * MIB) == (True, [(0, 5 * MIB)])
    multipart, parts = transfer.transfer_plan(12 * MIB, 5 * MIB, 5 * MIB)
    assert multipart and parts == [(0, 5 * MIB), (5 * MIB, 5 * MIB), (10 * MIB, 2 * MIB)]
    with pytest.raises(errors.S3Error):
        transfer.transfer_plan(-1, 5 * MIB, 5 * MIB)


def test_transfer_plan_parts_cover_the_file_and_stay_within_10000():
    size = 10001 * 5 * MIB + 3
    multipart, parts = transfer.transfer_plan(size, 5 * MIB, 5 * MIB)
    assert multipart and len(parts) <= copy_plan.MAX_PARTS
    assert parts[0][0] == 0 and sum(length for _off, length in parts) == size
    assert all(a[0] + a[1] == b[0] for a, b in zip(parts, parts[1:]))
    assert all(length >= copy_plan.MIN_PART_SIZE for _off, length in parts[:-1])


def test_defaults_are_valid_options():
    copy_plan.check_copy_options(
        transfer.TRANSFER_CONCURRENCY, transfer.TRANSFER_THRESHOLD, transfer.TRANSFER_PART_SIZE
    )
    with pytest.raises(errors.S3Error, match="part_size"):
        copy_plan.check_copy_options(8, 64 * MIB, 4 * MIB)
    with pytest.raises(errors.S3Error, match="concurrency"):
        copy_plan.check_copy_options(0, 64 * MIB, 64 * MIB)


# --- ETags -------------------------------------------------------------------------------------


def test_multipart_etag_matches_the_s3_formula():
    data = os.urandom(12 * MIB + 17)
    parts = [data[i : i + 5 * MIB] for i in range(0, len(data), 5 * MIB)]
    md5s = [hashlib.md5(p).digest() for p in parts]
    assert transfer.multipart_etag(md5s, True) == s3_etag(data, 5 * MIB)
    assert transfer.multipart_etag(md5s, True).endswith("-3")
    assert transfer.multipart_etag([hashlib.md5(data).digest()], False) == s3_etag(data, None)
    # one part uploaded as multipart is not the plain MD5
    assert transfer.multipart_etag([hashlib.md5(data).digest()], True) == s3_etag(data, len(data))
    assert transfer.multipart_etag([hashlib.md5(b"").digest()], False) == "d41d8cd98f00b204e9800998ecf8427e"
    with pytest.raises(errors.S3Error):
        transfer.multipart_etag(md5s, False)
    with pytest.raises(errors.S3Error):
        transfer.multipart_etag([], True)


def test_file_digests_one_read_sha256_and_part_md5s(tmp_path):
    data = os.urandom(11 * MIB + 5)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    multipart, parts = transfer.transfer_plan(len(data), 5 * MIB, 5 * MIB)
    sha, md5s = transfer.file_digests(str(path), parts)
    assert sha == hashlib.sha256(data).hexdigest()
    assert transfer.multipart_etag(md5s, multipart) == s3_etag(data, 5 * MIB)
    with pytest.raises(ValueError, match="shorter"):
        transfer.file_digests(str(path), [(0, len(data) + 1)])
    with pytest.raises(ValueError, match="longer"):
        transfer.file_digests(str(path), [(0, len(data) - 1)])


def test_set_files_keys_paths_and_order(tmp_path):
    manifest = {
        "files": [
            {"path": "a.txt", "size": 3, "sha256": "0" * 64},
            {"path": "data/big.bin", "size": 12 * MIB, "sha256": "1" * 64},
        ]
    }
    files = transfer.set_files(manifest, str(tmp_path), "pre/postgresql/app/20261122T020000Z", 5 * MIB, 5 * MIB)
    assert [f.path for f in files] == ["data/big.bin", "a.txt"]  # largest first
    big, small = files
    assert big.key == "pre/postgresql/app/20261122T020000Z/data/big.bin"
    assert big.local == os.path.join(str(tmp_path), "data", "big.bin")
    assert big.multipart and len(big.parts) == 3 and not small.multipart
    assert big.expected_etag is None  # unknown until the file was read


# --- the engine against an in-memory S3 ----------------------------------------------------------


class FakeS3:
    """The S3 calls SetTransfer makes, with S3's ETag rules and Content-MD5 check."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.aborted: list[str] = []
        self.fail_key: str | None = None
        self.flaky = 0  # this many PUTs fail with InternalError first

    def _check_md5(self, body: bytes, content_md5: str) -> None:
        if base64.b64encode(hashlib.md5(body).digest()).decode() != content_md5:
            raise botocore.exceptions.ClientError({"Error": {"Code": "BadDigest", "Message": "bad"}}, "PutObject")

    def put_object(self, Bucket, Key, Body, ContentMD5, Metadata, **kw):
        if Key == self.fail_key:
            raise botocore.exceptions.ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "PutObject")
        with self.lock:
            self.flaky -= 1
            if self.flaky >= 0:
                raise botocore.exceptions.ClientError({"Error": {"Code": "InternalError", "Message": "x"}}, "PutObject")
        self._check_md5(Body, ContentMD5)
        etag = hashlib.md5(Body).hexdigest()
        with self.lock:
            self.objects[Key] = {"data": Body, "etag": etag, "meta": dict(Metadata)}
        return {"ETag": f'"{etag}"'}

    def create_multipart_upload(self, Bucket, Key, Metadata):
        with self.lock:
            upload_id = f"u{len(self.uploads)}"
            self.uploads[upload_id] = {"key": Key, "meta": dict(Metadata), "parts": {}}
        return {"UploadId": upload_id}

    def upload_part(self, Bucket, Key, UploadId, PartNumber, Body, ContentMD5):
        if Key == self.fail_key and PartNumber == 2:
            raise botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "UploadPart")
        self._check_md5(Body, ContentMD5)
        with self.lock:
            self.uploads[UploadId]["parts"][PartNumber] = Body
        return {"ETag": f'"{hashlib.md5(Body).hexdigest()}"'}

    def complete_multipart_upload(self, Bucket, Key, UploadId, MultipartUpload):
        up = self.uploads.pop(UploadId)
        bodies = [up["parts"][p["PartNumber"]] for p in MultipartUpload["Parts"]]
        etag = hashlib.md5(b"".join(hashlib.md5(b).digest() for b in bodies)).hexdigest() + f"-{len(bodies)}"
        self.objects[Key] = {"data": b"".join(bodies), "etag": etag, "meta": up["meta"]}
        return {"ETag": f'"{etag}"'}

    def abort_multipart_upload(self, Bucket, Key, UploadId):
        self.uploads.pop(UploadId, None)
        self.aborted.append(Key)

    def head_object(self, Bucket, Key):
        obj = self.objects[Key]
        return {"ContentLength": len(obj["data"]), "ETag": f'"{obj["etag"]}"', "Metadata": obj["meta"]}

    def get_object(self, Bucket, Key, Range=None):
        data = self.objects[Key]["data"]
        if Range:
            start, end = (int(x) for x in Range[len("bytes=") :].split("-"))
            data = data[start : end + 1]
        return {"Body": io.BytesIO(data)}


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, list[transfer.SetFile], dict[str, bytes]]:
    base = tmp_path / "set"
    (base / "data").mkdir(parents=True)
    content = {"data/big.bin": os.urandom(12 * MIB + 1), "data/small.bin": os.urandom(1000), "empty": b""}
    for rel, data in content.items():
        (base / rel).write_bytes(data)
    manifest = {
        "files": [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in content.items()]
    }
    files = transfer.set_files(manifest, str(base), "root/kind/src/id", 5 * MIB, 5 * MIB)
    return base, files, content


def engine(fake: FakeS3, concurrency: int = 4) -> transfer.SetTransfer:
    info = connection.conn_info({"endpoint_url": "http://127.0.0.1:9"})
    return transfer.SetTransfer(info, fake, "bkt", concurrency)


def test_upload_then_check_arrived_and_download_roundtrip(payload, tmp_path):
    _base, files, content = payload
    fake = FakeS3()
    engine(fake).upload(files)
    assert {k: v["data"] for k, v in fake.objects.items()} == {f"root/kind/src/id/{p}": d for p, d in content.items()}
    big = fake.objects["root/kind/src/id/data/big.bin"]
    assert big["etag"] == s3_etag(content["data/big.bin"], 5 * MIB) and big["meta"]["sha256"] == files[0].sha256
    assert [f.expected_etag for f in files] == [fake.objects[f.key]["etag"] for f in files]
    engine(fake).check_arrived(files)

    target = tmp_path / "down"
    (target / "data").mkdir(parents=True)
    down = transfer.set_files(
        {"files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files]},
        str(target),
        "root/kind/src/id",
        5 * MIB,
        5 * MIB,
    )
    engine(fake, concurrency=3).download(down)
    for rel, data in content.items():
        assert (target / rel).read_bytes() == data
        assert (target / rel).stat().st_mode & 0o777 == 0o600


def test_check_arrived_names_the_file_whose_object_differs(payload):
    _base, files, _content = payload
    fake = FakeS3()
    engine(fake).upload(files)
    small = next(f for f in files if f.path == "data/small.bin")
    obj = fake.objects[small.key]
    obj["data"] = os.urandom(1000)  # same size, other bytes: the ETag the server reports changes
    obj["etag"] = hashlib.md5(obj["data"]).hexdigest()
    with pytest.raises(errors.S3Error, match=r"checksum mismatch on arrival of data/small.bin"):
        engine(fake).check_arrived(files)


def test_upload_refuses_a_file_changed_after_verification(payload):
    base, files, _content = payload
    for f in files:
        f.part_md5 = transfer.file_digests(f.local, f.parts)[1]
    data = bytearray((base / "data" / "small.bin").read_bytes())
    data[0] ^= 1
    (base / "data" / "small.bin").write_bytes(bytes(data))
    fake = FakeS3()
    with pytest.raises(BackupSetError, match=r"data/small.bin changed after it was verified"):
        engine(fake, concurrency=1).upload(files)
    assert "root/kind/src/id/data/small.bin" not in fake.objects


def test_a_failed_upload_aborts_open_multipart_uploads(payload):
    _base, files, _content = payload
    fake = FakeS3()
    fake.fail_key = "root/kind/src/id/data/big.bin"
    with pytest.raises(errors.S3Error, match=r"cannot upload data/big.bin.*access denied"):
        engine(fake, concurrency=1).upload(files)
    assert fake.uploads == {} and fake.aborted == ["root/kind/src/id/data/big.bin"]
    assert "root/kind/src/id/data/big.bin" not in fake.objects
    # the first fault stops the rest: with one worker, nothing after the failed part was sent
    assert fake.objects == {}


def test_transient_faults_are_retried(payload):
    _base, files, content = payload
    fake = FakeS3()
    fake.flaky = 1
    engine(fake, concurrency=1).upload(files)
    assert {k: v["data"] for k, v in fake.objects.items()} == {f"root/kind/src/id/{p}": d for p, d in content.items()}
    assert errors.is_transient(botocore.exceptions.ClientError({"Error": {"Code": "SlowDown"}}, "PutObject"))
    assert not errors.is_transient(botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied"}}, "PutObject"))
