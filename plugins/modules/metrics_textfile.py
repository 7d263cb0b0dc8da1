#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: metrics_textfile
short_description: Write Prometheus metrics into a node_exporter textfile, keeping the other samples in it
version_added: 0.1.0
description:
  - Manages the samples of some metrics in one C(.prom) file of node_exporter's textfile collector
    (C(--collector.textfile.directory)), in the Prometheus text exposition format, so that Prometheus
    scrapes what a job (a backup, a health check) measured and alerts can be written on it.
  - The given samples replace the samples of the same metric name and labels; every other sample in the
    file stays as it is, so a job that failed can set C(..._last_run_success) to 0 while the
    C(..._last_success_timestamp_seconds) an earlier run wrote stays. O(metrics[].replace) drops the
    other samples of a given metric, O(metrics[].samples[].state=absent) one sample.
  - The file already there is parsed (comments, C(# HELP), C(# TYPE), escaped label values, histograms and
    summaries of other tools kept); a file that cannot be parsed, has a duplicate sample or a client-side
    timestamp (which the textfile collector refuses) is never overwritten, the module fails naming the
    path and the line.
  - The file is replaced atomically (a temporary file in the same directory, whose name does not end in
    C(.prom), fsync, rename), so node_exporter never reads half a file; writers of one directory take
    turns (an exclusive C(flock) on the directory while they read, merge and replace). The directory
    must exist. As root, an existing file keeps its owner and group.
  - Labels are written sorted by name; a label with an empty value is left out, as Prometheus reads it
    as no label. HELP text and label values are escaped as the format requires.
extends_documentation_fragment:
  - runbook.stack._attributes
attributes:
  check_mode:
    support: full
    details: Reads and merges as a real run would and reports whether the file would change; nothing is written.
  diff_mode:
    support: full
    details: Before and after are the whole text of the file (and its mode when only the mode changes).
  idempotent:
    support: full
    details:
      - The same samples with the same values are no change; a different value, a new sample or one removed is.
      - A sample whose value is the time of the run (a C(..._timestamp_seconds)) changes on every run, as it should.
options:
  path:
    description:
      - The C(.prom) file, in the textfile collector's directory, for example
        C(/var/lib/node_exporter/textfile_collector/runbook_backup.prom). One file per job, so that jobs do not
        hold each other's lock or overwrite each other's metrics.
      - Must end in C(.prom) (the only files the collector reads). Its directory must exist.
    type: path
    required: true
  metrics:
    description:
      - The metrics to set, each with the samples to put in the file.
      - A metric name may be given once; give all its samples in that entry.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Metric name, matching C([a-zA-Z_:][a-zA-Z0-9_:]*); by convention with a unit suffix such as
            C(_seconds), C(_bytes), C(_timestamp_seconds).
        type: str
        required: true
      help:
        description: The C(# HELP) text. Without it, the file's HELP text of the metric is kept (or none is written).
        type: str
      type:
        description: The C(# TYPE) of the metric. Histograms and summaries are kept in the file but not written.
        type: str
        choices: [gauge, counter]
        default: gauge
      replace:
        description:
          - V(true) makes the given samples the only samples of the metric; the file's other samples of it are
            removed (for example components that are no longer checked). With no O(metrics[].samples) the
            metric is removed from the file.
          - V(false) keeps the file's other samples of the metric.
        type: bool
        default: false
      samples:
        description: The samples of the metric.
        type: list
        elements: dict
        default: []
        suboptions:
          labels:
            description:
              - Label names and values. Names match C([a-zA-Z_][a-zA-Z0-9_]*) and do not start with C(__); values
                are strings (numbers are written as text). A label with an empty value is left out.
              - The labels identify the sample; the same name and labels replace the sample in the file.
            type: dict
            default: {}
          value:
            description:
              - The value, a number; also a string holding a number, V(NaN), V(+Inf) or V(-Inf); V(true) is 1,
                V(false) 0. Required with O(metrics[].samples[].state=present). A counter cannot be negative.
            type: raw
          state:
            description: V(present) puts the sample in the file, V(absent) removes it.
            type: str
            choices: [present, absent]
            default: present
  mode:
    description:
      - Permissions of the file, as an octal string such as V('0644'). Quote it, as for M(ansible.builtin.file);
        an unquoted C(644) is the decimal number 644, not the mode meant. node_exporter must be able to read the file.
      - An existing file with other permissions is changed to these.
    type: raw
    default: '0644'
notes:
  - Timestamps go in as sample values (C(..._timestamp_seconds), unix seconds), never as Prometheus sample
    timestamps, which the textfile collector refuses. The age of something is then C(time() - <metric>) in PromQL.
  - node_exporter adds C(node_textfile_mtime_seconds{file="..."}) for each file it reads, and
    C(node_textfile_scrape_error) 1 when a file cannot be read.
seealso:
  - name: node_exporter textfile collector
    description: How node_exporter reads C(*.prom) files.
    link: https://github.com/prometheus/node_exporter#textfile-collector
  - name: Prometheus text exposition format
    description: The format of the file.
    link: https://prometheus.io/docs/instrumenting/exposition_formats/
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Record a backup that succeeded
  runbook.stack.metrics_textfile:
    path: /var/lib/node_exporter/textfile_collector/nightly_dump.prom
    metrics:
      - name: runbook_backup_last_success_timestamp_seconds
        help: Unix time the newest backup of the set was written.
        samples:
          - labels: {kind: postgresql, source: app}
            value: "{{ now().timestamp() }}"
      - name: runbook_backup_last_run_success
        help: Whether the last backup run wrote the set (1) or not (0).
        samples:
          - labels: {kind: postgresql, source: app}
            value: 1
      - name: runbook_backup_size_bytes
        help: Bytes of the newest backup set.
        samples:
          - labels: {kind: postgresql, source: app}
            value: "{{ dump.backup_set.size_bytes }}"

- name: Record a failure (the last success time written earlier stays in the file)
  runbook.stack.metrics_textfile:
    path: /var/lib/node_exporter/textfile_collector/nightly_dump.prom
    metrics:
      - name: runbook_backup_last_run_success
        samples:
          - labels: {kind: postgresql, source: app}
            value: 0

- name: The components checked now are the only ones in the metric (others removed)
  runbook.stack.metrics_textfile:
    path: /var/lib/node_exporter/textfile_collector/runbook_health.prom
    metrics:
      - name: runbook_health_up
        help: Whether the component was healthy at the last check (1) or not (0).
        replace: true
        samples:
          - {labels: {component: postgresql, service: postgresql}, value: 1}
          - {labels: {component: redis, service: redis}, value: 0}

- name: Remove one sample and a whole metric
  runbook.stack.metrics_textfile:
    path: /var/lib/node_exporter/textfile_collector/runbook_backup.prom
    metrics:
      - name: runbook_backup_size_bytes
        samples:
          - labels: {kind: postgresql, source: retired_db}
            state: absent
      - name: runbook_backup_legacy_metric
        replace: true
        samples: []

# Alert rules on these metrics (Prometheus rule file):
#
#   - alert: BackupTooOld
#     expr: time() - runbook_backup_last_success_timestamp_seconds > 26 * 3600
#     labels: {severity: critical}
#     annotations:
#       summary: "No successful {{ $labels.kind }} backup of {{ $labels.source }} on {{ $labels.instance }} for 26 h"
#   - alert: BackupLastRunFailed
#     expr: runbook_backup_last_run_success == 0
#   - alert: ComponentUnhealthy
#     expr: runbook_health_up == 0
#     for: 10m
#   - alert: HealthCheckNotRunning
#     expr: time() - runbook_health_check_timestamp_seconds > 3 * 3600
"""

RETURN = r"""
path:
  description: The file.
  type: str
  returned: always
  sample: /var/lib/node_exporter/textfile_collector/runbook_backup.prom
added:
  description: Series added to the file (in check mode, that would be), as C(name{label="value",...}).
  type: list
  elements: str
  returned: always
  sample: ['runbook_backup_last_run_success{kind="postgresql",source="app"}']
updated:
  description: Series whose value changed.
  type: list
  elements: str
  returned: always
  sample: ['runbook_backup_last_run_timestamp_seconds{kind="postgresql",source="app"}']
removed:
  description: Series removed (O(metrics[].replace), O(metrics[].samples[].state=absent)).
  type: list
  elements: str
  returned: always
  sample: []
samples:
  description: Samples in the file after the run, of every metric in it.
  type: int
  returned: always
  sample: 25
mode:
  description: Permissions of the file, octal.
  type: str
  returned: always
  sample: "0644"
"""

import contextlib
import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.stack.plugins.module_utils._common.files import atomic_write
from ansible_collections.runbook.stack.plugins.module_utils._metrics import (
    MetricsError,
    locked,
    merge,
    parse,
    read_text,
    render,
    specs,
)


def parse_mode(value: Any) -> int:
    """The file mode from the option: an octal string, or an int (YAML read an unquoted 0644 as octal)."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        text = str(value).strip()
        try:
            mode = int(text, 8)
        except ValueError:
            raise MetricsError(f"mode must be an octal number such as '0644', got {value!r}") from None
    if not 0 <= mode <= 0o7777:
        raise MetricsError(f"mode must be an octal number such as '0644', got {value!r}")
    return mode


def check_path(path: str) -> str:
    if not path.endswith(".prom"):
        raise MetricsError(f"path {path} must end in .prom (node_exporter's textfile collector reads no other file)")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise MetricsError(f"cannot write {path}: directory {directory} does not exist")
    return directory


def main() -> None:
    sample_options = dict(
        labels=dict(type="dict", default={}),
        value=dict(type="raw"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    metric_options = dict(
        name=dict(type="str", required=True),
        help=dict(type="str"),
        type=dict(type="str", default="gauge", choices=["gauge", "counter"]),
        replace=dict(type="bool", default=False),
        samples=dict(type="list", elements="dict", default=[], options=sample_options),
    )
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            metrics=dict(type="list", elements="dict", required=True, options=metric_options),
            mode=dict(type="raw", default="0644"),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    try:
        mode = parse_mode(module.params["mode"])
        wanted = specs(module.params["metrics"])
        directory = check_path(path)
        with contextlib.nullcontext() if module.check_mode else locked(directory):
            before, st = read_text(path)
            textfile = parse(before or "", path)
            changes = merge(textfile, wanted)
            after = render(textfile)
            write = after != before and (before is not None or bool(after))
            chmod = not write and st is not None and (st.st_mode & 0o7777) != mode
            if (write or chmod) and not module.check_mode:
                try:
                    if write:
                        as_before = st is not None and os.geteuid() == 0
                        atomic_write(
                            path,
                            after.encode("utf-8"),
                            mode,
                            uid=st.st_uid if as_before else None,
                            gid=st.st_gid if as_before else None,
                        )
                    else:
                        os.chmod(path, mode)
                except OSError as exc:
                    raise MetricsError(f"cannot write {path}: {exc.strerror or exc}") from None
    except MetricsError as exc:
        module.fail_json(msg=str(exc), path=path)

    result: dict[str, Any] = dict(
        changed=write or chmod,
        path=path,
        added=changes.added,
        updated=changes.updated,
        removed=changes.removed,
        samples=textfile.sample_count(),
        mode=f"{mode:04o}",
    )
    if module._diff:
        diff = [
            dict(before_header=path, after_header=path, before=before or "", after=after if write else before or "")
        ]
        if chmod:
            diff.append(dict(before={"mode": f"{st.st_mode & 0o7777:04o}"}, after={"mode": f"{mode:04o}"}))
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
