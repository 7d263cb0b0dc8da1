# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Interrupted restores (redis_restore, private): the journal a restore writes before it stops the
server, where it and its locator live, the files a killed restore leaves, and how the server ran before
(its start command and user), so that a rerun can finish or roll back."""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from typing import Any, Callable

from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line
from ansible_collections.runbook.stack.plugins.module_utils._redis.connection import RedisError
from ansible_collections.runbook.stack.plugins.module_utils._redis.persistence import DataPaths

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
