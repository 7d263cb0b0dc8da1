# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pgBackRest helpers of the PostgreSQL physical backup and point-in-time recovery modules (private).

pgBackRest does the work (WAL archiving, full/diff/incr backups, restore with a recovery target);
these helpers build its configuration and command lines, run it as the operating-system user that
owns the data directory and read ``pgbackrest info --output=json``.

Secrets: the S3 keys reach the commands the modules run through the environment
(``PGBACKREST_REPO1_S3_KEY`` / ``PGBACKREST_REPO1_S3_KEY_SECRET``), never argv. The configuration
file written for a stanza holds them too (mode 0600, owned by that user) because PostgreSQL runs
``archive-push`` from ``archive_command`` without the module's environment.
"""

from __future__ import annotations

import configparser
import datetime as dt
import json
import os
import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ansible.module_utils.basic import env_fallback

from ansible_collections.runbook.stack.plugins.module_utils._common.process import Interrupted, die_with_parent
from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line
from ansible_collections.runbook.stack.plugins.module_utils._postgresql import PostgresError, shown_command, tail

DEFAULT_CONFIG = "/etc/pgbackrest/pgbackrest.conf"
ENV_KEY = "PGBACKREST_REPO1_S3_KEY"
ENV_SECRET = "PGBACKREST_REPO1_S3_KEY_SECRET"

# ``pgbackrest info`` stanza status codes (doc: "info" command, "status")
STATUS_OK = 0
STATUS_MISSING_STANZA_PATH = 1
STATUS_NO_BACKUP = 2
STATUS_MISSING_STANZA_DATA = 3

_STANZA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class PgBackRestError(PostgresError):
    """A foreseeable pgBackRest fault, already phrased for the operator (a PostgresError, so the
    postgresql_* modules catch one type)."""


def pgbackrest_argument_spec() -> dict[str, Any]:
    """Options of every module that runs pgbackrest (doc fragment: runbook.stack.pgbackrest)."""
    return dict(
        stanza=dict(type="str", required=True),
        config_file=dict(type="path", default=DEFAULT_CONFIG),
        os_user=dict(type="str"),
        access_key=dict(
            type="str", no_log=False, aliases=["aws_access_key_id"], fallback=(env_fallback, ["AWS_ACCESS_KEY_ID"])
        ),
        secret_key=dict(type="str", no_log=True, fallback=(env_fallback, ["AWS_SECRET_ACCESS_KEY"])),
        pgbackrest_bin=dict(type="path", default="pgbackrest"),
        command_timeout=dict(type="float", default=3600),
    )


@dataclass(frozen=True)
class Runner:
    """How to run pgbackrest for one stanza: binary, config, user and the secrets' environment."""

    binary: str
    config_file: str
    stanza: str
    os_user: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    pg_password: str | None = None
    timeout: float = 3600

    def argv(self, command: str, *options: str) -> list[str]:
        return [self.binary, f"--config={self.config_file}", f"--stanza={self.stanza}", *options, command]

    def env(self) -> dict[str, str]:
        """Our environment minus any PGBACKREST_* / PGPASSWORD, plus the secrets (never argv)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGBACKREST_") and k != "PGPASSWORD"}
        env.setdefault("LC_ALL", "C.UTF-8")
        if self.access_key:
            env[ENV_KEY] = self.access_key
        if self.secret_key:
            env[ENV_SECRET] = self.secret_key
        if self.pg_password:
            env["PGPASSWORD"] = self.pg_password
        if self.os_user:
            env["HOME"] = user_home(self.os_user)
        return env

    def run(self, command: str, *options: str, what: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(self.argv(command, *options), self.env(), self.os_user, what, self.timeout, check, self.secrets)

    @property
    def secrets(self) -> tuple[str | None, ...]:
        return (self.secret_key, self.pg_password)


def runner_from_params(params: dict[str, Any], pg_password: str | None = None) -> Runner:
    """Runner from validated module params (values, not the module)."""
    stanza = params["stanza"]
    if not _STANZA_RE.match(stanza or ""):
        raise PgBackRestError(f"stanza {stanza!r} is not a valid stanza name (letters, digits, '_', '.', '-')")
    if bool(params.get("access_key")) != bool(params.get("secret_key")):
        raise PgBackRestError("access_key and secret_key must be set together")
    if params.get("command_timeout") is not None and params["command_timeout"] <= 0:
        raise PgBackRestError(f"command_timeout must be a positive number of seconds, got {params['command_timeout']}")
    binary = find_pgbackrest(params.get("pgbackrest_bin") or "pgbackrest")
    os_user = params.get("os_user") or None
    if os_user:
        user_home(os_user)  # fails early and clearly on an unknown user
        if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != os_user:
            raise PgBackRestError(f"os_user {os_user!r} needs the module to run as root (become: true)")
    return Runner(
        binary=binary,
        config_file=params["config_file"],
        stanza=stanza,
        os_user=os_user,
        access_key=params.get("access_key") or None,
        secret_key=params.get("secret_key") or None,
        pg_password=pg_password,
        timeout=float(params.get("command_timeout") or 3600),
    )


def find_pgbackrest(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise PgBackRestError(
            f"pgbackrest_bin {name!r} not found (install the pgbackrest package, e.g. apt-get install pgbackrest)"
        )
    return path


def user_home(user: str) -> str:
    try:
        return pwd.getpwnam(user).pw_dir or "/"
    except KeyError:
        raise PgBackRestError(f"os_user {user!r} does not exist on this host") from None


def _ids(user: str | None) -> dict[str, Any]:
    """Popen arguments that run the child as ``user`` (with that user's groups) when it is another user."""
    if not user or pwd.getpwuid(os.geteuid()).pw_name == user:
        return {}
    entry = pwd.getpwnam(user)
    return dict(user=entry.pw_uid, group=entry.pw_gid, extra_groups=os.getgrouplist(user, entry.pw_gid))


def error_lines(text: str) -> str:
    """pgBackRest's ``ERROR: [nnn]: ...`` lines (the cause), else the output's tail."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("ERROR:") or " ERROR: " in ln]
    return " | ".join(lines[-3:]) if lines else tail(text)


def run(
    argv: Sequence[str],
    env: dict[str, str],
    user: str | None,
    what: str,
    timeout: float,
    check: bool = True,
    secrets: Sequence[str | None] = (),
) -> subprocess.CompletedProcess:
    """Run pgbackrest as ``user``; it gets SIGTERM when the module dies (die_with_parent) or is
    interrupted. A non-zero exit (with ``check``) becomes PgBackRestError '<what>: pgbackrest exited N: <cause>'."""
    try:
        # helpers take values, not the module; the child runs as another user and must die with us
        proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
            list(argv),
            env=env,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent,  # pylint: disable=subprocess-popen-preexec-fn
            **_ids(user),
        )
    except OSError as exc:
        raise PgBackRestError(f"{what}: cannot run {argv[0]}: {exc.strerror or exc}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.communicate()
        raise PgBackRestError(f"{what}: pgbackrest did not finish within {timeout:g} s (command_timeout)") from None
    except Interrupted:
        proc.terminate()
        proc.communicate()
        raise
    done = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
    if check and proc.returncode != 0:
        cause = one_line(error_lines(err or out or "no output"), *secrets)
        raise PgBackRestError(f"{what}: pgbackrest exited {proc.returncode}: {cause}")
    return done


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------


def render_config(sections: dict[str, dict[str, Any]]) -> str:
    """pgbackrest.conf text: ``[section]`` then ``key=value`` lines, None values left out, booleans y/n."""
    out = ["# Written by runbook.stack.postgresql_wal_archive; changes are overwritten on the next run."]
    for name, options in sections.items():
        out.append("")
        out.append(f"[{name}]")
        for key, value in options.items():
            if value is None or value == "":
                continue
            if isinstance(value, bool):
                value = "y" if value else "n"
            text = str(value)
            if "\n" in text:
                raise PgBackRestError(f"pgBackRest option {key} must be one line")
            out.append(f"{key}={text}")
    return "\n".join(out) + "\n"


def read_config(path: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        raise PgBackRestError(
            f"config_file {path} does not exist (run runbook.stack.postgresql_wal_archive first)"
        ) from None
    except (OSError, configparser.Error) as exc:
        raise PgBackRestError(f"cannot read config_file {path}: {one_line(exc)}") from None
    return parser


def stanza_data_dir(path: str, stanza: str) -> str:
    """The stanza's ``pg1-path`` (the current data directory) from the configuration file."""
    parser = read_config(path)
    if not parser.has_section(stanza):
        raise PgBackRestError(
            f"config_file {path} has no section [{stanza}] (stanza {stanza!r} is not configured there)"
        )
    value = parser.get(stanza, "pg1-path", fallback="")
    if not value:
        raise PgBackRestError(f"config_file {path} sets no pg1-path for stanza {stanza!r}")
    return value


def archive_command(binary: str, config_file: str, stanza: str) -> str:
    return f"{binary} --config={config_file} --stanza={stanza} archive-push %p"


# ---------------------------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------------------------


def iso(epoch: int | float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat()


def backup_entry(raw: dict[str, Any]) -> dict[str, Any]:
    """One backup of ``pgbackrest info --output=json`` in the modules' shape."""
    ts = raw.get("timestamp") or {}
    info = raw.get("info") or {}
    repo = info.get("repository") or {}
    archive = raw.get("archive") or {}
    lsn = raw.get("lsn") or {}
    start, stop = ts.get("start"), ts.get("stop")
    return dict(
        label=raw.get("label"),
        type=raw.get("type"),
        prior=raw.get("prior"),
        error=bool(raw.get("error")),
        start=iso(start),
        stop=iso(stop),
        duration_s=(stop - start) if start is not None and stop is not None else None,
        size=info.get("size"),
        delta=info.get("delta"),
        repo_size=repo.get("size"),
        repo_delta=repo.get("delta"),
        wal_start=archive.get("start"),
        wal_stop=archive.get("stop"),
        lsn_start=lsn.get("start"),
        lsn_stop=lsn.get("stop"),
        database_id=(raw.get("database") or {}).get("id"),
    )


def parse_info(text: str, stanza: str) -> dict[str, Any]:
    """The stanza's part of ``pgbackrest info --output=json``: status, backups oldest first, WAL range."""
    try:
        data = json.loads(text)
    except ValueError:
        raise PgBackRestError(
            f"cannot parse pgbackrest info output for stanza {stanza!r}: {one_line(text)[:200]}"
        ) from None
    entry = (
        next((s for s in data if isinstance(s, dict) and s.get("name") == stanza), None)
        if isinstance(data, list)
        else None
    )
    if entry is None:
        raise PgBackRestError(f"pgbackrest info returned nothing for stanza {stanza!r}")
    status = entry.get("status") or {}
    repo_errors = [
        f"repo{r.get('key')}: {(r.get('status') or {}).get('message')}"
        for r in entry.get("repo") or []
        if (r.get("status") or {}).get("code") not in (STATUS_OK, STATUS_NO_BACKUP, None)
    ]
    archives = entry.get("archive") or []
    current = archives[-1] if archives else {}
    return dict(
        stanza=stanza,
        status_code=status.get("code"),
        status=status.get("message"),
        repo_errors=repo_errors,
        backup_running=bool(((status.get("lock") or {}).get("backup") or {}).get("held")),
        backups=[backup_entry(b) for b in entry.get("backup") or []],
        archive=dict(
            id=current.get("id"),
            min=current.get("min"),
            max=current.get("max"),
            ranges=[dict(id=a.get("id"), min=a.get("min"), max=a.get("max")) for a in archives],
        ),
        system_id=((entry.get("db") or [{}])[-1]).get("system-id"),
        pg_version=((entry.get("db") or [{}])[-1]).get("version"),
    )


def stanza_info(runner: Runner) -> dict[str, Any]:
    proc = runner.run("info", "--output=json", what=f"cannot read pgbackrest info of stanza {runner.stanza!r}")
    return parse_info(proc.stdout, runner.stanza)


def stanza_unreachable(info: dict[str, Any]) -> str:
    """Why the repository could not be read ("" when it could): TLS, credentials, bucket..."""
    if info["status_code"] in (STATUS_OK, STATUS_NO_BACKUP, STATUS_MISSING_STANZA_PATH, STATUS_MISSING_STANZA_DATA):
        return ""
    return "; ".join(info["repo_errors"]) or str(info["status"])


# ---------------------------------------------------------------------------------------------
# helpers (the restore target and command line: _pgbackrest_target.py)
# ---------------------------------------------------------------------------------------------


def shown(argv: Sequence[str]) -> str:
    return shown_command(argv)


def elapsed(started: float) -> float:
    return round(time.monotonic() - started, 3)
