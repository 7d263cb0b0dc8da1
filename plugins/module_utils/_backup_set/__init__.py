# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup-set format shared by every kind of backup (private module_utils package).

Layout: ``<root>/<kind>/<source>/<backup_id>/`` with ``manifest.json`` written last and atomically.
A directory without a valid manifest is not a backup set for any reader. See docs/backup-format.md.

- ``ids``: the error type, backup ids, kinds, source directory names
- ``local``: local file helpers (hashing, private modes, fsync, removal)
- ``manifest``: building, serialising and checking manifests
- ``storage``: the ``Storage`` interface, ``LocalStorage``, ``open_storage``
- ``reader``: ``BackupSet``, ``list_sets``, ``find_set`` (``latest`` found lazily)
- ``writer``: ``LocalSetWriter``
- ``retention``: ``select_prune``, ``plan_prune``
- ``dr``: DR sets

This ``__init__`` is a one-release shim: it re-exports every name of the former ``_backup_set.py``,
so ``from ...module_utils._backup_set import X`` keeps working. New code imports from the
submodules; the shim goes in the next release.
"""

from __future__ import annotations

from ansible_collections.runbook.stack.plugins.module_utils._backup_set.dr import (
    DR_COMPONENTS_FILE,
    DR_KIND,
    check_component_ref,
    check_dr_component,
    check_dr_set,
    describe_component,
    manifest_sha256,
    recovery_point,
    value_diffs,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.ids import (
    ID_FORMAT,
    ID_RE,
    KIND_RE,
    MANIFEST,
    BackupSetError,
    format_backup_id,
    is_backup_id,
    iso,
    parse_backup_id,
    set_rel,
    source_dirname,
    utcnow,
    validate_kind,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.local import (
    DIR_MODE,
    FILE_MODE,
    HASH_CHUNK,
    fsync_tree,
    hash_files,
    keep_name,
    make_private_dirs,
    private_umask,
    remove_tree,
    secure_tree,
    sha256_file,
    walk_files,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    OBJECTS_DIR,
    SELF_SHA256,
    SHA256_RE,
    build_manifest,
    check_manifest,
    check_objects,
    manifest_bytes,
    manifest_self_sha256,
    self_sha256_problem,
    with_self_sha256,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.reader import (
    BackupSet,
    find_set,
    iter_sets,
    list_sets,
    open_set_path,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.retention import (
    select_prune,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.storage import (
    LocalStorage,
    Storage,
    open_storage,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.writer import (
    LocalSetWriter,
    check_dest_writable,
)
from ansible_collections.runbook.stack.plugins.module_utils._common.files import atomic_write, fsync_dir

__all__ = [
    "DIR_MODE",
    "DR_COMPONENTS_FILE",
    "DR_KIND",
    "FILE_MODE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HASH_CHUNK",
    "ID_FORMAT",
    "ID_RE",
    "KIND_RE",
    "MANIFEST",
    "OBJECTS_DIR",
    "SELF_SHA256",
    "SHA256_RE",
    "BackupSet",
    "BackupSetError",
    "LocalSetWriter",
    "LocalStorage",
    "Storage",
    "atomic_write",
    "build_manifest",
    "check_component_ref",
    "check_dest_writable",
    "check_dr_component",
    "check_dr_set",
    "check_manifest",
    "check_objects",
    "describe_component",
    "find_set",
    "format_backup_id",
    "fsync_dir",
    "fsync_tree",
    "hash_files",
    "is_backup_id",
    "iso",
    "iter_sets",
    "keep_name",
    "list_sets",
    "make_private_dirs",
    "manifest_bytes",
    "manifest_self_sha256",
    "manifest_sha256",
    "open_set_path",
    "open_storage",
    "parse_backup_id",
    "private_umask",
    "recovery_point",
    "remove_tree",
    "secure_tree",
    "select_prune",
    "self_sha256_problem",
    "set_rel",
    "sha256_file",
    "source_dirname",
    "utcnow",
    "validate_kind",
    "value_diffs",
    "walk_files",
    "with_self_sha256",
]
