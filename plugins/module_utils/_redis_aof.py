# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis 7 multi-part AOF: manifest, timestamps, the archive index and the choice of files for a
point-in-time restore (private; redis_aof_archive, redis_aof_archive_info, redis_restore_to_time and
the follow process). Storage (a local directory or S3) is in _redis_aof_archive_store, the copying in
_redis_aof_archiver, the long-running follow mode in _redis_aof_follow.

Archive layout (``<root>`` a local directory or ``s3://bucket/prefix``)::

    <root>/redis-aof/<source>/index.json
    <root>/redis-aof/<source>/<generation id>/<base file> <incr files...> <manifest>

A generation is one AOF base file and the incr files that follow it in the server's manifest; a
rewrite (BGREWRITEAOF) starts the next one. ``index.json`` (written last by every run) records, per
file, its sha256, size and first/last ``#TS`` annotation (the base: the time it represents), and per
generation up to which second its writes are held (``covered_until``; ``sealed`` when its last incr
file was copied after the rewrite that ended it, so it reaches the next base without a gap).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shlex
from dataclasses import dataclass
from typing import Any, BinaryIO

from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line
from ansible_collections.runbook.stack.plugins.module_utils._redis import (
    CLIENT_ERRORS,
    RedisError,
    busy_persisting,
    poll,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis.persistence import rdb_ctime

ARCHIVE_DIR = "redis-aof"
INDEX = "index.json"
INDEX_FORMAT = "runbook.stack/redis-aof-archive"
CHUNK = 4 * 1024 * 1024
_TS_RE = re.compile(rb"^#TS:(\d+)\r\n\Z")

# ------------------------------------------------------------------------------------------------
# manifest
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AofPart:
    name: str
    seq: int
    type: str  # b (base), i (incr), h (history, about to be deleted)


def parse_manifest(text: str, where: str) -> list[AofPart]:
    """The parts of a Redis 7 AOF manifest (``file <name> seq <n> type <b|i|h>`` per line)."""
    parts = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            tokens = shlex.split(line)
            fields = dict(zip(tokens[::2], tokens[1::2]))
            part = AofPart(name=fields["file"], seq=int(fields["seq"]), type=fields["type"])
        except (ValueError, KeyError) as exc:
            raise RedisError(f"{where} line {number} is not an AOF manifest line ({exc})") from None
        if part.type not in ("b", "i", "h") or os.sep in part.name:
            raise RedisError(f"{where} line {number} is not an AOF manifest line: {line!r}")
        parts.append(part)
    return parts


def manifest_text(parts: list[AofPart]) -> bytes:
    return "".join(f"file {p.name} seq {p.seq} type {p.type}\n" for p in parts).encode()


def read_manifest(aof_dir: str, appendfilename: str) -> tuple[str, list[AofPart]]:
    """(manifest path, its base and incr parts); RedisError when there is no usable manifest."""
    path, parts, _raw = read_manifest_file(aof_dir, appendfilename)
    return path, parts


def read_manifest_file(aof_dir: str, appendfilename: str) -> tuple[str, list[AofPart], bytes]:
    """(manifest path, its base and incr parts, its bytes as read once)."""
    path = os.path.join(aof_dir, f"{appendfilename}.manifest")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        parts = [p for p in parse_manifest(raw.decode("utf-8"), path) if p.type != "h"]
    except OSError as exc:
        raise RedisError(f"cannot read the AOF manifest {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RedisError(f"the AOF manifest {path} is not text") from None
    if [p.type for p in parts[:1]] != ["b"] or [p for p in parts[1:] if p.type != "i"]:
        raise RedisError(f"the AOF manifest {path} does not list one base file followed by incr files")
    return path, parts, raw


# ------------------------------------------------------------------------------------------------
# timestamps
# ------------------------------------------------------------------------------------------------


@dataclass
class Scan:
    """What :func:`scan_aof` found: the end of the last complete command and the #TS range.
    ``untimed``: complete commands came before the first ``#TS`` (Redis only writes one when the second
    changed, so an incr file started by a rewrite begins with the commands of the second it ran in)."""

    end: int
    first_ts: int | None = None
    last_ts: int | None = None
    untimed: bool = False


def scan_aof(fh: BinaryIO, start: int, limit: int, found: Scan | None = None) -> Scan:
    """Walk the AOF commands (RESP arrays and ``#`` annotations) from ``start`` (a command boundary)
    up to ``limit`` bytes. ``end`` is the offset after the last complete command, so a copy up to it
    never ends inside a command that was being written; a ``#TS`` counts once a command follows it.
    RedisError when the content is not AOF."""
    scan = found or Scan(end=start)
    scan.end = start
    fh.seek(start)
    pos, pending = start, None
    while pos < limit:
        line = fh.readline(65536)
        if not line.endswith(b"\r\n") or pos + len(line) > limit:
            break
        if line.startswith(b"#"):
            match = _TS_RE.match(line)
            if match:
                pending = int(match.group(1))
            pos += len(line)
            continue
        if not line.startswith(b"*"):
            raise RedisError(f"unexpected content at offset {pos} (not an AOF command)")
        nxt, complete = pos + len(line), True
        for _arg in range(int(line[1:-2])):
            head = fh.readline(64)
            if not head.endswith(b"\r\n") or not head.startswith(b"$"):
                complete = False
                break
            size = int(head[1:-2])
            nxt += len(head) + size + 2
            fh.seek(size + 2, os.SEEK_CUR)
        if not complete or nxt > limit:
            break
        pos = scan.end = nxt
        if pending is not None:
            scan.first_ts = pending if scan.first_ts is None else scan.first_ts
            scan.last_ts = pending
            pending = None
        elif scan.first_ts is None:
            scan.untimed = True
    return scan


def base_time(path: str, name: str) -> int:
    """The time a base file represents: the RDB ``ctime``, or the first ``#TS`` of an AOF base;
    the file's mtime when neither is there."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
        found = rdb_ctime(head) if name.endswith(".rdb") or head.startswith(b"REDIS") else None
        match = _TS_RE.match(head.split(b"\n", 1)[0] + b"\n") if found is None else None
        found = int(match.group(1)) if match else found
        return found if found is not None else int(os.fstat(fh.fileno()).st_mtime)


# ------------------------------------------------------------------------------------------------
# times
# ------------------------------------------------------------------------------------------------


def utc(ts: int | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> int:
    """Unix seconds from ``1796507550`` or an ISO 8601 time (``2026-12-05T21:52:30Z``; without a
    zone it is UTC); fractions of a second are cut (a restore keeps every write of that second)."""
    text = str(value).strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    try:
        when = _dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise RedisError(f"target_time {value!r} is neither unix seconds nor an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return int(when.timestamp())


# ------------------------------------------------------------------------------------------------
# the archive index
# ------------------------------------------------------------------------------------------------


def new_index(source: str) -> dict[str, Any]:
    return {"format": INDEX_FORMAT, "version": 1, "source": source, "generations": []}


def parse_index(raw: bytes, where: str) -> dict[str, Any]:
    """The index in ``raw`` (the content of ``where``); RedisError when it is not an archive index."""
    try:
        index = json.loads(raw)
    except ValueError as exc:
        raise RedisError(f"cannot read the archive index {where}: {exc}") from None
    if (
        not isinstance(index, dict)
        or index.get("format") != INDEX_FORMAT
        or not isinstance(index.get("generations"), list)
    ):
        raise RedisError(f"{where} is not a redis_aof_archive index")
    return index


def index_bytes(index: dict[str, Any]) -> bytes:
    index["generations"].sort(key=lambda g: (g["base"]["time"], g["base"]["seq"]))
    return (json.dumps(index, indent=2, sort_keys=True) + "\n").encode()


def held_range(index: dict[str, Any]) -> dict[str, Any]:
    """Oldest base time .. newest second whose writes are all held (the last archive run's start,
    at or after the newest ``#TS``, which is ``last_write``), and the gaps in between."""
    gens = index["generations"]
    if not gens:
        return {
            "oldest": None,
            "newest": None,
            "oldest_utc": None,
            "newest_utc": None,
            "last_write": None,
            "gaps": [],
            "generations": 0,
        }
    gaps = []
    for gen, nxt in zip(gens, gens[1:]):
        if not gen.get("sealed") and gen["covered_until"] + 1 < nxt["base"]["time"]:
            gaps.append({"from": gen["covered_until"] + 1, "to": nxt["base"]["time"] - 1, "generation": gen["id"]})
    oldest, newest = gens[0]["base"]["time"], gens[-1]["covered_until"]
    writes = [f["last_ts"] for g in gens for f in g["incr"] if f.get("last_ts") is not None]
    return {
        "oldest": oldest,
        "newest": newest,
        "oldest_utc": utc(oldest),
        "newest_utc": utc(newest),
        "last_write": max(writes) if writes else None,
        "gaps": gaps,
        "generations": len(gens),
    }


# ------------------------------------------------------------------------------------------------
# what an archive run copies
# ------------------------------------------------------------------------------------------------


def stat_key(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def gen_id(base_ts: int, part: AofPart, sha: str) -> str:
    stamp = _dt.datetime.fromtimestamp(base_ts, _dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-seq{part.seq}-{sha[:8]}"


def find_generation(index: dict[str, Any], base: AofPart, st: os.stat_result) -> dict[str, Any] | None:
    for gen in index["generations"]:
        if gen["base"]["name"] == base.name and gen["base"].get("stat") == stat_key(st):
            return gen
    return None


def plan_archive(index: dict[str, Any], aof_dir: str, parts: list[AofPart]) -> tuple[str | None, list[str]]:
    """(id of the archived generation of ``parts`` or None, names of its files an archive run would
    copy: new or grown)."""
    base = parts[0]
    gen = find_generation(index, base, os.stat(os.path.join(aof_dir, base.name)))
    if gen is None:
        return None, [p.name for p in parts if p.type == "b" or os.path.getsize(os.path.join(aof_dir, p.name))]
    held = {f["name"]: f for f in gen["incr"]}
    out = []
    for part in parts[1:]:
        st = os.stat(os.path.join(aof_dir, part.name))
        unchanged = part.name in held and held[part.name].get("stat") == stat_key(st)
        if not unchanged and st.st_size > (held[part.name]["size"] if part.name in held else 0):
            out.append(part.name)
    return gen["id"], out


def seal_allowed(held: list[AofPart], now: list[AofPart]) -> bool:
    """Whether the incr files ``held`` open (the manifest ``held`` of the previous pass) finish their
    generation up to the base of ``now`` (the manifest after a rewrite): exactly one rewrite ran
    (base seq + 1) and every incr file before the first one of the new generation is held. Then the
    rest of the held files, read through the open descriptors, leaves no gap."""
    held_incr = [p.seq for p in held[1:]]
    now_incr = [p.seq for p in now[1:]]
    if not held_incr or not now_incr or now[0].seq != held[0].seq + 1:
        return False
    return set(range(min(held_incr), min(now_incr))) <= set(held_incr)


# ------------------------------------------------------------------------------------------------
# the server side
# ------------------------------------------------------------------------------------------------


def aof_settings(client: Any) -> dict[str, str]:
    """CONFIG GET of the AOF settings (appendonly, aof-timestamp-enabled, dir, appenddirname, appendfilename)."""
    found: dict[str, str] = {}
    try:
        for name in ("appendonly", "aof-timestamp-enabled", "dir", "appenddirname", "appendfilename"):
            found.update({str(k): str(v) for k, v in client.config_get(name).items()})
    except CLIENT_ERRORS as exc:
        raise RedisError(f"CONFIG GET is not available ({one_line(exc)})") from None
    if not found.get("appenddirname"):
        raise RedisError("the server reports no appenddirname: only Redis 7 multi-part AOF is supported")
    found.setdefault("appendfilename", "appendonly.aof")
    return found


def aof_dir_of(settings: dict[str, str], data_dir: str | None) -> str:
    """The AOF directory: ``data_dir`` when it holds the manifest, else ``data_dir``/``dir`` joined
    with appenddirname."""
    if data_dir and os.path.exists(os.path.join(data_dir, f"{settings['appendfilename']}.manifest")):
        return data_dir
    return os.path.join(data_dir or settings["dir"], settings["appenddirname"])


def _persistence(client: Any) -> dict[str, Any]:
    return client.info("persistence")


def wait_rewrite_idle(client: Any, timeout: float) -> dict[str, Any]:
    """Wait until no AOF rewrite runs or is scheduled; the INFO persistence reply."""

    def idle() -> dict[str, Any] | None:
        reply = _persistence(client)
        return None if busy_persisting(reply) else reply

    reply = poll(idle, timeout, 0.05)
    if reply is None:
        raise RedisError(f"an AOF rewrite or RDB save was still running after {timeout:g} s; raise timeout")
    return reply
