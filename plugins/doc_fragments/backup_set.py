# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options that name backup sets, shared by the modules that take them.

``S3_ROOT`` (``runbook.stack.backup_set.s3_root``): where s3_snapshot writes its sets and s3_restore
reads them; kept in step with ``_s3.copy_plan.snapshot_root_spec()``.

Private to this collection: the fragments may change in any release.
"""

from __future__ import annotations


class ModuleDocFragment:
    S3_ROOT = r"""
options:
  backup_root:
    description:
      - The S3 backup root of the snapshot sets, C(s3://bucket/prefix) (C(s3://bucket) for the top of the
        bucket). A set is C(<backup_root>/s3/<source bucket>/<backup_id>/), in the layout of every backup root
        of the collection, so M(runbook.stack.backup_info), M(runbook.stack.backup_prune) and
        M(runbook.stack.dr_set) take the same root.
      - Mutually exclusive with O(backup_bucket) and O(backup_prefix). One of O(backup_root) and
        O(backup_bucket) is required.
    type: str
  backup_bucket:
    description:
      - Deprecated, to be removed in version 2.0.0; use O(backup_root) (C(s3://<backup_bucket>) for the
        default O(backup_prefix)).
      - Bucket that holds the snapshot sets.
    type: str
  backup_prefix:
    description:
      - Deprecated, to be removed in version 2.0.0; use O(backup_root)
        (C(s3://<backup_bucket>/<backup_prefix without its last component>)).
      - Key prefix of the sets in O(backup_bucket). Its last component is the backup kind (lower-case
        letters, digits and C(_), starting with a letter), the part before it the backup root. O(backup_root)
        always uses the kind C(s3).
      - Only with O(backup_bucket); V(s3) when not set.
    type: str
"""
