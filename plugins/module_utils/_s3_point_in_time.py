# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Point-in-time restore of a versioned bucket (private; used by s3_restore_to_time).

The history of every key comes from ListObjectVersions; the state at a time T is, per key, the
newest entry (version or delete marker) last modified at or before T. Helpers take values, never the
AnsibleModule, and raise :class:`~._s3.S3Error` for every foreseeable fault.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._s3.connection import S3Conn
from ansible_collections.runbook.stack.plugins.module_utils._s3.copier import Copier, CopyJob
from ansible_collections.runbook.stack.plugins.module_utils._s3.copy_plan import plain_etag
from ansible_collections.runbook.stack.plugins.module_utils._s3.errors import S3Error, s3_call, translate
from ansible_collections.runbook.stack.plugins.module_utils._s3.storage import S3Storage

NULL_VERSION = "null"  # the version id S3 gives what was written without versioning (or while suspended)
_ENTRY_TAG = re.compile(rb"<(Version|DeleteMarker)>")
_TIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$", re.I)


def iso_z(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_target_time(text: Any, now: dt.datetime) -> dt.datetime:
    """The UTC instant of ``target_time`` (whole seconds); S3Error naming target_time otherwise.

    Accepted: ``YYYY-MM-DDTHH:MM:SS`` followed by ``Z`` or an offset (``+00:00``, ``+0200``), which is
    converted to UTC. A time without a zone, with a non-zero fraction of a second or after ``now`` is
    refused."""
    raw = str(text or "").strip()
    found = _TIME_RE.match(raw)
    if not found:
        raise S3Error(f"target_time {raw!r} is not an ISO 8601 time such as 2026-12-05T21:30:00Z")
    day, clock, fraction, zone = found.groups()
    if not zone:
        raise S3Error(f"target_time {raw!r} has no time zone: write it in UTC with a Z, e.g. {day}T{clock}Z")
    if fraction and int(fraction[1:] or "0"):
        raise S3Error(
            f"target_time {raw!r} has a fraction of a second: S3 records versions to the whole second, "
            f"write {day}T{clock}{zone} (the state at the end of that second)"
        )
    zone = "+00:00" if zone.upper() == "Z" else zone
    if ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    try:
        when = dt.datetime.fromisoformat(f"{day}T{clock}{zone}").astimezone(dt.timezone.utc)
    except ValueError as exc:
        raise S3Error(f"target_time {raw!r} is not a valid time: {exc}") from None
    if when > now:
        raise S3Error(
            f"target_time {iso_z(when)} is in the future (now is {iso_z(now)}): a restore can only go back in time"
        )
    return when


@dataclass(frozen=True)
class Entry:
    """One version or delete marker of a key, as listed."""

    key: str
    version_id: str
    last_modified: dt.datetime
    is_latest: bool
    delete_marker: bool
    size: int = 0
    etag: str = ""

    @property
    def second(self) -> dt.datetime:
        """LastModified truncated to the second (S3 versions are compared at that resolution)."""
        return self.last_modified.astimezone(dt.timezone.utc).replace(microsecond=0)

    @property
    def is_null(self) -> bool:
        return self.version_id == NULL_VERSION

    def describe(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "last_modified": iso_z(self.last_modified),
            "delete_marker": self.delete_marker,
            "size": None if self.delete_marker else self.size,
            "etag": None if self.delete_marker else self.etag,
        }


def interleave(
    tags: list[bytes], versions: list[dict[str, Any]], markers: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The entries of one ListObjectVersions page in the server's order (per key, newest first).

    botocore parses versions and delete markers into two lists; the order of the ``<Version>`` and
    ``<DeleteMarker>`` elements in the response body (``tags``) says how they interleave. That order is
    the only one that separates a version from a delete marker written in the same second. Without a
    usable body (``tags`` not matching the lists) the entries are merged by key, then newest first,
    the current entry first."""
    if tags.count(b"Version") == len(versions) and tags.count(b"DeleteMarker") == len(markers):
        found_versions, found_markers = iter(versions), iter(markers)
        return [
            dict(next(found_versions)) if tag == b"Version" else dict(next(found_markers), _marker=True) for tag in tags
        ]
    merged = [dict(v) for v in versions] + [dict(m, _marker=True) for m in markers]
    return sorted(merged, key=lambda e: (e["Key"], not e.get("IsLatest"), -e["LastModified"].timestamp()))


def to_entry(raw: dict[str, Any]) -> Entry:
    modified = raw["LastModified"]
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=dt.timezone.utc)
    return Entry(
        key=raw["Key"],
        version_id=str(raw.get("VersionId") or NULL_VERSION),
        last_modified=modified,
        is_latest=bool(raw.get("IsLatest")),
        delete_marker=bool(raw.get("_marker")),
        size=int(raw.get("Size") or 0),
        etag=plain_etag(raw.get("ETag")),
    )


def iter_versions(cli: Any, info: S3Conn, bucket: str, prefix: str, page_size: int = 1000) -> Iterator[Entry]:
    """Every version and delete marker under ``prefix``, by key, each key's newest first (all pages)."""
    if not 1 <= page_size <= 1000:
        raise S3Error(f"page_size must be between 1 and 1000, got {page_size}")
    bodies: list[bytes] = []

    def keep_body(response_dict: dict[str, Any], **_kwargs: Any) -> None:
        body = response_dict.get("body")
        bodies.append(body if isinstance(body, bytes) else b"")

    hook_id = f"runbook-pitr-{uuid.uuid4().hex}"
    cli.meta.events.register("before-parse.s3.ListObjectVersions", keep_body, unique_id=hook_id)
    markers: dict[str, str] = {}
    try:
        while True:
            bodies.clear()
            try:
                page = cli.list_object_versions(Bucket=bucket, Prefix=prefix, MaxKeys=page_size, **markers)
            except Exception as exc:  # pylint: disable=broad-except  # translated
                raise translate(exc, info, f"list the versions under prefix {prefix!r}", bucket=bucket) from None
            tags = _ENTRY_TAG.findall(bodies[-1]) if bodies else []
            for raw in interleave(tags, page.get("Versions") or [], page.get("DeleteMarkers") or []):
                yield to_entry(raw)
            if not page.get("IsTruncated"):
                return
            key_marker, version_marker = page.get("NextKeyMarker"), page.get("NextVersionIdMarker")
            if not key_marker or (markers.get("KeyMarker"), markers.get("VersionIdMarker")) == (
                key_marker,
                version_marker,
            ):
                raise S3Error(
                    f"cannot list the versions of bucket {bucket!r} at {info.where}: the server says the listing is "
                    "truncated but gives no new position to continue from"
                )
            markers = {"KeyMarker": key_marker}
            if version_marker:
                markers["VersionIdMarker"] = version_marker
    finally:
        cli.meta.events.unregister("before-parse.s3.ListObjectVersions", unique_id=hook_id)


def history(entries: Iterator[Entry]) -> dict[str, list[Entry]]:
    """{key: [entries, newest first]} in listing order."""
    out: dict[str, list[Entry]] = {}
    for entry in entries:
        out.setdefault(entry.key, []).append(entry)
    return out


@dataclass
class KeyPlan:
    key: str
    action: str  # copy, delete, none
    current: Entry | None  # the current entry (a version or a delete marker); None when the key has no entry
    chosen: Entry | None  # the newest entry at or before T; None when the key did not exist yet

    def describe(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "action": self.action,
            "current": self.current.describe() if self.current else None,
            "at_target_time": self.chosen.describe() if self.chosen else None,
        }


@dataclass
class Plan:
    keys: list[KeyPlan] = field(default_factory=list)
    versions: int = 0
    delete_markers: int = 0

    @property
    def copy(self) -> list[KeyPlan]:
        return [k for k in self.keys if k.action == "copy"]

    @property
    def delete(self) -> list[KeyPlan]:
        return [k for k in self.keys if k.action == "delete"]

    @property
    def unchanged(self) -> int:
        return sum(1 for k in self.keys if k.action == "none")

    @property
    def bytes(self) -> int:
        return sum(k.chosen.size for k in self.copy if k.chosen)

    @property
    def recovery_point(self) -> dt.datetime | None:
        """The newest write (version or delete marker) at or before T: what the prefix is restored to."""
        return max((k.chosen.second for k in self.keys if k.chosen), default=None)

    @property
    def latest_write(self) -> dt.datetime | None:
        """The newest write of all, T or not (the prefix's last write, as listed)."""
        return max((k.current.second for k in self.keys if k.current), default=None)


def same_version(current: Entry | None, chosen: Entry) -> bool:
    """Whether the current entry already is ``chosen``: the same version, or a copy of it (the same
    size and ETag; a multipart copy gets another ETag and is copied again on the next run)."""
    if current is None or current.delete_marker:
        return False
    if current.version_id == chosen.version_id:
        return True
    return current.size == chosen.size and bool(chosen.etag) and current.etag == chosen.etag


def unknown_before(histories: dict[str, list[Entry]]) -> Entry | None:
    """The newest ``null`` entry (version or delete marker) under the prefix, if any.

    A null entry was written without versioning (before it was enabled, or while it was suspended), and
    replaced whatever null entry the key had before without keeping it: before its LastModified the
    history under the prefix is incomplete."""
    nulls = [e for entries in histories.values() for e in entries if e.is_null]
    return max(nulls, key=lambda e: (e.second, e.key)) if nulls else None


def plan_to_time(histories: dict[str, list[Entry]], target: dt.datetime) -> Plan:
    """What to do with each key so that its current state is its state at ``target`` (whole seconds)."""
    plan = Plan()
    for key in sorted(histories):
        entries = histories[key]
        plan.versions += sum(1 for e in entries if not e.delete_marker)
        plan.delete_markers += sum(1 for e in entries if e.delete_marker)
        current = next((e for e in entries if e.is_latest), entries[0])
        chosen = next((e for e in entries if e.second <= target), None)
        if chosen is None or chosen.delete_marker:
            action = "none" if current.delete_marker else "delete"
        else:
            action = "none" if same_version(current, chosen) else "copy"
        plan.keys.append(KeyPlan(key, action, current, chosen))
    return plan


def verify_to_time(plan: Plan, now_listed: dict[str, tuple[int, str]], new_etags: dict[str, str]) -> list[str]:
    """Keys whose current object (``now_listed``: {key: (size, ETag)}) is not their state at T:
    present when it should be absent, absent, or another size or ETag than the chosen version's (or
    than the ETag its copy returned)."""
    problems = []
    for item in plan.keys:
        have = now_listed.get(item.key)
        chosen = item.chosen
        if chosen is None or chosen.delete_marker:
            if have is not None:
                problems.append(f"{item.key} (exists, should be absent)")
            continue
        if have is None:
            problems.append(f"{item.key} (missing, should be version {chosen.version_id})")
            continue
        size, etag = have
        etags = {chosen.etag, new_etags.get(item.key, "")} - {""}
        if size != chosen.size or (etags and plain_etag(etag) not in etags):
            problems.append(
                f"{item.key} (size {size}, ETag {plain_etag(etag)}; version {chosen.version_id} has size "
                f"{chosen.size}, ETag {chosen.etag})"
            )
    return problems


@s3_call("read the versioning status")
def versioning_status(cli: Any, info: S3Conn, bucket: str) -> str:
    """``Enabled``, ``Suspended`` or ``Disabled`` (never enabled)."""
    return str(cli.get_bucket_versioning(Bucket=bucket).get("Status") or "Disabled")


def bucket_created(cli: Any, bucket: str) -> dt.datetime | None:
    """The CreationDate ListBuckets gives ``bucket`` (whole seconds, UTC); None when the credentials may
    not list buckets or the server does not say."""
    try:
        found = [b for b in cli.list_buckets().get("Buckets") or [] if b.get("Name") == bucket]
    except Exception:  # pylint: disable=broad-except  # an optional check: skipped when refused
        return None
    created = found[0].get("CreationDate") if found else None
    if not isinstance(created, dt.datetime):
        return None
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.timezone.utc)
    return created.astimezone(dt.timezone.utc).replace(microsecond=0)


def check_history_reaches(histories: dict[str, list[Entry]], target: dt.datetime, created: dt.datetime | None) -> None:
    """S3Error when the state at ``target`` is not recorded under the prefix:

    - a ``null`` entry (see :func:`unknown_before`) is newer than ``target``;
    - ``target`` is before the bucket's creation date and before every entry under the prefix: the bucket
      did not exist then, and a restore would only delete everything."""
    null = unknown_before(histories)
    if null is not None and null.second > target:
        raise S3Error(
            f"the state at that time is not recorded: key {null.key!r} has a version written without versioning "
            f"(version id null) at {iso_z(null.last_modified)}, which replaced its earlier unversioned content "
            f"without keeping it; choose a target_time at or after {iso_z(null.last_modified)}"
        )
    oldest = min((e.second for entries in histories.values() for e in entries), default=None)
    if created is not None and target < created and (oldest is None or target < oldest):
        raise S3Error(
            f"the bucket was created at {iso_z(created)}, after that time, and holds no version that old: there is no "
            f"state to go back to; choose a target_time at or after {iso_z(created)}"
        )


def current_listing(cli: Any, info: S3Conn, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    listed = S3Storage.bucket_root(bucket, info, cli).list_objects(prefix)
    return {o["Key"]: (int(o.get("Size", 0)), plain_etag(o.get("ETag"))) for o in listed}


def plan_diff(shown: list[KeyPlan], bucket: str, when: str, total: int) -> dict[str, str]:
    """Ansible's before/after diff: each changed key of ``shown`` now and at the target time."""

    def line(key: str, entry: Entry | None) -> str:
        if entry is None or entry.delete_marker:
            return f"{key} (absent)\n"
        return f"{key} (version {entry.version_id} of {iso_z(entry.last_modified)}, {entry.size} bytes)\n"

    before = "".join(line(k.key, k.current) for k in shown)
    after = "".join(line(k.key, k.chosen) for k in shown)
    if total > len(shown):
        more = f"... and {total - len(shown)} more keys\n"
        before, after = before + more, after + more
    return {
        "before_header": f"s3://{bucket} (now)",
        "after_header": f"s3://{bucket} (at {when})",
        "before": before,
        "after": after,
    }


@dataclass
class Outcome:
    copied: int = 0
    deleted: int = 0
    verified: int = 0
    started: bool = False  # copies or deletes were sent (some may have landed before a failure)


def apply_plan(
    plan: Plan,
    info: S3Conn,
    cli: Any,
    bucket: str,
    prefix: str,
    copier: Copier,
    done: Outcome,
) -> None:
    """Copy the chosen versions over the current ones, delete (add a delete marker to) the keys that
    did not exist at T, then check every key of the plan against a fresh listing."""
    jobs = [
        CopyJob(
            src_bucket=bucket,
            src_key=k.key,
            dst_bucket=bucket,
            dst_key=k.key,
            size=k.chosen.size,
            src_version=k.chosen.version_id,
        )
        for k in plan.copy
        if k.chosen is not None
    ]
    done.started = True
    copier.run(jobs)
    done.copied = len(jobs)
    if plan.delete:  # with versioning enabled a delete only adds a delete marker: no version is lost
        done.deleted = S3Storage.bucket_root(bucket, info, cli).delete_keys([k.key for k in plan.delete])
    problems = verify_to_time(plan, current_listing(cli, info, bucket, prefix), {j.dst_key: j.new_etag for j in jobs})
    if problems:
        shown = "; ".join(problems[:10]) + (f" and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise S3Error(f"verification failed, {len(problems)} keys are not in their state at the target time: {shown}")
    done.verified = len(plan.keys)


def now_utc() -> dt.datetime:
    return dt.datetime.fromtimestamp(time.time(), dt.timezone.utc)
