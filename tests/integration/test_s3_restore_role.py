# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bucket phase of the dr_restore role (tasks/restore_s3.yml) on the lab's S3: the default mirror
restore keeps what it deletes and says where, in check mode and for real."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import PYTHON, ROOT, playbook_env, run_module
from test_s3_modules import conn
from test_s3_snapshot_restore import buckets, cli, ok, state  # noqa: F401  # pylint: disable=unused-import  # fixtures used by name

pytestmark = [pytest.mark.playbook]

PLAYBOOK = """
- name: The bucket phase of dr_restore
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/runbook.stack.s3:
      endpoint_url: "{{ s3_endpoint_url }}"
      access_key: "{{ s3_access_key }}"
      secret_key: "{{ s3_secret_key }}"
  tasks:
    - name: Restore the buckets as dr_restore does
      ansible.builtin.include_role:
        name: runbook.stack.dr_restore
        tasks_from: restore_s3.yml
      vars:
        dr_restore_done: []
        dr_restore_verifications: []
        dr_restore__sets: "{{ sets }}"

    - name: Show the recorded verifications
      ansible.builtin.debug:
        msg: "VERIFICATIONS {{ dr_restore_verifications | default([]) | to_json }}"
"""


def run_phase(lab: dict[str, Any], tmp: Path, sets: list[dict[str, Any]], *args: str) -> tuple[int, str]:
    playbook = tmp / "restore_s3.yml"
    playbook.write_text(PLAYBOOK)
    extra = {"sets": sets} | {f"s3_{k}": lab["s3"][k] for k in ("endpoint_url", "access_key", "secret_key")}
    env = playbook_env()
    argv = [
        str(ROOT / ".venv" / "bin" / "ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={PYTHON}",
        "-e",
        json.dumps(extra),
        *args,
        str(playbook),
    ]
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


def test_mirror_phase_keeps_late_objects_and_names_the_prefix(lab, cli, buckets, tmp_path):  # noqa: F811
    src, bak = buckets(), buckets()
    cli.put_object(Bucket=src, Key="receipts/1.pdf", Body=b"%PDF one")
    original = state(cli, src)
    bid = ok(run_module("s3_snapshot", conn(lab, bucket=src, backup_bucket=bak)))["backup_id"]
    cli.put_object(Bucket=src, Key="receipts/2.pdf", Body=b"%PDF written after the backup")
    late = state(cli, src)
    sets = [{"kind": "s3", "root": f"s3://{bak}", "source": src, "backup_id": bid, "file_count": 1}]
    kept_at = f"s3://{src}/pre-restore-{bid}/"

    rc, out = run_phase(lab, tmp_path, sets, "--check")
    assert rc == 0, out
    assert f"would be replaced or deleted and would be kept under {kept_at}" in out, out
    assert state(cli, src) == late

    rc, out = run_phase(lab, tmp_path, sets)
    assert rc == 0, out
    assert f"were replaced or deleted and are kept under {kept_at}" in out, out
    assert f"aws s3 cp --recursive {kept_at} s3://{src}/" in out, out
    # the bucket's verification (published by playbooks/dr_restore.yml) names the kept prefix
    verification = out.split("VERIFICATIONS ", 1)[1]
    assert f"replaced and deleted objects kept under {kept_at}" in verification, out
    after = state(cli, src)
    assert {k: v for k, v in after.items() if not k.startswith("pre-restore-")} == original
    assert after[f"pre-restore-{bid}/receipts/2.pdf"] == late["receipts/2.pdf"]
