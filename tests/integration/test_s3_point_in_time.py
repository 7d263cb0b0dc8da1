# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration tests of s3_restore_to_time against the lab's S3 server (SeaweedFS), on versioned
buckets of their own: writes, overwrites and deletes around two times T1 < T2, restores to each."""

from __future__ import annotations

import datetime as dt
import math
import time
import uuid
from typing import Any

import pytest
from test_s3_modules import _s3, conn, no_traceback

UTC = dt.timezone.utc


def iso(when: dt.datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_second() -> dt.datetime:
    """The current whole second, once it has passed: everything written before the call was last
    modified at or before it, everything written after the call is later."""
    second = math.floor(time.time())
    time.sleep(second + 1.05 - time.time())
    return dt.datetime.fromtimestamp(second, UTC)


def wipe(cli: Any, bucket: str) -> None:
    """Delete every version and delete marker, then the bucket."""
    for page in cli.get_paginator("list_object_versions").paginate(Bucket=bucket):
        doomed = [
            {"Key": e["Key"], "VersionId": e["VersionId"]}
            for e in (page.get("Versions") or []) + (page.get("DeleteMarkers") or [])
        ]
        if doomed:
            cli.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
    for page in cli.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents") or []]
        if keys:
            cli.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    cli.delete_bucket(Bucket=bucket)


def contents(cli: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    """{key: body} of the current objects under ``prefix``."""
    out = {}
    for page in cli.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents") or []:
            if not o["Key"].endswith("/"):
                out[o["Key"]] = cli.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return out


def history_size(cli: Any, bucket: str) -> int:
    """Versions plus delete markers of the whole bucket (any write adds one)."""
    count = 0
    for page in cli.get_paginator("list_object_versions").paginate(Bucket=bucket):
        count += len(page.get("Versions") or []) + len(page.get("DeleteMarkers") or [])
    return count


@pytest.fixture(scope="module")
def cli(lab):
    return _s3(lab)


@pytest.fixture
def new_bucket(cli):
    """make(versioned) -> a fresh bucket name; every bucket made is removed afterwards."""
    made = []

    def make(versioned: bool = True) -> str:
        name = f"rbpitr-{uuid.uuid4().hex[:8]}"
        cli.create_bucket(Bucket=name)
        made.append(name)
        if versioned:
            cli.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    yield make
    for name in made:
        wipe(cli, name)


AT_T1 = {"app/a": b"a1", "app/b": b"b1", "app/sub/d": b"d1"}
AT_T2 = {"app/a": b"a2", "app/c": b"c2", "app/e": b"e2", "app/sub/d": b"d1"}
NOW = {"app/a": b"a3", "app/b": b"b3", "app/c": b"c2", "app/f": b"f3"}


@pytest.fixture
def scenario(cli, new_bucket):
    """A versioned bucket with a history around T0 (empty bucket) < T1 < T2; returns (bucket, T0, T1, T2)."""
    bucket = new_bucket()
    t0 = next_second()

    def put(key: str, body: bytes, **extra: Any) -> None:
        cli.put_object(Bucket=bucket, Key=key, Body=body, **extra)

    put("app/a", b"a1", ContentType="text/plain", Metadata={"rev": "1"})
    put("app/b", b"b1")
    put("app/c", b"c1")
    cli.delete_object(Bucket=bucket, Key="app/c")  # gone before T1
    put("app/sub/d", b"d1")
    put("other/x", b"x1")
    t1 = next_second()
    put("app/a", b"a2", ContentType="application/json", Metadata={"rev": "2"})
    cli.delete_object(Bucket=bucket, Key="app/b")
    put("app/c", b"c2")  # back again
    put("app/e", b"e2")  # new
    put("other/x", b"x2")
    t2 = next_second()
    put("app/a", b"a3", ContentType="text/html", Metadata={"rev": "3"})
    put("app/b", b"b3")
    cli.delete_object(Bucket=bucket, Key="app/e")
    put("app/f", b"f3")
    cli.delete_object(Bucket=bucket, Key="app/sub/d")
    put("other/x", b"x3")
    assert contents(cli, bucket, "app/") == NOW
    return bucket, t0, t1, t2


def restore(module, lab, bucket: str, when: dt.datetime | str, check_mode: bool = False, diff: bool = False, **kw: Any):
    target = iso(when) if isinstance(when, dt.datetime) else when
    args = conn(lab, bucket=bucket, target_time=target, **kw)
    return module("s3_restore_to_time", args, check_mode=check_mode, diff=diff)


def test_restore_to_t1_then_t2(lab, module, cli, scenario):
    bucket, t0, t1, t2 = scenario
    before = history_size(cli, bucket)

    # check mode: the plan, nothing written (not even a version or a delete marker)
    r = restore(module, lab, bucket, t1, check_mode=True, diff=True, prefix="app/")
    assert r["_rc"] == 0, r
    chosen = {p["key"]: p["at_target_time"] for p in r["plan"]}
    assert r["diff"]["after"].splitlines()[0] == (
        f"app/a (version {chosen['app/a']['version_id']} of {chosen['app/a']['last_modified']}, 2 bytes)"
    )
    assert "app/c (absent)" in r["diff"]["after"] and "app/c (version" in r["diff"]["before"]
    assert r["changed"] is True
    assert (r["would_copy"], r["would_delete"], r["copied"], r["deleted"]) == (3, 2, 0, 0)
    assert r["sample"] == {"to_copy": ["app/a", "app/b", "app/sub/d"], "to_delete": ["app/c", "app/f"]}
    assert r["target_time"] == iso(t1) and r["versioning"] == "Enabled"
    # the prefix's newest write at or before T1, and its newest write of all (after T2)
    assert iso(t0) < r["recovery_point"] <= iso(t1), r
    assert r["latest_write"] > iso(t2), r
    plan = {p["key"]: p for p in r["plan"]}
    assert plan["app/a"]["action"] == "copy" and plan["app/a"]["at_target_time"]["size"] == 2
    assert plan["app/c"]["action"] == "delete" and plan["app/c"]["at_target_time"]["delete_marker"] is True
    assert plan["app/f"]["at_target_time"] is None  # written after T1
    assert history_size(cli, bucket) == before
    assert contents(cli, bucket, "app/") == NOW

    # the same plan with one entry per listing request (pagination inside a key's versions)
    paged = restore(module, lab, bucket, t1, check_mode=True, prefix="app/", page_size=1)
    assert paged["_rc"] == 0, paged
    assert (paged["would_copy"], paged["would_delete"], paged["sample"]) == (3, 2, r["sample"])
    assert (paged["versions"], paged["delete_markers"]) == (r["versions"], r["delete_markers"])

    # real run: exactly the state at T1 under app/, other/ untouched
    r = restore(module, lab, bucket, t1, prefix="app/")
    assert r["_rc"] == 0, r
    assert (r["changed"], r["copied"], r["deleted"], r["verified"]) == (True, 3, 2, 6)
    assert contents(cli, bucket, "app/") == AT_T1
    assert contents(cli, bucket, "other/") == {"other/x": b"x3"}
    head = cli.head_object(Bucket=bucket, Key="app/a")
    assert (head["ContentType"], head["Metadata"]) == ("text/plain", {"rev": "1"})
    after_first = history_size(cli, bucket)
    assert after_first == before + 5  # 3 copies, 2 delete markers: nothing removed

    # idempotent
    again = restore(module, lab, bucket, t1, prefix="app/")
    assert again["_rc"] == 0, again
    assert (again["changed"], again["would_copy"], again["would_delete"], again["unchanged"]) == (False, 0, 0, 6)
    assert history_size(cli, bucket) == after_first

    # forward to T2: the restore to T1 is itself history, T2 is still reachable
    r = restore(module, lab, bucket, t2, prefix="app/")
    assert r["_rc"] == 0, r
    assert (r["copied"], r["deleted"]) == (3, 1)
    assert r["sample"] == {"to_copy": ["app/a", "app/c", "app/e"], "to_delete": ["app/b"]}
    assert contents(cli, bucket, "app/") == AT_T2
    head = cli.head_object(Bucket=bucket, Key="app/a")
    assert (head["ContentType"], head["Metadata"]) == ("application/json", {"rev": "2"})
    assert contents(cli, bucket, "other/") == {"other/x": b"x3"}


def test_whole_bucket_to_t1(lab, module, cli, scenario):
    bucket, _t0, t1, _t2 = scenario
    r = restore(module, lab, bucket, t1)
    assert r["_rc"] == 0, r
    assert r["prefix"] == ""
    assert contents(cli, bucket) == AT_T1 | {"other/x": b"x1"}


def test_restore_before_any_write_deletes_everything_under_the_prefix(lab, module, cli, scenario):
    """Before the first write the prefix was empty: every key goes (as a delete marker, undoable)."""
    bucket, t0, t1, _t2 = scenario
    r = restore(module, lab, bucket, t0, prefix="app/")
    assert r["_rc"] == 0, r
    assert (r["would_delete"], r["would_copy"]) == (4, 0)
    assert contents(cli, bucket, "app/") == {}
    assert contents(cli, bucket, "other/") == {"other/x": b"x3"}
    back = restore(module, lab, bucket, t1, prefix="app/")  # nothing was lost
    assert back["_rc"] == 0, back
    assert contents(cli, bucket, "app/") == AT_T1


def in_one_second(steps) -> dt.datetime:
    """Run ``steps`` within one whole second (retried when it straddles one); that second."""
    for _attempt in range(5):
        time.sleep(max(0.0, math.floor(time.time()) + 1.02 - time.time()))
        second = math.floor(time.time())
        steps()
        if math.floor(time.time()) == second:
            return dt.datetime.fromtimestamp(second, UTC)
    raise AssertionError("could not run the steps within one second")


def test_version_and_delete_marker_in_the_same_second(lab, module, cli, new_bucket):
    """Entries of one second are ordered by the server's listing, not by their (equal) times."""
    bucket = new_bucket()

    def put_then_delete() -> None:
        cli.put_object(Bucket=bucket, Key="z/gone", Body=b"1")
        cli.delete_object(Bucket=bucket, Key="z/gone")
        cli.put_object(Bucket=bucket, Key="z/kept", Body=b"old")
        cli.delete_object(Bucket=bucket, Key="z/kept")
        cli.put_object(Bucket=bucket, Key="z/kept", Body=b"new")

    second = in_one_second(put_then_delete)
    next_second()
    cli.put_object(Bucket=bucket, Key="z/gone", Body=b"later")
    cli.put_object(Bucket=bucket, Key="z/kept", Body=b"later")
    r = restore(module, lab, bucket, second)
    assert r["_rc"] == 0, r
    assert contents(cli, bucket) == {"z/kept": b"new"}


def test_multipart_copy_of_a_large_version(lab, module, cli, new_bucket):
    bucket = new_bucket()
    big = bytes(range(256)) * (24 * 1024 + 7)  # about 6 MiB
    cli.put_object(Bucket=bucket, Key="big", Body=big, ContentType="application/x-big", Metadata={"k": "v"})
    t1 = next_second()
    cli.put_object(Bucket=bucket, Key="big", Body=b"small now")
    r = restore(module, lab, bucket, t1, multipart_threshold=5 * 1024 * 1024, part_size=5 * 1024 * 1024)
    assert r["_rc"] == 0, r
    assert (r["copied"], r["bytes"], r["verified"]) == (1, len(big), 1)
    got = cli.get_object(Bucket=bucket, Key="big")
    assert got["Body"].read() == big
    assert (got["ContentType"], got["Metadata"]) == ("application/x-big", {"k": "v"})


def test_null_versions_make_older_times_unknown(lab, module, cli, new_bucket):
    bucket = new_bucket(versioned=False)
    cli.put_object(Bucket=bucket, Key="k", Body=b"unversioned")
    written = next_second()
    cli.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    cli.put_object(Bucket=bucket, Key="k", Body=b"versioned")
    before = history_size(cli, bucket)

    too_old = written - dt.timedelta(seconds=1)
    r = restore(module, lab, bucket, too_old)
    assert r["_rc"] != 0 and r["failed"] is True
    assert f"cannot restore bucket {bucket!r} to {iso(too_old)}" in r["msg"]
    assert "not recorded" in r["msg"] and "'k'" in r["msg"] and f"at or after {iso(written)}" in r["msg"]
    no_traceback(r)
    assert history_size(cli, bucket) == before

    ok = restore(module, lab, bucket, written)  # from the null version on, the history is complete
    assert ok["_rc"] == 0, ok
    assert contents(cli, bucket) == {"k": b"unversioned"}


def test_refusals(lab, module, cli, new_bucket):
    plain = new_bucket(versioned=False)
    cli.put_object(Bucket=plain, Key="k", Body=b"x")
    when = iso(dt.datetime.now(UTC) - dt.timedelta(minutes=5))
    r = restore(module, lab, plain, when)
    assert r["_rc"] != 0
    assert r["msg"].startswith(f"cannot restore bucket {plain!r} to {when}: versioning is not enabled")
    assert "status Disabled" in r["msg"]
    no_traceback(r)

    cli.put_bucket_versioning(Bucket=plain, VersioningConfiguration={"Status": "Suspended"})
    r = restore(module, lab, plain, when, prefix="k")
    assert r["_rc"] != 0
    assert r["msg"].startswith(f"cannot restore bucket {plain!r} (prefix 'k') to {when}: versioning is not enabled")
    assert "status Suspended" in r["msg"]

    versioned = new_bucket()
    created = next_second()
    cli.put_object(Bucket=versioned, Key="k", Body=b"x")
    written = next_second()
    too_old = created - dt.timedelta(days=365)
    r = restore(module, lab, versioned, too_old)
    assert r["_rc"] != 0
    assert r["msg"].startswith(f"cannot restore bucket {versioned!r} to {iso(too_old)}: the bucket was created at ")
    assert "choose a target_time at or after" in r["msg"]
    no_traceback(r)
    assert contents(cli, versioned) == {"k": b"x"}

    future = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    r = restore(module, lab, versioned, future)
    assert r["_rc"] != 0
    assert f"cannot restore bucket {versioned!r} to {iso(future)}" in r["msg"] and "in the future" in r["msg"]
    no_traceback(r)

    for bad, why in (
        ("2026-12-05T21:30:00.500Z", "fraction of a second"),
        ("2026-12-05T21:30:00", "no time zone"),
        ("yesterday", "not an ISO 8601 time"),
    ):
        r = restore(module, lab, versioned, bad)
        assert r["_rc"] != 0, bad
        assert f"target_time {bad!r}" in r["msg"] and why in r["msg"], r["msg"]
        no_traceback(r)

    # a zero fraction and another zone are accepted (and normalised to UTC)
    shifted = (written + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000+01:00")
    r = restore(module, lab, versioned, shifted)
    assert r["_rc"] == 0, r
    assert r["target_time"] == iso(written) and r["changed"] is False
    assert contents(cli, versioned) == {"k": b"x"}

    r = restore(module, lab, f"rbpitr-missing-{uuid.uuid4().hex[:6]}", when)
    assert r["_rc"] != 0 and "does not exist" in r["msg"]
    no_traceback(r)
