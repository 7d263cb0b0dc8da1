# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restoring an RDB snapshot into a Redis server on this host (private), for redis_restore: what the
running server reports (data paths, keyspace, how it was started), the file swap that moves its data
aside and puts the snapshot in place (and undoes that), and the journal of a restore in progress that
lets a rerun finish or roll back what an interrupted run began."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import keep_name, remove_tree
from ansible_collections.runbook.stack.plugins.module_utils._common.files import atomic_copy, atomic_write, fsync_dir
from ansible_collections.runbook.stack.plugins.module_utils._redis.connection import (
    ConnInfo,
    RedisError,
    connect,
    port_open,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis.info import compare_keyspace, parse_keyspace
from ansible_collections.runbook.stack.plugins.module_utils._redis.journal import (
    Journal,
    journal_bytes,
    journal_path,
    locator_path,
    original_start,
    parse_journal,
    process_owner,
    restore_leftovers,
    state_home,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis.persistence import (
    DataPaths,
    aof_manifest,
    read_data_paths,
)

# ------------------------------------------------------------------------------------------------
# the server process
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """What the running server told us before the stop."""

    paths: DataPaths
    keyspace: dict[str, dict[str, int]]
    original_start: list[str] | None
    original_user: tuple[int, int] | None


def read_server(info: ConnInfo, host_dir: str | None = None) -> tuple[Server | None, str]:
    """(data paths, keyspace and how the server runs, "") or, when nothing listens on its port (the
    server is down), (None, the connection error). Any other fault (authentication, TLS) is raised.

    ``host_dir``: the server runs in a container, its data directory mounted from this host directory
    (the paths are mapped there, :func:`on_host`). Its process_id is then one of the container's pid
    namespace (/proc/1 here is this host's init), so how it runs is not read: it is not started
    another way when its start command fails."""
    try:
        client = connect(info)
    except RedisError as exc:
        if port_open(info.host, info.port):
            raise
        return None, str(exc).rpartition(": ")[2] if ": " in str(exc) else str(exc)
    try:
        paths = read_data_paths(client, host_dir)
        keyspace = parse_keyspace(client.info("keyspace"))
        facts = client.info("server")
    finally:
        client.close()
    if host_dir:
        return Server(paths, keyspace, None, None), ""
    user, executable = None, None
    try:  # the server runs on this host (the module must): its owner and real binary
        proc = f"/proc/{int(facts.get('process_id', 0))}"
        with open(f"{proc}/status", encoding="utf-8") as fh:
            user = process_owner(fh.read())
        executable = os.readlink(f"{proc}/exe")
    except (OSError, ValueError):
        pass  # not readable: no way to start it as it ran
    return Server(paths, keyspace, original_start(facts, executable) if user else None, user), ""


def fallback_start(
    argv: list[str] | None, user: tuple[int, int] | None, service: str | None = None, container: bool = False
) -> tuple[list[str] | None, Any]:
    """How to start the server as it ran before the stop, as (argv, user to run it as), or (None, why not).
    A systemd unit (``service``) is only started by systemd: a server started beside it would run
    without the unit knowing. A server in a ``container`` (host_data_dir) is only started by its
    container runtime: how its process ran is not known from this host."""
    if service:
        return None, f"it is the systemd unit {service}, which only systemd starts"
    if container:
        return None, "host_data_dir is set: it runs in a container, which only its own start command starts"
    if not argv:
        return None, "it was not started from a config file"
    if user is None:
        return None, "the user it ran as is unknown"
    if os.geteuid() == user[0]:
        return argv, None
    if os.geteuid() == 0:
        return argv, user
    return None, f"it ran as uid {user[0]}, not as this module's uid {os.geteuid()}"


# ------------------------------------------------------------------------------------------------
# the files
# ------------------------------------------------------------------------------------------------


def pre_restore(path: str, backup_id: str, taken: Callable[[str], bool] = os.path.lexists) -> str:
    """``<path>.pre-restore-<backup_id>``, or with ``.2``, ``.3``... appended when an earlier restore of
    the same set already keeps a file under that name (it is never overwritten)."""
    kept, last = keep_name(lambda more: f"{path}.pre-restore-{backup_id}{more}", taken, ".", 999)
    if last is not None:
        raise RedisError(f"{kept} to {last} all exist; remove the ones no longer needed")
    return kept


def reference_stat(candidates: list[str | None], directory: str) -> os.stat_result:
    """The stat of the first existing candidate (the previous file, or where it was kept), else the
    data directory's (owner) with the file mode set to 0600."""
    for path in candidates:
        if path and os.path.exists(path):
            return os.stat(path)
    st = os.stat(directory)
    return os.stat_result((0o100600, *tuple(st)[1:]))


class FileSwap:
    """Moves the server's data files aside and puts the set's RDB in place; undo() reverses it.

    ``previous_file`` / ``previous_aof``: the names an interrupted restore chose (from its journal);
    by default the next free ``.pre-restore-<backup_id>`` names."""

    def __init__(
        self, paths: DataPaths, backup_id: str, previous_file: str | None = None, previous_aof: str | None = None
    ) -> None:
        self.paths = paths
        self.backup_id = backup_id
        self.data_file = paths.rdb_path
        self.previous_file = previous_file or pre_restore(self.data_file, backup_id)
        self.aof_path = paths.aof_path if paths.appendonly else None
        self.previous_aof = (previous_aof or pre_restore(self.aof_path, backup_id)) if self.aof_path else None
        self.moved: list[tuple[str, str]] = []  # (original, kept-as)
        self.installed: list[str] = []

    def _move_aside(self, original: str, kept: str) -> bool:
        if not os.path.lexists(original):
            return False
        os.rename(original, kept)
        self.moved.append((original, kept))
        fsync_dir(os.path.dirname(original))
        return True

    def moved_aside(self) -> list[tuple[str, str]]:
        """(original, kept-as) of each data file that an earlier run of this restore moved aside: its
        kept copy exists."""
        pairs = ((self.data_file, self.previous_file), (self.aof_path, self.previous_aof))
        return [(original, kept) for original, kept in pairs if original and kept and os.path.lexists(kept)]

    def adopt(self) -> list[str]:
        """Take over an interrupted restore of the same set: what it moved aside counts as moved by
        this one (undo() puts it back), what it installed in its place is removed (it is installed
        again), and so are its partial temporary files. Returns the paths removed."""
        removed = []
        for original, kept in self.moved_aside():
            if os.path.lexists(original):
                remove_tree(original)
                removed.append(original)
            self.moved.append((original, kept))
        for name in restore_leftovers(self.paths, os.listdir(self.paths.dir)):
            remove_tree(os.path.join(self.paths.dir, name))
            removed.append(os.path.join(self.paths.dir, name))
        fsync_dir(self.paths.dir)
        return removed

    def plan(self, rdb: str, leftovers: list[str]) -> list[str]:
        """What apply() (after removing an interrupted run's leftovers) would do, one step each, for
        check mode."""
        planned = [f"remove {p}" for p in leftovers]
        planned += [f"rename {self.data_file} to {self.previous_file}", f"install {rdb} as {self.data_file}"]
        if self.aof_path:
            planned += [f"rename {self.aof_path} to {self.previous_aof}", f"install {rdb} as the AOF base"]
        return planned

    def apply(self, rdb: str) -> None:
        like = reference_stat([self.data_file, self.previous_file], self.paths.dir)
        self._move_aside(self.data_file, self.previous_file)
        self.installed.append(self.data_file)
        atomic_copy(rdb, self.data_file, like, tag="restore")
        if not self.aof_path:
            return
        if self.paths.appenddirname:
            self._install_aof_dir(rdb, like)
        else:  # before Redis 7: one AOF file; an AOF that starts with an RDB preamble loads as the RDB
            aof_like = reference_stat([self.aof_path, self.previous_aof], self.paths.dir)
            self._move_aside(self.aof_path, self.previous_aof)
            self.installed.append(self.aof_path)
            atomic_copy(rdb, self.aof_path, aof_like, tag="restore")

    def _install_aof_dir(self, rdb: str, like: os.stat_result) -> None:
        base, manifest = aof_manifest(self.paths.appendfilename)
        dir_like = reference_stat([self.aof_path, self.previous_aof], self.paths.dir)
        staging = tempfile.mkdtemp(prefix=f".{self.paths.appenddirname}.restore-", dir=self.paths.dir)
        try:
            atomic_copy(rdb, os.path.join(staging, base), like, tag="restore")
            manifest_src = os.path.join(staging, ".manifest-src")
            with open(manifest_src, "wb") as fh:
                fh.write(manifest)
            atomic_copy(
                manifest_src, os.path.join(staging, f"{self.paths.appendfilename}.manifest"), like, tag="restore"
            )
            os.unlink(manifest_src)
            mode = dir_like.st_mode & 0o7777 if os.path.lexists(self.aof_path) else 0o700
            os.chmod(staging, mode)
            if os.geteuid() == 0:
                os.chown(staging, dir_like.st_uid, dir_like.st_gid)
            self._move_aside(self.aof_path, self.previous_aof)
            self.installed.append(self.aof_path)
            os.rename(staging, self.aof_path)
            fsync_dir(self.paths.dir)
        except BaseException:
            if os.path.lexists(staging):
                remove_tree(staging)
            raise

    def undo(self) -> None:
        for path in self.installed:
            if os.path.lexists(path):
                remove_tree(path)
        for original, kept in reversed(self.moved):
            os.rename(kept, original)
        fsync_dir(self.paths.dir)
        self.installed, self.moved = [], []

    @property
    def kept_file(self) -> str | None:
        return self.previous_file if any(o == self.data_file for o, _k in self.moved) else None

    @property
    def kept_aof(self) -> str | None:
        return self.previous_aof if any(o == self.aof_path for o, _k in self.moved) else None


# ------------------------------------------------------------------------------------------------
# the journal of a restore in progress
# ------------------------------------------------------------------------------------------------


def read_journal(path: str) -> Journal | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RedisError(f"cannot read the restore journal {path}: {exc.strerror or exc}") from None
    return parse_journal(data, path)


def write_journal(journal: Journal, info: ConnInfo) -> str:
    """The journal in the data directory, and a note of where it is in the user's state directory."""
    path = journal_path(journal.paths.dir, journal.port)
    atomic_write(path, journal_bytes(journal))
    locator = locator_path(state_home(), info.host, info.port)
    os.makedirs(os.path.dirname(locator), mode=0o700, exist_ok=True)
    atomic_write(locator, json.dumps({"data_dir": journal.paths.dir}).encode())
    return path


def drop_journal(path: str, info: ConnInfo) -> None:
    if os.path.lexists(path):
        os.unlink(path)
        fsync_dir(os.path.dirname(path))
    if journal_dir(info) == os.path.dirname(path):
        os.unlink(locator_path(state_home(), info.host, info.port))


def journal_dir(info: ConnInfo) -> str | None:
    """The data directory of the last restore into this server that did not end, as noted in the
    user's state directory; None when there is no note."""
    try:
        with open(locator_path(state_home(), info.host, info.port), "rb") as fh:
            found = json.loads(fh.read()).get("data_dir")
    except (OSError, ValueError, AttributeError):
        return None
    return str(found) if found else None


def restore_running(pid: int) -> bool:
    """True when pid is another live redis_restore (a run whose controller went away, say)."""
    if pid == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"redis_restore" in fh.read()
    except OSError:
        return False


def check_not_running(journal: Journal, path: str) -> None:
    if restore_running(journal.pid):
        raise RedisError(
            f"another redis_restore (pid {journal.pid}, started {journal.started_at}) is still restoring "
            f"set {journal.backup_id} into this server ({path}); wait for it to end or stop it, then rerun"
        )


def manifest_keyspace(facts: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The key counts a redis_snapshot manifest recorded (facts.keyspace), as compare_keyspace takes them."""
    return {str(k): {f: int(n) for f, n in v.items()} for k, v in facts["keyspace"].items()}


def check_key_counts(
    expected: dict[str, dict[str, int]], found: dict[str, dict[str, int]], exact: bool, warn: Callable, then: str = ""
) -> None:
    """Compare the restored key counts with the manifest's: a mismatch fails when the snapshot was exact
    (RedisError, followed by ``then``, what the operator does next) and is a warning when it was not (the
    server was written to while it was taken)."""
    problems = compare_keyspace(expected, found)
    if problems and exact:
        raise RedisError("key counts do not match the manifest: " + "; ".join(problems[:5]) + then)
    if problems:
        warn(
            "key counts differ from the manifest, which the snapshot marked as not exact "
            "(the server was written to while it was taken): " + "; ".join(problems[:5])
        )
