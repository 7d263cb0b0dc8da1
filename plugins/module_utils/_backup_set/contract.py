# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup-set reference (private module_utils): the one shape in which every module that writes
a set (postgresql_backup, redis_snapshot, s3_snapshot, backup_upload, backup_download, dr_set)
returns it, as ``backup_set``::

    {kind, source, backup_id, root, location, started, finished, size_bytes, file_count}

``kind``, ``source``, ``backup_id`` and ``root`` are the keys of a dr_set component (``check_component_ref``).
"""

from __future__ import annotations

import os
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._backup_set.ids import BackupSetError, set_rel
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.manifest import set_file_count, set_size

SET_REFERENCE_KEYS = (
    "kind",
    "source",
    "backup_id",
    "root",
    "location",
    "started",
    "finished",
    "size_bytes",
    "file_count",
)


def root_url(root: str) -> str:
    """A backup root as a reference names it: ``s3://bucket/prefix`` without a trailing '/', or the
    absolute local directory (as LocalSetWriter and LocalStorage resolve it)."""
    if "://" in root:
        return root.rstrip("/")
    return os.path.abspath(os.path.expanduser(root))


def set_reference(
    root: str,
    manifest: dict[str, Any] | None = None,
    *,
    kind: str | None = None,
    source: str | None = None,
    location: str | None = None,
) -> dict[str, Any]:
    """The reference of the set under ``root`` that ``manifest`` describes (the manifest the module
    wrote, copied or found).

    - ``size_bytes`` and ``file_count`` cover the files of the set and, for an S3 snapshot set, its
      objects (the manifest itself is not counted);
    - ``location`` defaults to ``<root>/<kind>/<source directory>/<backup_id>``;
    - without a manifest (check mode: no set was written) ``kind`` and ``source`` say which set it
      would be, and everything only the run decides is None (``backup_id``, ``started``,
      ``finished``, ``size_bytes``, ``file_count``, and ``location`` unless given).
    """
    root = root_url(root)
    if manifest is None:
        if not kind or source is None:
            raise BackupSetError("a backup-set reference without a manifest needs its kind and source")
        return {
            "kind": kind,
            "source": source,
            "backup_id": None,
            "root": root,
            "location": location,
            "started": None,
            "finished": None,
            "size_bytes": None,
            "file_count": None,
        }
    kind, source, backup_id = str(manifest["kind"]), str(manifest["source"]), str(manifest["backup_id"])
    if location is None:
        rel = set_rel(kind, source, backup_id)
        location = f"{root}/{rel}" if "://" in root else os.path.join(root, *rel.split("/"))
    return {
        "kind": kind,
        "source": source,
        "backup_id": backup_id,
        "root": root,
        "location": location,
        "started": manifest.get("started"),
        "finished": manifest.get("finished"),
        "size_bytes": set_size(manifest),
        "file_count": set_file_count(manifest),
    }
