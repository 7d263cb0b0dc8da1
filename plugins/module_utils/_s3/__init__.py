# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The S3 helpers of the collection, one module per concern (private).

- ``connection``: the s3_* connection options, S3Conn, the bounded boto3 client;
- ``errors``: S3Error, translate() and the ``@s3_call("list prefix {prefix!r}")`` decorator;
- ``storage``: S3Storage (backup sets under s3://bucket/prefix, their removal and id allocation, and
  the one list and delete of every module), open_s3_root;
- ``retention``: what s3_retention deletes; ``copy_plan``: what s3_snapshot and s3_restore copy;
- ``sigv4``, ``copier``: server-side copies; ``transfer``, ``set_sync``: backup sets to and from S3.

This ``__init__`` is a one-release re-export shim: ``from ...module_utils._s3 import X`` keeps working
for every name the single ``_s3.py`` module had. New code imports from the submodule that defines the
name (``from ...module_utils._s3.storage import S3Storage``); the shim goes in the next release.
"""

from __future__ import annotations

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import BackupSetError
from ansible_collections.runbook.stack.plugins.module_utils._s3.connection import (
    S3Conn,
    client,
    conn_info,
    s3_argument_spec,
    validate_endpoint_url,
)
from ansible_collections.runbook.stack.plugins.module_utils._s3.copier import (
    Cancelled,
    Copier,
    CopyJob,
)
from ansible_collections.runbook.stack.plugins.module_utils._s3.copy_plan import (
    DEFAULT_MULTIPART_THRESHOLD,
    DEFAULT_PART_SIZE,
    GIB,
    KEEP_LIMIT,
    KEEP_PREFIX,
    MAX_CONCURRENCY,
    MAX_PART_SIZE,
    MAX_PARTS,
    MAX_SINGLE_COPY,
    MIB,
    MIN_PART_SIZE,
    RESTORE_MODES,
    RestorePlan,
    backup_key,
    check_copy_options,
    check_no_overlap,
    free_keep_prefix,
    is_kept_key,
    is_md5_etag,
    keep_prefix_name,
    map_key,
    part_ranges,
    plain_etag,
    plan_restore,
    restore_diff,
    same_content,
    sample,
    set_prefix,
    snapshot_entry,
    split_backup_prefix,
    verify_restore,
)
from ansible_collections.runbook.stack.plugins.module_utils._s3.errors import (
    BOTO3_IMPORT_ERROR,
    HAS_BOTO3,
    S3Error,
    error_code,
    is_credential_error,
    is_transient,
    is_unreachable,
    s3_call,
    translate,
)
from ansible_collections.runbook.stack.plugins.module_utils._s3.retention import (
    DELETE_BATCH_MAX,
    age_cutoff,
    batches,
    select_for_retention,
)
from ansible_collections.runbook.stack.plugins.module_utils._s3.set_sync import (
    destination_state,
    download_set,
    set_manifest_bytes,
    upload_set,
)
from ansible_collections.runbook.stack.plugins.module_utils._s3.sigv4 import (
    CopyTransport,
)
from ansible_collections.runbook.stack.plugins.module_utils._s3.storage import (
    S3Storage,
    open_s3_root,
    parse_s3_url,
    remove_backup_set,
)
from ansible_collections.runbook.stack.plugins.module_utils._s3.transfer import (
    SHA256_METADATA,
    TRANSFER_ATTEMPTS,
    TRANSFER_CONCURRENCY,
    TRANSFER_PART_SIZE,
    TRANSFER_THRESHOLD,
    SetFile,
    SetTransfer,
    file_digests,
    multipart_etag,
    set_files,
    transfer_plan,
)

__all__ = [
    "BOTO3_IMPORT_ERROR",
    "DEFAULT_MULTIPART_THRESHOLD",
    "DEFAULT_PART_SIZE",
    "DELETE_BATCH_MAX",
    "GIB",
    "HAS_BOTO3",
    "KEEP_LIMIT",
    "KEEP_PREFIX",
    "MAX_CONCURRENCY",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MAX_SINGLE_COPY",
    "MIB",
    "MIN_PART_SIZE",
    "RESTORE_MODES",
    "SHA256_METADATA",
    "TRANSFER_ATTEMPTS",
    "TRANSFER_CONCURRENCY",
    "TRANSFER_PART_SIZE",
    "TRANSFER_THRESHOLD",
    "BackupSetError",
    "Cancelled",
    "Copier",
    "CopyJob",
    "CopyTransport",
    "RestorePlan",
    "S3Conn",
    "S3Error",
    "S3Storage",
    "SetFile",
    "SetTransfer",
    "age_cutoff",
    "backup_key",
    "batches",
    "check_copy_options",
    "check_no_overlap",
    "client",
    "conn_info",
    "destination_state",
    "download_set",
    "error_code",
    "file_digests",
    "free_keep_prefix",
    "is_credential_error",
    "is_kept_key",
    "is_md5_etag",
    "is_transient",
    "is_unreachable",
    "keep_prefix_name",
    "map_key",
    "multipart_etag",
    "open_s3_root",
    "parse_s3_url",
    "part_ranges",
    "plain_etag",
    "plan_restore",
    "remove_backup_set",
    "restore_diff",
    "s3_argument_spec",
    "s3_call",
    "same_content",
    "sample",
    "select_for_retention",
    "set_files",
    "set_manifest_bytes",
    "set_prefix",
    "snapshot_entry",
    "split_backup_prefix",
    "transfer_plan",
    "translate",
    "upload_set",
    "validate_endpoint_url",
    "verify_restore",
]
