# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis persistence for redis_snapshot and redis_restore (private): where a server keeps its data
(and where that is on this host when the server runs in a container), asking for a save (BGSAVE) and
waiting until it is ours and done, checking an RDB file (its magic, and that a save of ours wrote it),
the manifest of a multi-part AOF with an RDB base, and copying the RDB the server may replace
meanwhile."""

from __future__ import annotations

import errno
import os
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line
from ansible_collections.runbook.stack.plugins.module_utils._redis.connection import RedisError, redis

# ---------------------------------------------------------------------------------------------
# saves
# ---------------------------------------------------------------------------------------------

RDB_MAGIC = b"REDIS"
WAIT = "wait"
DONE = "done"


def _int(info: dict[str, Any], key: str, default: int = 0) -> int:
    try:
        return int(info.get(key, default))
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True)
class SaveMarker:
    """Where the server's save history stood before we asked for a save.

    ``saves`` is ``rdb_saves`` (Redis 7.0+, None before); ``last_save_time`` is ``rdb_last_save_time``
    (whole seconds). A save counts as ours only when the history has moved past this marker."""

    last_save_time: int
    saves: int | None


def save_marker(info: dict[str, Any]) -> SaveMarker:
    saves = _int(info, "rdb_saves", -1) if "rdb_saves" in info else None
    return SaveMarker(last_save_time=_int(info, "rdb_last_save_time"), saves=saves)


def save_advanced(info: dict[str, Any], marker: SaveMarker) -> bool:
    """True when a save has completed (or at least started, for the counter) after the marker."""
    if marker.saves is not None and "rdb_saves" in info:
        return _int(info, "rdb_saves") > marker.saves
    return _int(info, "rdb_last_save_time") > marker.last_save_time


def busy_persisting(info: dict[str, Any]) -> bool:
    """An RDB save or an AOF rewrite is running (or an AOF rewrite is scheduled)."""
    return any(_int(info, k) for k in ("rdb_bgsave_in_progress", "aof_rewrite_in_progress", "aof_rewrite_scheduled"))


def save_progress(info: dict[str, Any], marker: SaveMarker, started: bool, seen_running: bool) -> str:
    """Decide, from one ``INFO persistence`` reply, whether the save we asked for is done.

    ``started``: BGSAVE answered "started" (the fork exists); ``seen_running``: an earlier poll saw
    ``rdb_bgsave_in_progress:1`` after our request. Returns WAIT or DONE; raises RedisError when the
    save failed. A save that finished before the first poll is DONE (the history moved past the
    marker); a save that was already running when the marker was taken never is, because the marker
    is only taken while no save runs.
    """
    if _int(info, "rdb_bgsave_in_progress"):
        return WAIT
    advanced = save_advanced(info, marker)
    if not (advanced or started or seen_running):
        return WAIT  # scheduled behind an AOF rewrite, not begun yet
    status = str(info.get("rdb_last_bgsave_status", "ok"))
    if status != "ok":
        raise RedisError(f"the background save failed (rdb_last_bgsave_status:{status}; see the Redis log)")
    return DONE if advanced else WAIT


def wait_for_save(
    fetch_info: Callable[[], dict[str, Any]],
    marker: SaveMarker,
    started: bool,
    timeout: float,
    interval: float = 0.02,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll ``fetch_info`` (an INFO persistence reply) until our save is DONE; return that reply.

    RedisError when the save fails or does not finish within ``timeout`` seconds."""
    deadline = clock() + timeout
    seen_running = False
    while True:
        info = fetch_info()
        if save_progress(info, marker, started, seen_running) == DONE:
            return info
        seen_running = seen_running or bool(_int(info, "rdb_bgsave_in_progress"))
        if clock() >= deadline:
            raise RedisError(
                f"the background save did not finish within {timeout:g} s "
                f"(rdb_bgsave_in_progress:{_int(info, 'rdb_bgsave_in_progress')}); raise timeout"
            )
        sleep(interval)


def wait_until_idle(
    fetch_info: Callable[[], dict[str, Any]],
    timeout: float,
    interval: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until no RDB save or AOF rewrite runs (someone else's); return the idle reply."""
    deadline = clock() + timeout
    while True:
        info = fetch_info()
        if not busy_persisting(info):
            return info
        if clock() >= deadline:
            raise RedisError(
                f"a save or AOF rewrite started by someone else was still running after {timeout:g} s; raise timeout"
            )
        sleep(interval)


def request_bgsave(client: Any) -> str:
    """BGSAVE SCHEDULE: ``started``, ``scheduled`` (behind an AOF rewrite) or ``busy`` (an RDB save runs)."""
    try:
        reply = client.execute_command("BGSAVE", "SCHEDULE")
    except redis.ResponseError as exc:
        if "already in progress" in str(exc).lower():
            return "busy"
        raise RedisError(f"BGSAVE was refused: {one_line(exc)}") from None
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    if reply is True or "started" in text.lower():
        return "started"
    if "scheduled" in text.lower():
        return "scheduled"
    raise RedisError(f"unexpected BGSAVE reply {text!r}")


# ---------------------------------------------------------------------------------------------
# data files
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataPaths:
    """Where a server keeps its data, from CONFIG GET (dir, dbfilename, appendonly, AOF names)."""

    dir: str
    dbfilename: str
    appendonly: bool = False
    appendfilename: str = "appendonly.aof"
    appenddirname: str | None = None  # Redis 7+: multi-part AOF directory

    @property
    def rdb_path(self) -> str:
        return os.path.join(self.dir, self.dbfilename)

    @property
    def aof_path(self) -> str:
        """The AOF directory (Redis 7+) or file (older servers)."""
        return os.path.join(self.dir, self.appenddirname or self.appendfilename)


def data_paths(config: dict[str, Any]) -> DataPaths:
    """DataPaths from a CONFIG GET reply (dict of name -> value)."""
    directory = str(config.get("dir") or "")
    dbfilename = str(config.get("dbfilename") or "")
    if not directory or not dbfilename:
        raise RedisError("CONFIG GET did not report dir and dbfilename")
    if os.sep in dbfilename:
        raise RedisError(f"unexpected dbfilename {dbfilename!r} (not a plain file name)")
    return DataPaths(
        dir=directory,
        dbfilename=dbfilename,
        appendonly=str(config.get("appendonly", "no")).lower() == "yes",
        appendfilename=str(config.get("appendfilename") or "appendonly.aof"),
        appenddirname=str(config["appenddirname"]) if config.get("appenddirname") else None,
    )


def server_data_paths(client: Any) -> DataPaths:
    """CONFIG GET of the persistence settings, as the server reports them; RedisError when CONFIG is
    not allowed or renamed."""
    config: dict[str, Any] = {}
    try:
        for name in ("dir", "dbfilename", "appendonly", "appendfilename", "appenddirname"):
            config.update(client.config_get(name))
    except redis.ResponseError as exc:
        raise RedisError(f"CONFIG GET is not available ({one_line(exc)})") from None
    return data_paths(config)


def read_data_paths(client: Any, host_dir: str | None = None) -> DataPaths:
    """The server's data paths as this host sees them (:func:`server_data_paths`, :func:`on_host`)."""
    return on_host(server_data_paths(client), host_dir)


def container_hint(server_dir: str) -> str:
    return f"when Redis runs in a container, set host_data_dir to the host directory mounted at {server_dir}"


def host_data_dir(host_dir: str, server_dir: str | None = None) -> str:
    """``host_dir`` made absolute; RedisError naming host_data_dir when it is not an existing directory
    (``server_dir``: the data directory the server reports, for the message)."""
    path = os.path.abspath(host_dir)
    if not os.path.isdir(path):
        mounted = f" mounted at the server's data directory {server_dir}" if server_dir else ""
        raise RedisError(
            f"host_data_dir {path} is not an existing directory (it must be the host directory{mounted}, "
            "where Redis writes its data files)"
        )
    return path


def dir_on_host(server_dir: str, host_dir: str | None = None) -> str:
    """The server's data directory ``server_dir`` (what CONFIG GET dir reports) as this host sees it.

    A server in a container reports its own data directory (``/data``); ``host_dir`` is the host
    directory mounted there, and is returned instead (:func:`host_data_dir`). Without it the reported
    directory must exist here (a RedisError that points to host_data_dir otherwise); one that cannot
    be looked at is left to the file operations to report."""
    if host_dir:
        return host_data_dir(host_dir, server_dir)
    try:
        os.stat(server_dir)
    except (FileNotFoundError, NotADirectoryError):
        raise RedisError(
            f"the server's data directory {server_dir} (CONFIG GET dir) does not exist on this host: the module "
            f"must run on the Redis host; {container_hint(server_dir)}"
        ) from None
    except OSError:
        pass
    return server_dir


def named_data_dir(named: str | None, host_dir: str | None, what: str = "data_dir", hint: str = "") -> str | None:
    """The data directory on this host that a caller named (``named``, the option ``what``; needed
    when the server does not answer). With ``host_dir`` (host_data_dir) it must be that directory,
    which is then enough (returned when nothing is named); otherwise a RedisError naming both
    (``hint``: what to do, appended)."""
    if not host_dir:
        return named
    host = host_data_dir(host_dir)
    if named and os.path.realpath(named) != os.path.realpath(host):
        raise RedisError(f"{what} {named} is not host_data_dir {host}{hint}")
    return named or host


def on_host(paths: DataPaths, host_dir: str | None = None) -> DataPaths:
    """``paths`` (what CONFIG GET reports) as this host sees them (:func:`dir_on_host`): every data
    file (RDB, AOF, the restore journal) is reached through their ``dir``."""
    if host_dir:
        return replace(paths, dir=dir_on_host(paths.dir, host_dir))
    dir_on_host(paths.dir)
    return paths


def server_clock(client: Any) -> int:
    """The server's time in whole seconds: INFO server_time_usec (Redis 6.2+), else TIME."""
    usec = client.info("server").get("server_time_usec")
    if usec is not None:
        return int(usec) // 1_000_000
    return int(client.time()[0])


def check_rdb_magic(path: str) -> None:
    """RedisError unless the file starts with the RDB magic ``REDIS``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(RDB_MAGIC))
    except OSError as exc:
        raise RedisError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head != RDB_MAGIC:
        raise RedisError(f"{path} is not an RDB file (it does not start with {RDB_MAGIC.decode()!r})")


RDB_AUX = 0xFA  # opcode of an auxiliary field (redis-ver, ctime, ...) at the start of an RDB file


class _Header:
    """Reads the length- and string-encoded values of an RDB header; ValueError past its end."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("past the end of the bytes read")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def length(self) -> tuple[int, bool]:
        """(length, False) or, for a special encoding, (its type, True)."""
        first = self.take(1)[0]
        kind = first >> 6
        if kind == 0:
            return first & 0x3F, False
        if kind == 1:
            return ((first & 0x3F) << 8) | self.take(1)[0], False
        if kind == 3:
            return first & 0x3F, True
        if first in (0x80, 0x81):
            return int.from_bytes(self.take(4 if first == 0x80 else 8), "big"), False
        raise ValueError(f"unknown length encoding {first:#x}")

    def string(self) -> bytes | int | None:
        """A string, an integer stored as one, or None for an LZF-compressed string (skipped)."""
        n, special = self.length()
        if not special:
            return self.take(n)
        if n <= 2:
            return int.from_bytes(self.take(1 << n), "little", signed=True)
        if n == 3:
            compressed, _special = self.length()
            self.length()  # the length once decompressed
            self.take(compressed)
            return None
        raise ValueError(f"unknown string encoding {n}")


def rdb_aux(head: bytes) -> dict[str, bytes | int]:
    """The auxiliary fields at the start of an RDB file (``redis-ver``, ``ctime``, ``used-mem``, ...),
    from its first bytes ``head``: every AUX opcode up to the first other one, or as far as ``head``
    goes. An integer value is an int; a compressed one is left out; not an RDB file: {}."""
    if head[: len(RDB_MAGIC)] != RDB_MAGIC:
        return {}
    reader = _Header(head, len(RDB_MAGIC) + 4)  # REDIS and four digits of the RDB version
    fields: dict[str, bytes | int] = {}
    try:
        while reader.pos < len(head) and head[reader.pos] == RDB_AUX:
            reader.pos += 1
            key, value = reader.string(), reader.string()
            if isinstance(key, bytes) and value is not None:
                fields[key.decode("utf-8", "replace")] = value
    except ValueError:
        pass  # the header goes on past what was read, or is damaged: the fields read so far
    return fields


def rdb_ctime(head: bytes) -> int | None:
    """When the save that wrote an RDB file began (its ``ctime`` field, the server's clock, Unix
    seconds; every Redis since 3.2 writes it), None when the header has none."""
    value = rdb_aux(head).get("ctime")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def predates(head: bytes, mtime: float, since: int) -> str | None:
    """Why an RDB file (first bytes ``head``, modification time ``mtime``) was not written by a save that
    began at ``since`` (the server's clock, whole seconds) or later; None when it was.

    The header's ``ctime`` is the server's own clock when the save began, so it is compared exactly;
    without one, the file's mtime, a second early at most (file-system timestamps lag the clock)."""
    ctime = rdb_ctime(head)
    if ctime is not None:
        if ctime >= since:
            return None
        return f"it is from a save begun at {_utc(ctime)} (its ctime), this one began at {_utc(since)}"
    if int(mtime) >= since - 1:
        return None
    return f"it was last written at {_utc(mtime)} (it has no ctime), this save began at {_utc(since)}"


def mapping_hint(server_dir: str, host_dir: str | None) -> str:
    """What a data file missing where the module looked (or stale after our save) says about where
    that was."""
    if host_dir:
        return (
            f"host_data_dir {host_dir} is not the directory the server writes to (the host directory "
            f"mounted at its data directory {server_dir})"
        )
    return f"{server_dir} on this host is not the directory the server writes to; {container_hint(server_dir)}"


def check_fresh_rdb(fin: Any, since: int, hint: str) -> None:
    """RedisError unless the open RDB file ``fin`` was written by a save that began at ``since`` or later
    (a wrong host_data_dir, or a server whose dir is not this host's, would otherwise hand over an old
    file as a fresh snapshot); ``hint``: what that says (:func:`mapping_hint`). Reads with pread:
    ``fin``'s offset stays where it is."""
    name = getattr(fin, "name", "the RDB file")
    try:
        head = os.pread(fin.fileno(), 4096, 0)
        mtime = os.fstat(fin.fileno()).st_mtime
    except OSError as exc:
        raise RedisError(f"cannot read {name}: {exc.strerror or exc}") from None
    why = predates(head, mtime, since)
    if why:
        raise RedisError(f"{name} was not written by this save ({why}): {hint}")


def aof_manifest(appendfilename: str) -> tuple[str, bytes]:
    """(base file name, manifest text) of a Redis 7 multi-part AOF whose only part is an RDB base."""
    base = f"{appendfilename}.1.base.rdb"
    return base, f"file {base} seq 1 type b\n".encode()


# ---------------------------------------------------------------------------------------------
# copying the RDB
# ---------------------------------------------------------------------------------------------


def _kernel_copy(in_fd: int, out_fd: int, size: int, chunk: int) -> int | None:
    """Copy with sendfile(2) from offset 0 until EOF (the data never enters user space); the
    bytes copied, or None when the kernel refuses sendfile for these descriptors."""
    if not hasattr(os, "sendfile"):
        return None
    offset = 0
    try:
        while True:
            sent = os.sendfile(out_fd, in_fd, offset, max(chunk, size - offset))
            if not sent:
                return offset
            offset += sent
    except OSError as exc:
        if offset == 0 and exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            return None
        raise


def _hash_fd(fd: int, digest: Any, chunk: int) -> None:
    """Feed the whole file behind ``fd`` (from offset 0, with pread) into ``digest``."""
    offset = 0
    while True:
        block = os.pread(fd, chunk, offset)
        if not block:
            return
        digest.update(block)
        offset += len(block)


def copy_stable(fin: Any, dst: str, chunk: int = 4 * 1024 * 1024, digest: Any = None) -> int:
    """Copy the open binary file ``fin`` to the new file ``dst`` (fsynced); return the bytes copied.

    Redis replaces its RDB by rename, which leaves an open descriptor pointing at the file that was
    opened, so copying through it always yields one complete file. Size and mtime are compared before
    and after; a file changed in place is refused. With ``digest`` (a hashlib object), the same
    file is hashed in a thread while the kernel copies it (hashlib releases the GIL), so the set
    needs no second read."""
    name = getattr(fin, "name", "the RDB file")
    try:
        before = os.fstat(fin.fileno())
        copied = 0
        hasher = None
        if digest is not None:
            hasher = threading.Thread(target=_hash_fd, args=(fin.fileno(), digest, chunk), daemon=True)
            hasher.start()
        with open(dst, "wb") as fout:
            copied = _kernel_copy(fin.fileno(), fout.fileno(), before.st_size, chunk)
            if copied is None:  # no sendfile for this pair of files: copy through user space
                copied = 0
                while True:
                    block = fin.read(chunk)
                    if not block:
                        break
                    fout.write(block)
                    copied += len(block)
                fout.flush()
            os.fsync(fout.fileno())
        if hasher is not None:
            hasher.join()
        after = os.fstat(fin.fileno())
    except OSError as exc:
        raise RedisError(f"cannot copy {name} to {dst}: {exc.strerror or exc}") from None
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or copied != after.st_size:
        raise RedisError(f"{name} changed while it was being copied")
    return copied
