"""Integration-test fixtures: the real lab services (lab/labctl) and a way to run modules.

- ``lab`` (session): starts the lab once (``lab/labctl up``) and returns its connection facts,
  read from ``lab/labctl env`` so that labctl stays the one place that defines them.
- ``run_module()`` / ``module``: run a module of this collection the way Ansible runs it on the
  target, without ansible-playbook, and return its result with ``_rc``, ``_stdout``, ``_stderr``.
- ``psql()``: run SQL against the lab as the superuser, for setting up and checking state.
- ``tmp_backup_root``: a fresh, empty directory for backup sets.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LABCTL = ROOT / "lab" / "labctl"
PYTHON = ROOT / ".venv" / "bin" / "python"
COLLECTIONS_PATH = ROOT / ".cache" / "collections"
COLLECTION = "runbook.stack"

# Tests that call module_utils directly import the collection through the bootstrap's link.
if str(COLLECTIONS_PATH) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_PATH))

# Variables that would let a module reach a service without the options under test; they are
# removed from the module's environment unless a test passes them explicitly in ``env``.
_AMBIENT_PREFIXES = ("PG", "REDIS", "AWS_")


class ModuleCrashed(AssertionError):
    """The module printed no JSON result: Ansible would report MODULE FAILURE."""


def pytest_configure(config: pytest.Config) -> None:
    # `pytest -m "not destructive"` runs what leaves the lab as it is; `-m "not playbook"` the module tests
    config.addinivalue_line(
        "markers",
        "destructive: stops, kills or restores the lab's own services or data (never run it alongside other lab tests)",
    )
    config.addinivalue_line("markers", "playbook: runs ansible-playbook (a whole play per test: the slow ones)")


# the lab's own logs, whose last lines a failed lab test shows (what a service did while it failed)
LAB_LOGS = ("redis/redis.log", "postgresql/postgresql.log", "s3/weed.log", "app/app.log", "archive/follow.log")
LAB_LOG_LINES = 15


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A failed test that used the lab gets a "lab logs" section: the last lines of every lab log
    written to since the test (or its fixtures) began."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or "lab" not in getattr(item, "fixturenames", ()):
        return
    since = getattr(item, "_runbook_started", call.start)
    tails = []
    for rel in LAB_LOGS:
        path = ROOT / ".lab" / rel
        try:
            if path.stat().st_mtime < since:
                continue
            lines = path.read_text(errors="replace").splitlines()[-LAB_LOG_LINES:]
        except OSError:
            continue
        tails.append(f"--- .lab/{rel} (last {len(lines)} lines)\n" + "\n".join(lines))
    if tails:
        report.sections.append(("lab logs", "\n".join(tails)))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item._runbook_started = time.time()  # pylint: disable=protected-access


def _labctl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LABCTL), *args], capture_output=True, text=True, timeout=timeout, check=False)


def lab_env() -> dict[str, str]:
    """The connection facts as ``lab/labctl env`` prints them (``export K=V`` lines)."""
    proc = _labctl("env", timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"lab/labctl env failed: {proc.stderr.strip()}")
    env: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, _sep, value = words[1].partition("=")
            env[key] = value
    return env


def lab_facts(env: dict[str, str]) -> dict[str, Any]:
    return {
        "root": ROOT,
        "pg": {
            "login_host": env["PGHOST"],
            "login_port": int(env["PGPORT"]),
            "login_user": env["PGUSER"],
            "login_password": env["PGPASSWORD"],
        },
        "redis": {
            "login_host": env["REDIS_HOST"],
            "login_port": int(env["REDIS_PORT"]),
            "login_password": env["REDIS_PASSWORD"],
        },
        "s3": {
            "endpoint_url": env["AWS_ENDPOINT_URL"],
            "access_key": env["AWS_ACCESS_KEY_ID"],
            "secret_key": env["AWS_SECRET_ACCESS_KEY"],
            "region": env["AWS_DEFAULT_REGION"],
        },
        "backup_root": Path(env["RUNBOOK_LAB_BACKUP_ROOT"]),
        "env": env,
    }


@pytest.fixture(scope="session")
def lab() -> dict[str, Any]:
    """Start the lab (a no-op when it is already up) and return its connection facts.

    Keys: ``pg`` and ``redis`` (login_host, login_port, login_user, login_password), ``s3``
    (endpoint_url, access_key, secret_key, region), ``root`` (repository root), ``backup_root``
    (the lab's shared backup directory) and ``env`` (the ``labctl env`` variables).
    A lab that cannot start fails the tests that need it: it never skips them.
    """
    proc = _labctl("up")
    if proc.returncode != 0:
        pytest.fail(
            f"lab/labctl up failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}",
            pytrace=False,
        )
    return lab_facts(lab_env())


def _parse_result(stdout: str) -> dict[str, Any] | None:
    """The last JSON object printed on stdout (modules print one; anything before it is noise)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    decoder = json.JSONDecoder()
    pos = stdout.rfind("{")
    while pos != -1:  # a pretty-printed object spans lines: find the last one that parses
        try:
            value, end = decoder.raw_decode(stdout, pos)
        except ValueError:
            value, end = None, -1
        if isinstance(value, dict) and not stdout[end:].strip():
            return value
        pos = stdout.rfind("{", 0, pos)
    return None


def module_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a module runs with: ours minus PG*/REDIS*/AWS_* variables, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_AMBIENT_PREFIXES)}
    base["PYTHONPATH"] = str(COLLECTIONS_PATH)
    base.setdefault("LANG", "C.UTF-8")
    base.update(env or {})
    return base


def run_module(
    name: str,
    args: dict[str, Any],
    check_mode: bool = False,
    diff: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    python: str | Path | None = None,
) -> dict[str, Any]:
    """Run module ``runbook.stack.<name>`` with ``args`` as Ansible would run it on the target.

    The arguments go in a private temporary file as ``{"ANSIBLE_MODULE_ARGS": ...}`` together
    with the internal ``_ansible_*`` keys Ansible sends (check mode, diff, no_log off, and
    ``_ansible_inject_invocation`` on, so a secret option missing ``no_log`` shows up in the
    result). The module runs with ``.venv/bin/python -m
    ansible_collections.runbook.stack.plugins.modules.<name> <file>`` and
    ``PYTHONPATH=.cache/collections``. PG*/REDIS*/AWS_* variables of the test process are not
    passed on, so a connection only works through ``args`` or an explicit ``env``.

    ``python``: another interpreter (a managed host's Python, e.g. a venv with the oldest supported
    libraries). Only the module's own libraries need to be installed in it: it gets the controller's
    ``ansible`` package through a link on PYTHONPATH, as AnsiballZ ships ``ansible.module_utils``
    inside the module's payload.

    Returns the module's JSON result plus ``_rc``, ``_stdout`` and ``_stderr``. Raises
    ``ModuleCrashed`` when the module prints no JSON result (a traceback, a hang, a bad exit).
    """
    if not PYTHON.exists():
        raise RuntimeError(f"{PYTHON} is missing: run scripts/bootstrap")
    if not (COLLECTIONS_PATH / "ansible_collections" / "runbook" / "stack").exists():
        raise RuntimeError(f"{COLLECTIONS_PATH} has no runbook.stack link: run scripts/bootstrap")
    with tempfile.TemporaryDirectory(prefix="runbook-module-") as tmp:
        module_tmp = Path(tmp) / "tmp"
        module_tmp.mkdir()
        payload = {
            "ANSIBLE_MODULE_ARGS": {
                **args,
                "_ansible_check_mode": check_mode,
                "_ansible_diff": diff,
                "_ansible_no_log": False,
                "_ansible_debug": False,
                "_ansible_verbosity": 0,
                "_ansible_module_name": f"{COLLECTION}.{name}",
                "_ansible_keep_remote_files": False,
                "_ansible_tmpdir": str(module_tmp),
                "_ansible_remote_tmp": str(module_tmp),
                "_ansible_shell_executable": "/bin/sh",
                "_ansible_ignore_unknown_opts": False,
                "_ansible_inject_invocation": True,
            }
        }
        args_file = Path(tmp) / "args.json"
        args_file.write_text(json.dumps(payload))  # the directory is 0700: secrets stay private
        extra_env = dict(env or {})
        if python is not None:
            import ansible

            shipped = Path(tmp) / "shipped"
            shipped.mkdir()
            (shipped / "ansible").symlink_to(Path(ansible.__file__).parent)
            extra_env["PYTHONPATH"] = f"{COLLECTIONS_PATH}{os.pathsep}{shipped}"
        cmd = [
            str(python or PYTHON),
            "-m",
            f"ansible_collections.runbook.stack.plugins.modules.{name}",
            str(args_file),
        ]
        try:
            proc = subprocess.run(
                cmd,
                cwd=tmp,
                env=module_env(extra_env),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ModuleCrashed(
                f"module {name} did not finish within {timeout}s\nstdout:\n{exc.stdout}\nstderr:\n{exc.stderr}"
            ) from None
    result = _parse_result(proc.stdout)
    if result is None:
        raise ModuleCrashed(
            f"module {name} printed no JSON result (rc={proc.returncode})\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    result.update(_rc=proc.returncode, _stdout=proc.stdout, _stderr=proc.stderr)
    return result


@pytest.fixture
def module():
    """``run_module`` as a fixture: ``module("postgresql_backup", {...}, check_mode=True)``."""
    return run_module


def psql_bin() -> str:
    """psql of the newest installed PostgreSQL, else the one on PATH."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/psql"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if found:
        return str(found[-1])
    path = shutil.which("psql")
    if not path:
        raise RuntimeError("psql not found (apt-get install postgresql-client)")
    return path


def psql(lab: dict[str, Any], sql: str, db: str = "postgres") -> str:
    """Run ``sql`` (one or more statements) against the lab as the superuser; return the output.

    ``-XAtq -v ON_ERROR_STOP=1``: unaligned, tuples only, the first error fails the call (raises
    AssertionError with psql's message). The trailing newline is stripped.
    """
    pg = lab["pg"]
    env = module_env({"PGPASSWORD": pg["login_password"], "PGCONNECT_TIMEOUT": "10"})
    proc = subprocess.run(
        [
            psql_bin(),
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            pg["login_host"],
            "-p",
            str(pg["login_port"]),
            "-U",
            pg["login_user"],
            "-d",
            db,
            "-f",
            "-",
        ],
        input=sql,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"psql on db {db!r} failed (rc={proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.rstrip("\n")


def pg_connect(lab: dict[str, Any], dbname: str = "postgres", autocommit: bool = True, app: str = "rb-it") -> Any:
    """A psycopg2 connection to the lab as the superuser (for setting up and checking state)."""
    import psycopg2

    conn = psycopg2.connect(
        host=lab["pg"]["login_host"],
        port=lab["pg"]["login_port"],
        user=lab["pg"]["login_user"],
        password=lab["pg"]["login_password"],
        dbname=dbname,
        application_name=app,
    )
    conn.autocommit = autocommit
    return conn


def pg_query(lab: dict[str, Any], statement: str, dbname: str = "postgres", args: Any = None) -> list | None:
    """Run one statement on a fresh connection; rows when it returns any, else None."""
    conn = pg_connect(lab, dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def pg_args(lab: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The lab's PostgreSQL login options (login_host, login_port, login_user, login_password) plus ``extra``."""
    return {**lab["pg"], **extra}


def redis_args(lab: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The lab's Redis login options (login_host, login_port, login_password) plus ``extra``."""
    return {**lab["redis"], **extra}


def assert_clean_failure(res: dict[str, Any], *needles: str, lab: dict[str, Any] | None = None) -> None:
    """A module failure an operator can act on: ``failed``, no traceback, each of ``needles`` in its
    message and, given ``lab``, no PostgreSQL password anywhere in its output."""
    out = res["_stdout"] + res["_stderr"]
    assert res.get("failed") is True, res
    assert "Traceback" not in out, out
    for needle in needles:
        assert needle in res["msg"], res["msg"]
    if lab is not None:
        assert lab["pg"]["login_password"] not in out


@pytest.fixture
def tmp_backup_root(tmp_path: Path) -> Path:
    """A fresh, empty directory for backup sets (under pytest's tmp_path)."""
    path = tmp_path / "backups"
    path.mkdir()
    return path


# ---- playbooks of this collection against the lab inventory --------------------------------------
_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


class PlaybookRun:
    """One ansible-playbook run: return code, output, and the PLAY RECAP counts per host."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.rc = proc.returncode
        self.out = proc.stdout + proc.stderr
        self.recap = {
            m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)), "failed": int(m.group(5))}
            for m in _RECAP.finditer(proc.stdout)
        }

    def changed(self, host: str = "lab") -> int:
        return self.recap[host]["changed"]

    def __repr__(self) -> str:
        # the failure lines first (they are what a reader needs), then the end of the output
        failures = [line for line in self.out.splitlines() if line.startswith(("fatal:", "failed:", "[ERROR]"))]
        return "\n".join([f"rc={self.rc}", *failures[:20], "...", self.out[-4000:]])


def playbook_env() -> dict[str, str]:
    """The environment of an ansible-playbook run: this repository's config and collection, no ambient
    service credentials, plain output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_AMBIENT_PREFIXES)}
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_PATH),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )
    return env


def run_playbook(playbook: str, *args: str, inventory: str = "inventories/lab", timeout: float = 600) -> PlaybookRun:
    """``ansible-playbook -i <inventory> playbooks/<playbook> <args>`` from the repository root."""
    env = playbook_env()
    argv = [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", inventory, f"playbooks/{playbook}", *args]
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    return PlaybookRun(proc)


def run_on_running_lab(playbook: str, *args: str) -> PlaybookRun:
    """``run_playbook`` after ``labctl up``: the run starts from a running lab even when an earlier
    destructive test left a service stopped. (No other test stops the lab meanwhile: the destructive
    tests run on a lab of their own or before the rest, scripts/run-tests.)"""
    _labctl("up")
    return run_playbook(playbook, *args)


def lab_seed() -> None:
    proc = _labctl("seed")
    assert proc.returncode == 0, f"lab/labctl seed failed: {proc.stdout}\n{proc.stderr}"


def task_json(run: PlaybookRun, title: str) -> Any:
    """The JSON a debug task printed (``ok: [host] => {...}``), for the last task named ``title``."""
    pos = run.out.rfind(f" : {title}")
    assert pos != -1, f"no task {title!r} in the output:\n{run.out[-4000:]}"
    start = run.out.index("=> {", pos) + 3
    doc, _end = json.JSONDecoder().raw_decode(run.out, start)
    return doc


def fresh_backup(lab: dict[str, Any], root: Path, database: str = "shop") -> dict[str, Any]:
    """A backup set of ``database`` made now under ``root`` (runbook.stack.postgresql_backup)."""
    res = run_module("postgresql_backup", {**lab["pg"], "name": database, "dest": str(root)}, timeout=300)
    assert res["_rc"] == 0 and not res.get("failed"), res
    return res


def custom_stats(out: str) -> dict[str, Any] | None:
    """A playbook's set_stats data, from a run with ANSIBLE_SHOW_CUSTOM_STATS=true (the default callback
    prints it on one line, ``\\tRUN: {...}``)."""
    for line in out.splitlines():
        if line.startswith("\tRUN: "):
            return json.loads(line[len("\tRUN: ") :])
    return None


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ghost(tmp_path: Path) -> Path:
    """Extra vars adding a component `ghost` whose endpoint is a closed port (the lab keeps running)."""
    port = free_port()
    comp = {
        "name": "ghost",
        "tier": "app",
        "service": "http",
        "control": {"type": "command", "start": ["true"]},
        "endpoints": [{"port": port}],
        "health": {"url": f"http://127.0.0.1:{port}/health"},
    }
    path = tmp_path / "ghost.yml"
    path.write_text(
        yaml.safe_dump({"health_check_components": "{{ runbook_components + [" + json.dumps(comp) + "] }}"})
    )
    return path
