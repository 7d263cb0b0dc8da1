# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files tls_certificate_install replaces (private): owners and modes, snapshots of what was
there, atomic writes, backups and the restore of a snapshot."""

from __future__ import annotations

import grp
import os
import pwd
import re
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._common.files import atomic_write
from ansible_collections.runbook.stack.plugins.module_utils._tls.certs import KEY_MODE, TlsError, read_file

# ------------------------------------------------------------------------------------------------
# files: owners, modes, snapshots, atomic writes, backups
# ------------------------------------------------------------------------------------------------


def parse_mode(value: Any, what: str = "mode") -> int:
    """An octal file mode given as ``'0644'``, ``'644'`` or the int YAML makes of ``0644``."""
    if isinstance(value, bool):
        raise TlsError(f"{what} must be an octal mode such as '0644', got {value!r}")
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        if not re.fullmatch(r"0?[0-7]{3,4}", text):
            raise TlsError(f"{what} must be an octal mode such as '0644', got {value!r}")
        mode = int(text, 8)
    if not 0 <= mode <= 0o7777:
        raise TlsError(f"{what} must be an octal mode such as '0644', got {value!r}")
    return mode


def resolve_owner(owner: str | None, group: str | None) -> tuple[int | None, int | None]:
    """(uid, gid) of a user / group name or number; None for what is not given."""
    uid = gid = None
    if owner not in (None, ""):
        text = str(owner)
        try:
            uid = int(text) if text.isdigit() else pwd.getpwnam(text).pw_uid
        except KeyError:
            raise TlsError(f"owner {text!r} is not a user on this host") from None
    if group not in (None, ""):
        text = str(group)
        try:
            gid = int(text) if text.isdigit() else grp.getgrnam(text).gr_gid
        except KeyError:
            raise TlsError(f"group {text!r} is not a group on this host") from None
    return uid, gid


@dataclass(frozen=True)
class FileState:
    """A destination file as it was before the run; ``data`` None when it did not exist."""

    path: str
    data: bytes | None = field(default=None, repr=False)
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None

    @property
    def exists(self) -> bool:
        return self.data is not None


def snapshot(path: str, what: str) -> FileState:
    """The current content and attributes of ``path`` (a missing file is a valid state)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return FileState(path)
    except OSError as exc:
        raise TlsError(f"cannot stat {what} {path}: {exc.strerror or exc}") from None
    if not os.path.isfile(path):
        raise TlsError(f"{what} {path} exists and is not a regular file")
    return FileState(path, read_file(path, what), st.st_mode & 0o7777, st.st_uid, st.st_gid)


def check_writable_dir(path: str, what: str) -> None:
    """TlsError when the directory of ``path`` is missing or not writable (checked before any write)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise TlsError(f"the directory of {what} {path} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise TlsError(f"the directory of {what} {path} is not writable")


def write_file(path: str, data: bytes, mode: int, uid: int | None, gid: int | None, what: str) -> None:
    """atomic_write with the fault phrased as TlsError naming the file."""
    try:
        atomic_write(path, data, mode, uid, gid)
    except OSError as exc:
        raise TlsError(f"cannot write {what} {path}: {exc.strerror or exc}") from None


def restore(state: FileState) -> None:
    """Put a snapshot back: the old bytes, mode and owner, or no file when there was none."""
    if state.data is None:
        try:
            os.unlink(state.path)
        except FileNotFoundError:
            pass
        return
    atomic_write(state.path, state.data, state.mode if state.mode is not None else KEY_MODE, state.uid, state.gid)


def backup_path(path: str, backup: str, stamp: str) -> str:
    """Where the backup of ``path`` goes: ``<backup>/<name>.<stamp>`` when ``backup`` is an
    absolute directory, else ``<path><backup>`` (a suffix such as ``.bak``)."""
    if os.path.isabs(backup):
        return os.path.join(backup, f"{os.path.basename(path)}.{stamp}")
    if "/" in backup:
        raise TlsError(f"backup {backup!r} must be an absolute directory or a file-name suffix such as '.bak'")
    return path + backup


def write_backup(state: FileState, backup: str, stamp: str, what: str) -> str | None:
    """Copy a snapshot to its backup path (same mode and owner); None when there was no file."""
    if state.data is None:
        return None
    dest = backup_path(state.path, backup, stamp)
    directory = os.path.dirname(dest)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        atomic_write(dest, state.data, state.mode if state.mode is not None else KEY_MODE, state.uid, state.gid)
    except OSError as exc:
        raise TlsError(f"cannot back up {what} {state.path} to {dest}: {exc.strerror or exc}") from None
    return dest
