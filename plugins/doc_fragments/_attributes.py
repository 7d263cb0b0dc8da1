# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The attributes every module documents, written once.

Private to this collection: the fragments may change in any release.

Every module extends the base fragment (``runbook.stack._attributes``), then at most one of
``info_module`` and ``operation``, then the ``actiongroup_*`` fragment of its groups in
meta/runtime.yml. Fragments merge attribute by attribute and the module's own keys win, so a
module keeps its support levels and ``details`` inline wherever they say something about it.
"""

from __future__ import annotations


class ModuleDocFragment:
    # The descriptions of check_mode, diff_mode and platform are those of
    # ansible.builtin.action_common_attributes, which this fragment replaces.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target, if not supported the action will be skipped.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode
  idempotent:
    description: Running the module twice in a row with the same options, against a system that has not changed in
      between, reports no change the second time.
  platform:
    description: Target OS/families that can be operated against
    support: N/A
    platforms: posix
"""

    # A module that only reads: an *_info module.
    INFO_MODULE = r"""
attributes:
  check_mode:
    support: full
    details: The module only reads, so check mode returns the same result as a normal run.
  diff_mode:
    support: N/A
    details: The module changes nothing, so there is nothing to diff.
  idempotent:
    support: full
    details: The module never changes anything; C(changed) is always false.
"""

    # A module that performs an operation (a backup, a restore, a maintenance run) on every
    # real run. Check mode predicts the run; the module says in check_mode.details what it
    # checks, and in idempotent.details what each run does.
    OPERATION = r"""
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: none
"""

    ACTIONGROUP_POSTGRESQL = r"""
attributes:
  action_group:
    description: Use C(group/runbook.stack.postgresql) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - runbook.stack.postgresql
"""

    ACTIONGROUP_REDIS = r"""
attributes:
  action_group:
    description: Use C(group/runbook.stack.redis) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - runbook.stack.redis
"""

    ACTIONGROUP_S3 = r"""
attributes:
  action_group:
    description: Use C(group/runbook.stack.s3) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - runbook.stack.s3
"""

    # Fragments merge per attribute, not per list, so a module in two groups needs one
    # fragment that names both.
    ACTIONGROUP_REDIS_S3 = r"""
attributes:
  action_group:
    description: Use C(group/runbook.stack.redis) or C(group/runbook.stack.s3) in C(module_defaults) to set defaults
      for this module.
    support: full
    membership:
      - runbook.stack.redis
      - runbook.stack.s3
"""
