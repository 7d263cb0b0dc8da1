# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis connection, errors and parsing helpers shared by the redis_* modules (private).

Helpers take plain values, never the AnsibleModule; only a module's main() touches params and
fail_json. Every foreseeable fault is raised as :class:`RedisError` with a message that names the
server and the cause and never contains a password.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ansible.module_utils.basic import env_fallback

from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line

try:
    import redis
    import redis.backoff
    import redis.retry

    HAS_REDIS = True
    REDIS_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported by the module via missing_required_lib
    redis = None
    HAS_REDIS = False
    REDIS_IMPORT_ERROR = traceback.format_exc()


class RedisError(Exception):
    """A foreseeable Redis fault, already phrased for the operator."""


# redis-py's base error when available: main() catches these once, next to RedisError.
CLIENT_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError,) if HAS_REDIS else ()


def redis_argument_spec() -> dict[str, Any]:
    """Connection options shared by every redis_* module (doc fragment: runbook.stack.redis)."""
    return dict(
        login_host=dict(type="str", default="127.0.0.1"),
        login_port=dict(type="int", default=6379),
        login_user=dict(type="str"),
        login_password=dict(type="str", no_log=True, fallback=(env_fallback, ["REDISCLI_AUTH"])),
        db=dict(type="int", default=0),
        tls=dict(type="bool", default=False),
        validate_certs=dict(type="bool", default=True),
        ca_certs=dict(type="path"),
        connect_timeout=dict(type="float", default=5.0),
        socket_timeout=dict(type="float", default=5.0),
    )


@dataclass(frozen=True)
class ConnInfo:
    host: str
    port: int
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    tls: bool = False
    validate_certs: bool = True
    ca_certs: str | None = None
    connect_timeout: float = 5.0
    socket_timeout: float = 5.0

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def conn_info(params: dict[str, Any]) -> ConnInfo:
    """ConnInfo from module params (validated values, not the module)."""
    port = params.get("login_port") or 6379
    if not 0 < int(port) < 65536:
        raise RedisError(f"login_port {port} is not a valid TCP port")
    for name in ("connect_timeout", "socket_timeout"):
        value = params.get(name)
        if value is not None and value <= 0:
            raise RedisError(f"{name} must be a positive number of seconds, got {value}")
    db = params.get("db") or 0
    if db < 0:
        raise RedisError(f"db must be 0 or more, got {db}")
    return ConnInfo(
        host=params.get("login_host") or "127.0.0.1",
        port=int(port),
        user=params.get("login_user") or None,
        password=params.get("login_password") or None,
        db=int(db),
        tls=bool(params.get("tls")),
        validate_certs=params.get("validate_certs", True) is not False,
        ca_certs=params.get("ca_certs"),
        connect_timeout=float(params.get("connect_timeout") or 5.0),
        socket_timeout=float(params.get("socket_timeout") or 5.0),
    )


def describe(exc: BaseException, info: ConnInfo) -> str:
    """The cause of a redis-py error, phrased for the operator, password removed."""
    text = one_line(exc, info.password) or type(exc).__name__
    if HAS_REDIS and isinstance(exc, redis.AuthenticationError):
        return f"authentication failed ({text})"
    if HAS_REDIS and isinstance(exc, redis.TimeoutError):
        return f"timed out ({text})"
    return text


def connect(info: ConnInfo, decode: bool = True) -> Any:
    """A redis.Redis client that has answered PING; faults become RedisError naming host:port.

    ``decode=False`` returns bytes (keys that are not UTF-8, and no decoding cost on bulk work)."""
    kwargs: dict[str, Any] = dict(
        host=info.host,
        port=info.port,
        db=info.db,
        username=info.user,
        password=info.password,
        socket_connect_timeout=info.connect_timeout,
        socket_timeout=info.socket_timeout,
        decode_responses=decode,
        client_name="runbook.stack",
        # no silent retries: a dead or stalled server fails within the configured timeouts
        retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
    )
    if info.tls:
        kwargs.update(ssl=True, ssl_cert_reqs="required" if info.validate_certs else "none")
        if info.ca_certs:
            kwargs["ssl_ca_certs"] = info.ca_certs
        if not info.validate_certs:
            kwargs["ssl_check_hostname"] = False
    try:
        client = redis.Redis(**kwargs)
        client.ping()
    except redis.RedisError as exc:
        raise RedisError(f"cannot connect to Redis at {info.where} (db {info.db}): {describe(exc, info)}") from None
    return client


# ------------------------------------------------------------------------------------------------
# pure helpers
# ------------------------------------------------------------------------------------------------

# Redis memory units (redis.conf): k=1000, kb=1024, m=1e6, mb=1024^2, g=1e9, gb=1024^3.
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
}
_MEMORY_RE = re.compile(r"^\s*(-?\d+)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_memory(value: Any) -> int:
    """Bytes of a Redis memory value such as ``1gb``, ``100mb``, ``512k`` or ``1048576``."""
    if isinstance(value, bool):
        raise ValueError(f"not a memory size: {value!r}")
    if isinstance(value, int):
        return value
    match = _MEMORY_RE.match(str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a memory size: {value!r}")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_keyspace(info: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per-db key counts from INFO keyspace (redis-py dict or raw ``keys=1,expires=0,...`` text)."""
    result: dict[str, dict[str, int]] = {}
    for name, value in info.items():
        if not re.fullmatch(r"db\d+", str(name)):
            continue
        if isinstance(value, dict):
            fields = value
        else:
            fields = dict(part.split("=", 1) for part in str(value).split(",") if "=" in part)
        result[str(name)] = {k: int(v) for k, v in fields.items() if str(v).lstrip("-").isdigit()}
    return result


def parse_info_text(text: str) -> dict[str, str]:
    """``key:value`` lines of raw INFO output (sections and comments skipped)."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            key, _sep, value = line.partition(":")
            result[key] = value
    return result


def hit_rate(hits: int, misses: int) -> float | None:
    """keyspace_hits / (hits + misses), four decimals; None when there were no lookups."""
    total = int(hits) + int(misses)
    if total <= 0:
        return None
    return round(int(hits) / total, 4)


_UNIT_TOKEN_RE = re.compile(r"^-?\d+(k|kb|m|mb|g|gb)$", re.IGNORECASE)


def config_value(value: Any) -> str:
    """A setting value as CONFIG SET takes it: booleans as yes/no, lists joined by spaces."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return " ".join(config_value(v) for v in value)
    return str(value).strip()


def normalize_config(value: Any) -> str:
    """A setting value in the form CONFIG GET reports it, for comparison.

    Whitespace is collapsed, yes/no are lower-cased and every token with a memory unit
    (``1gb``, ``512k``) becomes its number of bytes; other tokens are kept as they are.
    """
    tokens = []
    for token in config_value(value).split():
        if _UNIT_TOKEN_RE.match(token):
            token = str(parse_memory(token))
        elif token.lower() in ("yes", "no"):
            token = token.lower()
        tokens.append(token)
    return " ".join(tokens)


# ------------------------------------------------------------------------------------------------
# snapshots and restores (redis_snapshot, redis_restore)
# ------------------------------------------------------------------------------------------------

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


def compare_keyspace(expected: dict[str, dict[str, int]], found: dict[str, dict[str, int]]) -> list[str]:
    """Problems when a restored keyspace does not match the snapshot's.

    Keys with a time to live may have expired since the snapshot (Redis drops them on load), so a db
    may hold between ``keys - expires`` and ``keys`` keys."""
    problems = []
    for db in sorted(set(expected) | set(found), key=lambda d: int(d[2:]) if d[2:].isdigit() else 0):
        want = expected.get(db, {})
        keys, expires = int(want.get("keys", 0)), int(want.get("expires", 0))
        got = int(found.get(db, {}).get("keys", 0))
        if not keys - expires <= got <= keys:
            if expires:
                problems.append(f"{db} has {got} keys, the snapshot had {keys} ({expires} with a time to live)")
            else:
                problems.append(f"{db} has {got} keys, the snapshot had {keys}")
    return problems


def total_keys(keyspace: dict[str, dict[str, int]]) -> int:
    return sum(int(v.get("keys", 0)) for v in keyspace.values())


def redis_cli_argv(redis_cli: str, info: ConnInfo, out_file: str) -> list[str]:
    """``redis-cli --rdb`` for the server of ``info``; the password goes in REDISCLI_AUTH, never here."""
    argv = [redis_cli, "-h", info.host, "-p", str(info.port)]
    if info.user:
        argv += ["--user", info.user]
    if info.tls:
        argv.append("--tls")
        if info.ca_certs:
            argv += ["--cacert", info.ca_certs]
        if not info.validate_certs:
            argv.append("--insecure")
    return [*argv, "--rdb", out_file]


def redis_cli_env(info: ConnInfo, base: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in (os.environ if base is None else base).items() if k != "REDISCLI_AUTH"}
    if info.password:
        env["REDISCLI_AUTH"] = info.password
    return env


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def poll(
    check: Callable[[], Any], timeout: float, interval: float = 0.1, clock=time.monotonic, sleep=time.sleep
) -> Any:
    """Call ``check`` until it returns something truthy (returned) or ``timeout`` seconds pass (None)."""
    deadline = clock() + timeout
    while True:
        value = check()
        if value:
            return value
        if clock() >= deadline:
            return None
        sleep(min(interval, max(0.0, deadline - clock())))


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


# ------------------------------------------------------------------------------------------------
# interrupted restores (redis_restore)
# ------------------------------------------------------------------------------------------------

JOURNAL_FORMAT = "runbook.stack/redis-restore-journal"


def journal_path(directory: str, port: int) -> str:
    """Where redis_restore records a restore in progress: in the server's data directory, per port."""
    return os.path.join(directory, f".runbook-redis-restore-{port}.json")


@dataclass(frozen=True)
class Journal:
    """A restore in progress, written before the server is stopped and removed once the restore
    (or its roll-back) is done: a rerun that finds the server down can finish what it describes.

    ``original_start`` is how the server was running before the stop (its executable and config
    file, see :func:`original_start`), ``original_user`` the (uid, gid) it ran as."""

    backup_id: str
    source: str
    port: int
    paths: DataPaths
    previous_file: str
    previous_aof: str | None
    pid: int
    started_at: str
    original_start: list[str] | None = None
    original_user: tuple[int, int] | None = None


def journal_bytes(journal: Journal) -> bytes:
    data = asdict(journal)
    data["format"] = JOURNAL_FORMAT
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def parse_journal(data: bytes, where: str) -> Journal:
    """A Journal from its file's bytes; RedisError naming ``where`` when it is not one."""
    try:
        raw = json.loads(data)
        if raw.get("format") != JOURNAL_FORMAT:
            raise ValueError("not a redis_restore journal")
        paths = DataPaths(**raw["paths"])
        user = raw.get("original_user")
        return Journal(
            backup_id=str(raw["backup_id"]),
            source=str(raw["source"]),
            port=int(raw["port"]),
            paths=paths,
            previous_file=str(raw["previous_file"]),
            previous_aof=str(raw["previous_aof"]) if raw.get("previous_aof") else None,
            pid=int(raw["pid"]),
            started_at=str(raw["started_at"]),
            original_start=[str(a) for a in raw["original_start"]] if raw.get("original_start") else None,
            original_user=(int(user[0]), int(user[1])) if user else None,
        )
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise RedisError(f"{where} is not a readable restore journal ({one_line(exc)}); remove it") from None


def restore_leftovers(paths: DataPaths, names: list[str]) -> list[str]:
    """Names (of ``names``, a listing of the data directory) of the temporary files and staging
    directories a restore leaves when it is killed while it copies the snapshot in place."""
    prefixes = [f".{paths.dbfilename}.restore-", f".{paths.appendfilename}.restore-"]
    if paths.appenddirname:
        prefixes.append(f".{paths.appenddirname}.restore-")
    return sorted(n for n in names if n.startswith(tuple(prefixes)))


def original_start(
    server: dict[str, Any],
    real_exe: str | None = None,
    which: Callable[[str], str | None] = shutil.which,
    isfile: Callable[[str], bool] = os.path.isfile,
) -> list[str] | None:
    """argv that starts the server the way it runs now (daemonized, from its ``config_file`` in INFO
    server), or None when it was not started from a config file or its binary is not known.

    INFO's ``executable`` is argv[0] made absolute against the server's working directory, so it is
    only right when the server was started by an absolute path; otherwise its name is looked up on
    PATH. ``real_exe`` (the process's /proc/<pid>/exe) must be the same binary, after symlinks."""
    executable = str(server.get("executable") or "")
    config_file = str(server.get("config_file") or "")
    if not executable or not os.path.isabs(config_file):
        return None
    for candidate in (executable, which(os.path.basename(executable))):
        if not candidate or not os.path.isabs(candidate) or not isfile(candidate):
            continue
        if real_exe is None or os.path.realpath(candidate) == os.path.realpath(real_exe):
            return [candidate, config_file, "--daemonize", "yes"]
    return None


def process_owner(status_text: str) -> tuple[int, int] | None:
    """(uid, gid) from the text of /proc/<pid>/status (real ids), None when they are not there."""
    ids: dict[str, int] = {}
    for line in status_text.splitlines():
        key, _sep, value = line.partition(":")
        if key in ("Uid", "Gid") and value.split():
            ids[key] = int(value.split()[0])
    if "Uid" in ids and "Gid" in ids:
        return ids["Uid"], ids["Gid"]
    return None


def state_home(env: dict[str, str] | None = None) -> str:
    """$XDG_STATE_HOME, else ~/.local/state: where redis_restore notes the data directory of a restore
    in progress, so that a rerun finds its journal while the server is down (and cannot be asked)."""
    env = dict(os.environ) if env is None else env
    return env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")


def locator_path(home: str, host: str, port: int) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{host}-{port}")
    return os.path.join(home, "runbook.stack", f"redis-restore-{name}.json")
