# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure selection helpers of s3_retention: the age cutoff, which objects go, delete batches (private)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._s3.errors import S3Error

# DeleteObjects accepts at most this many keys per request.
DELETE_BATCH_MAX = 1000


def age_cutoff(now: dt.datetime, older_than_days: float) -> dt.datetime:
    """Objects last modified strictly before this instant are old enough to delete."""
    if older_than_days < 0:
        raise S3Error(f"older_than_days must be 0 or more, got {older_than_days}")
    return now - dt.timedelta(days=older_than_days)


def select_for_retention(
    objects: Iterable[dict[str, Any]], now: dt.datetime, older_than_days: float, min_keep: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(to_delete, to_keep) among ``objects`` (dicts with Key, LastModified, Size).

    The ``min_keep`` newest objects (by LastModified, ties broken by key) are always kept; of the
    others, those last modified before ``now - older_than_days`` are deleted. Both lists are sorted
    oldest first.
    """
    if min_keep < 0:
        raise S3Error(f"min_keep must be 0 or more, got {min_keep}")
    cutoff = age_cutoff(now, older_than_days)
    ordered = sorted(objects, key=lambda o: (o["LastModified"], o["Key"]))
    protected = ordered[len(ordered) - min_keep :] if min_keep else []
    candidates = ordered[: len(ordered) - len(protected)]
    delete = [o for o in candidates if o["LastModified"] < cutoff]
    delete_keys = {o["Key"] for o in delete}
    keep = [o for o in ordered if o["Key"] not in delete_keys]
    return delete, keep


def batches(items: list[Any], size: int) -> list[list[Any]]:
    if not 0 < size <= DELETE_BATCH_MAX:
        raise S3Error(f"batch_size must be between 1 and {DELETE_BATCH_MAX}, got {size}")
    return [items[i : i + size] for i in range(0, len(items), size)]
