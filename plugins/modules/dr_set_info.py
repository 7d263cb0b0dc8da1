#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dr_set_info
short_description: Find a DR set and check that every component backup it names is intact
version_added: 0.1.0
description:
  - Finds the DR set O(backup_id) (or the newest valid one, V(latest)) of O(name) under O(root), as
    written by M(runbook.stack.dr_set), and checks each component set it names. A component is
    intact when its set is valid (manifest readable, every file present at its size), its
    C(manifest.json) has the SHA-256 the DR set recorded, and, with O(verify=true), every file has
    the SHA-256 its manifest records.
  - The DR set itself is checked first. Its C(manifest.json) must match the SHA-256 it carries
    (C(self_sha256), written by M(runbook.stack.dr_set)), its C(components.json) must match the
    manifest, and every component named in the manifest must be the one recorded in C(components.json)
    (written with the set); an edit of the manifest that repoints a component to another backup set, or
    changes a recorded figure, is reported naming the component. The figures the DR set records of each
    component (start and end, size, file count, row and key counts) must equal those of the component's
    own manifest, which must have the pinned SHA-256.
  - A DR set written before manifests carried a checksum (no C(self_sha256)) is accepted with a
    warning and RV(manifest_checksum=missing); every other check still applies.
  - Returns RV(valid) and the problems of each component instead of failing, so that a restore can
    refuse with the whole list before it replaces anything. Failing is left to the caller.
  - V(latest) means the newest DR set whose own manifest is valid; its components are then checked.
    An older set is never picked silently; name it with O(backup_id).
author:
  - runbook.stack maintainers (@runbook-stack)
extends_documentation_fragment:
  - runbook.stack.s3
  - runbook.stack._attributes
  - runbook.stack._attributes.info_module
  - runbook.stack._attributes.actiongroup_s3
options:
  root:
    description: Backup root of the DR set, a local directory or C(s3://bucket/prefix).
    type: str
    required: true
    aliases: [backup_root]
  name:
    description: Name of the platform (the DR set's source name).
    type: str
    default: platform
    aliases: [source]
  backup_id:
    description: Id of the DR set, or V(latest).
    type: str
    default: latest
  verify:
    description:
      - Re-hash every file of every component set (reads every byte).
      - The checks of the DR set's own manifest and of each component's pinned manifest run either way.
    type: bool
    default: true
seealso:
  - module: runbook.stack.dr_set
"""

EXAMPLES = r"""
- name: Pick the newest DR set and check every component byte by byte
  runbook.stack.dr_set_info:
    root: /var/backups/runbook
    name: shop
  register: dr

- name: Refuse to restore from a damaged set
  ansible.builtin.assert:
    that: dr.valid
    fail_msg: "DR set {{ dr.backup_id }} is damaged: {{ dr.problems | join('; ') }}"
"""

RETURN = r"""
backup_id:
  description: Id of the DR set found.
  type: str
  returned: always
  sample: 20261201T020000Z
path:
  description: Its directory or S3 URL.
  type: str
  returned: always
  sample: /var/backups/runbook/dr/shop/20261201T020000Z
recovery_point:
  description: Start (UTC) of its oldest component.
  type: str
  returned: always
  sample: "2026-12-01T02:00:00Z"
valid:
  description: Every component set is intact.
  type: bool
  returned: always
  sample: true
problems:
  description: One line per problem, naming the component.
  type: list
  elements: str
  returned: always
  sample: ["postgresql set 20261201T020001Z of 'shop': checksum mismatch on data/3021.dat.gz"]
manifest_checksum:
  description:
    - V(verified) when the DR set's manifest matches its C(self_sha256), V(mismatch) when it does not
      (then RV(problems) says so), V(missing) for a DR set written before manifests carried one.
  type: str
  returned: always
  sample: verified
components:
  description: What the DR set recorded of each component (see M(runbook.stack.dr_set)), with C(valid) and C(problems) added.
  type: list
  elements: dict
  returned: always
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.stack.plugins.module_utils import _s3
from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    DR_KIND,
    BackupSet,
    BackupSetError,
    check_dr_component,
    check_dr_set,
    find_set,
    open_storage,
    source_dirname,
)


def check_components(dr: BackupSet, s3: Any, verify: bool) -> tuple[list[dict[str, Any]], list[str]]:
    facts = (dr.manifest or {}).get("facts") or {}
    recorded = facts.get("components")
    if not isinstance(recorded, list) or not recorded:
        raise BackupSetError(f"DR set {dr.backup_id} names no components")
    out, problems = [], []
    for comp in recorded:
        label = f"{comp.get('kind')} set {comp.get('backup_id')} of {comp.get('source')!r}"
        try:
            found = BackupSet(
                open_storage(str(comp["root"]), s3=s3), comp["kind"], source_dirname(comp["source"]), comp["backup_id"]
            ).load()
            found_problems = check_dr_component(comp, found, verify)
        except (BackupSetError, _s3.S3Error, KeyError) as exc:
            found_problems = [f"cannot open it: {exc}"]
        except OSError as exc:
            found_problems = [f"cannot read it: {exc.strerror or exc}"]
        problems.extend(f"{label}: {p}" for p in found_problems)
        out.append({**comp, "valid": not found_problems, "problems": found_problems})
    return out, problems


def main() -> None:
    module = AnsibleModule(
        argument_spec=_s3.s3_argument_spec()
        | {
            "root": {"type": "str", "required": True, "aliases": ["backup_root"]},
            "name": {"type": "str", "default": "platform", "aliases": ["source"]},
            "backup_id": {"type": "str", "default": "latest"},
            "verify": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        s3 = _s3.conn_info(p)  # only used for s3:// roots (the DR set's or a component's)
        dr = find_set(open_storage(p["root"], s3=s3), DR_KIND, p["name"], p["backup_id"])
        checksum, dr_problems = check_dr_set(dr)
        components, problems = check_components(dr, s3, p["verify"])
        problems = dr_problems + problems
    except (BackupSetError, _s3.S3Error) as exc:
        module.fail_json(msg=f"cannot read DR set {p['backup_id']} of {p['name']!r} under {p['root']}: {exc}")
    except OSError as exc:
        module.fail_json(
            msg=f"cannot read DR set {p['backup_id']} of {p['name']!r} under {p['root']}: {exc.strerror or exc}"
        )
    if checksum == "missing":
        module.warn(
            f"DR set {dr.backup_id} of {p['name']!r} was written before DR manifests carried a checksum "
            "(self_sha256): an edit of its manifest.json is only found where it disagrees with its components.json "
            "or the component sets; write a new DR set (playbooks/backup.yml) to have it checked"
        )
    module.exit_json(
        changed=False,
        backup_id=dr.backup_id,
        path=dr.location,
        recovery_point=(dr.manifest or {}).get("facts", {}).get("recovery_point"),
        valid=not problems,
        manifest_checksum=checksum,
        problems=problems,
        components=components,
    )


if __name__ == "__main__":
    main()
