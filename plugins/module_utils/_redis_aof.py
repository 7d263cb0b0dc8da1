# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis 7 multi-part AOF: manifest, timestamps, the off-host archive of AOF generations and the
choice of files for a point-in-time restore (private; redis_aof_archive, redis_aof_archive_info,
redis_restore_to_time).

Archive layout (local directory, 0700 directories, 0600 files)::

    <root>/redis-aof/<source>/index.json
    <root>/redis-aof/<source>/<generation id>/<base file> <incr files...> <manifest>

A generation is one AOF base file and the incr files that follow it in the server's manifest; a
rewrite (BGREWRITEAOF) starts the next one. ``index.json`` records, per file, its sha256, size and
first/last ``#TS`` annotation (the base: the time it represents), and per generation up to which
second its writes are held (``covered_until``; ``sealed`` when its last incr file was copied after
the rewrite that ended it, so it reaches the next base without a gap).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import os
import re
import shlex
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    FILE_MODE,
    fsync_dir,
    make_private_dirs,
    remove_tree,
    source_dirname,
    write_file_atomic,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis import (
    CLIENT_ERRORS,
    RedisError,
    busy_persisting,
    poll,
)
from ansible_collections.runbook.stack.plugins.module_utils._text import one_line

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
    path = os.path.join(aof_dir, f"{appendfilename}.manifest")
    try:
        with open(path, encoding="utf-8") as fh:
            parts = [p for p in parse_manifest(fh.read(), path) if p.type != "h"]
    except OSError as exc:
        raise RedisError(f"cannot read the AOF manifest {path}: {exc.strerror or exc}") from None
    if [p.type for p in parts[:1]] != ["b"] or [p for p in parts[1:] if p.type != "i"]:
        raise RedisError(f"the AOF manifest {path} does not list one base file followed by incr files")
    return path, parts


# ------------------------------------------------------------------------------------------------
# timestamps
# ------------------------------------------------------------------------------------------------


def _rdb_string(data: bytes, pos: int) -> tuple[bytes, int]:
    """One RDB string at ``pos`` (length-prefixed or integer-encoded) and the position after it."""
    first = data[pos]
    kind = first >> 6
    if kind == 0:
        n, pos = first & 0x3F, pos + 1
    elif kind == 1:
        n, pos = ((first & 0x3F) << 8) | data[pos + 1], pos + 2
    elif first == 0x80:
        n, pos = int.from_bytes(data[pos + 1 : pos + 5], "big"), pos + 5
    elif first == 0x81:
        n, pos = int.from_bytes(data[pos + 1 : pos + 9], "big"), pos + 9
    elif kind == 3 and first & 0x3F in (0, 1, 2):
        size = 1 << (first & 0x3F)
        return str(int.from_bytes(data[pos + 1 : pos + 1 + size], "little", signed=True)).encode(), pos + 1 + size
    else:
        raise ValueError(f"unsupported string encoding 0x{first:02x}")
    if pos + n > len(data):
        raise ValueError("truncated")
    return data[pos : pos + n], pos + n


def rdb_ctime(head: bytes) -> int | None:
    """The ``ctime`` auxiliary field (when the snapshot was taken) of an RDB file's first bytes."""
    if not head.startswith(b"REDIS") or len(head) < 9:
        return None
    pos = 9
    try:
        while pos < len(head) and head[pos] == 0xFA:
            key, pos = _rdb_string(head, pos + 1)
            val, pos = _rdb_string(head, pos)
            if key == b"ctime":
                return int(val)
    except (ValueError, IndexError):
        return None
    return None


@dataclass
class Scan:
    """What :func:`scan_aof` found: the end of the last complete command and the #TS range."""

    end: int
    first_ts: int | None = None
    last_ts: int | None = None


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


def source_root(root: str, source: str) -> str:
    return os.path.join(root, ARCHIVE_DIR, source_dirname(source))


def load_index(directory: str, source: str) -> dict[str, Any]:
    path = os.path.join(directory, INDEX)
    try:
        with open(path, "rb") as fh:
            index = json.loads(fh.read())
    except FileNotFoundError:
        return {"format": INDEX_FORMAT, "version": 1, "source": source, "generations": []}
    except (OSError, ValueError) as exc:
        raise RedisError(f"cannot read the archive index {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if (
        not isinstance(index, dict)
        or index.get("format") != INDEX_FORMAT
        or not isinstance(index.get("generations"), list)
    ):
        raise RedisError(f"{path} is not a redis_aof_archive index")
    return index


def save_index(directory: str, index: dict[str, Any]) -> None:
    index["generations"].sort(key=lambda g: (g["base"]["time"], g["base"]["seq"]))
    write_file_atomic(os.path.join(directory, INDEX), (json.dumps(index, indent=2, sort_keys=True) + "\n").encode())


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
# archiving
# ------------------------------------------------------------------------------------------------


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _copy_range(src: BinaryIO, dst_path: str, length: int, prefix_len: int = 0) -> tuple[str, str | None]:
    """Copy the first ``length`` bytes of ``src`` to a new file ``dst_path`` (0600, fsynced);
    return (sha256 of the copy, sha256 of its first ``prefix_len`` bytes or None)."""
    digest, prefix_digest = hashlib.sha256(), None
    src.seek(0)
    fd = os.open(dst_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        done = 0
        while done < length:
            if prefix_len and prefix_digest is None and done >= prefix_len:
                prefix_digest = digest.hexdigest()
            step = min(CHUNK, length - done)
            if prefix_len and prefix_digest is None and done < prefix_len < done + step:
                step = prefix_len - done
            block = src.read(step)
            if not block:
                raise RedisError(f"{getattr(src, 'name', 'the AOF file')} is shorter than {length} bytes")
            digest.update(block)
            out.write(block)
            done += len(block)
        out.flush()
        os.fsync(out.fileno())
    if prefix_len and prefix_digest is None and done >= prefix_len:
        prefix_digest = digest.hexdigest()
    return digest.hexdigest(), prefix_digest


@dataclass
class ArchiveRun:
    copied: list[str]
    generation: str


def _gen_id(base_ts: int, part: AofPart, sha: str) -> str:
    stamp = _dt.datetime.fromtimestamp(base_ts, _dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-seq{part.seq}-{sha[:8]}"


def find_generation(index: dict[str, Any], base: AofPart, st: os.stat_result) -> dict[str, Any] | None:
    for gen in index["generations"]:
        if gen["base"]["name"] == base.name and gen["base"].get("stat") == _stat_key(st):
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
        unchanged = part.name in held and held[part.name].get("stat") == _stat_key(st)
        if not unchanged and st.st_size > (held[part.name]["size"] if part.name in held else 0):
            out.append(part.name)
    return gen["id"], out


def ensure_generation(
    directory: str, index: dict[str, Any], aof_dir: str, base: AofPart, now: float
) -> tuple[dict[str, Any], bool]:
    """The index entry of the generation of ``base``; a new one (the base copied) when it is not
    archived yet. Returns (entry, whether the base was copied)."""
    base_path = os.path.join(aof_dir, base.name)
    with open(base_path, "rb") as fh:
        st = os.fstat(fh.fileno())
        gen = find_generation(index, base, st)
        if gen is not None:
            return gen, False
        ts = base_time(base_path, base.name)
        tmp = tempfile.mkdtemp(prefix=".gen-", dir=directory)
        try:
            os.chmod(tmp, 0o700)
            sha, _p = _copy_range(fh, os.path.join(tmp, base.name), st.st_size)
            gen_id = _gen_id(ts, base, sha)
            taken = {g["id"] for g in index["generations"]}
            # the same base again (a restore put an archived one back): another id, never the same directory
            gen_id = next(
                f"{gen_id}{more}" for more in ["", *(f"-{n}" for n in range(2, 1000))] if f"{gen_id}{more}" not in taken
            )
            final = os.path.join(directory, gen_id)
            if os.path.lexists(final):  # left by a run that ended before it saved the index
                remove_tree(final)
            fsync_dir(tmp)
            os.rename(tmp, final)
        except BaseException:
            if os.path.lexists(tmp):
                remove_tree(tmp)
            raise
        fsync_dir(directory)
    gen = {
        "id": gen_id,
        "base": {
            "name": base.name,
            "seq": base.seq,
            "sha256": sha,
            "size": st.st_size,
            "time": ts,
            "stat": _stat_key(st),
        },
        "incr": [],
        "covered_until": ts,
        "sealed": False,
        "archived_at": int(now),
    }
    index["generations"].append(gen)
    return gen, True


def copy_incr(gen_dir: str, gen: dict[str, Any], aof_dir: str, part: AofPart, fh: BinaryIO) -> bool:
    """Archive the complete commands of the incr file open as ``fh``; True when a copy was written."""
    held = {f["name"]: f for f in gen["incr"]}
    st = os.fstat(fh.fileno())
    old = held.get(part.name)
    if old and old.get("stat") == _stat_key(st):
        return False
    if old and old.get("inode") not in (None, st.st_ino):
        raise RedisError(
            f"{part.name} in {aof_dir} is another file than the one archived in {gen_dir} "
            "(the server's AOF was replaced without a rewrite); archive it into a new dest"
        )
    old_size = old["size"] if old else 0
    scan = scan_aof(fh, old_size, st.st_size, Scan(old_size, old and old.get("first_ts"), old and old.get("last_ts")))
    complete = _stat_key(st) if scan.end == st.st_size else None
    if scan.end <= old_size:  # nothing new that is complete
        if old:
            old["stat"] = complete or old.get("stat")
        return False
    tmp = os.path.join(gen_dir, f".{part.name}.tmp-{os.getpid()}")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    try:
        sha, prefix = _copy_range(fh, tmp, scan.end, old_size)
        if old and prefix != old["sha256"]:
            raise RedisError(
                f"the first {old_size} bytes of {part.name} in {aof_dir} differ from the copy in "
                f"{gen_dir} (the server's AOF was replaced without a rewrite); archive it into a new dest"
            )
        os.replace(tmp, os.path.join(gen_dir, part.name))
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(gen_dir)
    entry = {
        "name": part.name,
        "seq": part.seq,
        "sha256": sha,
        "size": scan.end,
        "first_ts": scan.first_ts,
        "last_ts": scan.last_ts,
        "inode": st.st_ino,
        "stat": complete,
    }
    if old:
        old.update(entry)
    else:
        gen["incr"].append(entry)
    return True


def archive(
    directory: str,
    index: dict[str, Any],
    aof_dir: str,
    parts: list[AofPart],
    manifest: tuple[str, bytes],
    open_files: dict[str, BinaryIO] | None = None,
    generation: dict[str, Any] | None = None,
    clock: Any = None,
) -> ArchiveRun:
    """Copy what is new of the generation of ``parts`` into ``directory`` and update ``index`` (not
    saved). ``manifest``: (file name, content) of the server's manifest of these parts.
    ``open_files`` and ``generation``: seal that (already archived) generation from incr files opened
    before a rewrite deleted them; they are complete, so it reaches the next base without a gap."""
    now = (clock or time.time)()
    open_files = open_files or {}
    copied: list[str] = []
    if generation is None:
        gen, new = ensure_generation(directory, index, aof_dir, parts[0], now)
        copied += [parts[0].name] if new else []
    else:
        gen = generation
    gen_dir = os.path.join(directory, gen["id"])
    for part in parts[1:]:
        with ExitStack() as stack:
            fh = open_files.get(part.name) or stack.enter_context(open(os.path.join(aof_dir, part.name), "rb"))
            if copy_incr(gen_dir, gen, aof_dir, part, fh):
                copied.append(part.name)
    write_file_atomic(os.path.join(gen_dir, manifest[0]), manifest[1])
    gen["manifest"] = manifest[0]
    if generation is not None:
        gen["sealed"] = True
    else:
        # every write acknowledged before this run started is in the copies: whole seconds before now
        gen["covered_until"] = max(gen["covered_until"], int(now) - 1)
    gen["archived_at"] = int(now)
    return ArchiveRun(copied=copied, generation=gen["id"])


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


def rewrite_aof(
    client: Any, timeout: float, directory: str, index: dict[str, Any], aof_dir: str, appendfilename: str
) -> tuple[str, list[str]]:
    """BGREWRITEAOF without a gap in the archive: the incr files of the current generation are kept
    open, the rewrite runs, their rest is archived through the open descriptors (the generation is
    sealed) and the new generation is archived. Returns (new generation id, files copied)."""
    wait_rewrite_idle(client, timeout)
    manifest_path, parts = read_manifest(aof_dir, appendfilename)
    with open(manifest_path, "rb") as fh:
        old_manifest = (os.path.basename(manifest_path), fh.read())
    first = archive(directory, index, aof_dir, parts, old_manifest)
    save_index(directory, index)
    gen = next(g for g in index["generations"] if g["id"] == first.generation)
    copied = [f"{first.generation}/{n}" for n in first.copied]
    with ExitStack() as stack:
        open_files = {p.name: stack.enter_context(open(os.path.join(aof_dir, p.name), "rb")) for p in parts[1:]}
        if read_manifest(aof_dir, appendfilename)[1] != parts:
            raise RedisError("the AOF was rewritten by the server while it was archived; run again")
        before = int(_persistence(client).get("aof_rewrites", 0))
        try:
            client.bgrewriteaof()
        except CLIENT_ERRORS as exc:
            raise RedisError(f"BGREWRITEAOF was refused: {one_line(exc)}") from None

        def finished() -> dict[str, Any] | None:
            reply = _persistence(client)
            done = int(reply.get("aof_rewrites", 0)) > before and not busy_persisting(reply)
            return reply if done else None

        reply = poll(finished, timeout, 0.05)
        if reply is None:
            raise RedisError(f"the AOF rewrite did not finish within {timeout:g} s; raise timeout")
        if str(reply.get("aof_last_bgrewrite_status", "ok")) != "ok":
            raise RedisError("the AOF rewrite failed (aof_last_bgrewrite_status:err; see the Redis log)")
        sealed = archive(directory, index, aof_dir, parts, old_manifest, open_files=open_files, generation=gen)
        save_index(directory, index)
        copied += [f"{sealed.generation}/{n}" for n in sealed.copied]
    manifest_path, parts = read_manifest(aof_dir, appendfilename)
    with open(manifest_path, "rb") as fh:
        new_manifest = (os.path.basename(manifest_path), fh.read())
    nxt = archive(directory, index, aof_dir, parts, new_manifest)
    copied += [f"{nxt.generation}/{n}" for n in nxt.copied]
    return nxt.generation, copied


def prepare_dirs(root: str, source: str) -> str:
    directory = source_root(root, source)
    make_private_dirs(directory)
    return directory


@contextmanager
def archive_lock(directory: str) -> Iterator[None]:
    """Exclusive lock on the archive of one server (``.lock`` in it): one archive run at a time."""
    fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RedisError(f"another redis_aof_archive run is archiving into {directory}; try again later") from None
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------
# choosing files for a point in time
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    generation: dict[str, Any]
    incr: list[dict[str, Any]]
    target: int


def select(index: dict[str, Any], target: int, where: str) -> Selection:
    """The newest generation whose base time <= ``target`` and its incr files that hold writes up to
    ``target``; RedisError when the archive does not hold every write up to ``target``."""
    gens = index["generations"]
    held = held_range(index)
    if not gens:
        raise RedisError(f"the archive {where} holds no AOF generation")
    span = f"{held['oldest_utc']} ({held['oldest']}) .. {held['newest_utc']} ({held['newest']})"
    if target < held["oldest"]:
        raise RedisError(
            f"target time {utc(target)} ({target}) is older than the oldest data held in {where}: {span}; "
            "nothing was changed"
        )
    pos = max(i for i, g in enumerate(gens) if g["base"]["time"] <= target)
    gen = gens[pos]
    last = pos == len(gens) - 1
    if target > gen["covered_until"] and (last or not gen.get("sealed")):
        if last:
            raise RedisError(
                f"target time {utc(target)} ({target}) is newer than the newest write held in {where}: {span} "
                "(writes after it were not archived yet: run redis_aof_archive, or choose an earlier time); "
                "nothing was changed"
            )
        raise RedisError(
            f"the writes from {utc(gen['covered_until'] + 1)} to {utc(gens[pos + 1]['base']['time'] - 1)} were not "
            f"archived (an AOF rewrite dropped them before an archive run), so {utc(target)} ({target}) cannot be "
            "restored; nothing was changed"
        )
    incr = [f for f in gen["incr"] if f.get("first_ts") is not None and f["first_ts"] <= target]
    return Selection(generation=gen, incr=incr, target=target)


def verify_file(path: str, entry: dict[str, Any]) -> str | None:
    """A problem when the archived file does not have the recorded size and sha256."""
    try:
        size = os.path.getsize(path)
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(CHUNK), b""):
                digest.update(block)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
        return f"{path}: size or sha256 differs from the archive index"
    return None


# ------------------------------------------------------------------------------------------------
# reading an archive (redis_aof_archive_info)
# ------------------------------------------------------------------------------------------------


def list_sources(root: str) -> list[str]:
    """The servers archived under ``root`` (names decoded from their directories)."""
    base = os.path.join(root, ARCHIVE_DIR)
    if not os.path.isdir(base):
        return []
    return sorted(urllib.parse.unquote(n) for n in os.listdir(base) if os.path.isfile(os.path.join(base, n, INDEX)))


def describe_archive(root: str, source: str, verify: bool) -> dict[str, Any]:
    """held range, generations, size and the problems (missing files, size or sha256) of one archive."""
    directory = source_root(root, source)
    index = load_index(directory, source)
    problems, size, generations = [], 0, []
    for gen in index["generations"]:
        files = [gen["base"], *gen["incr"]]
        for entry in files:
            path = os.path.join(directory, gen["id"], entry["name"])
            size += entry["size"]
            if verify:
                problem = verify_file(path, entry)
            elif not os.path.isfile(path):
                problem = f"{path}: missing"
            else:
                problem = None if os.path.getsize(path) == entry["size"] else f"{path}: size differs from the index"
            if problem:
                problems.append(problem)
        generations.append(
            {
                "id": gen["id"],
                "base": gen["base"]["name"],
                "base_time": gen["base"]["time"],
                "base_time_utc": utc(gen["base"]["time"]),
                "incr": [{k: f.get(k) for k in ("name", "size", "sha256", "first_ts", "last_ts")} for f in gen["incr"]],
                "covered_until": gen["covered_until"],
                "covered_until_utc": utc(gen["covered_until"]),
                "sealed": bool(gen.get("sealed")),
            }
        )
    return {
        "source": source,
        "path": directory,
        "held": held_range(index),
        "generations": generations,
        "size_bytes": size,
        "problems": problems,
    }


# ------------------------------------------------------------------------------------------------
# assembling an AOF directory for a point in time (redis_restore_to_time)
# ------------------------------------------------------------------------------------------------


def archived_problems(directory: str, sel: Selection) -> list[str]:
    """sha256 and size of every archived file a restore of ``sel`` uses, against the index."""
    gen_dir = os.path.join(directory, sel.generation["id"])
    found = [verify_file(os.path.join(gen_dir, e["name"]), e) for e in [sel.generation["base"], *sel.incr]]
    return [p for p in found if p]


def assemble(directory: str, sel: Selection, staging: str, appendfilename: str) -> tuple[str, list[str]]:
    """Copy the files of ``sel`` into ``staging`` under the server's ``appendfilename`` and write their
    manifest; returns (manifest path, file names in manifest order)."""
    gen_dir = os.path.join(directory, sel.generation["id"])
    base = sel.generation["base"]
    suffix = "rdb" if base["name"].endswith(".rdb") else "aof"
    parts = [AofPart(f"{appendfilename}.{base['seq']}.base.{suffix}", base["seq"], "b")]
    parts += [AofPart(f"{appendfilename}.{e['seq']}.incr.aof", e["seq"], "i") for e in sel.incr]
    for part, entry in zip(parts, [base, *sel.incr]):
        with open(os.path.join(gen_dir, entry["name"]), "rb") as fh:
            _copy_range(fh, os.path.join(staging, part.name), entry["size"])
    manifest = os.path.join(staging, f"{appendfilename}.manifest")
    with open(manifest, "wb") as fh:
        fh.write(manifest_text(parts))
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(manifest, FILE_MODE)
    fsync_dir(staging)
    return manifest, [p.name for p in parts]
