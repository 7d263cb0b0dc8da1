# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading a Redis AOF archive (private): choosing the files for a point in time (select), verifying
them and describing the archive (redis_aof_archive_info), and fetching the files of a selection into a staging directory, checked
against the index (redis_restore_to_time). The archive itself: _redis_aof_archive_store."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    FILE_MODE,
)
from ansible_collections.runbook.stack.plugins.module_utils._common.files import fsync_dir
from ansible_collections.runbook.stack.plugins.module_utils._redis import RedisError
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof import (
    AofPart,
    held_range,
    manifest_text,
    utc,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof_archive_store import Store

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
    incr, before = [], gen["base"]["time"]
    for entry in gen["incr"]:
        # commands before a file's first #TS are of the second of the last #TS before them (the base's
        # time for the first file of a generation)
        start = before if entry.get("untimed") else entry.get("first_ts")
        if start is not None and start <= target:
            incr.append(entry)
        before = entry.get("last_ts") or before
    return Selection(generation=gen, incr=incr, target=target)


def verify_entry(store: Store, gen_id: str, entry: dict[str, Any]) -> str | None:
    """A problem when the archived file does not have the recorded size and sha256 (every byte read)."""
    digest = hashlib.sha256()
    try:
        size = store.stream(gen_id, entry, digest.update)
    except (OSError, RedisError) as exc:
        return f"{store.location(gen_id, entry['name'])}: {getattr(exc, 'strerror', None) or exc}"
    if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
        return f"{store.location(gen_id, entry['name'])}: size or sha256 differs from the archive index"
    return None


def describe_archive(store: Store, verify: bool) -> dict[str, Any]:
    """held range, generations, size and the problems (missing files, size or sha256) of one archive."""
    index = store.load_index()
    problems, size, generations = [], 0, []
    for gen in index["generations"]:
        for entry in [gen["base"], *gen["incr"]]:
            size += entry["size"]
            problem = verify_entry(store, gen["id"], entry) if verify else store.quick_problem(gen["id"], entry)
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
        "source": store.source,
        "path": store.path,
        "held": held_range(index),
        "generations": generations,
        "size_bytes": size,
        "problems": problems,
    }


def fetch(store: Store, gen_id: str, entry: dict[str, Any], dest: str) -> str | None:
    """Write the archived file of ``entry`` to the new file ``dest`` (0600, fsynced); a problem when
    what was read does not have the recorded size and sha256."""
    digest = hashlib.sha256()
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as out:

        def sink(block: bytes) -> None:
            digest.update(block)
            out.write(block)

        try:
            size = store.stream(gen_id, entry, sink)
        except FileNotFoundError:
            return f"{store.location(gen_id, entry['name'])}: missing"
        out.flush()
        os.fsync(out.fileno())
    if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
        return f"{store.location(gen_id, entry['name'])}: size or sha256 differs from the archive index"
    return None


def assemble(store: Store, sel: Selection, staging: str, appendfilename: str) -> tuple[str, list[str]]:
    """Fetch the files of ``sel`` into ``staging`` under the server's ``appendfilename``, each checked
    against the index, and write their manifest; (manifest path, file names in manifest order).
    RedisError naming every archived file that does not match."""
    gen_id = sel.generation["id"]
    base = sel.generation["base"]
    suffix = "rdb" if base["name"].endswith(".rdb") else "aof"
    parts = [AofPart(f"{appendfilename}.{base['seq']}.base.{suffix}", base["seq"], "b")]
    parts += [AofPart(f"{appendfilename}.{e['seq']}.incr.aof", e["seq"], "i") for e in sel.incr]
    problems = [
        fetch(store, gen_id, entry, os.path.join(staging, part.name)) for part, entry in zip(parts, [base, *sel.incr])
    ]
    problems = [p for p in problems if p]
    if problems:
        raise RedisError("the archive does not match its index: " + "; ".join(problems[:5]))
    manifest = os.path.join(staging, f"{appendfilename}.manifest")
    with open(manifest, "wb") as fh:
        fh.write(manifest_text(parts))
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(manifest, FILE_MODE)
    fsync_dir(staging)
    return manifest, [p.name for p in parts]
