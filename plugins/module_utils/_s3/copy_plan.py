# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Server-side copies (s3_snapshot, s3_restore): copy options, part ranges, ETag comparison, where
a snapshot set keeps its objects, what a restore copies, deletes and keeps, and its check (private).

Pure helpers, except :func:`free_keep_prefix`, which asks the bucket which keep prefix is free.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    KIND_RE,
    OBJECTS_DIR,
    iso,
    keep_name,
    set_rel,
)
from ansible_collections.runbook.stack.plugins.module_utils._s3.connection import S3Conn
from ansible_collections.runbook.stack.plugins.module_utils._s3.errors import S3Error
from ansible_collections.runbook.stack.plugins.module_utils._s3.storage import S3Storage, parse_s3_url

MIB = 1024 * 1024
GIB = 1024 * MIB
MIN_PART_SIZE = 5 * MIB  # S3 minimum for every part but the last
MAX_PART_SIZE = 5 * GIB
MAX_PARTS = 10000
MAX_SINGLE_COPY = 5 * GIB  # CopyObject refuses larger sources
MAX_CONCURRENCY = 256
DEFAULT_MULTIPART_THRESHOLD = 5 * GIB
DEFAULT_PART_SIZE = 256 * MIB
RESTORE_MODES = ("missing", "overwrite", "mirror")


def check_copy_options(concurrency: int, multipart_threshold: int, part_size: int) -> None:
    """S3Error naming the option when a copy tuning value is out of range."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise S3Error(f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {concurrency}")
    if not MIN_PART_SIZE <= multipart_threshold <= MAX_SINGLE_COPY:
        raise S3Error(
            f"multipart_threshold must be between {MIN_PART_SIZE} (5 MiB) and {MAX_SINGLE_COPY} (5 GiB) bytes, "
            f"got {multipart_threshold}"
        )
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise S3Error(
            f"part_size must be between {MIN_PART_SIZE} (5 MiB) and {MAX_PART_SIZE} (5 GiB) bytes, got {part_size}"
        )


def part_ranges(size: int, part_size: int) -> list[tuple[int, int]]:
    """Inclusive byte ranges for UploadPartCopy; the part size grows when ``size`` would need more
    than 10,000 parts."""
    if size <= 0:
        raise S3Error(f"a multipart copy needs a non-empty object, got {size} bytes")
    part_size = max(part_size, MIN_PART_SIZE, -(-size // MAX_PARTS))
    return [(start, min(start + part_size, size) - 1) for start in range(0, size, part_size)]


def plain_etag(etag: Any) -> str:
    """An ETag without the surrounding quotes ('' when unknown)."""
    return str(etag or "").strip().strip('"')


def is_md5_etag(etag: Any) -> bool:
    """True for a single-part ETag (32 hex digits, the MD5 of the content); multipart ETags end in -N."""
    text = plain_etag(etag)
    return len(text) == 32 and all(c in "0123456789abcdefABCDEF" for c in text)


def same_content(size: int, etag: Any, want_size: int, known_etags: Iterable[Any]) -> bool:
    """Whether an object (``size``, ``etag``) holds the content described by ``want_size`` and the
    ETags known for it (the source ETag of the snapshot and the ETag of the backup copy).

    - a different size is always different;
    - an ETag equal to one of the known ETags is the same;
    - when the object and a known ETag are both plain MD5s and none is equal, it is different;
    - otherwise the ETags are not comparable (a multipart ETag depends on the part sizes, not only
      on the content) and the size alone decides: the object is taken as the same.
    """
    if int(size) != int(want_size):
        return False
    have = plain_etag(etag)
    known = [plain_etag(e) for e in known_etags if plain_etag(e)]
    if have and have in known:
        return True
    # both plain MD5s and none equal: other content; else not comparable, the size decided
    return not (is_md5_etag(have) and any(is_md5_etag(k) for k in known))


def split_backup_prefix(backup_prefix: str) -> tuple[str, str]:
    """(root prefix, kind) of ``backup_prefix``: its last component is the backup kind (``s3``)."""
    parts = [p for p in str(backup_prefix or "").split("/") if p]
    if not parts:
        raise S3Error("backup_prefix must not be empty: its last component is the backup kind, e.g. 's3'")
    kind = parts[-1]
    if not KIND_RE.match(kind):
        raise S3Error(
            f"backup_prefix {backup_prefix!r}: its last component {kind!r} is the backup kind and must be "
            "lower-case letters, digits and _, starting with a letter (e.g. 's3' or 'backups/s3')"
        )
    if any(p in (".", "..") for p in parts):
        raise S3Error(f"backup_prefix {backup_prefix!r}: '.' and '..' are not allowed")
    return "/".join(parts[:-1]), kind


SNAPSHOT_KIND = "s3"
# the options that named the backup root before backup_root, and the release that drops them
DEPRECATED_ROOT_OPTIONS = ("backup_bucket", "backup_prefix")
DEPRECATED_ROOT_REMOVAL = "2.0.0"


def snapshot_root_spec() -> tuple[dict[str, Any], dict[str, Any]]:
    """(argument spec, AnsibleModule rules) of the options of s3_snapshot and s3_restore that say where
    the sets are: ``backup_root``, or the deprecated ``backup_bucket`` and ``backup_prefix``
    (documented once in the doc fragment ``runbook.stack.backup_set.s3_root``)."""
    spec = {"backup_root": {"type": "str"}, "backup_bucket": {"type": "str"}, "backup_prefix": {"type": "str"}}
    rules = {
        "mutually_exclusive": [("backup_root", "backup_bucket"), ("backup_root", "backup_prefix")],
        "required_one_of": [("backup_root", "backup_bucket")],  # and backup_prefix alone is neither
    }
    return spec, rules


def snapshot_root(backup_root: str | None, backup_bucket: str | None, backup_prefix: str | None) -> tuple[str, str]:
    """(backup bucket, backup prefix) of the S3 snapshot sets, from the options of s3_snapshot and
    s3_restore: ``backup_root`` ``s3://bucket/prefix`` (the sets are ``<prefix>/s3/<bucket>/<id>/``,
    kind ``s3``), or the deprecated ``backup_bucket`` and ``backup_prefix`` (default ``s3``, its last
    component the kind). The prefix is what :func:`split_backup_prefix` takes apart again.

    S3Error naming the option when both ways or neither are given, or ``backup_root`` is not an
    ``s3://bucket/prefix`` URL."""
    if backup_root is None:
        if not backup_bucket:
            if backup_prefix is not None:
                raise S3Error("backup_prefix needs backup_bucket; better, give the backup root as backup_root")
            raise S3Error("backup_root is required: the S3 backup root of the snapshot sets, s3://bucket/prefix")
        return backup_bucket, SNAPSHOT_KIND if backup_prefix is None else backup_prefix
    given = [name for name, value in zip(DEPRECATED_ROOT_OPTIONS, (backup_bucket, backup_prefix)) if value is not None]
    if given:
        raise S3Error(f"backup_root and {' and '.join(given)} are mutually exclusive: give the backup root once")
    if not str(backup_root).strip().startswith("s3://"):
        raise S3Error(
            f"backup_root must be an S3 backup root s3://bucket/prefix (snapshot sets stay on S3), got {backup_root!r}"
        )
    try:
        bucket, prefix = parse_s3_url(backup_root)
    except S3Error as exc:
        raise S3Error(f"backup_root: {exc}") from None
    return bucket, f"{prefix}/{SNAPSHOT_KIND}" if prefix else SNAPSHOT_KIND


def deprecated_root_message(
    backup_root: str | None, backup_bucket: str | None, backup_prefix: str | None
) -> str | None:
    """The deprecation to report when the sets are named with ``backup_bucket`` and ``backup_prefix``
    (None with ``backup_root``), naming the ``backup_root`` that means the same sets when there is one."""
    if backup_root is not None:
        return None
    text = "backup_bucket and backup_prefix are deprecated: give the backup root as backup_root"
    try:
        root, kind = split_backup_prefix(SNAPSHOT_KIND if backup_prefix is None else backup_prefix)
    except S3Error:
        return f"{text} (s3://bucket/prefix)"
    url = f"s3://{backup_bucket}/{root}".rstrip("/")
    if kind != SNAPSHOT_KIND:
        return (
            f"{text}; it keeps the sets under kind {SNAPSHOT_KIND!r}, so move the sets of kind {kind!r} "
            f"to {url}/{SNAPSHOT_KIND}/"
        )
    return f"{text}: {url}"


def check_no_overlap(bucket: str, prefix: str, backup_bucket: str, backup_prefix: str) -> None:
    """S3Error when backups under ``backup_prefix`` would fall under the copied ``prefix`` (or the
    other way round) in the same bucket: a snapshot would then copy earlier backups, or a restore
    would write into the backups."""
    if bucket != backup_bucket:
        return
    area = "/".join(p for p in backup_prefix.split("/") if p) + "/"
    if area.startswith(prefix) or prefix.startswith(area):
        raise S3Error(
            f"backup_prefix {backup_prefix!r} overlaps prefix {prefix!r} in bucket {bucket!r}: the backups would be "
            "part of the data they back up; use another backup_bucket or a prefix that does not contain the backups"
        )


def set_prefix(backup_prefix: str, source_bucket: str, backup_id: str) -> str:
    """Key prefix (ending in '/') of the snapshot set of ``source_bucket``:
    ``<backup_prefix>/<encoded bucket>/<backup_id>/``."""
    root, kind = split_backup_prefix(backup_prefix)
    rel = set_rel(kind, source_bucket, backup_id)
    return f"{root}/{rel}/" if root else f"{rel}/"


def backup_key(prefix_of_set: str, key: str) -> str:
    """Where a source key is stored in a snapshot set (``objects/`` keeps it apart from the manifest)."""
    return f"{prefix_of_set}{OBJECTS_DIR}/{key}"


def map_key(key: str, from_prefix: str, to_prefix: str) -> str:
    """``key`` with ``from_prefix`` replaced by ``to_prefix`` (plain string prefixes, as S3 has them)."""
    if not key.startswith(from_prefix):
        raise S3Error(f"key {key!r} does not start with the snapshot prefix {from_prefix!r}")
    return to_prefix + key[len(from_prefix) :]


@dataclass
class RestorePlan:
    copy: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (manifest entry, target key)
    delete: list[str] = field(default_factory=list)
    skipped: int = 0
    # target objects the restore replaces with other content or deletes: (key, size, ETag), by key
    replaced: list[tuple[str, int, str]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(int(entry["size"]) for entry, _key in self.copy)


def plan_restore(
    entries: list[dict[str, Any]],
    target: dict[str, tuple[int, str]],
    mode: str,
    from_prefix: str,
    to_prefix: str,
) -> RestorePlan:
    """What a restore copies and deletes.

    ``entries``: the manifest's objects (key, size, etag, backup_etag); ``target``: {key: (size, etag)}
    of every object under ``to_prefix`` in the target bucket.

    - ``missing``: copy the keys that are absent or hold other content (see :func:`same_content`);
    - ``overwrite``: copy every key;
    - ``mirror``: like ``missing``, and delete the target keys under ``to_prefix`` that the snapshot
      does not have, except those in a kept area (:func:`is_kept_key`).

    ``replaced`` lists the target objects whose content the copies change (an equal object that
    ``overwrite`` copies again is not replaced) and the deleted ones: what a restore keeps.
    """
    if mode not in RESTORE_MODES:
        raise S3Error(f"unknown mode {mode!r}: expected one of {', '.join(RESTORE_MODES)}")
    plan = RestorePlan()
    wanted: set[str] = set()
    for entry in entries:
        key = map_key(entry["key"], from_prefix, to_prefix)
        wanted.add(key)
        have = target.get(key)
        known = (entry.get("etag"), entry.get("backup_etag"))
        same = have is not None and same_content(have[0], have[1], entry["size"], known)
        if have is not None and not same:
            plan.replaced.append((key, int(have[0]), plain_etag(have[1])))
        if mode != "overwrite" and same:
            plan.skipped += 1
            continue
        plan.copy.append((entry, key))
    if mode == "mirror":
        plan.delete = sorted(k for k in target if k not in wanted and not is_kept_key(k, to_prefix))
        plan.replaced.extend((k, int(target[k][0]), plain_etag(target[k][1])) for k in plan.delete)
    plan.replaced.sort()
    return plan


# Objects a restore replaces or deletes are kept in their bucket under pre-restore-<backup_id>/ (then
# pre-restore-<backup_id>.2/, .3/, ... when an earlier restore of the same set kept some already),
# each at its own key: s3://<bucket>/pre-restore-<id>/<key>. Snapshots, restores and retention of
# the live data leave these areas alone.
KEEP_PREFIX = "pre-restore-"
KEEP_LIMIT = 99
_KEPT_RE = re.compile(r"^pre-restore-[0-9]{8}T[0-9]{6}Z(\.[0-9]+)?/")


def keep_prefix_name(backup_id: str, suffix: str = "") -> str:
    """``pre-restore-<backup_id><suffix>/``: where a restore of ``backup_id`` keeps what it replaces."""
    return f"{KEEP_PREFIX}{backup_id}{suffix}/"


def is_kept_key(key: str, selected_prefix: str = "") -> bool:
    """Whether ``key`` lies in an area where s3_restore kept replaced objects (``pre-restore-<id>[.N]/``
    at the bucket root) that a selection by ``selected_prefix`` must leave alone: snapshots, restores
    and retention of the live data never include them; a selection whose prefix starts with
    ``pre-restore-`` (the operator names the kept area itself) does."""
    return not selected_prefix.startswith(KEEP_PREFIX) and bool(_KEPT_RE.match(key))


def free_keep_prefix(cli: Any, info: S3Conn, bucket: str, backup_id: str) -> str:
    """The first of ``pre-restore-<id>/``, ``pre-restore-<id>.2/``, ... that holds no object in
    ``bucket``: what an earlier restore of the same set kept is never overwritten."""
    storage = S3Storage.bucket_root(bucket, info, cli)
    name, last = keep_name(lambda suffix: keep_prefix_name(backup_id, suffix), storage.has_objects, ".", KEEP_LIMIT)
    if last is not None:
        raise S3Error(
            f"prefixes {name} to {last} of bucket {bucket!r} all hold objects kept by earlier restores of this "
            "set: remove the ones no longer needed, so that what this restore replaces can be kept"
        )
    return name


def restore_diff(plan: RestorePlan, bucket: str, keep_prefix: str | None, backup_id: str, limit: int) -> dict[str, str]:
    """Ansible's before/after diff of a restore: the objects it changes, at most ``limit`` keys (by key)."""
    replaced = {key: size for key, size, _etag in plan.replaced}
    copied = {key: int(entry["size"]) for entry, key in plan.copy}
    keys = sorted(set(replaced) | set(copied))
    before: list[str] = []
    after: list[str] = []
    for key in keys[:limit]:
        if key in replaced:
            before.append(f"{key} ({replaced[key]} bytes)")
        if key in copied:
            after.append(f"{key} ({copied[key]} bytes, from the snapshot)")
        if key in replaced and keep_prefix:
            after.append(f"{keep_prefix}{key} ({replaced[key]} bytes, kept)")
    if len(keys) > limit:
        more = f"... and {len(keys) - limit} more objects"
        before.append(more)
        after.append(more)
    return {
        "before_header": f"s3://{bucket}",
        "after_header": f"s3://{bucket} (backup {backup_id})",
        "before": "".join(f"{line}\n" for line in before),
        "after": "".join(f"{line}\n" for line in after),
    }


def verify_restore(
    entries: list[dict[str, Any]],
    target: dict[str, tuple[int, str]],
    from_prefix: str,
    to_prefix: str,
    copied: dict[str, str] | None = None,
) -> list[str]:
    """Problems (empty when fine): every manifest key must be in ``target`` with its size, and with a
    matching ETag where the ETags are comparable; ``copied`` maps a target key to the ETag its copy
    returned, which is then one more known ETag for that key."""
    problems: list[str] = []
    for entry in entries:
        key = map_key(entry["key"], from_prefix, to_prefix)
        have = target.get(key)
        if have is None:
            problems.append(f"{key!r} is missing")
            continue
        known = (entry.get("etag"), entry.get("backup_etag"), (copied or {}).get(key))
        if int(have[0]) != int(entry["size"]):
            problems.append(f"{key!r} has {have[0]} bytes, the snapshot {entry['size']}")
        elif not same_content(have[0], have[1], entry["size"], known):
            problems.append(f"{key!r} has ETag {plain_etag(have[1])}, the snapshot {plain_etag(entry.get('etag'))}")
    return problems


def snapshot_entry(listed: dict[str, Any], backup_etag: str, head: dict[str, Any] | None = None) -> dict[str, Any]:
    """One ``objects[]`` entry of a snapshot manifest from a ListObjectsV2 entry (and a HEAD, if any)."""
    modified = listed.get("LastModified")
    return {
        "key": listed["Key"],
        "size": int(listed.get("Size", 0)),
        "etag": plain_etag(listed.get("ETag")),
        "backup_etag": plain_etag(backup_etag),
        "last_modified": iso(modified) if isinstance(modified, dt.datetime) else modified,
        "content_type": (head or {}).get("ContentType"),
        "metadata": (head or {}).get("Metadata"),
    }


def sample(items: Iterable[Any], count: int = 10) -> list[Any]:
    out = []
    for item in items:
        if len(out) >= count:
            break
        out.append(item)
    return out
