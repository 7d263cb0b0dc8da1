# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers of _redis_aof: manifest, RDB ctime, AOF scanning, time parsing, choice of files."""

from __future__ import annotations

import io

import pytest

from ansible_collections.runbook.stack.plugins.module_utils._redis import RedisError
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof import (
    AofPart,
    held_range,
    manifest_text,
    parse_manifest,
    parse_time,
    rdb_ctime,
    scan_aof,
    seal_allowed,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof_archive_read import select
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof_archive_store import (
    MAX_PARTS,
    PART_MAX,
    plan_parts,
)

# the first bytes of a base RDB written by redis-server 7.0.15 (ctime 1796507558)
RDB_HEAD = bytes.fromhex(
    "524544495330303130fa0972656469732d76657206372e302e3135fa0a72656469732d62697473c040"
    "fa056374696d65c2a687146bfa08757365642d6d656dc240570e00fa08616f662d62617365c001fe00"
)


def cmd(*args: str) -> bytes:
    out = f"*{len(args)}\r\n".encode()
    for arg in args:
        out += f"${len(arg.encode())}\r\n".encode() + arg.encode() + b"\r\n"
    return out


def test_manifest_round_trip():
    text = "file appendonly.aof.2.base.rdb seq 2 type b\nfile appendonly.aof.2.incr.aof seq 2 type i\n"
    parts = parse_manifest(text, "m")
    assert parts == [AofPart("appendonly.aof.2.base.rdb", 2, "b"), AofPart("appendonly.aof.2.incr.aof", 2, "i")]
    assert manifest_text(parts).decode() == text
    with pytest.raises(RedisError, match="line 1"):
        parse_manifest("file x seq two type b\n", "m")


def test_rdb_ctime():
    assert rdb_ctime(RDB_HEAD) == 1796507558
    assert rdb_ctime(b"REDIS0010\xfe\x00") is None
    assert rdb_ctime(b"#TS:1\r\n") is None


def test_scan_stops_before_a_partial_command_and_counts_ts_only_with_a_command():
    data = (
        b"#TS:100\r\n"
        + cmd("SELECT", "0")
        + cmd("SET", "a", "x\r\n#TS:999\r\n")
        + b"#TS:101\r\n"
        + cmd("SET", "b", "1")
    )
    whole = scan_aof(io.BytesIO(data), 0, len(data))
    assert (whole.end, whole.first_ts, whole.last_ts) == (len(data), 100, 101)  # the value's "#TS" is data
    cut = len(data) - 3  # the last command half written
    part = scan_aof(io.BytesIO(data), 0, cut)
    assert part.end == len(data) - len(cmd("SET", "b", "1")) - len(b"#TS:101\r\n")
    assert (part.first_ts, part.last_ts) == (100, 100)
    with pytest.raises(RedisError, match="offset 0"):
        scan_aof(io.BytesIO(b"garbage\r\n"), 0, 9)


def test_parse_time():
    assert parse_time("1796507550") == 1796507550
    assert parse_time("2026-12-05T21:52:30Z") == parse_time("2026-12-05T22:52:30+01:00") == 1796507550
    assert parse_time("2026-12-05T21:52:30.900") == 1796507550  # no zone: UTC, fraction cut
    with pytest.raises(RedisError, match="neither"):
        parse_time("soon")


def gen(gid: str, base: int, covered: int, sealed: bool, incr: list[tuple[int, int]]) -> dict:
    files = [{"name": f"i{n}", "seq": n, "first_ts": a, "last_ts": b} for n, (a, b) in enumerate(incr, 1)]
    return {"id": gid, "base": {"time": base, "seq": 1}, "incr": files, "covered_until": covered, "sealed": sealed}


def test_select_and_held_range():
    index = {
        "generations": [
            gen("g1", 100, 150, True, [(110, 140)]),
            gen("g2", 160, 180, False, [(161, 175)]),  # not sealed: writes 181..199 were lost
            gen("g3", 200, 230, False, [(205, 220), (225, 229)]),
        ]
    }
    held = held_range(index)
    assert (held["oldest"], held["newest"]) == (100, 230)
    assert held["gaps"] == [{"from": 181, "to": 199, "generation": "g2"}]
    assert select(index, 155, "a").generation["id"] == "g1"  # sealed: reaches the next base
    assert [f["name"] for f in select(index, 109, "a").incr] == []
    assert [f["name"] for f in select(index, 110, "a").incr] == ["i1"]
    assert [f["name"] for f in select(index, 224, "a").incr] == ["i1"]
    assert [f["name"] for f in select(index, 230, "a").incr] == ["i1", "i2"]
    with pytest.raises(RedisError, match="older than the oldest"):
        select(index, 99, "a")
    with pytest.raises(RedisError, match="were not archived"):
        select(index, 190, "a")
    with pytest.raises(RedisError, match="newer than the newest"):
        select(index, 231, "a")
    with pytest.raises(RedisError, match="holds no AOF generation"):
        select({"generations": []}, 1, "a")


def manifest(base_seq: int, *incr: int) -> list[AofPart]:
    parts = [AofPart(f"a.{base_seq}.base.rdb", base_seq, "b")]
    return parts + [AofPart(f"a.{n}.incr.aof", n, "i") for n in incr]


def test_seal_allowed_only_after_one_rewrite_with_every_old_incr_file_held():
    assert seal_allowed(manifest(1, 1), manifest(2, 2))  # held before the rewrite
    assert seal_allowed(manifest(1, 1, 2), manifest(2, 2))  # held during it (the new incr file already listed)
    assert seal_allowed(manifest(1, 1, 2), manifest(2, 3))  # a failed rewrite left incr 2, held too
    assert not seal_allowed(manifest(1, 1), manifest(2, 3))  # incr 2 (a failed rewrite) was never held
    assert not seal_allowed(manifest(1, 1), manifest(3, 3))  # two rewrites: a generation never seen
    assert not seal_allowed(manifest(1), manifest(2, 2))  # nothing held
    assert not seal_allowed(manifest(5, 5), manifest(2, 3))  # a restore put an older base back


def test_plan_parts_sends_only_new_bytes_and_recuts_many_parts():
    mib = 1024 * 1024
    parts, todo = plan_parts([], 0, 100)
    assert parts == todo == [{"offset": 0, "size": 100}]
    parts, todo = plan_parts(parts, 100, 250)
    assert todo == [{"offset": 100, "size": 150}] and parts == [{"offset": 0, "size": 100}, *todo]
    # new bytes over PART_MAX are cut into PART_MAX parts
    parts, todo = plan_parts([], 0, PART_MAX + 5)
    assert todo == [{"offset": 0, "size": PART_MAX}, {"offset": PART_MAX, "size": 5}]
    # past MAX_PARTS parts: PART_MAX-aligned parts again, the aligned one already stored is kept
    many = [{"offset": 0, "size": PART_MAX}] + [{"offset": PART_MAX + n, "size": 1} for n in range(MAX_PARTS - 1)]
    end = PART_MAX + MAX_PARTS - 1
    parts, todo = plan_parts(many, end, end + mib)
    assert parts == [{"offset": 0, "size": PART_MAX}, {"offset": PART_MAX, "size": MAX_PARTS - 1 + mib}]
    assert todo == parts[1:]
    assert sum(p["size"] for p in parts) == end + mib


def test_commands_before_the_first_ts_take_the_second_before_them():
    """Redis writes #TS only when the second changed: an incr file a rewrite started in the same second
    begins with untimed commands, which belong to a restore of any second from the base's on."""
    data = cmd("SET", "k", "1") + b"#TS:205\r\n" + cmd("SET", "k", "2")
    found = scan_aof(io.BytesIO(data), 0, len(data))
    assert (found.untimed, found.first_ts, found.last_ts) == (True, 205, 205)
    timed = scan_aof(io.BytesIO(data[len(cmd("SET", "k", "1")) :]), 0, len(data) - len(cmd("SET", "k", "1")))
    assert not timed.untimed
    index = {"generations": [gen("g1", 200, 230, False, [(205, 205), (210, 220)])]}
    index["generations"][0]["incr"][0]["untimed"] = True
    assert [f["name"] for f in select(index, 200, "a").incr] == ["i1"]  # its head is of second 200
    index["generations"][0]["incr"][1]["untimed"] = True  # its head is of the second of i1's last #TS
    assert [f["name"] for f in select(index, 204, "a").incr] == ["i1"]
    assert [f["name"] for f in select(index, 205, "a").incr] == ["i1", "i2"]
