# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a Redis AOF archive is kept (private): a local directory or an ``s3://bucket/prefix``,
behind one interface used to write it (_redis_aof_archiver), list and verify it
(redis_aof_archive_info) and fetch its files into a staging directory (redis_restore_to_time;
the reading side is _redis_aof_archive_read).

Local: every archived file is a file (0600 in 0700 directories); an incr file that grew is copied
again and replaces the shorter copy. S3: every archived file is a list of part objects
``<generation>/<file>.parts/<start>-<end>`` (byte ranges, each at most PART_MAX bytes, sent with
Content-MD5); an incr file that grew gets a new part with only its new bytes (a long-running follower
also hashes only those; a fresh run hashes the file's first bytes again and compares them with the
archived sha256), and once a file has more than MAX_PARTS parts it is sent again in PART_MAX-aligned
parts (fewer, larger GETs for a restore). On both, ``index.json`` is written last: a run that stops
half-way leaves files or parts the index does not name, never an index that names what is not there.
On S3 the index is only replaced when its ETag is still the one this run read (a second archiver of
the same server is refused).
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, Union

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    FILE_MODE,
    make_private_dirs,
    remove_tree,
    source_dirname,
)
from ansible_collections.runbook.stack.plugins.module_utils._common.files import atomic_write, flock_within, fsync_dir
from ansible_collections.runbook.stack.plugins.module_utils._redis import RedisError
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof import (
    ARCHIVE_DIR,
    CHUNK,
    INDEX,
    index_bytes,
    new_index,
    parse_index,
)
from ansible_collections.runbook.stack.plugins.module_utils._s3 import error_code, open_s3_root, translate

PART_MAX = 64 * 1024 * 1024
MAX_PARTS = 32
LOCK_POLL = 0.1


def is_s3(root: str) -> bool:
    return str(root).startswith("s3://")


def plan_parts(
    parts: list[dict[str, int]], old_size: int, end: int
) -> tuple[list[dict[str, int]], list[dict[str, int]]]:
    """(the parts of bytes [0, end) after this run, the parts to send). The new bytes [old_size, end)
    become parts of at most PART_MAX bytes; when the file would then have more than MAX_PARTS parts it
    is cut anew into PART_MAX-aligned parts, and only those not already stored with that range are sent."""
    new = [{"offset": o, "size": min(PART_MAX, end - o)} for o in range(old_size, end, PART_MAX)]
    if len(parts) + len(new) <= MAX_PARTS:
        return parts + new, new
    have = {(p["offset"], p["size"]) for p in parts}
    whole = [{"offset": o, "size": min(PART_MAX, end - o)} for o in range(0, end, PART_MAX)]
    return whole, [p for p in whole if (p["offset"], p["size"]) not in have]


def part_rel(gen_id: str, name: str, part: dict[str, int]) -> str:
    return f"{gen_id}/{name}.parts/{part['offset']:012d}-{part['offset'] + part['size']:012d}"


def read_range(src: BinaryIO, start: int, length: int, sink: Callable[[bytes], Any] | None = None) -> bytes:
    """``length`` bytes of ``src`` from ``start``; handed to ``sink`` block by block (then b'' is
    returned) or returned. RedisError when the file is shorter."""
    src.seek(start)
    out, done = [], 0
    while done < length:
        block = src.read(min(CHUNK, length - done))
        if not block:
            raise RedisError(f"{getattr(src, 'name', 'the AOF file')} is shorter than {start + length} bytes")
        done += len(block)
        if sink:
            sink(block)
        else:
            out.append(block)
    return b"".join(out)


def hash_prefix(fh: BinaryIO, end: int, prefix_len: int, sink: Callable[[bytes], Any] | None = None) -> tuple[str, str]:
    """(sha256 of bytes [0, end), sha256 of [0, prefix_len)) of ``fh``; every block also goes to ``sink``."""
    digest = hashlib.sha256()

    def feed(block: bytes) -> None:
        digest.update(block)
        if sink:
            sink(block)

    read_range(fh, 0, prefix_len, feed)
    prefix = digest.hexdigest()
    read_range(fh, prefix_len, end - prefix_len, feed)
    return digest.hexdigest(), prefix


def _prefix_error(fh: BinaryIO, old_size: int, where: str) -> RedisError:
    return RedisError(
        f"the first {old_size} bytes of {getattr(fh, 'name', 'the AOF file')} differ from the archived copy {where} "
        "(the server's AOF was replaced without a rewrite); archive it into a new dest"
    )


class LocalStore:
    """The archive of one server under a local directory."""

    def __init__(self, root: str, source: str) -> None:
        self.source = source
        self.path = os.path.join(root, ARCHIVE_DIR, source_dirname(source))

    def location(self, gen_id: str, name: str) -> str:
        return os.path.join(self.path, gen_id, name)

    def exists(self) -> bool:
        return os.path.isfile(os.path.join(self.path, INDEX))

    def load_index(self) -> dict[str, Any]:
        path = os.path.join(self.path, INDEX)
        try:
            with open(path, "rb") as fh:
                return parse_index(fh.read(), path)
        except FileNotFoundError:
            return new_index(self.source)
        except OSError as exc:
            raise RedisError(f"cannot read the archive index {path}: {exc.strerror or exc}") from None

    def save_index(self, index: dict[str, Any]) -> None:
        atomic_write(os.path.join(self.path, INDEX), index_bytes(index))

    def finish(self) -> None:
        """Nothing to clean up: copies are replaced in place."""

    def lock_path(self) -> str:
        make_private_dirs(self.path)
        return os.path.join(self.path, ".lock")

    def put_base(self, fh: BinaryIO, size: int, name: str, make_id: Callable[[str], str]) -> tuple[str, str, dict]:
        """Copy a base file into a new generation directory; (generation id, sha256, extra index fields)."""
        make_private_dirs(self.path)
        tmp = tempfile.mkdtemp(prefix=".gen-", dir=self.path)
        try:
            os.chmod(tmp, 0o700)
            sha = _copy_file(fh, os.path.join(tmp, name), size, 0)[0]
            gen_id = make_id(sha)
            final = os.path.join(self.path, gen_id)
            if os.path.lexists(final):  # left by a run that ended before it saved the index
                remove_tree(final)
            fsync_dir(tmp)
            os.rename(tmp, final)
        except BaseException:
            if os.path.lexists(tmp):
                remove_tree(tmp)
            raise
        fsync_dir(self.path)
        return gen_id, sha, {}

    def put_incr(self, gen_id: str, name: str, fh: BinaryIO, old: dict | None, end: int) -> tuple[str, dict]:
        """Copy bytes [0, end) of a grown incr file over its archived copy (whose bytes must be its
        prefix); (sha256, extra index fields)."""
        gen_dir = os.path.join(self.path, gen_id)
        old_size = old["size"] if old else 0
        tmp = os.path.join(gen_dir, f".{name}.tmp-{os.getpid()}")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        try:
            sha, prefix = _copy_file(fh, tmp, end, old_size)
            if old and prefix != old["sha256"]:
                raise _prefix_error(fh, old_size, self.location(gen_id, name))
            os.replace(tmp, os.path.join(gen_dir, name))
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
        fsync_dir(gen_dir)
        return sha, {}

    def put_manifest(self, gen_id: str, name: str, data: bytes) -> None:
        atomic_write(os.path.join(self.path, gen_id, name), data)

    def stream(self, gen_id: str, entry: dict[str, Any], sink: Callable[[bytes], Any]) -> int:
        """Hand the archived bytes of ``entry`` (at most its recorded size) to ``sink``; bytes read."""
        done = 0
        with open(self.location(gen_id, entry["name"]), "rb") as fh:
            while done < entry["size"]:
                block = fh.read(min(CHUNK, entry["size"] - done))
                if not block:
                    break
                sink(block)
                done += len(block)
        return done

    def quick_problem(self, gen_id: str, entry: dict[str, Any]) -> str | None:
        path = self.location(gen_id, entry["name"])
        if not os.path.isfile(path):
            return f"{path}: missing"
        return None if os.path.getsize(path) == entry["size"] else f"{path}: size differs from the index"

    @staticmethod
    def list_sources(root: str) -> list[str]:
        base = os.path.join(root, ARCHIVE_DIR)
        if not os.path.isdir(base):
            return []
        return sorted(urllib.parse.unquote(n) for n in os.listdir(base) if os.path.isfile(os.path.join(base, n, INDEX)))


def _copy_file(src: BinaryIO, dst_path: str, length: int, prefix_len: int) -> tuple[str, str]:
    """Copy bytes [0, length) of ``src`` to a new file (0600, fsynced); (sha256, sha256 of the prefix)."""
    fd = os.open(dst_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        found = hash_prefix(src, length, prefix_len, out.write)
        out.flush()
        os.fsync(out.fileno())
    return found


class S3Store:
    """The archive of one server under ``s3://bucket/prefix`` (an S3Storage of _s3)."""

    def __init__(self, storage: Any, source: str) -> None:
        self.storage = storage
        self.source = source
        self.rel = f"{ARCHIVE_DIR}/{source_dirname(source)}"
        self.path = f"{storage.url}/{self.rel}"
        self._etag: str | None = None
        self._garbage: list[str] = []
        self._sizes: dict[str, dict[str, int]] = {}
        # (generation, file) -> (size, sha256 state of its first size bytes): a long-running follower
        # hashes only the bytes an incr file gained (the inode is checked by the caller)
        self._hashes: dict[tuple[str, str], tuple[int, Any]] = {}

    def location(self, gen_id: str, name: str) -> str:
        return f"{self.path}/{gen_id}/{name}"

    def _key(self, rel: str) -> str:
        return self.storage.key(f"{self.rel}/{rel}")

    def _call(self, verb: str, rel: str, method: str, **kwargs: Any) -> Any:
        key = self._key(rel)
        try:
            return getattr(self.storage.client, method)(Bucket=self.storage.bucket, Key=key, **kwargs)
        except Exception as exc:  # pylint: disable=broad-except  # translated
            if method in ("get_object", "head_object") and _missing(exc):
                raise FileNotFoundError(key) from None
            raise RedisError(
                str(translate(exc, self.storage.info, verb, bucket=self.storage.bucket, key=key))
            ) from None

    def _put(self, rel: str, data: bytes) -> str:
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")
        reply = self._call("upload", rel, "put_object", Body=data, ContentMD5=md5)
        return str(reply.get("ETag") or "")

    def exists(self) -> bool:
        try:
            self._call("read", INDEX, "head_object")
            return True
        except FileNotFoundError:
            return False

    def load_index(self) -> dict[str, Any]:
        try:
            reply = self._call("read the archive index", INDEX, "get_object")
            raw = reply["Body"].read()
        except FileNotFoundError:
            self._etag = None
            return new_index(self.source)
        self._etag = str(reply.get("ETag") or "")
        return parse_index(raw, f"{self.path}/{INDEX}")

    def save_index(self, index: dict[str, Any]) -> None:
        try:
            now = str(self._call("read the archive index", INDEX, "head_object").get("ETag") or "")
        except FileNotFoundError:
            now = None
        if now != self._etag:
            raise RedisError(
                f"the archive index {self.path}/{INDEX} was changed by someone else while this run archived "
                "(two archivers of one server into one archive?); nothing of this run is lost, run again"
            )
        self._etag = self._put(INDEX, index_bytes(index))

    def finish(self) -> None:
        """Delete the parts an index written by this run no longer names (after a re-cut)."""
        garbage, self._garbage = self._garbage, []
        if garbage:
            try:
                self.storage.delete_keys([self._key(rel) for rel in garbage])
            except Exception:  # pylint: disable=broad-except  # only space: the index does not name them
                pass

    def lock_path(self) -> str:
        digest = hashlib.sha256(self.path.encode()).hexdigest()[:16]
        return os.path.join(tempfile.gettempdir(), f"runbook-redis-aof-{digest}.lock")

    def _send(self, gen_id: str, name: str, fh: BinaryIO, parts: list[dict[str, int]]) -> None:
        for part in parts:
            self._put(part_rel(gen_id, name, part), read_range(fh, part["offset"], part["size"]))

    def put_base(self, fh: BinaryIO, size: int, name: str, make_id: Callable[[str], str]) -> tuple[str, str, dict]:
        sha = hash_prefix(fh, size, 0)[0]
        gen_id = make_id(sha)
        parts, todo = plan_parts([], 0, size)
        self._send(gen_id, name, fh, todo)
        return gen_id, sha, {"parts": parts}

    def put_incr(self, gen_id: str, name: str, fh: BinaryIO, old: dict | None, end: int) -> tuple[str, dict]:
        old_size = old["size"] if old else 0
        cached = self._hashes.get((gen_id, name))
        if old and cached and cached[0] == old_size and cached[1].hexdigest() == old["sha256"]:
            digest = cached[1].copy()
        else:
            digest = hashlib.sha256()
            read_range(fh, 0, old_size, digest.update)
            if old and digest.hexdigest() != old["sha256"]:
                raise _prefix_error(fh, old_size, self.location(gen_id, name))
        read_range(fh, old_size, end - old_size, digest.update)
        sha = digest.hexdigest()
        before = list(old.get("parts", [])) if old else []
        parts, todo = plan_parts(before, old_size, end)
        self._send(gen_id, name, fh, todo)
        kept = {part_rel(gen_id, name, p) for p in parts}
        self._garbage += [rel for rel in (part_rel(gen_id, name, p) for p in before) if rel not in kept]
        self._hashes[(gen_id, name)] = (end, digest.copy())
        return sha, {"parts": parts}

    def put_manifest(self, gen_id: str, name: str, data: bytes) -> None:
        self._put(f"{gen_id}/{name}", data)

    def stream(self, gen_id: str, entry: dict[str, Any], sink: Callable[[bytes], Any]) -> int:
        done = 0
        for part in entry.get("parts", []):
            body = self._call("download", part_rel(gen_id, entry["name"], part), "get_object")["Body"]
            while block := body.read(CHUNK):
                sink(block)
                done += len(block)
        return done

    def quick_problem(self, gen_id: str, entry: dict[str, Any]) -> str | None:
        if gen_id not in self._sizes:
            prefix = self._key(gen_id) + "/"
            listed = self.storage.iter_objects(f"{self.rel}/{gen_id}")
            self._sizes[gen_id] = {o["Key"][len(prefix) :]: int(o.get("Size", 0)) for o in listed}
        sizes = self._sizes[gen_id]
        for part in entry.get("parts", []):
            rel = part_rel(gen_id, entry["name"], part)[len(gen_id) + 1 :]
            if sizes.get(rel) != part["size"]:
                return (
                    f"{self.location(gen_id, rel)}: {'missing' if rel not in sizes else 'size differs from the index'}"
                )
        if sum(p["size"] for p in entry.get("parts", [])) != entry["size"]:
            return f"{self.location(gen_id, entry['name'])}: its parts do not add up to the size in the index"
        return None

    @staticmethod
    def list_sources(storage: Any) -> list[str]:
        found = []
        for name in storage.list_dirs(ARCHIVE_DIR):
            if storage.exists(f"{ARCHIVE_DIR}/{name}/{INDEX}"):
                found.append(urllib.parse.unquote(name))
        return sorted(found)


def _missing(exc: BaseException) -> bool:
    return error_code(exc) in ("404", "NoSuchKey", "NotFound")


Store = Union[LocalStore, S3Store]


def open_s3(root: str, s3: Any) -> Any:
    """The S3Storage of an ``s3://`` root (one client; the bucket must exist)."""
    return open_s3_root(root, s3, concurrency=2)


def open_store(root: str, source: str, s3: Any = None) -> Store:
    """The archive of ``source`` under ``root`` (a directory, or ``s3://`` with the S3Conn ``s3``)."""
    if is_s3(root):
        return S3Store(open_s3(root, s3), source)
    return LocalStore(root, source)


def list_sources(root: str, s3: Any = None) -> list[str]:
    """The servers archived under ``root`` (names decoded from their directories)."""
    if is_s3(root):
        return S3Store.list_sources(open_s3(root, s3))
    return LocalStore.list_sources(root)


@contextmanager
def archive_lock(store: Store, wait: float = 0) -> Iterator[None]:
    """Exclusive lock on the archive of one server on this host (``.lock`` in a local archive, a file in
    the temporary directory for S3): one archive run at a time; waits up to ``wait`` seconds."""
    path = store.lock_path()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        if not flock_within(fd, wait, LOCK_POLL):
            raise RedisError(f"another redis_aof_archive run is archiving into {store.path}; try again later")
        yield
    finally:
        os.close(fd)
