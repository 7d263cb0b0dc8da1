#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dr_set
short_description: Group component backup sets (PostgreSQL, Redis, S3) under one DR set
version_added: 0.1.0
description:
  - Writes a backup set of kind C(dr) under O(dest) (C(<dest>/dr/<name>/<backup_id>/)) that names
    the component backup sets of one recovery point, for example the PostgreSQL, Redis and S3
    backups of one nightly run, so that a disaster recovery restores them together.
  - Each component set is opened and must be a valid backup set; the DR set records its kind,
    source, backup id, root and location, and pins it by the SHA-256 of its C(manifest.json), with
    its start and end times, size and kind-specific facts (row counts, key counts, object counts).
  - The recovery point of the DR set is the start time of its oldest component.
  - The manifest of the DR set carries its own SHA-256 (C(self_sha256), over its canonical JSON without
    that key), so that M(runbook.stack.dr_set_info) notices a DR set whose manifest was edited after it
    was written, for example a component repointed to another backup set or a changed row count.
  - The DR set is a backup set like any other (C(components.json) plus C(manifest.json), written
    last), so M(runbook.stack.backup_info), M(runbook.stack.backup_prune),
    M(runbook.stack.backup_upload) and M(runbook.stack.backup_download) handle it with C(kind=dr).
    M(runbook.stack.dr_set_info) finds one and checks its components.
  - Component roots may be local directories or S3 backup roots C(s3://bucket/prefix); the S3
    connection options are only used for the latter.
author:
  - runbook.stack maintainers (@runbook-stack)
extends_documentation_fragment:
  - runbook.stack.s3
  - runbook.stack._attributes
  - runbook.stack._attributes.operation
  - runbook.stack._attributes.actiongroup_s3
attributes:
  check_mode:
    details: Opens and checks every component set and returns what would be recorded; nothing is written.
  idempotent:
    details: Every run writes a new DR set, as a backup does.
options:
  dest:
    description: Local backup root the DR set is written under (created when missing).
    type: path
    required: true
    aliases: [backup_root]
  name:
    description: Name of the platform the DR set covers (its source name), for example V(shop).
    type: str
    default: platform
  components:
    description: The component sets.
    type: list
    elements: dict
    required: true
    suboptions:
      kind:
        description: Kind of the set, for example V(postgresql), V(redis) or V(s3).
        type: str
        required: true
      source:
        description: Its source name (database, Redis instance, bucket).
        type: str
        required: true
      backup_id:
        description: Its backup id, or V(latest) for the newest valid set of that source.
        type: str
        required: true
      root:
        description: The backup root holding it, a local directory or C(s3://bucket/prefix).
        type: str
        required: true
      host:
        description:
          - The inventory host it was taken on. The C(runbook.stack.dr_restore) role restores a PostgreSQL or
            Redis set only on that host (or on the host whose C(dr_restore_source_host) names it), so
            two database or cache hosts each get their own data back.
          - Without it, every host that runs that kind restores the set.
        type: str
      location:
        description:
          - Ignored, like O(components[].started), O(components[].finished), O(components[].size_bytes)
            and O(components[].file_count). With them, a C(backup_set) that a module returned can be
            passed whole. The DR set reads these facts from the component's own manifest.
        type: raw
      started:
        description: Ignored (see O(components[].location)).
        type: raw
      finished:
        description: Ignored (see O(components[].location)).
        type: raw
      size_bytes:
        description: Ignored (see O(components[].location)).
        type: raw
      file_count:
        description: Ignored (see O(components[].location)).
        type: raw
  verify_components:
    description: Re-hash every file of every component set before recording it (reads every byte).
    type: bool
    default: false
seealso:
  - module: runbook.stack.dr_set_info
  - module: runbook.stack.backup_upload
"""

EXAMPLES = r"""
- name: One DR set for the nightly backups of the shop
  runbook.stack.dr_set:
    dest: /var/backups/runbook
    name: shop
    components:
      - {kind: postgresql, source: shop, backup_id: "{{ pg.backup_id }}", root: /var/backups/runbook, host: db1}
      - {kind: redis, source: "cache1:6379", backup_id: "{{ cache.backup_id }}", root: /var/backups/runbook, host: cache1}
      - {kind: s3, source: shop-receipts, backup_id: "{{ receipts.backup_id }}", root: s3://shop-backups/s3}
    endpoint_url: https://minio.internal.example.com:9000
    access_key: backup-writer
    secret_key: "{{ vault_s3_secret_key }}"
  register: dr

- name: The same from the sets the backup modules returned, passed whole (their backup_set)
  runbook.stack.dr_set:
    dest: /var/backups/runbook
    name: shop
    components:
      - "{{ pg.backup_set | combine({'host': inventory_hostname}) }}"
      - "{{ receipts.backup_set }}"
"""

RETURN = r"""
backup_id:
  description:
    - Id of the DR set (its UTC start time); in check mode the id it would get.
    - Deprecated, use C(backup_set.backup_id); to be removed in runbook.stack 2.0.0.
  type: str
  returned: always
  sample: 20261201T020000Z
path:
  description:
    - Directory of the DR set; in check mode, where it would go.
    - Deprecated, use C(backup_set.location); to be removed in runbook.stack 2.0.0.
  type: str
  returned: always
  sample: /var/backups/runbook/dr/shop/20261201T020000Z
recovery_point:
  description: Start time (UTC) of the oldest component set.
  type: str
  returned: always
  sample: "2026-12-01T02:00:00Z"
components:
  description: What was recorded of each component set.
  type: list
  elements: dict
  returned: always
  contains:
    kind: {description: Kind., type: str, sample: postgresql}
    source: {description: Source name., type: str, sample: shop}
    backup_id: {description: "Its backup id (resolved when V(latest) was given).", type: str, sample: 20261201T020001Z}
    root: {description: Its backup root., type: str, sample: /var/backups/runbook}
    host: {description: "The inventory host it was taken on, when given.", type: str, returned: when given, sample: db1}
    location: {description: Its directory or S3 URL., type: str, sample: /var/backups/runbook/postgresql/shop/20261201T020001Z}
    manifest_sha256: {description: SHA-256 of its manifest.json., type: str, sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
    started: {description: When it started (UTC)., type: str, sample: "2026-12-01T02:00:01Z"}
    finished: {description: When it finished (UTC)., type: str, sample: "2026-12-01T02:00:09Z"}
    size_bytes: {description: Its total size., type: int, sample: 31080000}
    file_count: {description: Files and objects in it., type: int, sample: 12}
    facts: {description: "Its kind-specific facts (row counts, key counts, object counts).", type: dict, sample: {}}
steps:
  description:
    - What the run did, in order, with the seconds each step took, as every module of this collection returns
      them; a check run only finds (and verifies) the component sets.
  type: list
  elements: dict
  returned: always
  contains:
    step: {description: What was done., type: str}
    duration_s: {description: Seconds it took., type: float}
  sample: [{"step": "find the component sets", "duration_s": 0.04}, {"step": "write the DR set", "duration_s": 0.01}]
duration_s:
  description: Seconds the module spent.
  type: float
  returned: always
  sample: 0.07
manifest:
  description: The manifest of the DR set, with its C(self_sha256); null in check mode.
  type: dict
  returned: always
backup_set:
  description:
    - The set written, in the shape every module that writes sets returns; its C(kind), C(source), C(backup_id)
      and C(root) name it as a component of M(runbook.stack.dr_set).
    - In check mode, what only a real run knows (a new set's id, location, times and size) is null.
  returned: success
  type: dict
  contains:
    kind: {description: Kind of the set., type: str, sample: postgresql}
    source: {description: Its source name., type: str, sample: app}
    backup_id: {description: Its backup id (UTC start time)., type: str, sample: 20261122T020000Z}
    root: {description: "Its backup root, a local directory or C(s3://bucket/prefix).", type: str, sample: /var/backups/runbook}
    location: {description: Its directory or S3 URL., type: str, sample: /var/backups/runbook/postgresql/app/20261122T020000Z}
    started: {description: When the backup started (UTC)., type: str, sample: "2026-11-22T02:00:00.412Z"}
    finished: {description: When it finished (UTC)., type: str, sample: "2026-11-22T02:00:12.905Z"}
    size_bytes: {description: "Bytes of its files (of an S3 snapshot set, its objects).", type: int, sample: 52428800}
    file_count: {description: "Its files (of an S3 snapshot set, its objects), the manifest not counted.", type: int, sample: 42}
"""

import json
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.stack.plugins.module_utils import _s3
from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    DR_COMPONENTS_FILE,
    DR_KIND,
    BackupSetError,
    LocalSetWriter,
    check_component_ref,
    check_dest_writable,
    describe_component,
    find_set,
    format_backup_id,
    open_storage,
    recovery_point,
    set_rel,
    utcnow,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.contract import set_reference
from ansible_collections.runbook.stack.plugins.module_utils._common.files import atomic_write
from ansible_collections.runbook.stack.plugins.module_utils._common.steps import Steps


def resolve(refs: list[dict[str, str]], s3: Any, verify: bool) -> list[dict[str, Any]]:
    out = []
    for ref in refs:
        where = f"{ref['kind']} set {ref['backup_id']} of {ref['source']!r} under {ref['root']}"
        try:
            found = find_set(open_storage(ref["root"], s3=s3), ref["kind"], ref["source"], ref["backup_id"])
        except BackupSetError as exc:
            raise BackupSetError(f"component {where}: {exc}") from None
        if verify:
            problems = found.verify()
            if problems:
                raise BackupSetError(f"component {where} is damaged: {'; '.join(problems)}")
        out.append(describe_component(ref, found))
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec=_s3.s3_argument_spec()
        | {
            "dest": {"type": "path", "required": True, "aliases": ["backup_root"]},
            "name": {"type": "str", "default": "platform"},
            "components": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "kind": {"type": "str", "required": True},
                    "source": {"type": "str", "required": True},
                    "backup_id": {"type": "str", "required": True},
                    "root": {"type": "str", "required": True},
                    "host": {"type": "str"},
                    # the rest of a returned backup_set, so that it can be passed whole (ignored)
                    **{key: {"type": "raw"} for key in ("location", "started", "finished", "size_bytes", "file_count")},
                },
            },
            "verify_components": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    t0 = time.monotonic()
    steps = Steps()
    if not p["name"]:
        module.fail_json(msg="name must not be empty")
    if not p["components"]:
        module.fail_json(msg="components must name at least one backup set")
    try:
        refs = [check_component_ref(i, ref) for i, ref in enumerate(p["components"])]
        s3 = _s3.conn_info(p)  # only used for s3:// component roots
        with steps.step("find and verify the component sets" if p["verify_components"] else "find the component sets"):
            components = resolve(refs, s3, p["verify_components"])
        point = recovery_point(components)
        if module.check_mode:
            check_dest_writable(p["dest"])
            backup_id = format_backup_id(utcnow())
            path = f"{p['dest'].rstrip('/')}/{set_rel(DR_KIND, p['name'], backup_id)}"
            module.exit_json(
                changed=True,
                backup_id=backup_id,
                path=path,
                recovery_point=point,
                components=components,
                manifest=None,
                backup_set=set_reference(p["dest"], kind=DR_KIND, source=p["name"]),
                steps=steps.items,
                duration_s=round(time.monotonic() - t0, 3),
            )
        writer = LocalSetWriter(p["dest"], DR_KIND, p["name"]).create()
        try:
            # 0600 from the start, like every file of a set (seal() would only fix the mode later)
            atomic_write(
                f"{writer.path}/{DR_COMPONENTS_FILE}", json.dumps(components, indent=2, sort_keys=True).encode()
            )
            manifest = writer.seal(
                self_checksum=True,
                tool={"name": "runbook.stack.dr_set"},
                facts={"name": p["name"], "recovery_point": point, "components": components},
            )
        except BaseException:
            writer.discard()
            raise
        steps.mark("write the DR set")
    except (BackupSetError, _s3.S3Error) as exc:
        module.fail_json(msg=f"cannot make DR set {p['name']!r} under {p['dest']}: {exc}")
    except OSError as exc:
        module.fail_json(msg=f"cannot make DR set {p['name']!r} under {p['dest']}: {exc.strerror or exc}")
    module.exit_json(
        changed=True,
        backup_id=writer.backup_id,
        path=writer.path,
        recovery_point=point,
        components=components,
        manifest=manifest,
        backup_set=set_reference(p["dest"], manifest, location=writer.path),
        steps=steps.items,
        duration_s=round(time.monotonic() - t0, 3),
    )


if __name__ == "__main__":
    main()
