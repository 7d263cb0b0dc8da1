"""Run this repository's playbooks the way AWX / Automation Controller runs a job template.

AWX copies the project (the repository) into ``<private_data_dir>/project``, runs the project sync
(``ansible-galaxy collection install -r collections/requirements.yml`` from the project root, into
``requirements_collections``), writes the extra variables to ``env/extravars`` and runs the playbook
with ansible-runner, ``ANSIBLE_COLLECTIONS_PATH`` set to the job's ``requirements_collections``
followed by the default paths (awx/main/tasks/jobs.py, awx/playbooks/project_update.yml). Nothing
here uses the checkout's ``.cache/collections`` link or its ansible.cfg settings from the test run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ansible_runner
import yaml
from conftest import ROOT
from jinja2.sandbox import ImmutableSandboxedEnvironment

VENV_BIN = ROOT / ".venv" / "bin"
DEFAULT_COLLECTION_PATHS = "~/.ansible/collections:/usr/share/ansible/collections"
# variables of the test process that would make the job find the collection (or a service) another way
_SCRUB_PREFIXES = ("ANSIBLE_", "PG", "REDIS", "AWS_")


def project_files() -> list[str]:
    """The repository's files as a project checkout has them: tracked and new, not ignored."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in out.split("\0") if name and (ROOT / name).exists()]


def private_data_dir(base: Path, requirements: bool = True) -> Path:
    """A private_data_dir laid out like AWX's, with the project copied in (and synced).

    ``requirements=False`` drops ``collections/requirements.yml`` from the copy: the project as it
    was before the file existed.
    """
    pdd = base / "awx-job"
    project = pdd / "project"
    for name in project_files():
        dest = project / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest, follow_symlinks=False)
    if not requirements:
        (project / "collections" / "requirements.yml").unlink(missing_ok=True)
    for sub in ("env", "inventory", "requirements_collections"):
        (pdd / sub).mkdir(parents=True, exist_ok=True)
    project_sync(pdd)
    return pdd


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def project_sync(pdd: Path) -> subprocess.CompletedProcess[str] | None:
    """AWX's install_collections step: only when the project has the requirements file."""
    req = pdd / "project" / "collections" / "requirements.yml"
    if not req.exists():
        return None
    dest = pdd / "requirements_collections"
    env = _clean_env()
    env.update(ANSIBLE_COLLECTIONS_PATH=str(dest), ANSIBLE_FORCE_COLOR="false", ANSIBLE_LOCAL_TEMP=str(pdd / "tmp"))
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-galaxy"), "collection", "install", "-r", str(req), "--collections-path", str(dest)],
        cwd=pdd / "project",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"project sync failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@contextlib.contextmanager
def _job_environment() -> Iterator[None]:
    """ansible-runner passes os.environ on: make it the clean one for the duration of the job."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(_clean_env())
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class Credential:
    """A credential of one of the collection's credential types (awx/credential_types/<service>.yml),
    injected the way AWX injects a custom credential (CredentialType.inject_credential): every
    injector template rendered in an ImmutableSandboxedEnvironment with the inputs that have a value
    (an empty input is undefined, so it renders as ""); ``env`` goes into the job's environment,
    ``extra_vars`` into a file under ``env/`` passed as ``-e @file``, every string tagged ``!unsafe``
    as AWX's safe_dump writes it."""

    def __init__(self, service: str, inputs: dict[str, str], routes: tuple[str, ...] = ("env", "extra_vars")) -> None:
        """``routes`` drops one of the two injectors, to show what the other one alone reaches."""
        ctype = yaml.safe_load((ROOT / "awx" / "credential_types" / f"{service}.yml").read_text())
        self.service = service
        namespace = {k: v for k, v in inputs.items() if v}
        sandbox = ImmutableSandboxedEnvironment()

        def rendered(kind: str) -> dict[str, str]:
            templates = ctype["injectors"].get(kind, {}) if kind in routes else {}
            return {name: sandbox.from_string(template).render(**namespace) for name, template in templates.items()}

        self.env = rendered("env")
        self.extra_vars = rendered("extra_vars")

    def extra_vars_file(self, pdd: Path) -> Path:
        path = pdd / "env" / f"credential-{self.service}.yml"
        lines = [f"!unsafe {json.dumps(k)}: !unsafe {json.dumps(v)}" for k, v in self.extra_vars.items()]
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o400)
        return path


class Job:
    """The outcome of one job: runner status and rc, stdout, events and the set_stats artifact."""

    def __init__(self, runner: Any) -> None:
        self.status: str = runner.status
        self.rc: int = runner.rc
        self.events: list[dict[str, Any]] = list(runner.events)
        self.stdout: str = "\n".join(e.get("stdout", "") for e in self.events if e.get("stdout"))
        stats = [e for e in self.events if e.get("event") == "playbook_on_stats"]
        self.artifact_data: dict[str, Any] = (stats[-1]["event_data"].get("artifact_data") or {}) if stats else {}

    def __repr__(self) -> str:
        return f"status={self.status} rc={self.rc}\nartifact_data={json.dumps(self.artifact_data)[:2000]}\n{self.stdout[-4000:]}"


def run_job(
    pdd: Path,
    playbook: str,
    extravars: dict[str, Any] | None = None,
    tags: str | None = None,
    check: bool = False,
    inventory: Path = ROOT / "inventories" / "lab",
    timeout: int = 900,
    credentials: tuple[Credential, ...] = (),
    idle_timeout: int | None = None,
    env: dict[str, str] | None = None,
) -> Job:
    """``ansible_runner.run`` of ``playbooks/<playbook>`` (or a path in the project) in ``pdd``, the lab
    inventory by default.

    ``extravars`` are the job's own (a survey's answers, a workflow's artifacts); ``credentials`` are
    injected on top, as AWX does (environment, and ``-e @file`` for their extra variables).
    ``idle_timeout`` is AWX's DEFAULT_JOB_IDLE_TIMEOUT (a job silent that long is killed); ``env``
    adds environment variables (AWX's "extra environment variables")."""
    # nothing of an earlier job carries over: ansible-runner would read back an env/envvars or
    # env/cmdline it wrote then (suppress_env_files below keeps it from writing them)
    for stale in [*(pdd / "env").glob("credential-*.yml"), pdd / "env" / "envvars", pdd / "env" / "cmdline"]:
        stale.unlink(missing_ok=True)
    (pdd / "env" / "extravars").write_text(json.dumps(extravars or {}))
    # AWX writes its job timeouts to env/settings (ansible-runner reads idle_timeout only from there)
    settings = pdd / "env" / "settings"
    settings.unlink(missing_ok=True)
    if idle_timeout is not None:
        settings.write_text(json.dumps({"idle_timeout": idle_timeout}))
    args = ["--check"] if check else []
    args += [f"-e @{c.extra_vars_file(pdd)}" for c in credentials if c.extra_vars]
    cmdline = " ".join(args) or None
    envvars = {
        "ANSIBLE_COLLECTIONS_PATH": f"{pdd / 'requirements_collections'}:{DEFAULT_COLLECTION_PATHS}",
        "ANSIBLE_NOCOLOR": "1",
    }
    envvars.update(env or {})
    for credential in credentials:
        envvars.update(credential.env)
    with _job_environment():
        runner = ansible_runner.run(
            private_data_dir=str(pdd),
            playbook=playbook if "/" in playbook else f"playbooks/{playbook}",
            inventory=str(inventory),
            envvars=envvars,
            tags=tags,
            cmdline=cmdline,
            suppress_env_files=True,
            quiet=True,
            timeout=timeout,
        )
    return Job(runner)
