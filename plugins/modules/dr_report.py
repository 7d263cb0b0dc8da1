#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dr_report
short_description: Write the report of a disaster-recovery drill or restore (JSON, Markdown and HTML)
version_added: 0.1.0
description:
  - Turns the measured facts of a disaster-recovery drill, or of a real restore, into one report in three
    formats under O(dest), namely C(<dest>/<name>.json), C(<dest>/<name>.md) and C(<dest>/<name>.html).
  - The RTO is the time from O(disaster_declared_at) to O(healthy_at); the RPO is the age of the
    O(recovery_point) when the disaster was declared (O(disaster_declared_at) minus O(recovery_point)).
    Each is compared with its target in O(targets).
  - The drill passes only when the RTO and the RPO meet their targets, at least one verification was
    recorded and all of them passed, and no phase failed. An empty O(verifications) list means nothing was
    verified, so the drill fails, and the report says so.
  - The HTML file is self-contained (inline CSS, an inline SVG timeline with one bar per phase and markers
    for the declaration and the return to health, no scripts and no external assets). Every text taken
    from the input is escaped in the HTML and in the Markdown.
  - Each file is written atomically (temporary file in O(dest), then rename) with mode 0644, and only
    when its content differs from the file on disk. O(dest) is created with mode 0755 when missing.
  - Timestamps are ISO-8601 with a V(Z) or a UTC offset, for example V(2026-03-01T02:14:05Z) or
    V(2026-03-01T03:14:05.250+01:00); a timestamp without an offset is refused. The report shows all
    times in UTC.
extends_documentation_fragment:
  - runbook.stack._attributes
attributes:
  check_mode:
    support: full
    details: Computes the report and which files would change; nothing is written and O(dest) is not created.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - The report holds no time of its own, C(report.generated_at) is O(generated_at), else O(healthy_at).
      - Only the content is compared; an existing file with the same content keeps its mode.
options:
  dest:
    description:
      - Directory the three report files are written to. Created (mode 0755, parents as needed) when missing.
    type: path
    required: true
  name:
    description:
      - Base name of the report files, without an extension. Letters, digits, V(.), V(_) and V(-) only.
    type: str
    default: dr-report
  title:
    description:
      - Title of the report (first heading of the Markdown and the HTML).
    type: str
    default: Disaster recovery drill
  targets:
    description:
      - The recovery objectives the measured RTO and RPO are judged against.
    type: dict
    default: {}
    suboptions:
      rto_s:
        description:
          - Recovery time objective, in seconds (a positive number). The RTO is met when it is at most this.
        type: float
        default: 3600
      rpo_s:
        description:
          - Recovery point objective, in seconds (a positive number). The RPO is met when it is at most this.
        type: float
        default: 900
  disaster_declared_at:
    description:
      - When the disaster was declared (ISO-8601 timestamp with Z or offset). The RTO clock starts here.
    type: str
    required: true
  healthy_at:
    description:
      - When the system was verified healthy again (ISO-8601 timestamp with Z or offset). The RTO clock
        stops here. Must not be before O(disaster_declared_at).
    type: str
    required: true
  recovery_point:
    description:
      - The time the restored data represents, for example the end of the backup or the last replayed WAL
        record (ISO-8601 timestamp with Z or offset). Must not be after O(disaster_declared_at).
    type: str
    required: true
  last_write_at:
    description:
      - The last write acknowledged before the loss (ISO-8601 timestamp with Z or offset), when the drill
        knows it (a load that ran until the disaster). The RPO is then O(last_write_at) minus
        O(recovery_point), the span of writes actually lost, instead of O(disaster_declared_at) minus
        O(recovery_point). Must not be before O(recovery_point).
    type: str
  generated_at:
    description:
      - Time recorded as the report's generation time (ISO-8601 timestamp with Z or offset).
      - Defaults to O(healthy_at), not to the current time, so that a rerun with the same input writes the
        same files and reports no change.
    type: str
  phases:
    description:
      - The phases of the recovery, in any order; the report sorts them by O(phases[].started_at) and gives each
        its offset from the earliest start and its duration. At least one phase is required.
      - Errors name a phase by its position in this list, counting from 0 (V(phases[2]) is the third).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the phase, for example V(restore PostgreSQL).
        type: str
        required: true
      started_at:
        description: When the phase started (ISO-8601 timestamp with Z or offset).
        type: str
        required: true
      ended_at:
        description: When the phase ended (ISO-8601 timestamp with Z or offset); not before O(phases[].started_at).
        type: str
        required: true
      status:
        description: How the phase went. A V(failed) phase fails the drill; a V(skipped) one does not.
        type: str
        choices: [ok, failed, skipped]
        default: ok
      detail:
        description: Free text shown next to the phase.
        type: str
  verifications:
    description:
      - The checks made after the restore. The drill only passes when this holds at least one check and
        every check passed.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: What was checked, for example V(orders row count).
        type: str
        required: true
      component:
        description: The component checked, for example V(postgresql).
        type: str
        required: true
      passed:
        description: Whether the check passed.
        type: bool
        required: true
      expected:
        description: The expected value (any JSON value), shown in the report.
        type: raw
      actual:
        description: The value found (any JSON value), shown in the report.
        type: raw
      detail:
        description: Free text shown next to the check.
        type: str
  lost_writes:
    description:
      - Writes known to be lost (made after the recovery point), per component. Reported and totalled;
        they do not decide the verdict, the RPO does.
    type: list
    elements: dict
    default: []
    suboptions:
      component:
        description: The component that lost the writes, for example V(postgresql).
        type: str
        required: true
      description:
        description: What was lost, for example V(orders created after the last WAL segment).
        type: str
        required: true
      count:
        description: How many writes were lost (0 or more).
        type: int
        required: true
      detail:
        description: Free text shown next to the entry.
        type: str
  facts:
    description:
      - Free-form extra facts (backup ids, hosts, versions, ticket numbers) copied into the report as they are.
    type: dict
    default: {}
notes:
  - The files contain no secrets unless O(facts), a O(verifications[].detail) or another text given to the
    module does; do not pass any.
seealso:
  - module: runbook.stack.backup_info
  - module: runbook.stack.postgresql_restore
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Write the drill report
  runbook.stack.dr_report:
    dest: /var/lib/runbook/reports/2026-03-01
    name: dr-drill-2026-03-01
    title: "DR drill 2026-03-01: shop (PostgreSQL, Redis, S3)"
    targets:
      rto_s: 3600
      rpo_s: 900
    disaster_declared_at: "2026-03-01T02:00:00Z"
    healthy_at: "2026-03-01T02:47:31Z"
    recovery_point: "2026-03-01T01:52:10Z"
    phases:
      - name: maintenance on, application stopped
        started_at: "2026-03-01T02:01:05Z"
        ended_at: "2026-03-01T02:03:40Z"
      - name: restore PostgreSQL
        started_at: "2026-03-01T02:03:40Z"
        ended_at: "2026-03-01T02:31:12Z"
        detail: backup 20260301T015210Z, 14.2 GiB
      - name: restore Redis
        started_at: "2026-03-01T02:03:41Z"
        ended_at: "2026-03-01T02:09:02Z"
      - name: start application, health checks
        started_at: "2026-03-01T02:31:12Z"
        ended_at: "2026-03-01T02:47:31Z"
    verifications:
      - name: orders row count
        component: postgresql
        passed: true
        expected: 184223
        actual: 184223
      - name: health endpoint
        component: app
        passed: true
        expected: 200
        actual: 200
    lost_writes:
      - component: postgresql
        description: orders placed after the recovery point
        count: 12
    facts:
      postgresql_backup_id: 20260301T015210Z
      ticket: CHG-3107
  register: drill_report

- name: Fail the play when the drill did not pass
  ansible.builtin.assert:
    that: drill_report.passed
    fail_msg: "DR drill failed: {{ drill_report.report.overall.reasons | join('; ') }}"

- name: Report from facts gathered earlier in the play
  runbook.stack.dr_report:
    dest: "{{ playbook_dir }}/reports"
    disaster_declared_at: "{{ drill_declared_at }}"
    healthy_at: "{{ drill_healthy_at }}"
    recovery_point: "{{ restored_backup.manifest.finished_at }}"
    phases: "{{ drill_phases }}"
    verifications: "{{ drill_checks }}"
"""

RETURN = r"""
report:
  description: The report, as written to the JSON file.
  type: dict
  returned: always
  contains:
    title:
      description: O(title).
      type: str
      sample: Disaster recovery drill
    generated_at:
      description: O(generated_at), else O(healthy_at), in UTC.
      type: str
      sample: "2026-03-01T02:47:31Z"
    disaster_declared_at:
      description: O(disaster_declared_at) in UTC.
      type: str
      sample: "2026-03-01T02:00:00Z"
    healthy_at:
      description: O(healthy_at) in UTC.
      type: str
      sample: "2026-03-01T02:47:31Z"
    recovery_point:
      description: O(recovery_point) in UTC.
      type: str
      sample: "2026-03-01T01:52:10Z"
    rto:
      description: Measured RTO (C(seconds)), its target (C(target_s)) and whether it was met (C(met)).
      type: dict
      sample: {"seconds": 2851.0, "target_s": 3600.0, "met": true}
    rpo:
      description: Measured RPO (C(seconds)), its target (C(target_s)) and whether it was met (C(met)).
      type: dict
      sample: {"seconds": 470.0, "target_s": 900.0, "met": true}
    phases:
      description:
        - The phases sorted by start, each with C(name), C(status), C(started_at), C(ended_at) (UTC),
          C(offset_s) (seconds from the earliest phase start), C(duration_s) and C(detail) (null when not given).
      type: list
      elements: dict
    verifications:
      description: The checks, in input order, each with C(name), C(component), C(passed), C(expected), C(actual) and C(detail).
      type: list
      elements: dict
    verifications_passed:
      description: At least one check was recorded and every check passed.
      type: bool
      sample: true
    verification_counts:
      description: Number of checks (C(total)), passed (C(passed)) and failed (C(failed)).
      type: dict
      sample: {"total": 2, "passed": 2, "failed": 0}
    lost_writes:
      description: The lost writes, in input order, each with C(component), C(description), C(count) and C(detail).
      type: list
      elements: dict
    lost_writes_total:
      description: Sum of the lost writes' counts.
      type: int
      sample: 12
    facts:
      description: O(facts), as given.
      type: dict
    overall:
      description:
        - The verdict (C(passed)) and its parts - C(rto_met), C(rpo_met), C(verified) (same as C(report.verifications_passed)),
          C(failed_phases) (names) and C(reasons) (why the drill failed, one sentence each; empty when it passed).
      type: dict
      sample:
        passed: false
        rto_met: true
        rpo_met: true
        verified: false
        failed_phases: []
        reasons: ["nothing was verified"]
files:
  description: Absolute path of each report file, by format (in check mode, the paths that would be written).
  type: dict
  returned: always
  sample:
    json: /var/lib/runbook/reports/2026-03-01/dr-drill-2026-03-01.json
    md: /var/lib/runbook/reports/2026-03-01/dr-drill-2026-03-01.md
    html: /var/lib/runbook/reports/2026-03-01/dr-drill-2026-03-01.html
written:
  description: Formats whose file was (in check mode, would be) written because its content differed; empty when nothing changed.
  type: list
  elements: str
  returned: always
  sample: [json, md, html]
rto_s:
  description: Measured RTO in seconds (C(report.rto.seconds)).
  type: float
  returned: always
  sample: 2851.0
rpo_s:
  description: Measured RPO in seconds (C(report.rpo.seconds)).
  type: float
  returned: always
  sample: 470.0
passed:
  description: Whether the drill passed (C(report.overall.passed)).
  type: bool
  returned: always
  sample: true
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.stack.plugins.module_utils._dr_report import (
    DEFAULT_RPO_S,
    DEFAULT_RTO_S,
    STATUSES,
    DrReportError,
    build_report,
    check_name,
    write_report,
)


def argument_spec() -> dict[str, Any]:
    return dict(
        dest=dict(type="path", required=True),
        name=dict(type="str", default="dr-report"),
        title=dict(type="str", default="Disaster recovery drill"),
        targets=dict(
            type="dict",
            default={},
            options=dict(
                rto_s=dict(type="float", default=DEFAULT_RTO_S),
                rpo_s=dict(type="float", default=DEFAULT_RPO_S),
            ),
        ),
        disaster_declared_at=dict(type="str", required=True),
        healthy_at=dict(type="str", required=True),
        recovery_point=dict(type="str", required=True),
        last_write_at=dict(type="str"),
        generated_at=dict(type="str"),
        phases=dict(
            type="list",
            elements="dict",
            required=True,
            options=dict(
                name=dict(type="str", required=True),
                started_at=dict(type="str", required=True),
                ended_at=dict(type="str", required=True),
                status=dict(type="str", default="ok", choices=list(STATUSES)),
                detail=dict(type="str"),
            ),
        ),
        verifications=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                name=dict(type="str", required=True),
                component=dict(type="str", required=True),
                passed=dict(type="bool", required=True),
                expected=dict(type="raw"),
                actual=dict(type="raw"),
                detail=dict(type="str"),
            ),
        ),
        lost_writes=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                component=dict(type="str", required=True),
                description=dict(type="str", required=True),
                count=dict(type="int", required=True),
                detail=dict(type="str"),
            ),
        ),
        facts=dict(type="dict", default={}),
    )


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        name = check_name(params["name"])
        report = build_report(
            title=params["title"],
            targets=params["targets"],
            disaster_declared_at=params["disaster_declared_at"],
            healthy_at=params["healthy_at"],
            recovery_point=params["recovery_point"],
            last_write_at=params["last_write_at"],
            generated_at=params["generated_at"],
            phases=params["phases"],
            verifications=params["verifications"],
            lost_writes=params["lost_writes"],
            facts=params["facts"],
        )
        written, files = write_report(params["dest"], name, report, check_mode=module.check_mode)
    except DrReportError as exc:
        module.fail_json(msg=f"cannot write the DR report: {exc}")
    module.exit_json(
        changed=bool(written),
        report=report,
        files=files,
        written=written,
        rto_s=report["rto"]["seconds"],
        rpo_s=report["rpo"]["seconds"],
        passed=report["overall"]["passed"],
    )


if __name__ == "__main__":
    main()
