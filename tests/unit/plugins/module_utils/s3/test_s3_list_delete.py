# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the one list and the one delete of every S3 module (S3Storage, _s3/storage.py), of
the removal and id allocation of S3 sets, and of the one-release re-export shim _s3/__init__.py; no
network: a fake of the S3 calls they make."""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

import botocore.exceptions
import pytest

from ansible_collections.runbook.stack.plugins.module_utils import _s3
from ansible_collections.runbook.stack.plugins.module_utils._backup_set import storage as bs_storage
from ansible_collections.runbook.stack.plugins.module_utils._backup_set import writer as bs_writer
from ansible_collections.runbook.stack.plugins.module_utils._s3 import connection, copy_plan
from ansible_collections.runbook.stack.plugins.module_utils._s3.errors import S3Error
from ansible_collections.runbook.stack.plugins.module_utils._s3.storage import S3Storage

INFO = connection.conn_info({"endpoint_url": "http://127.0.0.1:9000", "access_key": "AK", "secret_key": "SK"})


class FakeS3:
    """ListObjectsV2 in pages of ``page`` keys, DeleteObjects refusing ``refuse`` keys one by one."""

    def __init__(self, keys: list[str], page: int = 2, refuse: set[str] | None = None) -> None:
        self.keys = sorted(keys)
        self.page = page
        self.refuse = refuse or set()
        self.delete_calls: list[list[str]] = []
        self.fail_list: BaseException | None = None
        self.fail_delete_call: int | None = None  # this call (0-based) fails as a whole

    def get_paginator(self, name: str) -> FakeS3:
        assert name == "list_objects_v2"
        return self

    def paginate(self, Bucket: str, Prefix: str, **_kw: Any):
        found = [k for k in self.keys if k.startswith(Prefix)]
        for i in range(0, max(len(found), 1), self.page):
            if self.fail_list is not None and i:
                raise self.fail_list
            yield {"Contents": [{"Key": k, "Size": 3, "ETag": '"e"'} for k in found[i : i + self.page]]}

    def list_objects_v2(self, Bucket: str, Prefix: str, MaxKeys: int) -> dict[str, Any]:
        if self.fail_list is not None:
            raise self.fail_list
        found = [k for k in self.keys if k.startswith(Prefix)][:MaxKeys]
        return {"KeyCount": len(found), "Contents": [{"Key": k} for k in found]}

    def delete_objects(self, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:
        assert Delete["Quiet"] is True
        batch = [o["Key"] for o in Delete["Objects"]]
        if self.fail_delete_call == len(self.delete_calls):
            self.delete_calls.append(batch)
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "AccessDenied", "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
                "DeleteObjects",
            )
        self.delete_calls.append(batch)
        errors = [{"Key": k, "Code": "AccessDenied", "Message": "locked"} for k in batch if k in self.refuse]
        self.keys = [k for k in self.keys if k not in batch or k in self.refuse]
        return {"Errors": errors} if errors else {}


def storage(fake: FakeS3, bucket: str = "bkt") -> S3Storage:
    return S3Storage.bucket_root(bucket, INFO, fake)


def test_list_objects_takes_a_plain_key_prefix_across_pages():
    fake = FakeS3(["a/1", "a/2", "a/3", "ab", "b/1"])
    assert [o["Key"] for o in storage(fake).list_objects("a")] == ["a/1", "a/2", "a/3", "ab"]
    assert [o["Key"] for o in storage(fake).list_objects("a/")] == ["a/1", "a/2", "a/3"]
    assert len(storage(fake).list_objects("")) == 5
    assert storage(fake).list_objects("zzz") == []


def test_list_objects_fault_is_an_s3error_naming_the_prefix():
    fake = FakeS3(["a/1", "a/2", "a/3"])
    fake.fail_list = botocore.exceptions.ClientError(
        {"Error": {"Code": "NoSuchBucket", "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "List"
    )
    with pytest.raises(S3Error) as caught:
        storage(fake).list_objects("a/")
    assert str(caught.value) == (
        "cannot list objects under prefix 'a/' (at http://127.0.0.1:9000, bucket 'bkt'): "
        "bucket 'bkt' does not exist (NoSuchBucket)"
    )
    # the Storage interface of the same listing keeps raising OSError for BackupSet
    with pytest.raises(OSError, match=r"cannot list prefix 'a/'"):
        list(S3Storage("s3://bkt", INFO, cli=fake).iter_objects("a"))


def test_has_objects_and_the_free_keep_prefix():
    fake = FakeS3(["pre-restore-20261122T020000Z/k", "pre-restore-20261122T020000Z.2/k", "live/k"])
    assert storage(fake).has_objects("live/") and not storage(fake).has_objects("gone/")
    name = copy_plan.free_keep_prefix(fake, INFO, "bkt", "20261122T020000Z")
    assert name == "pre-restore-20261122T020000Z.3/"


def test_bucket_root_passes_the_bucket_name_as_it_is():
    fake = FakeS3(["k"])
    root = storage(fake, bucket="odd name")
    assert root.bucket == "odd name" and root.prefix == "" and root.url == "s3://odd name"
    assert root.key("a/b") == "a/b"
    with pytest.raises(S3Error, match="no valid bucket name"):
        S3Storage("s3://odd name", INFO, cli=fake)


def test_delete_keys_in_batches_returns_the_count():
    keys = [f"k{i:02d}" for i in range(7)]
    fake = FakeS3(keys)
    assert storage(fake).delete_keys(keys, batch_size=3) == 7
    assert [len(c) for c in fake.delete_calls] == [3, 3, 1]
    assert fake.keys == []
    assert storage(FakeS3([])).delete_keys([]) == 0
    with pytest.raises(S3Error, match="batch_size must be between 1 and 1000, got 1001"):
        storage(fake).delete_keys(["k"], batch_size=1001)


def test_delete_keys_refused_one_by_one_go_on_and_are_named_at_the_end():
    keys = [f"k{i:02d}" for i in range(30)]
    refused = {f"k{i:02d}" for i in range(0, 30, 2)}  # 15 refused
    fake = FakeS3(keys, refuse=refused)
    with pytest.raises(S3Error) as caught:
        storage(fake).delete_keys(keys, batch_size=10)
    msg = str(caught.value)
    assert len(fake.delete_calls) == 3  # every batch was sent
    assert msg.startswith(
        "cannot delete 15 objects in bucket 'bkt' at http://127.0.0.1:9000: 'k00' (AccessDenied: locked)"
    )
    assert msg.endswith(" and 5 more (15 objects were deleted)")
    assert sorted(fake.keys) == sorted(refused)


def test_delete_keys_batch_refused_as_a_whole_stops_with_the_count_so_far():
    keys = [f"k{i}" for i in range(5)]
    fake = FakeS3(keys)
    fake.fail_delete_call = 1
    with pytest.raises(S3Error) as caught:
        storage(fake).delete_keys(keys, batch_size=2)
    assert str(caught.value) == (
        "cannot delete 2 objects (at http://127.0.0.1:9000, bucket 'bkt'): access denied to bucket 'bkt' "
        "(AccessDenied) (2 objects were deleted before)"
    )
    assert len(fake.delete_calls) == 2 and fake.keys == ["k2", "k3", "k4"]


# --- the shim ------------------------------------------------------------------------------------

# every name the single _s3.py module had (public ones), and where it lives now
FORMER_NAMES = {
    "errors": "BOTO3_IMPORT_ERROR HAS_BOTO3 S3Error error_code is_credential_error is_transient is_unreachable translate",
    "connection": "S3Conn client conn_info s3_argument_spec validate_endpoint_url",
    "retention": "DELETE_BATCH_MAX age_cutoff batches select_for_retention",
    "storage": "S3Storage open_s3_root parse_s3_url remove_backup_set",
    "copy_plan": "DEFAULT_MULTIPART_THRESHOLD DEFAULT_PART_SIZE GIB KEEP_LIMIT KEEP_PREFIX MAX_CONCURRENCY MAX_PARTS "
    "MAX_PART_SIZE MAX_SINGLE_COPY MIB MIN_PART_SIZE RESTORE_MODES RestorePlan backup_key check_copy_options "
    "check_no_overlap free_keep_prefix is_kept_key is_md5_etag keep_prefix_name map_key part_ranges plain_etag "
    "plan_restore restore_diff same_content sample set_prefix snapshot_entry split_backup_prefix verify_restore",
    "sigv4": "CopyTransport",
    "copier": "Cancelled Copier CopyJob",
    "transfer": "SHA256_METADATA SetFile SetTransfer TRANSFER_ATTEMPTS TRANSFER_CONCURRENCY TRANSFER_PART_SIZE "
    "TRANSFER_THRESHOLD file_digests multipart_etag set_files transfer_plan",
    "set_sync": "destination_state download_set set_manifest_bytes upload_set",
}


def test_the_shim_re_exports_every_former_name_from_its_submodule():
    for module, names in FORMER_NAMES.items():
        sub = getattr(_s3, module)
        for name in names.split():
            assert getattr(_s3, name) is getattr(sub, name), name
            assert name in _s3.__all__, name
    assert _s3.s3_call is _s3.errors.s3_call


# --- the sets of an S3 root: removal and id allocation --------------------------------------------

SET = "s3/src/20261122T020000Z"


def test_remove_set_deletes_the_manifest_first_then_the_objects_then_the_markers():
    fake = FakeS3([f"{SET}/objects/a/b", f"{SET}/objects/c", f"{SET}/manifest.json", "s3/src/other/k"], page=10)
    S3Storage("s3://bkt", INFO, cli=fake).remove_set(SET)
    assert fake.delete_calls[0] == [f"{SET}/manifest.json"]  # never a sealed set with files missing
    assert sorted(fake.delete_calls[1]) == [f"{SET}/objects/a/b", f"{SET}/objects/c"]
    assert fake.delete_calls[2] == [f"{SET}/objects/a/", f"{SET}/objects/", f"{SET}/"]  # deepest first
    assert fake.keys == ["s3/src/other/k"]


def test_remove_set_ignores_a_marker_the_server_refuses():
    fake = FakeS3([f"{SET}/objects/a/b", f"{SET}/manifest.json"], refuse={f"{SET}/objects/a/"})
    S3Storage("s3://bkt", INFO, cli=fake).remove_set(SET)
    assert fake.keys == []


def test_remove_backup_set_of_the_shim_is_remove_set(tmp_path):
    fake = FakeS3([f"{SET}/manifest.json"])
    _s3.remove_backup_set(S3Storage("s3://bkt", INFO, cli=fake), SET)
    assert fake.keys == []
    (tmp_path / SET).mkdir(parents=True)
    local = bs_storage.LocalStorage(str(tmp_path))
    _s3.remove_backup_set(local, SET)
    assert not (tmp_path / SET).exists()


def clock(*times: dt.datetime) -> Callable[[], dt.datetime]:
    """now() returning ``times`` in turn, then the last one for ever."""
    pending = list(times)
    return lambda: pending.pop(0) if len(pending) > 1 else pending[0]


T0 = dt.datetime(2026, 11, 22, 2, 0, 0, 400000, tzinfo=dt.timezone.utc)


def test_allocate_set_waits_for_a_second_whose_prefix_is_empty(monkeypatch):
    sleeps: list[float] = []
    monkeypatch.setattr(bs_writer.time, "sleep", sleeps.append)
    fake = FakeS3(["backups/s3/src/20261122T020000Z/objects/k", "backups/s3/src/20261122T020001Z"])
    root = S3Storage("s3://bkt/backups", INFO, cli=fake)
    later = T0 + dt.timedelta(seconds=1)
    started, backup_id = root.allocate_set("s3", "src", now=clock(T0, later))
    # 20261122T020001Z is a key of its own, not the set's prefix "…/20261122T020001Z/"
    assert (started, backup_id) == (later, "20261122T020001Z")
    assert len(sleeps) == 1 and 0.5 < sleeps[0] <= 0.61
    assert root.allocate_set("s3", "other", now=clock(T0)) == (T0, "20261122T020000Z")


def test_allocate_set_gives_up_naming_the_prefix(monkeypatch):
    monkeypatch.setattr(bs_writer.time, "sleep", lambda s: None)
    fake = FakeS3(["s3/src/20261122T020000Z/manifest.json"])
    with pytest.raises(S3Error) as caught:
        S3Storage("s3://bkt", INFO, cli=fake).allocate_set("s3", "src", now=clock(T0), max_wait_s=0)
    assert str(caught.value) == "cannot allocate a backup id: s3://bkt/s3/src/20261122T020000Z/ already has objects"
    fake.fail_list = botocore.exceptions.ClientError(
        {"Error": {"Code": "AccessDenied", "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "List"
    )
    with pytest.raises(S3Error, match=r"^cannot list the backup prefix \(at http://127.0.0.1:9000, bucket 'bkt'\)"):
        S3Storage("s3://bkt", INFO, cli=fake).allocate_set("s3", "src", now=clock(T0))
