# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup sets under an s3:// root (module_utils._s3.S3Storage) against the lab's SeaweedFS."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_s3_modules import _keys
from test_s3_modules import _s3 as lab_client

from ansible_collections.runbook.stack.plugins.module_utils import _backup_set as bs
from ansible_collections.runbook.stack.plugins.module_utils import _s3


@pytest.fixture
def s3_root(lab):
    """(storage, boto3 client, bucket, prefix) for a fresh bucket; objects and bucket removed afterwards."""
    cli = lab_client(lab)
    bucket = f"rbst-{uuid.uuid4().hex[:8]}"
    cli.create_bucket(Bucket=bucket)
    s3 = lab["s3"]
    info = _s3.conn_info(
        dict(endpoint_url=s3["endpoint_url"], access_key=s3["access_key"], secret_key=s3["secret_key"])
    )
    storage = bs.open_storage(f"s3://{bucket}/backups/", s3=info)
    yield storage, cli, bucket
    keys = _keys(cli, bucket)
    if keys:
        cli.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
    cli.delete_bucket(Bucket=bucket)


def _local_set(root: Path, source: str = "app") -> bs.LocalSetWriter:
    writer = bs.LocalSetWriter(str(root), "postgresql", source).create()
    Path(writer.path, "data").mkdir()
    Path(writer.path, "data", "a.bin").write_bytes(b"a" * 1000)
    Path(writer.path, "toc.dat").write_bytes(b"toc")
    writer.seal()
    return writer


def _push(cli: Any, bucket: str, local_root: Path, writer: bs.LocalSetWriter, skip: str | None = None) -> None:
    base = Path(writer.path)
    for path in sorted(base.rglob("*")):
        if path.is_file() and path.name != skip:
            rel = path.relative_to(local_root).as_posix()
            cli.put_object(Bucket=bucket, Key=f"backups/{rel}", Body=path.read_bytes())


def test_s3_root_lists_finds_and_verifies_sets(s3_root, tmp_path):
    storage, cli, bucket = s3_root
    assert storage.url == f"s3://{bucket}/backups"
    writer = _local_set(tmp_path)
    _push(cli, bucket, tmp_path, writer)
    sets = bs.list_sets(storage)
    assert [(s.kind, s.source, s.backup_id, s.valid) for s in sets] == [("postgresql", "app", writer.backup_id, True)]
    found = bs.find_set(storage, "postgresql", "app", "latest")
    assert found.backup_id == writer.backup_id
    assert found.location == f"s3://{bucket}/backups/postgresql/app/{writer.backup_id}"
    assert found.verify() == []
    # damage one object: same size, other bytes -> the checksum catches it
    cli.put_object(Bucket=bucket, Key=f"backups/{found.rel}/data/a.bin", Body=b"b" * 1000)
    assert found.verify() == ["checksum mismatch on data/a.bin"]


def test_s3_root_set_without_manifest_or_with_missing_file_is_invalid(s3_root, tmp_path):
    storage, cli, bucket = s3_root
    writer = _local_set(tmp_path)
    _push(cli, bucket, tmp_path, writer, skip=bs.MANIFEST)
    (only,) = bs.list_sets(storage)
    assert not only.valid and only.incomplete
    _push(cli, bucket, tmp_path, writer)
    cli.delete_object(Bucket=bucket, Key=f"backups/{only.rel}/toc.dat")
    (again,) = bs.list_sets(storage)
    assert not again.valid and "toc.dat" in again.error and "missing" in again.error
    with pytest.raises(bs.BackupSetError, match="not valid"):
        bs.find_set(storage, "postgresql", "app", writer.backup_id)


def test_s3_root_remove_tree_and_write_atomic(s3_root, tmp_path):
    storage, cli, bucket = s3_root
    writer = _local_set(tmp_path)
    _push(cli, bucket, tmp_path, writer)
    rel = bs.set_rel("postgresql", "app", writer.backup_id)
    assert storage.exists(rel) and storage.exists(f"{rel}/{bs.MANIFEST}")
    manifest = json.loads(storage.read_bytes(f"{rel}/{bs.MANIFEST}"))
    assert manifest["backup_id"] == writer.backup_id
    storage.remove_tree(rel)
    assert not storage.exists(rel)
    assert _keys(cli, bucket) == set()
    storage.write_atomic("x/y.json", b"{}")
    assert storage.read_bytes("x/y.json") == b"{}" and storage.size("x/y.json") == 2
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("x/nope.json")


def test_s3_root_errors_are_clear(lab):
    s3 = lab["s3"]
    info = _s3.conn_info(dict(endpoint_url=s3["endpoint_url"], access_key=s3["access_key"], secret_key="wrong-pw"))
    with pytest.raises(bs.BackupSetError, match="no valid bucket"):
        bs.open_storage("s3:///prefix", s3=info)
    with pytest.raises(bs.BackupSetError, match="S3 connection options"):
        bs.open_storage("s3://bucket/prefix")
    storage = bs.open_storage("s3://rb-no-such-bucket-x/p", s3=info)
    with pytest.raises(bs.BackupSetError) as err:
        bs.list_sets(storage)
    assert "wrong-pw" not in str(err.value)
    assert "rb-no-such-bucket-x" in str(err.value)
