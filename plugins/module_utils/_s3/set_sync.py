# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole backup sets between a local root and an S3 root: :func:`upload_set` (backup_upload) and
:func:`download_set` (backup_download), manifest last, never overwriting a different set (private)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import time
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    MANIFEST,
    BackupSet,
    BackupSetError,
    LocalStorage,
    Storage,
    find_set,
    fsync_tree,
    hash_files,
    make_private_dirs,
    remove_tree,
    secure_tree,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.contract import set_reference
from ansible_collections.runbook.stack.plugins.module_utils._common.files import atomic_write, fsync_dir
from ansible_collections.runbook.stack.plugins.module_utils._common.steps import Steps
from ansible_collections.runbook.stack.plugins.module_utils._s3.copy_plan import check_copy_options, plain_etag
from ansible_collections.runbook.stack.plugins.module_utils._s3.errors import s3_call
from ansible_collections.runbook.stack.plugins.module_utils._s3.storage import S3Storage
from ansible_collections.runbook.stack.plugins.module_utils._s3.transfer import (
    SHA256_METADATA,
    TRANSFER_CONCURRENCY,
    TRANSFER_PART_SIZE,
    TRANSFER_THRESHOLD,
    SetFile,
    SetTransfer,
    _md5,
    file_digests,
    set_files,
)


def set_manifest_bytes(storage: Storage, backup_set: BackupSet) -> bytes:
    """The manifest file of a loaded, valid set, byte for byte (it is copied as it is)."""
    try:
        raw = storage.read_bytes(f"{backup_set.rel}/{MANIFEST}")
        same = json.loads(raw.decode("utf-8")) == backup_set.manifest
    except (OSError, ValueError) as exc:
        raise BackupSetError(f"cannot read the manifest of {backup_set.location}: {exc}") from None
    if not same:
        raise BackupSetError(f"the manifest of {backup_set.location} changed while it was read")
    if backup_set.manifest and "objects" in backup_set.manifest:
        raise BackupSetError(
            f"{backup_set.location} is an S3 snapshot set (manifest 'objects'); it stays on S3 and cannot be copied"
        )
    return raw


def _hash_workers(concurrency: int) -> int:
    return max(1, min(concurrency, os.cpu_count() or 2))


def _outcome(
    backup_set: BackupSet, root: str, location: str, files: list[SetFile], skipped: int, found: str
) -> dict[str, Any]:
    """The module result of a copy of ``backup_set`` to ``location`` under ``root``; ``backup_set``
    in it is the reference of the copy (its manifest is the original's, byte for byte)."""
    return {
        "backup_set": set_reference(root, backup_set.manifest, location=location),
        "backup_id": backup_set.backup_id,
        "kind": backup_set.kind,
        "source": backup_set.source,
        "location": location,
        "files": len(files),
        "bytes": sum(f.size for f in files),
        "multipart_files": sum(1 for f in files if f.multipart),
        "skipped_files": skipped,
        "found": found,
    }


def destination_state(dest: S3Storage, backup_set: BackupSet, raw: bytes) -> tuple[str, dict[str, tuple[int, str]]]:
    """What an S3 root holds at a set's place, and its objects ({path: (size, ETag)}):

    ``absent`` nothing; ``incomplete`` objects but no manifest (an interrupted upload);
    ``identical`` a valid set with the same manifest bytes; ``damaged`` the same manifest but files
    missing or of the wrong size. A different manifest raises BackupSetError: it is never overwritten."""
    base = f"{dest.key(backup_set.rel)}/"
    listed = {
        o["Key"][len(base) :]: (int(o.get("Size", 0)), plain_etag(o.get("ETag")))
        for o in dest.iter_objects(backup_set.rel)
    }
    if MANIFEST not in listed:
        return ("incomplete" if listed else "absent"), listed
    there = dest.read_bytes(f"{backup_set.rel}/{MANIFEST}")
    if there != raw:
        raise BackupSetError(
            f"{dest.url}/{backup_set.rel} already holds a different manifest for backup id {backup_set.backup_id}; "
            "a set is never overwritten (remove it first if it is unwanted)"
        )
    remote = BackupSet(dest, backup_set.kind, backup_set.source_dir, backup_set.backup_id).load()
    return ("identical" if remote.valid else "damaged"), listed


@s3_call("write the manifest", info="dest.info", bucket="{dest.bucket}", key="{manifest.key}")
def _put_manifest(dest: S3Storage, manifest: SetFile, raw: bytes) -> None:
    """PUT the manifest ``raw`` with Content-MD5 and its sha256 as user metadata."""
    dest.client.put_object(
        Bucket=dest.bucket,
        Key=manifest.key,
        Body=raw,
        ContentMD5=base64.b64encode(manifest.part_md5[0]).decode("ascii"),  # set by upload_set
        ContentType="application/json",
        Metadata={SHA256_METADATA: manifest.sha256},
    )


def upload_set(
    backup_set: BackupSet,
    dest: S3Storage,
    *,
    concurrency: int = TRANSFER_CONCURRENCY,
    multipart_threshold: int = TRANSFER_THRESHOLD,
    part_size: int = TRANSFER_PART_SIZE,
    verify_local: bool = True,
    check_mode: bool = False,
) -> dict[str, Any]:
    """Copy a valid local set to the S3 root ``dest``, manifest last; returns the module result.
    Never overwrites a different set with the same id."""
    check_copy_options(concurrency, multipart_threshold, part_size)
    started = time.monotonic()
    steps = Steps()
    base = backup_set.storage.local_path(backup_set.rel)
    if not base or backup_set.manifest is None:
        raise BackupSetError("only a valid local backup set can be uploaded")
    raw = set_manifest_bytes(backup_set.storage, backup_set)
    location = f"{dest.url}/{backup_set.rel}"
    key_base = dest.key(backup_set.rel)
    found, listed = destination_state(dest, backup_set, raw)
    files = set_files(backup_set.manifest, base, key_base, multipart_threshold, part_size)
    steps.mark(f"inspect the destination ({found})")
    if found == "identical":
        out = _outcome(backup_set, dest.url, location, [], len(files), found)
        return out | {"changed": False, "steps": steps.items, "duration_s": round(time.monotonic() - started, 3)}

    if verify_local:

        def digest(f: SetFile) -> None:
            try:
                size = os.stat(f.local).st_size
                sha, md5s = file_digests(f.local, f.parts) if size == f.size else ("", [])
            except (OSError, ValueError) as exc:
                raise BackupSetError(f"cannot verify {f.path}: {getattr(exc, 'strerror', None) or exc}") from None
            if size != f.size:
                raise BackupSetError(f"size mismatch on {f.path}: manifest {f.size} bytes, found {size}")
            if sha != f.sha256:
                raise BackupSetError(f"checksum mismatch on {f.path}")
            f.part_md5 = md5s

        hasher = SetTransfer(dest.info, dest.client, dest.bucket, _hash_workers(concurrency))
        hasher.run([(lambda f=f: digest(f)) for f in files])
        steps.mark(f"verify the local set (SHA-256 and part MD5 of {len(files)} files)")

    # objects an interrupted run already stored with the right size and ETag are not sent again
    skip = [f for f in files if f.expected_etag is not None and listed.get(f.path) == (f.size, f.expected_etag)]
    todo = [f for f in files if f not in skip]
    out = _outcome(backup_set, dest.url, location, todo, len(skip), found)
    if not check_mode:
        engine = SetTransfer(dest.info, dest.client, dest.bucket, concurrency)
        if found == "damaged":  # the manifest goes first: while files are replaced, it is no valid set
            dest.delete_keys([f"{key_base}/{MANIFEST}"])
        if found != "absent":
            engine.abort_stale_uploads(f"{key_base}/")
        engine.upload(todo)
        steps.mark(f"upload {len(todo)} files ({out['bytes']} bytes), {len(skip)} already there")
        engine.check_arrived(files)
        steps.mark(f"check size, ETag and sha256 metadata of {len(files)} objects")
        manifest = SetFile(MANIFEST, "", f"{key_base}/{MANIFEST}", len(raw), hashlib.sha256(raw).hexdigest(), False, [])
        manifest.part_md5 = [_md5(raw).digest()]
        _put_manifest(dest, manifest, raw)
        engine.check_arrived([manifest])
        steps.mark("write and check the manifest")
    return out | {"changed": True, "steps": steps.items, "duration_s": round(time.monotonic() - started, 3)}


def download_set(
    src: S3Storage,
    kind: str,
    source: str,
    backup_id: str,
    dest_root: str,
    *,
    concurrency: int = TRANSFER_CONCURRENCY,
    multipart_threshold: int = TRANSFER_THRESHOLD,
    part_size: int = TRANSFER_PART_SIZE,
    check_mode: bool = False,
) -> dict[str, Any]:
    """Copy a valid set (``latest``: the newest valid one) from the S3 root ``src`` to ``dest_root``:
    into ``<backup_id>.partial-*`` beside its place, every SHA-256 checked, manifest last, renamed
    into place. Never replaces a different local set with the same id."""
    check_copy_options(concurrency, multipart_threshold, part_size)
    started = time.monotonic()
    steps = Steps()
    found_set = find_set(src, kind, source, backup_id)
    raw = set_manifest_bytes(src, found_set)
    manifest = found_set.manifest or {}
    root = os.path.abspath(os.path.expanduser(dest_root))
    final = os.path.join(root, *found_set.rel.split("/"))
    plan = set_files(manifest, final, src.key(found_set.rel), multipart_threshold, part_size)
    found = "absent"
    if os.path.lexists(final):
        local = BackupSet(LocalStorage(root), found_set.kind, found_set.source_dir, found_set.backup_id).load()
        try:
            same = local.valid and LocalStorage(root).read_bytes(f"{local.rel}/{MANIFEST}") == raw
        except OSError:
            same = False
        if not same:
            why = local.error or "its manifest differs"
            raise BackupSetError(
                f"{final} already exists and is not this set ({why}); it is never replaced: move or remove it first"
            )
        found = "identical"
    steps.mark(f"find the set at {src.url} and inspect the destination ({found})")
    if found == "identical":
        out = _outcome(found_set, root, final, [], len(plan), found)
        return out | {"changed": False, "steps": steps.items, "duration_s": round(time.monotonic() - started, 3)}
    out = _outcome(found_set, root, final, plan, 0, found)
    if check_mode:
        return out | {"changed": True, "steps": steps.items, "duration_s": round(time.monotonic() - started, 3)}

    parent = os.path.dirname(final)
    try:
        make_private_dirs(parent)  # <root>/<kind>/<source> as LocalSetWriter makes them: 0700
        tmp = tempfile.mkdtemp(prefix=f"{found_set.backup_id}.partial-", dir=parent)
    except OSError as exc:
        raise BackupSetError(f"cannot create a directory under {parent}: {exc.strerror or exc}") from None
    try:
        files = set_files(manifest, tmp, src.key(found_set.rel), multipart_threshold, part_size)
        for f in files:
            make_private_dirs(os.path.dirname(f.local))
        SetTransfer(src.info, src.client, src.bucket, concurrency).download(files)
        steps.mark(f"download {len(files)} files ({out['bytes']} bytes)")
        hashed = hash_files(tmp, [f.path for f in files], workers=_hash_workers(concurrency))
        for f, got in zip(files, hashed):
            if got["size"] != f.size:
                raise BackupSetError(f"size mismatch on {f.path}: manifest {f.size} bytes, downloaded {got['size']}")
            if got["sha256"] != f.sha256:
                raise BackupSetError(f"checksum mismatch on {f.path}: the object {f.key!r} does not match the manifest")
        steps.mark(f"SHA-256 of {len(files)} files against the manifest")
        secure_tree(tmp)
        fsync_tree(tmp)
        atomic_write(os.path.join(tmp, MANIFEST), raw)
        os.rename(tmp, final)
        fsync_dir(parent)
        steps.mark("fsync, write the manifest, rename into place")
    except BaseException:
        try:
            remove_tree(tmp)
        except OSError:
            pass
        raise
    return out | {"changed": True, "steps": steps.items, "duration_s": round(time.monotonic() - started, 3)}
