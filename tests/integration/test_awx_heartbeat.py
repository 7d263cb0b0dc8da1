"""Long steps and AWX's idle timeout (plugins/callback/heartbeat.py), run as AWX runs a job.

AWX kills a job whose output stays silent for DEFAULT_JOB_IDLE_TIMEOUT (ansible-runner's
``idle_timeout``); a module prints nothing until it ends. With the project's ansible.cfg (which
enables runbook.stack.heartbeat) a step silent for twice the idle timeout completes, and the job's
output names the step while it runs; with the heartbeat turned off the same job is killed.
"""

from __future__ import annotations

import pytest
from awx_job import private_data_dir, run_job

pytestmark = [pytest.mark.playbook]

PLAYBOOK = "tests/integration/playbooks/silent_step.yml"
# seconds. The job must print its first line within it too: ansible-playbook's start-up took 2.7 s
# on an idle 2-core machine and more while Molecule ran beside it (3 s failed there)
IDLE_TIMEOUT = 12
SILENT = 2 * IDLE_TIMEOUT + 1


@pytest.fixture(scope="module")
def pdd(tmp_path_factory):
    return private_data_dir(tmp_path_factory.mktemp("awx-heartbeat"))


def test_a_silent_step_longer_than_the_idle_timeout_survives_with_the_heartbeat(pdd):
    job = run_job(
        pdd,
        PLAYBOOK,
        extravars={"silent_step_seconds": SILENT},
        idle_timeout=IDLE_TIMEOUT,
        env={"RUNBOOK_HEARTBEAT_INTERVAL": "1"},
    )
    assert job.status == "successful", job
    beats = [line for line in job.stdout.splitlines() if line.startswith("HEARTBEAT [localhost]")]
    # one a second while the step runs (the first after 1 s): many, even on a busy machine
    assert len(beats) >= SILENT // 2, job
    assert all(f"(1/1) DUMP: a silent step, seconds: {SILENT} - running for " in line for line in beats), beats
    assert "silent step done" in job.stdout


def test_without_the_heartbeat_the_same_job_is_killed_by_the_idle_timeout(pdd):
    job = run_job(
        pdd,
        PLAYBOOK,
        extravars={"silent_step_seconds": SILENT},
        idle_timeout=IDLE_TIMEOUT,
        env={"RUNBOOK_HEARTBEAT_INTERVAL": "0"},
    )
    assert job.status == "timeout", job
    assert "HEARTBEAT" not in job.stdout
    assert "silent step done" not in job.stdout
