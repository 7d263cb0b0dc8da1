# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copying a Redis 7 AOF into an archive (private; redis_aof_archive and the follow process).

An archive run copies what is new of the server's current generation: the base when it is not
archived yet, the complete commands an incr file gained, the manifest; the index goes last. A rewrite
deletes the previous generation's files: :func:`rewrite_aof` (the module's ``rewrite=true``) and
:class:`Follower` (the follow mode, for rewrites anyone starts) keep the incr files open across it and
finish the old generation through the open descriptors, so the archive has no gap.
"""

from __future__ import annotations

import hashlib
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line
from ansible_collections.runbook.stack.plugins.module_utils._redis import (
    CLIENT_ERRORS,
    RedisError,
    busy_persisting,
    poll,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof import (
    AofPart,
    Scan,
    base_time,
    find_generation,
    gen_id,
    held_range,
    read_manifest_file,
    scan_aof,
    seal_allowed,
    stat_key,
    wait_rewrite_idle,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof_archive_store import Store, archive_lock


@dataclass
class ArchiveRun:
    generation: str
    copied: list[str] = field(default_factory=list)
    bytes: int = 0  # new bytes archived (a base, what incr files gained)


def ensure_generation(
    store: Store, index: dict[str, Any], aof_dir: str, base: AofPart, now: float
) -> tuple[dict[str, Any], int]:
    """The index entry of the generation of ``base``; a new one (the base copied) when it is not
    archived yet. Returns (entry, bytes copied)."""
    base_path = os.path.join(aof_dir, base.name)
    with open(base_path, "rb") as fh:
        st = os.fstat(fh.fileno())
        gen = find_generation(index, base, st)
        if gen is not None:
            return gen, 0
        ts = base_time(base_path, base.name)

        def make_id(sha: str) -> str:
            nonlocal ts
            if any(g["base"]["sha256"] == sha for g in index["generations"]):
                # an archived base put back by a restore: its timeline starts now, not at the base's time
                ts = int(now)
            first = gen_id(ts, base, sha)
            taken = {g["id"] for g in index["generations"]}
            return next(
                f"{first}{more}" for more in ["", *(f"-{n}" for n in range(2, 1000))] if f"{first}{more}" not in taken
            )

        new_id, sha, extra = store.put_base(fh, st.st_size, base.name, make_id)
    gen = {
        "id": new_id,
        "base": {
            "name": base.name,
            "seq": base.seq,
            "sha256": sha,
            "size": st.st_size,
            "time": ts,
            "stat": stat_key(st),
        }
        | extra,
        "incr": [],
        "covered_until": ts - 1,  # the writes after the base in its own second are not copied yet
        "sealed": False,
        "archived_at": int(now),
    }
    index["generations"].append(gen)
    return gen, st.st_size


def copy_incr(store: Store, gen: dict[str, Any], aof_dir: str, part: AofPart, fh: BinaryIO) -> int:
    """Archive the complete commands of the incr file open as ``fh``; the new bytes archived."""
    held = {f["name"]: f for f in gen["incr"]}
    st = os.fstat(fh.fileno())
    old = held.get(part.name)
    if old and old.get("stat") == stat_key(st):
        return 0
    if old and old.get("inode") not in (None, st.st_ino):
        raise RedisError(
            f"{part.name} in {aof_dir} is another file than the one archived in {store.location(gen['id'], part.name)} "
            "(the server's AOF was replaced without a rewrite); archive it into a new dest"
        )
    old_size = old["size"] if old else 0
    found = Scan(old_size, old and old.get("first_ts"), old and old.get("last_ts"), bool(old and old.get("untimed")))
    scan = scan_aof(fh, old_size, st.st_size, found)
    complete = stat_key(st) if scan.end == st.st_size else None
    if scan.end <= old_size:  # nothing new that is complete
        if old:
            old["stat"] = complete or old.get("stat")
        return 0
    sha, extra = store.put_incr(gen["id"], part.name, fh, old, scan.end)
    entry = {
        "name": part.name,
        "seq": part.seq,
        "sha256": sha,
        "size": scan.end,
        "first_ts": scan.first_ts,
        "last_ts": scan.last_ts,
        "untimed": scan.untimed,
        "inode": st.st_ino,
        "stat": complete,
    } | extra
    if old:
        old.update(entry)
    else:
        gen["incr"].append(entry)
    return scan.end - old_size


def archive(
    store: Store,
    index: dict[str, Any],
    aof_dir: str,
    parts: list[AofPart],
    manifest: tuple[str, bytes],
    open_files: dict[str, BinaryIO] | None = None,
    generation: dict[str, Any] | None = None,
    seal: bool = True,
    clock: Any = None,
    ended: bool = False,
) -> ArchiveRun:
    """Copy what is new of the generation of ``parts`` into ``store`` and update ``index`` (not
    saved). ``manifest``: (file name, content) of the server's manifest of these parts.
    ``open_files`` and ``generation``: finish that (already archived) generation from incr files opened
    before a rewrite deleted them; they are complete, so with ``seal`` (one rewrite, every incr file
    held) it reaches the next base without a gap, else it is held up to the second before its last write
    (``ended``: the server that wrote them is gone, so up to that second)."""
    now = (clock or time.time)()
    open_files = open_files or {}
    if generation is None:
        gen, new = ensure_generation(store, index, aof_dir, parts[0], now)
        run = ArchiveRun(gen["id"], [parts[0].name] if new else [], new)
    else:
        gen = generation
        run = ArchiveRun(gen["id"])
    for part in parts[1:]:
        with ExitStack() as stack:
            fh = open_files.get(part.name) or stack.enter_context(open(os.path.join(aof_dir, part.name), "rb"))
            grown = copy_incr(store, gen, aof_dir, part, fh)
            if grown:
                run.copied.append(part.name)
                run.bytes += grown
    digest = hashlib.sha256(manifest[1]).hexdigest()
    if (gen.get("manifest"), gen.get("manifest_sha256")) != (manifest[0], digest):
        store.put_manifest(gen["id"], manifest[0], manifest[1])
    gen["manifest"], gen["manifest_sha256"] = manifest[0], digest
    if generation is None:
        # every write acknowledged before this run started is in the copies: whole seconds before now
        gen["covered_until"] = max(gen["covered_until"], int(now) - 1)
    elif seal:
        gen["sealed"] = True
    else:
        last = [f["last_ts"] for f in gen["incr"] if f.get("last_ts") is not None]
        gen["covered_until"] = max([gen["covered_until"], *(t - (0 if ended else 1) for t in last)])
    gen["archived_at"] = int(now)
    return run


def _named(run: ArchiveRun) -> list[str]:
    return [f"{run.generation}/{n}" for n in run.copied]


def rewrite_aof(
    client: Any, timeout: float, store: Store, index: dict[str, Any], aof_dir: str, appendfilename: str
) -> tuple[str, list[str]]:
    """BGREWRITEAOF without a gap in the archive: the incr files of the current generation are kept
    open, the rewrite runs, their rest is archived through the open descriptors (the generation is
    sealed) and the new generation is archived. Returns (new generation id, files copied)."""
    wait_rewrite_idle(client, timeout)
    path, parts, raw = read_manifest_file(aof_dir, appendfilename)
    old_manifest = (os.path.basename(path), raw)
    first = archive(store, index, aof_dir, parts, old_manifest)
    store.save_index(index)
    gen = next(g for g in index["generations"] if g["id"] == first.generation)
    copied = _named(first)
    with ExitStack() as stack:
        open_files = {p.name: stack.enter_context(open(os.path.join(aof_dir, p.name), "rb")) for p in parts[1:]}
        if read_manifest_file(aof_dir, appendfilename)[1] != parts:
            raise RedisError("the AOF was rewritten by the server while it was archived; run again")
        before = int(client.info("persistence").get("aof_rewrites", 0))
        try:
            client.bgrewriteaof()
        except CLIENT_ERRORS as exc:
            raise RedisError(f"BGREWRITEAOF was refused: {one_line(exc)}") from None

        def finished() -> dict[str, Any] | None:
            reply = client.info("persistence")
            done = int(reply.get("aof_rewrites", 0)) > before and not busy_persisting(reply)
            return reply if done else None

        reply = poll(finished, timeout, 0.05)
        if reply is None:
            raise RedisError(f"the AOF rewrite did not finish within {timeout:g} s; raise timeout")
        if str(reply.get("aof_last_bgrewrite_status", "ok")) != "ok":
            raise RedisError("the AOF rewrite failed (aof_last_bgrewrite_status:err; see the Redis log)")
        sealed = archive(store, index, aof_dir, parts, old_manifest, open_files=open_files, generation=gen)
        store.save_index(index)
        copied += _named(sealed)
    path, parts, raw = read_manifest_file(aof_dir, appendfilename)
    nxt = archive(store, index, aof_dir, parts, (os.path.basename(path), raw))
    return nxt.generation, copied + _named(nxt)


@dataclass
class Pass:
    """What one follow pass did."""

    generation: str
    copied: list[str]
    bytes: int
    held: dict[str, Any]
    finished: str | None = None  # the previous generation finished through held descriptors
    sealed: bool = False
    lost: str | None = None  # the AOF directory could not be read: only the held descriptors were


class Follower:
    """Archive passes (:meth:`run_pass`, every few seconds) that keep the incr files of the current
    generation open between passes. When the base changed since the last pass (a rewrite, automatic
    or not), the old generation's rest is first read through those descriptors (the files are deleted
    by then) and archived; when exactly one rewrite ran and every old incr file was held, the
    generation is sealed: no gap however the rewrite was timed."""

    def __init__(
        self, store: Store, aof_dir: str, appendfilename: str, clock: Any = None, lock_wait: float = 0
    ) -> None:
        self.store = store
        self.aof_dir = aof_dir
        self.appendfilename = appendfilename
        self.clock = clock or time.time
        self.lock_wait = lock_wait
        self.files: dict[str, BinaryIO] = {}
        self.held: tuple[list[AofPart], tuple[str, int], str, tuple[str, bytes]] | None = None

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()
        self.files, self.held = {}, None

    def run_pass(self, server_gone: bool = False) -> Pass:
        """One pass. ``server_gone``: the server did not answer, so files held open are complete."""
        try:
            path, parts, raw = read_manifest_file(self.aof_dir, self.appendfilename)
            key = (parts[0].name, os.stat(os.path.join(self.aof_dir, parts[0].name)).st_ino)
        except (RedisError, OSError) as exc:
            if not self.held:
                raise
            cause = str(exc) if isinstance(exc, RedisError) else f"{exc.strerror or exc} ({exc.filename})"
            return self._drain(cause, server_gone)
        manifest = (os.path.basename(path), raw)
        finished, sealed, extra = None, False, ArchiveRun("")
        with archive_lock(self.store, self.lock_wait):
            index = self.store.load_index()
            if self.held and self.held[1] != key:
                old_parts, _key, old_id, old_manifest = self.held
                gen = next((g for g in index["generations"] if g["id"] == old_id), None)
                if gen is not None and not gen.get("sealed"):
                    sealed = seal_allowed(old_parts, parts)
                    extra = archive(
                        self.store, index, self.aof_dir, old_parts, old_manifest, self.files, gen, sealed, self.clock
                    )
                    finished = old_id
            run = archive(self.store, index, self.aof_dir, parts, manifest, clock=self.clock)
            self.store.save_index(index)
            self.store.finish()
        held = held_range(index)
        if self.held and self.held[1] != key:
            self.close()
        self._hold(parts, key, run.generation, manifest)
        return Pass(run.generation, _named(extra) + _named(run), extra.bytes + run.bytes, held, finished, sealed)

    def _drain(self, cause: str, server_gone: bool) -> Pass:
        """The AOF directory is unreadable (deleted, say): archive what the held descriptors still read
        (the server may even go on writing the deleted incr file), without sealing; the generation is
        then held up to the second before its last write, or up to that second when the server is gone
        (nothing more can be written). The descriptors stay open."""
        parts, _key, gen_id_held, manifest = self.held or ([], ("", 0), "", ("", b""))
        with archive_lock(self.store, self.lock_wait):
            index = self.store.load_index()
            gen = next((g for g in index["generations"] if g["id"] == gen_id_held), None)
            if gen is None or gen.get("sealed"):
                raise RedisError(f"{cause}; the generation held open is not in the archive (any more)")
            run = archive(
                self.store, index, self.aof_dir, parts, manifest, self.files, gen, False, self.clock, server_gone
            )
            self.store.save_index(index)
            self.store.finish()
        return Pass(run.generation, _named(run), run.bytes, held_range(index), lost=cause)

    def _hold(self, parts: list[AofPart], key: tuple[str, int], generation: str, manifest: tuple[str, bytes]) -> None:
        """Keep every incr file of ``parts`` open; hold nothing when the manifest changed meanwhile
        (a descriptor of a file that is not in it could not finish its generation)."""
        names = {p.name for p in parts[1:]}
        for name in [n for n in self.files if n not in names]:
            self.files.pop(name).close()
        try:
            for name in sorted(names - set(self.files)):
                self.files[name] = open(os.path.join(self.aof_dir, name), "rb")  # noqa: SIM115  # pylint: disable=consider-using-with
            if read_manifest_file(self.aof_dir, self.appendfilename)[1] != parts:
                raise FileNotFoundError
        except (OSError, RedisError):
            self.close()
            return
        self.held = (parts, key, generation, manifest)
