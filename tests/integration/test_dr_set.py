"""dr_set and dr_set_info on real component sets: PostgreSQL and Redis sets on a local root, an S3
snapshot on the lab's SeaweedFS."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from conftest import psql, run_module
from test_s3_modules import _keys, conn
from test_s3_modules import _s3 as lab_client

DB = "rb_drset"


def ok(result: dict) -> dict:
    assert not result.get("failed"), result.get("msg")
    assert "Traceback" not in result["_stderr"], result["_stderr"]
    return result


@pytest.fixture(scope="module")
def components(lab, tmp_path_factory):
    """One real set of each kind; yields (local root, component refs)."""
    root = tmp_path_factory.mktemp("drset-root")
    psql(lab, f"DROP DATABASE IF EXISTS {DB}")
    psql(lab, f"CREATE DATABASE {DB}")
    psql(lab, "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100) g", db=DB)
    pg = ok(run_module("postgresql_backup", {**lab["pg"], "name": DB, "dest": str(root)}))
    cache = ok(run_module("redis_snapshot", {**lab["redis"], "dest": str(root)}))
    cli = lab_client(lab)
    src, bak = f"rbdr-{uuid.uuid4().hex[:8]}", f"rbdrb-{uuid.uuid4().hex[:8]}"
    for name in (src, bak):
        cli.create_bucket(Bucket=name)
    cli.put_object(Bucket=src, Key="a.txt", Body=b"a")
    snap = ok(run_module("s3_snapshot", conn(lab, bucket=src, backup_bucket=bak)))
    refs = [
        {"kind": "postgresql", "source": DB, "backup_id": pg["backup"]["id"], "root": str(root)},
        {"kind": "redis", "source": cache["manifest"]["source"], "backup_id": cache["backup_id"], "root": str(root)},
        {"kind": "s3", "source": src, "backup_id": snap["backup_id"], "root": f"s3://{bak}"},
    ]
    yield root, refs, {"pg": pg, "redis": cache, "s3": snap}
    psql(lab, f"DROP DATABASE IF EXISTS {DB}")
    for name in (src, bak):
        keys = sorted(_keys(cli, name))
        if keys:
            cli.delete_objects(Bucket=name, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
        cli.delete_bucket(Bucket=name)


def test_check_mode_writes_nothing(lab, module, components):
    root, refs, _made = components
    res = ok(module("dr_set", {**lab["s3"], "dest": str(root), "name": "shop", "components": refs}, check_mode=True))
    assert res["changed"] is True
    assert len(res["components"]) == 3
    assert not (root / "dr").exists()


def test_dr_set_pins_components_and_info_finds_it_intact(lab, module, components):
    root, refs, made = components
    res = ok(module("dr_set", {**lab["s3"], "dest": str(root), "name": "shop", "components": refs}))
    manifest = json.loads((Path(res["path"]) / "manifest.json").read_text())
    assert manifest["kind"] == "dr"
    recorded = {c["kind"]: c for c in manifest["facts"]["components"]}
    assert recorded["postgresql"]["backup_id"] == made["pg"]["backup"]["id"]
    assert recorded["postgresql"]["facts"], recorded["postgresql"]
    assert res["recovery_point"] == min(c["started"] for c in recorded.values())
    info = ok(module("dr_set_info", {**lab["s3"], "root": str(root), "name": "shop"}))
    assert info["backup_id"] == res["backup_id"]
    assert info["valid"] is True and info["problems"] == []
    listed = ok(module("backup_info", {"root": str(root), "kind": "dr"}))
    assert [s["backup_id"] for s in listed["sets"]] == [res["backup_id"]]


def test_damaged_component_is_reported_by_name(lab, module, components):
    root, refs, made = components
    dr = ok(module("dr_set", {**lab["s3"], "dest": str(root), "name": "damaged", "components": refs}))
    rdb = Path(made["redis"]["path"]) / "dump.rdb"
    original = rdb.read_bytes()
    try:
        rdb.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
        info = ok(module("dr_set_info", {**lab["s3"], "root": str(root), "name": "damaged"}))
        assert info["backup_id"] == dr["backup_id"]
        assert info["valid"] is False
        assert any("redis set" in p and "checksum mismatch on dump.rdb" in p for p in info["problems"]), info
        quick = ok(module("dr_set_info", {**lab["s3"], "root": str(root), "name": "damaged", "verify": False}))
        assert quick["valid"] is True, "without verify only manifests and sizes are checked"
    finally:
        rdb.write_bytes(original)


def test_bad_input_fails_clearly(lab, module, components, tmp_path):
    _root, refs, _made = components
    missing = [{**refs[0], "backup_id": "20000101T000000Z"}]
    res = module("dr_set", {"dest": str(tmp_path), "components": missing})
    assert res["failed"] and "20000101T000000Z" in res["msg"] and "Traceback" not in res["_stderr"]
    res = module("dr_set", {"dest": str(tmp_path), "components": [{**refs[0], "backup_id": "yesterday"}]})
    assert res["failed"] and "yesterday" in res["msg"], res["msg"]
    res = module("dr_set", {"dest": str(tmp_path), "components": [{**refs[0], "kind": "dr"}]})
    assert res["failed"] and "cannot contain another DR set" in res["msg"]
    res = module("dr_set_info", {"root": str(tmp_path), "name": "nothing"})
    assert res["failed"] and "no valid dr backup set" in res["msg"], res["msg"]
