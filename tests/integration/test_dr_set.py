"""dr_set and dr_set_info on real component sets: PostgreSQL and Redis sets on a local root, an S3
snapshot on the lab's SeaweedFS."""

from __future__ import annotations

import hashlib
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
    assert [s["step"] for s in res["steps"]] == ["find the component sets"]
    assert not (root / "dr").exists()


def test_dr_set_pins_components_and_info_finds_it_intact(lab, module, components):
    root, refs, made = components
    res = ok(module("dr_set", {**lab["s3"], "dest": str(root), "name": "shop", "components": refs}))
    manifest = json.loads((Path(res["path"]) / "manifest.json").read_text())
    assert manifest["kind"] == "dr"
    assert [s["step"] for s in res["steps"]] == ["find the component sets", "write the DR set"]
    assert res["duration_s"] >= sum(s["duration_s"] for s in res["steps"]) - 0.01
    recorded = {c["kind"]: c for c in manifest["facts"]["components"]}
    assert recorded["postgresql"]["backup_id"] == made["pg"]["backup"]["id"]
    assert recorded["postgresql"]["facts"], recorded["postgresql"]
    assert res["recovery_point"] == min(c["started"] for c in recorded.values())
    info = ok(module("dr_set_info", {**lab["s3"], "root": str(root), "name": "shop"}))
    assert info["backup_id"] == res["backup_id"]
    assert info["valid"] is True and info["problems"] == []
    listed = ok(module("backup_info", {"root": str(root), "kind": "dr"}))
    assert [s["backup_id"] for s in listed["sets"]] == [res["backup_id"]]


def test_returned_backup_sets_are_taken_whole(lab, module, components):
    """The backup_set each module returned is a component as it is (its location, times, size and
    file count accepted and ignored); the DR set records the same as from the four reference keys."""
    root, refs, made = components
    whole = [made["pg"]["backup_set"], made["redis"]["backup_set"], made["s3"]["backup_set"]]
    assert all({"location", "started", "size_bytes", "file_count"} <= set(c) for c in whole), whole
    by_refs = ok(module("dr_set", {**lab["s3"], "dest": str(root), "name": "by-refs", "components": refs}))
    by_sets = ok(module("dr_set", {**lab["s3"], "dest": str(root), "name": "by-sets", "components": whole}))
    assert by_sets["components"] == by_refs["components"]
    assert by_sets["recovery_point"] == by_refs["recovery_point"]


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


# ------------------------------------------------------------------------------------------------
# the DR set's own manifest: checksum, components.json, recorded figures (issue 10, point 3)
# ------------------------------------------------------------------------------------------------


def _edit_manifest(path: Path, edit) -> None:
    mpath = path / "manifest.json"
    manifest = json.loads(mpath.read_text())
    edit(manifest)
    mpath.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _pg_component(manifest: dict) -> dict:
    return next(c for c in manifest["facts"]["components"] if c["kind"] == "postgresql")


@pytest.fixture
def two_pg_sets(lab, module, components):
    """(root, refs naming a newer PostgreSQL set, the older set's component record, the newer DR set)."""
    root, refs, made = components
    older = ok(module("dr_set", {**lab["s3"], "dest": str(root), "name": "older", "components": refs[:2]}))
    psql(lab, "INSERT INTO t SELECT 1000 + g FROM generate_series(1, 5) g", db=DB)
    newer_pg = ok(run_module("postgresql_backup", {**lab["pg"], "name": DB, "dest": str(root)}))
    newer_refs = [{**refs[0], "backup_id": newer_pg["backup"]["id"]}, *refs[1:]]
    (old_record,) = [c for c in older["components"] if c["kind"] == "postgresql"]
    assert old_record["backup_id"] == made["pg"]["backup"]["id"] != newer_pg["backup"]["id"]
    yield root, newer_refs, old_record
    psql(lab, "DELETE FROM t WHERE id > 1000", db=DB)


def test_dr_manifest_carries_its_checksum(lab, module, components):
    root, refs, _made = components
    dr = ok(module("dr_set", {**lab["s3"], "dest": str(root), "name": "sum", "components": refs[:2]}))
    manifest = json.loads((Path(dr["path"]) / "manifest.json").read_text())
    assert len(manifest["self_sha256"]) == 64 and manifest == dr["manifest"]
    info = ok(module("dr_set_info", {**lab["s3"], "root": str(root), "name": "sum", "verify": False}))
    assert info["valid"] is True and info["manifest_checksum"] == "verified", info
    assert not info.get("warnings"), info


def test_component_repointed_to_an_older_set_is_refused(lab, module, two_pg_sets):
    root, refs, old_record = two_pg_sets
    dr = ok(module("dr_set", {**lab["s3"], "dest": str(root), "name": "repoint", "components": refs}))
    newer_id = _pg_component(dr["manifest"])["backup_id"]

    def repoint(manifest):
        # every recorded figure of the older set, with its pinned manifest hash: only the DR set's
        # own checksum (and components.json) can tell
        _pg_component(manifest).update({k: v for k, v in old_record.items() if k != "host"})

    _edit_manifest(Path(dr["path"]), repoint)
    for verify in (False, True):
        info = ok(module("dr_set_info", {**lab["s3"], "root": str(root), "name": "repoint", "verify": verify}))
        assert info["backup_id"] == dr["backup_id"]
        assert info["valid"] is False, info
        assert info["manifest_checksum"] == "mismatch"
        text = " | ".join(info["problems"])
        assert f"DR set {dr['backup_id']}: manifest.json was changed after the set was written" in text, text
        assert f"postgresql set {newer_id} of '{DB}': manifest.json of DR set {dr['backup_id']} was edited" in text
        assert f'backup_id: "{newer_id}" in components.json, "{old_record["backup_id"]}" in manifest.json' in text


def test_edited_row_count_in_the_dr_manifest_is_refused(lab, module, components):
    root, refs, _made = components
    dr = ok(module("dr_set", {**lab["s3"], "dest": str(root), "name": "rows", "components": refs[:2]}))
    _edit_manifest(Path(dr["path"]), lambda m: _pg_component(m)["facts"]["tables"].update({"public.t": 99}))
    info = ok(module("dr_set_info", {**lab["s3"], "root": str(root), "name": "rows", "verify": False}))
    assert info["valid"] is False, info
    text = " | ".join(info["problems"])
    assert "manifest.json was changed after the set was written" in text, text
    assert "facts.tables.public.t: 100 in components.json, 99 in manifest.json" in text, text
    assert "facts.tables.public.t: 99 in the DR set, 100 in its manifest" in text, text


def test_edited_component_manifest_repinned_in_the_dr_manifest_is_refused(lab, module, components):
    # the component's manifest edited (a row count) and its new hash pinned in the DR manifest
    root, refs, made = components
    dr = ok(module("dr_set", {**lab["s3"], "dest": str(root), "name": "repin", "components": refs[:2]}))
    pg_manifest = Path(made["pg"]["backup"]["path"]) / "manifest.json"
    original = pg_manifest.read_bytes()
    try:
        _edit_manifest(pg_manifest.parent, lambda m: m["facts"]["tables"].update({"public.t": 99}))
        pinned = hashlib.sha256(pg_manifest.read_bytes()).hexdigest()

        def repin(manifest):
            _pg_component(manifest)["manifest_sha256"] = pinned
            _pg_component(manifest)["facts"]["tables"]["public.t"] = 99

        _edit_manifest(Path(dr["path"]), repin)
        info = ok(module("dr_set_info", {**lab["s3"], "root": str(root), "name": "repin", "verify": False}))
        assert info["valid"] is False, info
        text = " | ".join(info["problems"])
        assert "manifest.json was changed after the set was written" in text, text
        assert f"postgresql set {made['pg']['backup']['id']} of '{DB}'" in text and "manifest_sha256" in text, text
    finally:
        pg_manifest.write_bytes(original)


def test_dr_set_without_checksum_is_accepted_with_a_warning(lab, module, two_pg_sets):
    # a DR set written before manifests carried self_sha256: accepted, with a warning; an edit that
    # disagrees with its components.json is still refused
    root, refs, old_record = two_pg_sets
    dr = ok(module("dr_set", {**lab["s3"], "dest": str(root), "name": "legacy", "components": refs}))
    _edit_manifest(Path(dr["path"]), lambda m: m.pop("self_sha256"))
    info = ok(module("dr_set_info", {**lab["s3"], "root": str(root), "name": "legacy", "verify": False}))
    assert info["valid"] is True, info
    assert info["manifest_checksum"] == "missing"
    assert "written before DR manifests carried a checksum" in json.dumps(info["warnings"]), info
    _edit_manifest(
        Path(dr["path"]), lambda m: _pg_component(m).update({k: v for k, v in old_record.items() if k != "host"})
    )
    info = ok(module("dr_set_info", {**lab["s3"], "root": str(root), "name": "legacy", "verify": False}))
    assert info["valid"] is False and info["manifest_checksum"] == "missing", info
    assert any("was edited, it differs from components.json" in p for p in info["problems"]), info
