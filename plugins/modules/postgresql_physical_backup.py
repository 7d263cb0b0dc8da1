#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_physical_backup
short_description: Take a full, differential or incremental physical backup of PostgreSQL with pgBackRest, or expire backups
version_added: 0.1.0
description:
  - Runs C(pgbackrest backup) for a stanza configured by M(runbook.stack.postgresql_wal_archive) and
    returns the new backup's label, sizes, duration and WAL / LSN range.
  - A V(diff) or V(incr) backup without a prior full backup is taken as a full one (pgBackRest's rule);
    RV(type) reports what was taken.
  - pgBackRest expires backups beyond C(repo1-retention-full) after each backup; RV(expired) lists them.
  - O(type=expire) takes no backup and runs C(pgbackrest expire) on demand, with the configured retention,
    with O(retention_full) for this run only, or for the one backup O(set) names (and the backups that depend on it).
extends_documentation_fragment:
  - runbook.stack.postgresql
  - runbook.stack.pgbackrest
  - runbook.stack._attributes
  - runbook.stack._attributes.actiongroup_postgresql
attributes:
  check_mode:
    support: full
    details: Reads the repository and predicts a change; takes no backup. With O(type=expire) it predicts from
      C(pgbackrest info) which backups would be expired (RV(expired), RV(kept)) and runs no expire.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details: Every backup run takes a new backup; an expire run reports a change only when it expired something.
options:
  type:
    description:
      - Backup type, or V(expire) to expire backups without taking one.
    type: str
    default: incr
    choices: [full, diff, incr, expire]
  retention_full:
    description:
      - With O(type=expire), the number of full backups to keep for this run (C(--repo1-retention-full=N),
        counted, whatever C(repo1-retention-full-type) the configuration sets); older full backups and the
        differential and incremental backups that depend on them are expired.
      - Without it (and without O(set)) the configured retention applies.
      - Only with O(type=expire); 1 or more; cannot be combined with O(set).
    type: int
  set:
    description:
      - With O(type=expire), the label of one backup to expire (C(--set=LABEL)), with every backup that depends
        on it, whatever the retention.
      - The label must be listed by C(pgbackrest info). pgBackRest refuses the newest full backup while it is the only
        full backup (or the full backup before it belongs to another database); the module fails and says so.
      - Only with O(type=expire).
    type: str
  start_fast:
    description: Force an immediate checkpoint instead of waiting for a spread one.
    type: bool
    default: true
notes:
  - The check-mode prediction of an expire covers count-based full retention, C(repo1-retention-diff) and O(set);
    with C(repo1-retention-full-type=time) in the configuration and no O(retention_full), full backups that
    would expire by age are not predicted (a warning says so).
  - Only O(login_password) of the connection options is used (as E(PGPASSWORD) for pgBackRest); the
    server is reached through the C(pg1-*) settings of O(config_file).
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Weekly full backup
  runbook.stack.postgresql_physical_backup:
    stanza: main
    os_user: postgres
    type: full
  become: true
  register: backup

- name: Keep only the newest full backup (and what depends on it), now
  runbook.stack.postgresql_physical_backup:
    stanza: main
    os_user: postgres
    type: expire
    retention_full: 1
  become: true
  register: expire

- name: Expire one backup set by its label
  runbook.stack.postgresql_physical_backup:
    stanza: main
    os_user: postgres
    type: expire
    set: 20261205-215734F
  become: true
"""

RETURN = r"""
label:
  description: Label of the new backup.
  type: str
  returned: success, not in check mode, not with O(type=expire)
  sample: 20261205-215734F
type:
  description: Type of the backup taken (or wanted, in check mode); V(expire) for an expire run.
  type: str
  returned: always
  sample: full
backup:
  description: The new backup as RV(runbook.stack.postgresql_physical_backup_info#module:backups) lists it
    (label, type, prior, start, stop, duration_s, size, delta, repo_size, repo_delta, wal_start, wal_stop, lsn_start, lsn_stop).
  type: dict
  returned: success, not in check mode, not with O(type=expire)
expired:
  description:
    - Labels of backups expired by this run (listed by C(pgbackrest info) before and no longer after), oldest first.
    - With O(type=expire) in check mode, the labels that would be expired.
  type: list
  elements: str
  returned: success, not in check mode; always with O(type=expire)
  sample: [20261205-215734F, 20261205-215734F_20261205-221500I]
kept:
  description: Labels of the backups left (that would be left, in check mode), oldest first.
  type: list
  elements: str
  returned: with O(type=expire)
  sample: [20261206-031000F]
command:
  description: The command that ran (no secrets).
  type: str
  returned: always
duration_s:
  description: Seconds the module took.
  type: float
  returned: always
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.stack.plugins.module_utils._common.process import Interrupted, terminate_on_signals
from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest import (
    elapsed,
    pgbackrest_argument_spec,
    runner_from_params,
    shown,
    stanza_info,
    stanza_unreachable,
)
from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest_expire import (
    configured_retention,
    expire_options,
    predict_expire,
)
from ansible_collections.runbook.stack.plugins.module_utils._postgresql import PostgresError, postgres_argument_spec


def main() -> None:
    argument_spec = (
        postgres_argument_spec()
        | pgbackrest_argument_spec()
        | dict(
            type=dict(type="str", default="incr", choices=["full", "diff", "incr", "expire"]),
            start_fast=dict(type="bool", default=True),
            retention_full=dict(type="int"),
            set=dict(type="str"),
        )
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    started = time.monotonic()
    stanza = params["stanza"]
    opts = [f"--type={params['type']}", f"--start-fast={'y' if params['start_fast'] else 'n'}"]
    result = dict(type=params["type"], command="")
    if params["type"] == "expire":
        expire(module, started)
    try:
        expire_options(params)  # set / retention_full with a backup type: refused, naming the option
        runner = runner_from_params(params, params.get("login_password"))
        result["command"] = shown(runner.argv("backup", *opts))
        before = stanza_info(runner)
        cause = stanza_unreachable(before)
        if cause:
            raise PostgresError(f"cannot back up stanza {stanza!r}: {cause}")
        if not before["backups"] and params["type"] != "full":
            result["type"] = "full"
        if module.check_mode:
            module.exit_json(changed=True, duration_s=elapsed(started), **result)
        with terminate_on_signals():
            runner.run("backup", *opts, what=f"cannot back up stanza {stanza!r}")
        after = stanza_info(runner)
    except PostgresError as exc:
        module.fail_json(msg=str(exc), duration_s=elapsed(started), **result)
    except Interrupted as exc:
        module.fail_json(msg=f"backup of stanza {stanza!r} {exc}", duration_s=elapsed(started), **result)
    old = {b["label"] for b in before["backups"]}
    new = [b for b in after["backups"] if b["label"] not in old]
    if not new:
        module.fail_json(msg=f"pgbackrest backup of stanza {stanza!r} finished but no new backup is listed", **result)
    backup = new[-1]
    now = {b["label"] for b in after["backups"]}
    result.update(label=backup["label"], type=backup["type"], backup=backup, expired=sorted(old - now))
    module.exit_json(changed=True, duration_s=elapsed(started), **result)


def expire(module: AnsibleModule, started: float) -> None:
    """type=expire: pgbackrest expire now (check mode: the prediction from pgbackrest info)."""
    params = module.params
    stanza = params["stanza"]
    result: dict = dict(type="expire", command="")
    try:
        opts = expire_options(params)
        runner = runner_from_params(params, params.get("login_password"))
        result["command"] = shown(runner.argv("expire", *opts))
        before = stanza_info(runner)
        cause = stanza_unreachable(before)
        if cause:
            raise PostgresError(f"cannot expire backups of stanza {stanza!r}: {cause}")
        full, diff, full_type = configured_retention(params["config_file"], stanza)
        retention = params["retention_full"]
        if retention is None and not params["set"]:
            if full_type != "count":
                module.warn(f"repo1-retention-full-type={full_type}: full backups expiring by age are not predicted")
                full = None
            retention = full
        try:
            predicted = predict_expire(before["backups"], retention, params["set"] or None, diff)
        except PostgresError as exc:
            raise PostgresError(f"cannot expire backups of stanza {stanza!r}: {exc}") from None
        labels = [b["label"] for b in before["backups"]]
        if module.check_mode:
            kept = [lb for lb in labels if lb not in predicted]
            module.exit_json(
                changed=bool(predicted), expired=predicted, kept=kept, duration_s=elapsed(started), **result
            )
        with terminate_on_signals():
            runner.run("expire", *opts, what=f"cannot expire backups of stanza {stanza!r}")
        after = stanza_info(runner)
    except PostgresError as exc:
        module.fail_json(msg=str(exc), duration_s=elapsed(started), **result)
    except Interrupted as exc:
        module.fail_json(msg=f"expire of stanza {stanza!r} {exc}", duration_s=elapsed(started), **result)
    now = [b["label"] for b in after["backups"]]
    expired = [lb for lb in labels if lb not in now]
    module.exit_json(changed=bool(expired), expired=expired, kept=now, duration_s=elapsed(started), **result)


if __name__ == "__main__":
    main()
