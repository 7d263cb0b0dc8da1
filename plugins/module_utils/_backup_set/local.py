# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Local files of backup sets (private module_utils): hashing, private modes, syncing and removal.

Writers, restores and :class:`~.storage.LocalStorage` use these; nothing here knows about S3.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable

from ansible_collections.runbook.stack.plugins.module_utils._backup_set.ids import MANIFEST
from ansible_collections.runbook.stack.plugins.module_utils._common.files import fsync_dir

FILE_MODE = 0o600
DIR_MODE = 0o700
HASH_CHUNK = 4 * 1024 * 1024


def keep_name(name: Callable[[str], str], taken: Callable[[str], bool], sep: str, limit: int) -> tuple[str, str | None]:
    """Where a restore keeps the data it replaces: ``name("")``, else ``name(sep + "2")``,
    ``name(sep + "3")``... up to ``limit``, the first that ``taken`` says is free (an earlier restore
    of the same set keeps its copy; it is never overwritten). Returns (the name, None), or (the first
    name, the last one tried) when every one is taken."""
    first = name("")
    if not taken(first):
        return first, None
    for n in range(2, limit + 1):
        candidate = name(f"{sep}{n}")
        if not taken(candidate):
            return candidate, None
    return first, name(f"{sep}{limit}")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(HASH_CHUNK)
        view = memoryview(buf)
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def make_private_dirs(path: str) -> list[str]:
    """Create ``path`` and every missing directory above it with mode 0700, top-down; return the
    directories created. Each is chmod'ed after its mkdir, so the umask cannot widen or narrow it.
    Directories that already exist are left as they are (a root the user made keeps its mode)."""
    path = os.path.abspath(path)
    missing: list[str] = []
    probe = path
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    created: list[str] = []
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise NotADirectoryError(errno.ENOTDIR, f"{directory} exists and is not a directory") from None
            continue  # made by a concurrent writer: not ours to chmod
        os.chmod(directory, DIR_MODE)
        created.append(directory)
    return created


@contextmanager
def private_umask() -> Iterator[None]:
    """Umask 0077 inside the block: whatever this process and its children (pg_dump, redis-cli)
    create is 0600/0700 from the start, also when the module is killed before a set is sealed."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def remove_tree(path: str) -> None:
    """Remove path and everything below it, also directories left unreadable (e.g. mode 0500 or 0000).

    Directories are made 0700 top-down before the removal (symbolic links are removed, never followed).
    """
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
        return
    if not os.path.lexists(path):
        return
    os.chmod(path, DIR_MODE)
    for dirpath, dirnames, _filenames in os.walk(path):
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, DIR_MODE)
    shutil.rmtree(path)


def walk_files(base: str) -> list[str]:
    """Relative '/'-separated paths of every regular file under base, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, base).replace(os.sep, "/")
            if rel == MANIFEST:
                continue
            out.append(rel)
    return sorted(out)


def fsync_tree(base: str) -> None:
    """fsync every file and directory below (and including) base, so that a manifest written
    afterwards never outlives the data it lists."""
    for dirpath, _dirnames, filenames in os.walk(base):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def secure_tree(base: str) -> None:
    """Files 0600, directories 0700 below (and including) base; symbolic links are left alone, so a
    link inside a set can never change the mode of something outside it."""
    os.chmod(base, DIR_MODE)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, DIR_MODE if name in dirnames else FILE_MODE)


def hash_files(
    base: str, rels: Iterable[str], workers: int = 2, known: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """[{path, size, sha256}] for files under base; hashing runs in threads (hashlib drops the GIL).

    ``known`` maps paths to SHA-256 digests the writer computed while it wrote those files (no
    second read); every other file is hashed here."""
    rels = list(rels)
    known = known or {}

    def one(rel: str) -> dict[str, Any]:
        full = os.path.join(base, *rel.split("/"))
        digest = known.get(rel) or sha256_file(full)
        return {"path": rel, "size": os.stat(full).st_size, "sha256": digest}

    if len(rels) <= 1 or workers <= 1:
        return [one(r) for r in rels]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, rels))
