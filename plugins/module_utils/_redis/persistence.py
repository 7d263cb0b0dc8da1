# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis persistence for redis_snapshot and redis_restore (private): where a server keeps its data,
asking for a save (BGSAVE) and waiting until it is ours and done, checking an RDB file, the manifest
of a multi-part AOF with an RDB base, and copying the RDB the server may replace meanwhile."""

from __future__ import annotations

import errno
import os
import threading
import time
from dataclasses import dataclass
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


def read_data_paths(client: Any) -> DataPaths:
    """CONFIG GET of the persistence settings; RedisError when CONFIG is not allowed or renamed."""
    config: dict[str, Any] = {}
    try:
        for name in ("dir", "dbfilename", "appendonly", "appendfilename", "appenddirname"):
            config.update(client.config_get(name))
    except redis.ResponseError as exc:
        raise RedisError(f"CONFIG GET is not available ({one_line(exc)})") from None
    return data_paths(config)


def check_rdb_magic(path: str) -> None:
    """RedisError unless the file starts with the RDB magic ``REDIS``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(RDB_MAGIC))
    except OSError as exc:
        raise RedisError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head != RDB_MAGIC:
        raise RedisError(f"{path} is not an RDB file (it does not start with {RDB_MAGIC.decode()!r})")


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
