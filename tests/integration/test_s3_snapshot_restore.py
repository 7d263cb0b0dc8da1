# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration tests of s3_snapshot and s3_restore against the lab's S3 server (SeaweedFS)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import COLLECTIONS_PATH, PYTHON, module_env
from test_s3_modules import _keys, conn, no_traceback
from test_s3_modules import _s3 as lab_client

from ansible_collections.runbook.stack.plugins.module_utils import _backup_set as bs
from ansible_collections.runbook.stack.plugins.module_utils import _s3

MIB = 1024 * 1024
SMALL_MP = dict(multipart_threshold=5 * MIB, part_size=5 * MIB)
WEIRD = {
    "docs/with space.txt": (b"space " * 10, "text/plain", {"owner": "ops"}),
    "docs/ünïcödé-日本.bin": (b"\x00\x01unicode", "application/x-custom", {"note": "utf8-key"}),
    "manifest.json": (b'{"not": "the manifest"}', "application/json", {}),
    "img/a.png": (b"png" * 100, "image/png", {"camera": "x100", "shot": "7"}),
    "img/b.png": (b"other" * 50, "image/png", {}),
}


@pytest.fixture(scope="module")
def cli(lab):
    return lab_client(lab)


@pytest.fixture
def buckets(lab, cli):
    """new_bucket() makes a fresh bucket; every one is emptied and removed after the test."""
    made: list[str] = []

    def new_bucket() -> str:
        name = f"rbsn-{uuid.uuid4().hex[:10]}"
        cli.create_bucket(Bucket=name)
        made.append(name)
        return name

    yield new_bucket
    for name in made:
        keys = sorted(_keys(cli, name))
        for i in range(0, len(keys), 1000):
            cli.delete_objects(Bucket=name, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True})
        for upload in cli.list_multipart_uploads(Bucket=name).get("Uploads", []):
            cli.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        cli.delete_bucket(Bucket=name)


def fill(cli: Any, bucket: str, big: bytes | None = None, prefix: str = "") -> None:
    for key, (body, ctype, meta) in WEIRD.items():
        cli.put_object(Bucket=bucket, Key=prefix + key, Body=body, ContentType=ctype, Metadata=meta)
    if big is not None:
        cli.put_object(
            Bucket=bucket, Key=prefix + "big/12mib.bin", Body=big, ContentType="video/mp4", Metadata={"m": "1"}
        )


def state(cli: Any, bucket: str, prefix: str = "") -> dict[str, tuple[str, str, dict[str, str]]]:
    """{key: (sha256 of the content, content type, user metadata)} of every object under prefix."""
    out = {}
    for key in sorted(_keys(cli, bucket, prefix)):
        obj = cli.get_object(Bucket=bucket, Key=key)
        out[key] = (hashlib.sha256(obj["Body"].read()).hexdigest(), obj["ContentType"], obj["Metadata"])
    return out


def listing(cli: Any, bucket: str) -> dict[str, tuple[int, str]]:
    return {
        o["Key"]: (o["Size"], o["ETag"])
        for page in cli.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    }


def storage(lab: dict[str, Any], url: str) -> bs.Storage:
    s3 = lab["s3"]
    info = _s3.conn_info(
        dict(endpoint_url=s3["endpoint_url"], access_key=s3["access_key"], secret_key=s3["secret_key"])
    )
    return bs.open_storage(url, s3=info)


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result["_rc"] == 0 and not result.get("failed"), result.get("msg") or result["_stderr"]
    return result


def failed(result: dict[str, Any], *words: str) -> str:
    assert result.get("failed") is True and result["_rc"] != 0, result
    no_traceback(result)
    for word in words:
        assert word in result["msg"], result["msg"]
    return result["msg"]


# --- round trip ---------------------------------------------------------------------------------


def test_round_trip_snapshot_damage_restore(lab, module, cli, buckets):
    src, bak = buckets(), buckets()
    big = os.urandom(12 * MIB)
    fill(cli, src, big)
    original = state(cli, src)

    # check mode: counts, nothing written
    planned = ok(module("s3_snapshot", conn(lab, bucket=src, backup_bucket=bak, **SMALL_MP), check_mode=True))
    assert planned["changed"] is True and planned["objects"] == 6 and planned["multipart_objects"] == 1
    assert planned["bytes"] == sum(len(v[0]) for v in WEIRD.values()) + len(big)
    assert planned["backup_id"] == "" and _keys(cli, bak) == set()
    assert [s["step"] for s in planned["steps"]] == ["list the source"]
    assert planned["backup_set"] == {
        "kind": "s3",
        "source": src,
        "backup_id": None,
        "root": f"s3://{bak}",
        "location": None,
        "started": None,
        "finished": None,
        "size_bytes": None,
        "file_count": None,
    }

    snap = ok(module("s3_snapshot", conn(lab, bucket=src, backup_bucket=bak, **SMALL_MP)))
    bid = snap["backup_id"]
    assert snap["changed"] is True and snap["objects"] == 6 and snap["multipart_objects"] == 1
    assert snap["location"] == f"s3://{bak}/s3/{src}/{bid}"
    assert [s["step"] for s in snap["steps"]] == [
        "list the source",
        "allocate the set id",
        "server-side copies",
        "write manifest.json",
    ]
    assert all(s["duration_s"] >= 0 for s in snap["steps"]), snap["steps"]
    keys = _keys(cli, bak)
    set_prefix = f"s3/{src}/{bid}/"
    assert keys == {f"{set_prefix}manifest.json"} | {f"{set_prefix}objects/{k}" for k in original}
    # the copies keep content, content type and metadata; the multipart copy has several parts
    assert state(cli, bak, f"{set_prefix}objects/") == {f"{set_prefix}objects/{k}": v for k, v in original.items()}
    big_etag = cli.head_object(Bucket=bak, Key=f"{set_prefix}objects/big/12mib.bin")["ETag"]
    assert big_etag.strip('"').endswith("-3")

    manifest = json.loads(cli.get_object(Bucket=bak, Key=f"{set_prefix}manifest.json")["Body"].read())
    assert manifest["kind"] == "s3" and manifest["source"] == src and manifest["files"] == []
    assert [o["key"] for o in manifest["objects"]] == sorted(original)
    by_key = {o["key"]: o for o in manifest["objects"]}
    assert by_key["big/12mib.bin"]["size"] == 12 * MIB and by_key["big/12mib.bin"]["backup_etag"].endswith("-3")
    assert manifest["facts"]["object_count"] == 6 and manifest["facts"]["total_bytes"] == planned["bytes"]
    assert snap["backup_set"] == {
        "kind": "s3",
        "source": src,
        "backup_id": bid,
        "root": f"s3://{bak}",
        "location": snap["location"],
        "started": manifest["started"],
        "finished": manifest["finished"],
        "size_bytes": planned["bytes"],
        "file_count": 6,
    }

    # a regular backup set: listed valid on the s3:// root like backup_info does
    (found,) = bs.list_sets(storage(lab, f"s3://{bak}"))
    assert (found.kind, found.source, found.backup_id, found.valid) == ("s3", src, bid, True)

    # damage: delete, overwrite (same size and other size), add extras
    cli.delete_object(Bucket=src, Key="docs/with space.txt")
    cli.delete_object(Bucket=src, Key="big/12mib.bin")
    cli.put_object(Bucket=src, Key="img/a.png", Body=b"PNG" * 100, ContentType="image/png")
    cli.put_object(Bucket=src, Key="docs/ünïcödé-日本.bin", Body=b"shorter")
    cli.put_object(Bucket=src, Key="extra/stray.txt", Body=b"stray")
    before_src, before_bak = listing(cli, src), listing(cli, bak)

    preview = ok(module("s3_restore", conn(lab, bucket=src, backup_bucket=bak, **SMALL_MP), check_mode=True))
    assert preview["changed"] is True and preview["would_copy"] == 4 and preview["would_delete"] == 0
    assert sorted(preview["sample"]["to_copy"]) == sorted(
        ["docs/with space.txt", "big/12mib.bin", "img/a.png", "docs/ünïcödé-日本.bin"]
    )
    assert preview["copied"] == 0 and listing(cli, src) == before_src and listing(cli, bak) == before_bak
    assert [s["step"] for s in preview["steps"]] == ["find the set and check its objects", "list the target and plan"]

    restored = ok(module("s3_restore", conn(lab, bucket=src, backup_bucket=bak, **SMALL_MP)))
    assert restored["changed"] is True and restored["backup_id"] == bid
    assert restored["copied"] == 4 and restored["skipped_objects"] == 2 and restored["verified"] == 6
    assert restored["kept"] == 2 and restored["keep_prefix"] == f"pre-restore-{bid}/"  # the 2 overwritten
    assert [s["step"] for s in restored["steps"]] == [
        "find the set and check its objects",
        "list the target and plan",
        "keep what is replaced or deleted, and check the copies",
        "server-side copies from the set",
        "verify the target against the manifest",
    ]
    after = state(cli, src)
    assert after.pop("extra/stray.txt")[0] == hashlib.sha256(b"stray").hexdigest()  # missing mode keeps extras
    assert {k for k in after if k.startswith("pre-restore-")} == {
        f"pre-restore-{bid}/img/a.png",
        f"pre-restore-{bid}/docs/ünïcödé-日本.bin",
    }
    assert {k: v for k, v in after.items() if not k.startswith("pre-restore-")} == original

    again = ok(module("s3_restore", conn(lab, bucket=src, backup_bucket=bak, **SMALL_MP)))
    assert (
        again["changed"] is False and again["copied"] == 0 and again["skipped_objects"] == 6 and again["verified"] == 6
    )
    assert listing(cli, bak) == before_bak  # a restore never writes into the backups


def test_modes_overwrite_and_mirror(lab, module, cli, buckets):
    src, bak = buckets(), buckets()
    fill(cli, src)
    original = state(cli, src)
    ok(module("s3_snapshot", conn(lab, bucket=src, backup_bucket=bak)))
    cli.put_object(Bucket=src, Key="extra/one", Body=b"1")
    cli.put_object(Bucket=src, Key="extra/two", Body=b"2")
    cli.put_object(Bucket=src, Key="img/b.png", Body=b"x" * 250)  # same size, other content

    before = listing(cli, src)
    refused = module("s3_restore", conn(lab, bucket=src, backup_bucket=bak, mode="mirror"))
    failed(refused, "allow_delete")
    assert listing(cli, src) == before

    over = ok(module("s3_restore", conn(lab, bucket=src, backup_bucket=bak, mode="overwrite", keep_previous=False)))
    assert over["changed"] is True and over["copied"] == len(original) and over["deleted"] == 0
    assert over["kept"] == 0 and over["keep_prefix"] is None  # keep_previous: false keeps nothing
    assert _keys(cli, src) == set(original) | {"extra/one", "extra/two"}

    cli.put_object(Bucket=src, Key="img/b.png", Body=b"y" * 250)
    mirror_args = conn(lab, bucket=src, backup_bucket=bak, mode="mirror", allow_delete=True, keep_previous=False)
    plan = ok(module("s3_restore", mirror_args, True))
    assert (plan["would_copy"], plan["would_delete"], plan["deleted"]) == (1, 2, 0)
    assert plan["sample"]["to_delete"] == ["extra/one", "extra/two"] and listing(cli, src) != {}
    mirror = ok(module("s3_restore", mirror_args))
    assert mirror["changed"] is True and mirror["copied"] == 1 and mirror["deleted"] == 2
    assert state(cli, src) == original
    second = ok(module("s3_restore", mirror_args))
    assert second["changed"] is False and second["deleted"] == 0


def test_mirror_restore_keeps_what_it_replaces_and_deletes(lab, module, cli, buckets):
    """The default of dr_restore: written-after-the-snapshot objects survive under pre-restore-<id>/."""
    src, bak = buckets(), buckets()
    fill(cli, src)
    original = state(cli, src)
    bid = ok(module("s3_snapshot", conn(lab, bucket=src, backup_bucket=bak, **SMALL_MP)))["backup_id"]
    keep = f"pre-restore-{bid}/"
    late = {
        "uploads/late 1.bin": (os.urandom(3000), "application/octet-stream", {"by": "app"}),
        "uploads/video.mp4": (os.urandom(6 * MIB), "video/mp4", {}),  # a multipart copy at SMALL_MP
        "img/b.png": (b"x" * 250, "image/png", {"edited": "yes"}),  # same size, other content
        "docs/with space.txt": (b"changed after the backup", "text/plain", {}),
    }
    for key, (body, ctype, meta) in late.items():
        cli.put_object(Bucket=src, Key=key, Body=body, ContentType=ctype, Metadata=meta)
    before, before_bak = state(cli, src), listing(cli, bak)
    args = conn(lab, bucket=src, backup_bucket=bak, mode="mirror", allow_delete=True, **SMALL_MP)

    # check mode: the keep is predicted (prefix, count, keys, diff) and nothing is touched
    plan = ok(module("s3_restore", args, check_mode=True, diff=True))
    assert (plan["would_copy"], plan["would_delete"], plan["would_keep"]) == (2, 2, 4)
    assert plan["keep_prefix"] == keep and plan["kept_location"] == f"s3://{src}/{keep}"
    assert sorted(plan["sample"]["to_keep"]) == sorted(late) and plan["kept"] == 0
    assert f"{keep}uploads/video.mp4 ({6 * MIB} bytes, kept)" in plan["diff"]["after"]
    assert "img/b.png (250 bytes)" in plan["diff"]["before"]
    assert state(cli, src) == before and listing(cli, bak) == before_bak

    restored = ok(module("s3_restore", args))
    assert (restored["copied"], restored["deleted"], restored["kept"], restored["verified"]) == (2, 2, 4, 5)
    assert restored["keep_prefix"] == keep and restored["kept_location"] == f"s3://{src}/{keep}"
    after = state(cli, src)
    live = {k: v for k, v in after.items() if not k.startswith(keep)}
    kept = {k[len(keep) :]: v for k, v in after.items() if k.startswith(keep)}
    assert live == original  # the bucket is the snapshot again
    assert kept == {k: before[k] for k in late}  # same bytes, content type and metadata as before
    assert listing(cli, bak) == before_bak

    # a rerun finds the bucket restored: no change, the kept copies neither nested nor removed
    again = ok(module("s3_restore", args))
    assert again["changed"] is False and again["kept"] == 0 and again["keep_prefix"] is None
    assert state(cli, src) == after

    # a later restore of the same set keeps under the next free prefix, the first copies untouched
    cli.put_object(Bucket=src, Key="uploads/later.txt", Body=b"after the first restore")
    third = ok(module("s3_restore", args))
    assert third["keep_prefix"] == f"pre-restore-{bid}.2/" and third["kept"] == 1 and third["deleted"] == 1
    final = state(cli, src)
    assert {k: v for k, v in final.items() if k.startswith(keep)} == {k: after[k] for k in after if k.startswith(keep)}
    assert final[f"pre-restore-{bid}.2/uploads/later.txt"][0] == hashlib.sha256(b"after the first restore").hexdigest()

    # the kept areas are not live data: a snapshot of the bucket and retention leave them out ...
    snap = ok(module("s3_snapshot", conn(lab, bucket=src, backup_bucket=bak)))
    assert snap["objects"] == len(original)
    aged = ok(module("s3_retention", conn(lab, bucket=src, older_than_days=0), check_mode=True))
    assert aged["matched"] == len(original)
    # ... unless named on purpose: retention with the prefix pre-restore- expires them
    expired = ok(module("s3_retention", conn(lab, bucket=src, prefix="pre-restore-", older_than_days=0)))
    assert expired["deleted"] == 5 and state(cli, src) == original


def test_snapshot_of_prefix_restored_to_another_bucket_and_prefix(lab, module, cli, buckets):
    src, dst = buckets(), buckets()
    fill(cli, src, prefix="tenants/a/")
    cli.put_object(Bucket=src, Key="tenants/b/other", Body=b"not in the snapshot")
    # backups in the source bucket itself, outside the snapshot prefix
    snap = ok(
        module("s3_snapshot", conn(lab, bucket=src, prefix="tenants/a/", backup_bucket=src, backup_prefix="bk/s3"))
    )
    assert snap["objects"] == len(WEIRD) and snap["location"].startswith(f"s3://{src}/bk/s3/{src}/")
    (found,) = bs.list_sets(storage(lab, f"s3://{src}/bk"))
    assert found.valid and found.manifest["facts"]["prefix"] == "tenants/a/"

    r = ok(
        module(
            "s3_restore",
            conn(lab, bucket=dst, source_bucket=src, prefix="copy/", backup_bucket=src, backup_prefix="bk/s3"),
        )
    )
    assert r["copied"] == len(WEIRD) and r["verified"] == len(WEIRD)
    want = {k.replace("tenants/a/", "copy/", 1): v for k, v in state(cli, src, "tenants/a/").items()}
    assert state(cli, dst) == want
    # the same bucket with the default prefix: keys unchanged, already there
    same = ok(module("s3_restore", conn(lab, bucket=src, backup_bucket=src, backup_prefix="bk/s3")))
    assert same["changed"] is False and same["skipped_objects"] == len(WEIRD)


def test_backup_root_names_the_sets_of_the_deprecated_options(lab, module, cli, buckets):
    src, dst = buckets(), buckets()
    fill(cli, src, prefix="tenants/a/")
    old = module("s3_snapshot", conn(lab, bucket=src, prefix="tenants/a/", backup_bucket=src, backup_prefix="bk/s3"))
    assert "backup_root: s3://" + src + "/bk" in json.dumps(ok(old).get("deprecations")), old
    new = ok(module("s3_snapshot", conn(lab, bucket=src, prefix="tenants/a/", backup_root=f"s3://{src}/bk")))
    assert not new.get("deprecations"), new
    assert new["location"] == f"s3://{src}/bk/s3/{src}/{new['backup_id']}"
    assert new["backup_set"]["root"] == f"s3://{src}/bk" and new["backup_set"]["location"] == new["location"]
    assert [s.backup_id for s in bs.list_sets(storage(lab, new["backup_set"]["root"]))] == [
        new["backup_id"],
        old["backup_id"],
    ]

    # the returned reference is what a restore takes: root, source and id
    ref = new["backup_set"]
    r = ok(
        module(
            "s3_restore",
            conn(lab, bucket=dst, backup_root=ref["root"], source=ref["source"], backup_id=ref["backup_id"]),
        )
    )
    assert r["backup_id"] == ref["backup_id"] and r["location"] == ref["location"] and r["verified"] == len(WEIRD)
    assert not r.get("deprecations"), r
    assert state(cli, dst) == state(cli, src, "tenants/a/")

    failed(module("s3_restore", conn(lab, bucket=dst, backup_root=f"/tmp/{src}")), "backup_root", "s3://bucket/prefix")
    failed(module("s3_snapshot", conn(lab, bucket=src, backup_root=f"s3://{src}", backup_bucket=src)), "backup_root")
    failed(module("s3_snapshot", conn(lab, bucket=src, backup_root=f"s3://{src}")), "overlaps")


# --- damaged sets are refused before the target is touched ----------------------------------------


def test_corrupt_manifest_and_missing_object_are_refused(lab, module, cli, buckets):
    src, bak = buckets(), buckets()
    fill(cli, src)
    bid = ok(module("s3_snapshot", conn(lab, bucket=src, backup_bucket=bak)))["backup_id"]
    cli.delete_object(Bucket=src, Key="img/a.png")  # damage the restore would repair
    before = listing(cli, src)
    mkey = f"s3/{src}/{bid}/manifest.json"
    good_manifest = cli.get_object(Bucket=bak, Key=mkey)["Body"].read()

    cli.put_object(Bucket=bak, Key=mkey, Body=good_manifest[:-20])
    r = module("s3_restore", conn(lab, bucket=src, backup_bucket=bak, backup_id=bid))
    failed(r, bid, "not valid", "JSON")
    r = module("s3_restore", conn(lab, bucket=src, backup_bucket=bak))  # latest: no valid set left
    failed(r, "no valid s3 backup set", bid)
    assert listing(cli, src) == before

    cli.put_object(Bucket=bak, Key=mkey, Body=good_manifest)
    cli.delete_object(Bucket=bak, Key=f"s3/{src}/{bid}/objects/img/b.png")
    r = module("s3_restore", conn(lab, bucket=src, backup_bucket=bak, backup_id=bid))
    failed(r, bid, "img/b.png", "missing")
    assert listing(cli, src) == before
    (found,) = bs.list_sets(storage(lab, f"s3://{bak}"))
    assert not found.valid and "img/b.png" in found.error


def _start_module(name: str, args: dict[str, Any], tmp: Path) -> subprocess.Popen:
    payload = {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": False, "_ansible_tmpdir": str(tmp)}}
    args_file = tmp / "args.json"
    args_file.write_text(json.dumps(payload))
    return subprocess.Popen(
        [str(PYTHON), "-m", f"ansible_collections.runbook.stack.plugins.modules.{name}", str(args_file)],
        cwd=tmp,
        env=module_env({"PYTHONPATH": str(COLLECTIONS_PATH)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_killed_snapshot_leaves_no_manifest_and_an_incomplete_set(lab, cli, buckets):
    src, bak = buckets(), buckets()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: cli.put_object(Bucket=src, Key=f"k/{i:05d}", Body=b"s" * 64), range(3000)))
    with tempfile.TemporaryDirectory() as tmp:
        proc = _start_module("s3_snapshot", conn(lab, bucket=src, backup_bucket=bak, concurrency=1), Path(tmp))
        try:
            deadline = time.monotonic() + 60
            copied = 0
            while time.monotonic() < deadline and proc.poll() is None:
                copied = cli.list_objects_v2(Bucket=bak, MaxKeys=50).get("KeyCount", 0)
                if copied >= 20:
                    break
                time.sleep(0.05)
            assert proc.poll() is None, "the snapshot finished before it could be killed"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
    keys = _keys(cli, bak)
    assert 20 <= len(keys) < 3000
    assert not any(k.endswith("/manifest.json") for k in keys)
    (partial,) = bs.list_sets(storage(lab, f"s3://{bak}"))
    assert not partial.valid and partial.incomplete and "no manifest" in partial.error


# --- bad input ----------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_input_fails_clearly(lab, module, cli, buckets):
    src, bak = buckets(), buckets()
    fill(cli, src)
    secret = lab["s3"]["secret_key"]

    started = time.monotonic()
    r = module(
        "s3_snapshot", conn(lab, endpoint_url=f"http://127.0.0.1:{_closed_port()}", bucket=src, backup_bucket=bak)
    )
    failed(r, "unreachable")
    r = module(
        "s3_restore", conn(lab, endpoint_url="http://192.0.2.1:9", connect_timeout=1, bucket=src, backup_bucket=bak)
    )
    failed(r, "cannot restore")
    assert time.monotonic() - started < 60

    wrong = "wrong-secret-value-xyz"
    for name, args in (
        ("s3_snapshot", dict(bucket=src, backup_bucket=bak)),
        ("s3_restore", dict(bucket=src, backup_bucket=bak)),
    ):
        r = module(name, conn(lab, secret_key=wrong, **args))
        failed(r, "access denied")
        assert wrong not in r["_stdout"].replace('"secret_key": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"', "")
        assert wrong not in r["_stderr"] and secret not in r["msg"]

    failed(
        module("s3_snapshot", conn(lab, bucket="rbsn-no-such-bucket", backup_bucket=bak)),
        "rbsn-no-such-bucket",
        "does not exist",
    )
    failed(
        module("s3_snapshot", conn(lab, bucket=src, backup_bucket="rbsn-no-such-bak")),
        "rbsn-no-such-bak",
        "does not exist",
    )
    failed(module("s3_restore", conn(lab, bucket="rbsn-no-such-tgt", source_bucket=src, backup_bucket=bak)), "no valid")
    failed(module("s3_snapshot", conn(lab, endpoint_url="ftp://host", bucket=src, backup_bucket=bak)), "endpoint_url")
    failed(
        module("s3_restore", conn(lab, bucket=src, backup_bucket=bak, mode="sync")),
        "mode",
        "missing, overwrite, mirror",
    )
    failed(
        module("s3_snapshot", conn(lab, bucket=src, backup_bucket=bak, backup_prefix="Backups/S3")),
        "backup_prefix",
        "'S3'",
    )
    failed(module("s3_restore", conn(lab, bucket=src, backup_bucket=bak, backup_prefix="x/9")), "backup_prefix")
    failed(module("s3_snapshot", conn(lab, bucket=src, backup_bucket=src)), "overlaps")
    failed(module("s3_snapshot", conn(lab, bucket=src, backup_bucket=bak, concurrency=0)), "concurrency")
    failed(
        module("s3_snapshot", conn(lab, bucket=src, backup_bucket=bak, multipart_threshold=1024)), "multipart_threshold"
    )
    assert _keys(cli, bak) == set()

    # a restore target that does not exist fails before anything is copied
    ok(module("s3_snapshot", conn(lab, bucket=src, backup_bucket=bak)))
    failed(
        module("s3_restore", conn(lab, bucket="rbsn-no-such-tgt", source_bucket=src, backup_bucket=bak)),
        "rbsn-no-such-tgt",
        "does not exist",
    )
