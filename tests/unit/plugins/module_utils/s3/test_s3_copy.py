# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the copy planning helpers of _s3 (s3_snapshot, s3_restore) and of the 'objects'
validation of _backup_set; no network."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from ansible_collections.runbook.stack.plugins.module_utils import _backup_set as bs
from ansible_collections.runbook.stack.plugins.module_utils._s3 import copy_plan, errors

MD5_A = "0cc175b9c0f1b6a831c399e269772661"
MD5_B = "92eb5ffee6ae2fec3ad71c777531578f"
MULTI = "a27f7378029502bd8539e169ec82cc08-3"
MIB = 1024 * 1024


def entry(key: str, size: int = 1, etag: str = MD5_A, backup_etag: str | None = None) -> dict:
    return {"key": key, "size": size, "etag": etag, "backup_etag": backup_etag or etag}


# --- options and layout ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, word",
    [
        ((0, 5 * MIB, 5 * MIB), "concurrency"),
        ((257, 5 * MIB, 5 * MIB), "concurrency"),
        ((8, 5 * MIB - 1, 5 * MIB), "multipart_threshold"),
        ((8, 6 * 1024**3, 5 * MIB), "multipart_threshold"),
        ((8, 5 * MIB, 1024), "part_size"),
    ],
)
def test_check_copy_options_names_the_option(args, word):
    with pytest.raises(errors.S3Error, match=word):
        copy_plan.check_copy_options(*args)


def test_check_copy_options_accepts_bounds():
    copy_plan.check_copy_options(1, 5 * MIB, 5 * MIB)
    copy_plan.check_copy_options(256, 5 * 1024**3, 5 * 1024**3)


def test_part_ranges_cover_the_object_exactly():
    ranges = copy_plan.part_ranges(12 * MIB, 5 * MIB)
    assert ranges == [(0, 5 * MIB - 1), (5 * MIB, 10 * MIB - 1), (10 * MIB, 12 * MIB - 1)]
    assert copy_plan.part_ranges(5 * MIB, 5 * MIB) == [(0, 5 * MIB - 1)]


def test_part_ranges_grow_past_10000_parts_and_never_below_5_mib():
    size = 10001 * 5 * MIB
    ranges = copy_plan.part_ranges(size, 5 * MIB)
    assert len(ranges) <= copy_plan.MAX_PARTS
    assert ranges[-1][1] == size - 1
    assert all(b - a + 1 >= 5 * MIB for a, b in ranges[:-1])
    with pytest.raises(errors.S3Error):
        copy_plan.part_ranges(0, 5 * MIB)


def test_split_backup_prefix():
    assert copy_plan.split_backup_prefix("s3") == ("", "s3")
    assert copy_plan.split_backup_prefix("/backups/s3_nightly/") == ("backups", "s3_nightly")
    for bad in ("S3", "backups/3s", "x/my-kind", "", "/"):
        with pytest.raises(errors.S3Error, match="backup_prefix"):
            copy_plan.split_backup_prefix(bad)


def test_set_prefix_and_backup_key():
    assert copy_plan.set_prefix("s3", "app", "20261122T020000Z") == "s3/app/20261122T020000Z/"
    assert copy_plan.set_prefix("b/s3", "my bucket", "20261122T020000Z") == "b/s3/my%20bucket/20261122T020000Z/"
    prefix = copy_plan.set_prefix("s3", "app", "20261122T020000Z")
    assert copy_plan.backup_key(prefix, "manifest.json") == "s3/app/20261122T020000Z/objects/manifest.json"


@pytest.mark.parametrize(
    "bucket, prefix, bbucket, bprefix, overlap",
    [
        ("a", "", "b", "s3", False),  # other bucket
        ("a", "", "a", "s3", True),  # whole bucket contains the backups
        ("a", "data/", "a", "backups/s3", False),
        ("a", "s3/", "a", "s3", True),  # the source is inside the backups
        ("a", "s3/x/", "a", "s3", True),
        ("a", "s", "a", "s3", True),  # 's' is a key prefix of 's3/'
        ("a", "s3x/", "a", "s3", False),
    ],
)
def test_check_no_overlap(bucket, prefix, bbucket, bprefix, overlap):
    if overlap:
        with pytest.raises(errors.S3Error, match="overlaps"):
            copy_plan.check_no_overlap(bucket, prefix, bbucket, bprefix)
    else:
        copy_plan.check_no_overlap(bucket, prefix, bbucket, bprefix)


def test_map_key():
    assert copy_plan.map_key("tenants/a/x", "tenants/a/", "restored/") == "restored/x"
    assert copy_plan.map_key("x", "", "p/") == "p/x"
    with pytest.raises(errors.S3Error):
        copy_plan.map_key("other/x", "tenants/", "")


# --- ETag rule ----------------------------------------------------------------------------------


def test_etag_helpers():
    assert copy_plan.plain_etag('"abc"') == "abc" and copy_plan.plain_etag(None) == ""
    assert copy_plan.is_md5_etag(f'"{MD5_A}"') and not copy_plan.is_md5_etag(MULTI)


def test_same_content_rules():
    # size decides first
    assert not copy_plan.same_content(2, MD5_A, 1, [MD5_A])
    # equal to a known ETag (source or backup copy)
    assert copy_plan.same_content(1, MD5_A, 1, [MD5_A])
    assert copy_plan.same_content(1, MULTI, 1, [MD5_A, MULTI])
    # two plain MD5s that differ
    assert not copy_plan.same_content(1, MD5_B, 1, [MD5_A, MULTI])
    # not comparable: multipart vs plain, or multipart vs other multipart -> same size is enough
    assert copy_plan.same_content(1, MULTI, 1, [MD5_A])
    assert copy_plan.same_content(1, MD5_A, 1, ["ffff-2"])
    assert copy_plan.same_content(1, "", 1, [MD5_A])


# --- restore plan -------------------------------------------------------------------------------


def test_plan_missing_copies_absent_and_different_only():
    entries = [entry("p/a"), entry("p/b"), entry("p/c", size=5), entry("p/d", etag=MD5_A, backup_etag=MULTI)]
    target = {
        "p/a": (1, f'"{MD5_A}"'),  # identical
        "p/c": (4, MD5_A),  # size differs
        "p/d": (1, MULTI),  # equal to the backup copy's ETag
        "p/extra": (1, MD5_B),
    }
    plan = copy_plan.plan_restore(entries, target, "missing", "p/", "p/")
    assert [k for _e, k in plan.copy] == ["p/b", "p/c"]
    assert plan.skipped == 2 and plan.delete == [] and plan.bytes == 6


def test_plan_overwrite_copies_all_and_mirror_deletes_extras():
    entries = [entry("a"), entry("b")]
    target = {"a": (1, MD5_A), "b": (1, MD5_B), "zz": (1, MD5_A)}
    over = copy_plan.plan_restore(entries, target, "overwrite", "", "")
    assert [k for _e, k in over.copy] == ["a", "b"] and over.skipped == 0 and over.delete == []
    mirror = copy_plan.plan_restore(entries, target, "mirror", "", "")
    assert [k for _e, k in mirror.copy] == ["b"] and mirror.delete == ["zz"] and mirror.skipped == 1


def test_plan_maps_to_another_prefix():
    plan = copy_plan.plan_restore([entry("src/x"), entry("src/y")], {"dst/x": (1, MD5_A)}, "mirror", "src/", "dst/")
    assert [k for _e, k in plan.copy] == ["dst/y"] and plan.delete == []


def test_plan_unknown_mode():
    with pytest.raises(errors.S3Error, match="unknown mode 'sync'"):
        copy_plan.plan_restore([], {}, "sync", "", "")


def test_verify_restore_names_the_keys():
    entries = [entry("a"), entry("b", size=3), entry("c"), entry("d", backup_etag=MULTI)]
    after = {"a": (1, MD5_A), "b": (2, MD5_A), "d": ("1", "copied-2")}
    problems = copy_plan.verify_restore(entries, after, "", "", copied={"d": "copied-2"})
    assert problems == ["'b' has 2 bytes, the snapshot 3", "'c' is missing"]
    assert copy_plan.verify_restore([entry("a")], {"a": (1, MD5_B)}, "", "") == [
        f"'a' has ETag {MD5_B}, the snapshot {MD5_A}"
    ]


def test_snapshot_entry():
    when = dt.datetime(2026, 11, 22, 2, 0, 0, 412000, tzinfo=dt.timezone.utc)
    listed = {"Key": "k", "Size": 3, "ETag": f'"{MD5_A}"', "LastModified": when}
    e = copy_plan.snapshot_entry(listed, f'"{MULTI}"')
    assert e == {
        "key": "k",
        "size": 3,
        "etag": MD5_A,
        "backup_etag": MULTI,
        "last_modified": "2026-11-22T02:00:00.412Z",
        "content_type": None,
        "metadata": None,
    }
    with_head = copy_plan.snapshot_entry(listed, MD5_A, {"ContentType": "text/plain", "Metadata": {"a": "1"}})
    assert with_head["content_type"] == "text/plain" and with_head["metadata"] == {"a": "1"}


# --- backup sets with an 'objects' list -----------------------------------------------------------


def _manifest(objects):
    now = dt.datetime(2026, 11, 22, 2, 0, tzinfo=dt.timezone.utc)
    m = bs.build_manifest(kind="s3", source="app", backup_id="20261122T020000Z", started=now, finished=now, files=[])
    m["objects"] = objects
    return m


@pytest.mark.parametrize(
    "objects, word",
    [
        ({"k": 1}, "not a list"),
        ([{"key": "a"}], "lacks key/size"),
        ([{"key": "", "size": 1}], "invalid key"),
        ([{"key": "a", "size": -1}], "invalid size"),
        ([{"key": "a", "size": True}], "invalid size"),
    ],
)
def test_check_manifest_rejects_bad_objects(objects, word):
    with pytest.raises(bs.BackupSetError, match=word):
        bs.check_manifest(_manifest(objects), "s3", "app", "20261122T020000Z")


def test_local_set_with_objects_checks_each_object(tmp_path):
    rel = tmp_path / "s3" / "app" / "20261122T020000Z"
    (rel / "objects" / "d").mkdir(parents=True)
    (rel / "objects" / "d" / "x").write_bytes(b"abc")
    manifest = _manifest([{"key": "d/x", "size": 3}, {"key": "manifest.json", "size": 2}])
    (rel / "manifest.json").write_text(json.dumps(manifest))
    (only,) = bs.list_sets(bs.LocalStorage(str(tmp_path)))
    assert not only.valid and only.error == "object 'manifest.json' listed in the manifest is missing"
    (rel / "objects" / "manifest.json").write_bytes(b"{}")
    (again,) = bs.list_sets(bs.LocalStorage(str(tmp_path)))
    assert again.valid, again.error
    (rel / "objects" / "d" / "x").write_bytes(b"ab")
    (third,) = bs.list_sets(bs.LocalStorage(str(tmp_path)))
    assert third.error == "size mismatch on object 'd/x': manifest 3 bytes, found 2"
