# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the pure point-in-time helpers (plugins/module_utils/_s3_point_in_time.py); no network."""

from __future__ import annotations

import datetime as dt

import pytest

from ansible_collections.runbook.stack.plugins.module_utils import _s3_point_in_time as pit
from ansible_collections.runbook.stack.plugins.module_utils._s3 import S3Error

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 5, 22, 0, 0, tzinfo=UTC)
MD5_A = "0cc175b9c0f1b6a831c399e269772661"
MD5_B = "92eb5ffee6ae2fec3ad71c777531578f"


def at(second: int, micro: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, 5, 21, 0, second, micro, tzinfo=UTC)


def ver(key, vid, second, latest=False, size=1, etag=MD5_A, micro=0) -> pit.Entry:
    return pit.Entry(key, vid, at(second, micro), latest, False, size, etag)


def marker(key, vid, second, latest=False) -> pit.Entry:
    return pit.Entry(key, vid, at(second), latest, True)


@pytest.mark.parametrize(
    "text, want",
    [
        ("2026-12-05T21:30:00Z", dt.datetime(2026, 12, 5, 21, 30, tzinfo=UTC)),
        ("2026-12-05 21:30:00z", dt.datetime(2026, 12, 5, 21, 30, tzinfo=UTC)),
        ("2026-12-05T22:30:00+01:00", dt.datetime(2026, 12, 5, 21, 30, tzinfo=UTC)),
        ("2026-12-05T20:30:00-0100", dt.datetime(2026, 12, 5, 21, 30, tzinfo=UTC)),
        ("2026-12-05T21:30:00.000Z", dt.datetime(2026, 12, 5, 21, 30, tzinfo=UTC)),
        ("2026-12-05T22:00:00Z", NOW),
    ],
)
def test_parse_target_time(text, want):
    assert pit.parse_target_time(text, NOW) == want


@pytest.mark.parametrize(
    "text, why",
    [
        ("2026-12-05T21:30:00.1Z", "fraction of a second"),
        ("2026-12-05T21:30:00", "no time zone"),
        ("2026-12-05", "not an ISO 8601 time"),
        ("2026-13-05T21:30:00Z", "not a valid time"),
        ("2026-12-05T22:00:01Z", "in the future"),
        (None, "not an ISO 8601 time"),
    ],
)
def test_parse_target_time_refuses(text, why):
    with pytest.raises(S3Error, match=why):
        pit.parse_target_time(text, NOW)


def test_interleave_follows_the_body_order():
    versions = [{"Key": "k", "VersionId": "v2"}, {"Key": "k", "VersionId": "v1"}]
    markers = [{"Key": "k", "VersionId": "d1"}]
    got = pit.interleave([b"Version", b"DeleteMarker", b"Version"], versions, markers)
    assert [(e["VersionId"], bool(e.get("_marker"))) for e in got] == [("v2", False), ("d1", True), ("v1", False)]


def test_interleave_without_a_usable_body_sorts_by_key_then_newest():
    versions = [
        {"Key": "b", "VersionId": "b1", "LastModified": at(1)},
        {"Key": "a", "VersionId": "a1", "LastModified": at(1)},
    ]
    markers = [{"Key": "a", "VersionId": "ad", "LastModified": at(2), "IsLatest": True}]
    got = pit.interleave([], versions, markers)
    assert [e["VersionId"] for e in got] == ["ad", "a1", "b1"]


def test_plan_to_time():
    histories = pit.history(
        iter(
            [
                # copy: overwritten after T
                ver("a", "a2", 20, latest=True, etag=MD5_B),
                ver("a", "a1", 5),
                # delete: written after T only
                ver("b", "b1", 20, latest=True),
                # none: deleted before T and still deleted
                marker("c", "cd", 8, latest=True),
                ver("c", "c1", 3),
                # delete: deleted before T, recreated after
                ver("d", "d2", 15, latest=True),
                marker("d", "dd", 9),
                ver("d", "d1", 1),
                # none: current is a copy of the version at T (same size and ETag)
                ver("e", "e3", 30, latest=True),
                ver("e", "e2", 20, etag=MD5_B),
                ver("e", "e1", 10),
                # copy: written within second T (.9 s) counts as at T; the later one is after
                ver("f", "f2", 11, latest=True, etag=MD5_B),
                ver("f", "f1", 10, micro=900000),
                # none: absent at T and now
                marker("g", "gd", 12, latest=True),
                ver("g", "g1", 11),
            ]
        )
    )
    plan = pit.plan_to_time(histories, at(10))
    actions = {k.key: k.action for k in plan.keys}
    assert actions == {"a": "copy", "b": "delete", "c": "none", "d": "delete", "e": "none", "f": "copy", "g": "none"}
    assert [k.key for k in plan.copy] == ["a", "f"]
    assert (plan.versions, plan.delete_markers, plan.unchanged, plan.bytes) == (12, 3, 3, 2)
    assert plan.keys[0].describe()["at_target_time"]["version_id"] == "a1"


def test_same_version_needs_size_and_etag():
    chosen = ver("k", "v1", 1, size=5, etag=MD5_A)
    assert pit.same_version(ver("k", "v1", 1), chosen)
    assert pit.same_version(ver("k", "v9", 9, size=5, etag=MD5_A), chosen)
    assert not pit.same_version(ver("k", "v9", 9, size=5, etag=MD5_B), chosen)
    assert not pit.same_version(ver("k", "v9", 9, size=6, etag=MD5_A), chosen)
    assert not pit.same_version(marker("k", "d", 9), chosen)
    assert not pit.same_version(None, chosen)


def test_unknown_before_is_the_newest_null_entry():
    histories = pit.history(
        iter([ver("a", "v2", 9), ver("a", "null", 4), marker("b", "null", 6), ver("b", "null", 2), ver("c", "v1", 1)])
    )
    found = pit.unknown_before(histories)
    assert (found.key, found.second) == ("b", at(6))
    assert pit.unknown_before(pit.history(iter([ver("a", "v1", 1)]))) is None


def test_verify_to_time_names_every_wrong_key():
    histories = pit.history(
        iter(
            [
                ver("copied", "c2", 20, latest=True, etag=MD5_B),
                ver("copied", "c1", 5, size=3, etag=MD5_A),
                ver("gone", "g1", 20, latest=True),
                ver("same", "s1", 5, latest=True),
                ver("multipart", "m2", 20, latest=True, etag=MD5_B),
                ver("multipart", "m1", 5, size=9, etag=MD5_A),
            ]
        )
    )
    plan = pit.plan_to_time(histories, at(10))
    good = {"copied": (3, f'"{MD5_A}"'), "same": (1, MD5_A), "multipart": (9, "abc-2")}
    assert pit.verify_to_time(plan, good, {"multipart": "abc-2"}) == []
    bad = {"copied": (3, MD5_B), "gone": (1, MD5_A), "multipart": (8, "abc-2")}
    problems = pit.verify_to_time(plan, bad, {"multipart": "abc-2"})
    assert [p.split(" ")[0] for p in problems] == ["copied", "gone", "multipart", "same"]
    assert "should be absent" in problems[1] and "missing" in problems[3]


def test_plan_diff():
    histories = pit.history(
        iter([ver("a", "a2", 20, latest=True, size=7), ver("a", "a1", 5), ver("b", "b1", 20, latest=True)])
    )
    plan = pit.plan_to_time(histories, at(10))
    diff = pit.plan_diff(plan.keys[:1], "bkt", "2026-12-05T21:00:10Z", 2)
    assert diff["before"] == "a (version a2 of 2026-12-05T21:00:20Z, 7 bytes)\n... and 1 more keys\n"
    assert diff["after"] == "a (version a1 of 2026-12-05T21:00:05Z, 1 bytes)\n... and 1 more keys\n"
    assert pit.plan_diff(plan.keys[1:], "bkt", "x", 1)["after"] == "b (absent)\n"


def test_check_history_reaches():
    histories = pit.history(iter([ver("a", "v2", 9, latest=True), ver("a", "null", 4), ver("b", "v1", 6)]))
    pit.check_history_reaches(histories, at(4), at(1))
    with pytest.raises(
        S3Error, match=r"key 'a' has a version written without versioning .* at or after 2026-12-05T21:00:04Z"
    ):
        pit.check_history_reaches(histories, at(3), None)
    plain = pit.history(iter([ver("b", "v1", 6)]))
    pit.check_history_reaches(plain, at(3), at(2))  # the bucket existed (empty) at T
    pit.check_history_reaches(plain, at(1), None)  # creation date unknown: no check
    pit.check_history_reaches(pit.history(iter([ver("b", "v1", 0)])), at(1), at(5))  # a version older than T
    with pytest.raises(S3Error, match="the bucket was created at 2026-12-05T21:00:02Z, after that time"):
        pit.check_history_reaches(plain, at(1), at(2))
    with pytest.raises(S3Error, match="the bucket was created"):
        pit.check_history_reaches({}, at(1), at(2))
