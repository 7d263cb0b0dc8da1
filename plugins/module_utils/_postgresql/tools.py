# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL client tools (pg_dump, pg_restore, pg_ctl, ...) for the postgresql_* modules (private):
finding one at least as new as the server, running it with a scrubbed environment and a timeout, and
showing its command line in results."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence

from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line
from ansible_collections.runbook.stack.plugins.module_utils._postgresql.connection import PostgresError

_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def tool_version(path: str) -> tuple[int, str]:
    """(major, full version text) of a PostgreSQL client tool."""
    try:
        # helpers take values, not the module, so run_command is not at hand here
        out = subprocess.run(  # pylint: disable=ansible-bad-function
            [path, "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except OSError as exc:
        raise PostgresError(f"cannot run {path}: {exc.strerror or exc}") from None
    m = _VERSION_RE.search(out)
    if not m:
        raise PostgresError(f"cannot read the version of {path} from {out.strip()!r}")
    return int(m.group(1)), out.strip()


def find_tool(name: str, server_major: int, bin_dir: str | None = None) -> tuple[str, str]:
    """Path and version of a client tool at least as new as the server (pg_dump refuses older servers' peers).

    Search order: ``bin_dir``; versioned Debian/RHEL directories (matching major first, then newer);
    then PATH.
    """
    candidates: list[str] = []
    if bin_dir:
        candidates.append(os.path.join(bin_dir, name))
    versioned = []
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"):
        for d in glob.glob(pattern):
            m = re.search(r"(?:postgresql/|pgsql-)(\d+)", d)
            if m:
                versioned.append((int(m.group(1)), os.path.join(d, name)))
    versioned.sort(key=lambda v: (v[0] != server_major, v[0] < server_major, -v[0]))
    candidates.extend(path for _major, path in versioned)
    on_path = shutil.which(name)
    if on_path:
        candidates.append(on_path)
    tried = []
    for path in candidates:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            continue
        major, text = tool_version(path)
        if major >= server_major:
            return path, text
        tried.append(f"{path} ({major})")
    detail = f"; found only older ones: {', '.join(tried)}" if tried else ""
    raise PostgresError(
        f"no {name} of PostgreSQL {server_major} or newer is installed{detail}: install the client tools of"
        f" PostgreSQL {server_major} (or newer) on this host, or set pg_bin_dir to the directory that has them"
        " (for a server in a container, the same major version as its image)"
    )


def tail(text: str | bytes, lines: int = 12) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    kept = [ln for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)


def run_tool(
    argv: Sequence[str], env: dict[str, str], what: str, timeout: float | None = None, secret: str | None = None
) -> subprocess.CompletedProcess:
    """Run a client tool; a non-zero exit becomes PostgresError '<what>: <tool> exited N: <stderr tail>'."""
    try:
        # helpers take values, not the module; this one needs a timeout and a scrubbed environment
        proc = subprocess.run(  # pylint: disable=ansible-bad-function
            list(argv), env=env, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise PostgresError(f"{what}: {os.path.basename(argv[0])} did not finish within {timeout} s") from None
    except OSError as exc:
        raise PostgresError(f"{what}: cannot run {argv[0]}: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        detail = one_line(tail(proc.stderr) or tail(proc.stdout) or "no output", secret)
        raise PostgresError(f"{what}: {os.path.basename(argv[0])} exited {proc.returncode}: {detail}")
    return proc


def shown_command(argv: Iterable[str]) -> str:
    """A command line for the result (passwords never reach argv, so nothing to strip here)."""
    return " ".join(_shell_quote(a) for a in argv)


def _shell_quote(arg: str) -> str:
    if arg and re.fullmatch(r"[A-Za-z0-9_./:=@%+,-]+", arg):
        return arg
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def default_jobs() -> int:
    """Parallel jobs for pg_dump / pg_restore when the user sets none: min(4, CPUs)."""
    return max(1, min(4, os.cpu_count() or 1))
