#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: redis_restore
short_description: Restore a Redis server from a verified RDB backup set, putting the previous data back on any failure
version_added: 0.1.0
description:
  - Restores a backup set written by M(runbook.stack.redis_snapshot) into the Redis server on the host
    the module runs on. Every database of the server is replaced.
  - Before it touches the server, the module re-computes the SHA-256 of every file of the set, compares
    it with the manifest and checks that the RDB file starts with the C(REDIS) magic; a set that fails
    is refused, naming the set and the file, and nothing is changed.
  - While the server is still up it reads C(CONFIG GET dir), C(dbfilename), C(appendonly),
    C(appenddirname) and C(appendfilename). It then stops the server (O(service) with C(systemctl stop),
    or O(stop_command)) and waits until its port is closed; renames the current RDB file to
    C(<dbfilename>.pre-restore-<backup_id>); and puts the RDB of the set in place atomically (copy to a
    temporary file in the same directory, fsync, rename), with the owner and mode of the previous file.
  - "AOF: when C(appendonly) is V(yes), Redis loads the AOF at start, not the RDB file. Redis 7.0 with
    C(appendonly yes) and no AOF directory starts with an EMPTY dataset (it ignores C(dump.rdb) and
    creates a new, empty AOF base), which was checked with redis-server 7.0.15. So the module moves the
    AOF directory aside as C(<appenddirname>.pre-restore-<backup_id>) and puts a new AOF directory in its
    place whose only part is the snapshot as the RDB base file (C(<appendfilename>.1.base.rdb)) with its
    manifest; Redis loads it and goes on appending to a new incremental file. For servers before Redis 7
    (a single AOF file), the AOF file is moved aside the same way and the snapshot is put in its place as
    an RDB-preamble AOF."
  - It then starts the server (C(systemctl start) or O(start_command)), waits until it answers C(PING)
    and C(INFO persistence) shows C(loading:0), and compares the number of keys of every database with
    the manifest. A database may hold fewer keys than recorded by at most the number of keys that had a
    time to live (Redis drops keys that expired since the snapshot while loading). When the manifest says
    the snapshot was not exact (C(facts.keyspace_exact) false, the server was written to meanwhile), a
    difference is only reported as a warning.
  - On any failure after the stop (start fails, timeout, key counts differ, the module is stopped) the
    module stops the server again if it runs, removes the restored files, renames the previous ones back,
    starts the server and fails with a message that says what happened and that the previous data is back.
  - The module must run on the Redis host, as a user that may write the Redis data directory and run the
    stop and start commands. O(login_host) and O(login_port) must reach that server.
author:
  - runbook.stack maintainers (@runbook-stack)
extends_documentation_fragment:
  - runbook.stack.redis
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.ACTIONGROUPS
attributes:
  check_mode:
    support: full
    details:
      - Verifies every checksum and the RDB magic, reads the data paths from the server, and returns the
        files that would be replaced and the expected key counts. The server is neither stopped nor changed.
  diff_mode:
    support: none
  idempotent:
    description: Whether a second run with the same options reports no change.
    support: none
    details: Every real run stops the server and loads the set again, so C(changed) is always true.
  platform:
    platforms: posix
  action_group:
    membership: [runbook.stack.redis]
options:
  path:
    description:
      - Directory of one backup set (C(<root>/redis/<source>/<backup_id>)).
      - Mutually exclusive with O(backup_root); one of them is required.
    type: path
  backup_root:
    description:
      - Backup root to pick the set from, with O(source) and O(backup_id).
    type: path
  backup_id:
    description:
      - Id of the set under O(backup_root), or V(latest) for the newest valid set of O(source).
    type: str
    default: latest
  source:
    description:
      - Name of the snapshotted server in the backup layout.
      - Defaults to C(<login_host>:<login_port>), the default of M(runbook.stack.redis_snapshot).
    type: str
  service:
    description:
      - systemd unit of the Redis server, stopped and started with C(systemctl).
      - Mutually exclusive with O(stop_command) and O(start_command); one of the two ways is required.
    type: str
  stop_command:
    description:
      - Command (argv list, no shell) that stops the server, for hosts without systemd, for example
        V([redis-cli, -p, "6379", shutdown, save]). It runs with E(REDISCLI_AUTH) set to O(login_password).
      - Its exit status is ignored when the server's port is closed afterwards.
      - Requires O(start_command).
    type: list
    elements: str
  start_command:
    description:
      - Command (argv list, no shell) that starts the server and returns, for example
        V([redis-server, /etc/redis/redis.conf]) with C(daemonize yes) in that file.
      - Requires O(stop_command).
    type: list
    elements: str
  timeout:
    description:
      - Seconds to wait for each of the stop and start commands, for the port to close after the stop,
        and for the server to answer and finish loading after the start.
    type: int
    default: 300
notes:
  - O(db) is not used; a restore always replaces every database of the server.
  - Stop the server with a command that saves (C(SHUTDOWN SAVE); C(SHUTDOWN) and C(systemctl stop) save
    only when save points are configured), so that the kept C(.pre-restore-<backup_id>) file holds the
    last state of the server and a roll-back brings exactly that back. Writes that were never saved
    are lost with any stop.
  - The kept previous files are never removed or overwritten by this module. When an earlier restore
    of the same set already keeps C(<file>.pre-restore-<backup_id>), this one keeps the current file as
    C(<file>.pre-restore-<backup_id>.2) (then C(.3), ...); RV(previous_file) names the one written.
seealso:
  - module: runbook.stack.redis_snapshot
  - module: runbook.stack.backup_info
requirements:
  - systemctl when O(service) is used
"""

EXAMPLES = r"""
- name: Restore the newest snapshot of the local server (systemd)
  runbook.stack.redis_restore:
    login_password: "{{ vault_redis_password }}"
    backup_root: /var/backups/runbook
    source: "127.0.0.1:6379"
    service: redis-server
  register: restored

- name: Restore one exact set on a host without systemd
  runbook.stack.redis_restore:
    login_port: 6380
    path: /var/backups/runbook/redis/127.0.0.1%3A6380/20261122T020000Z
    stop_command: [redis-cli, -p, "6380", shutdown, save]
    start_command: [redis-server, /etc/redis/6380.conf]
    timeout: 600

- name: Show what a restore would replace, without stopping the server
  runbook.stack.redis_restore:
    backup_root: /var/backups/runbook
    service: redis-server
  check_mode: true
  register: plan
"""

RETURN = r"""
backup_id:
  description: Id of the restored set.
  returned: always
  type: str
  sample: 20261122T020000Z
path:
  description: Directory of the restored set.
  returned: always
  type: str
  sample: /var/backups/runbook/redis/127.0.0.1%3A6379/20261122T020000Z
data_file:
  description: The server's RDB file that now holds (in check mode, would hold) the restored data.
  returned: always
  type: str
  sample: /var/lib/redis/dump.rdb
previous_file:
  description: Where the previous RDB file was kept; null when the server had none.
  returned: always
  type: str
  sample: /var/lib/redis/dump.rdb.pre-restore-20261122T020000Z
aof:
  description: Whether the server has C(appendonly yes), so that its AOF was replaced too.
  returned: always
  type: bool
aof_path:
  description: The AOF directory (Redis 7+) or file that was (or would be) replaced; null when RV(aof) is false.
  returned: always
  type: str
  sample: /var/lib/redis/appendonlydir
previous_aof:
  description: Where the previous AOF directory or file was kept; null when there was none or AOF is off.
  returned: always
  type: str
  sample: /var/lib/redis/appendonlydir.pre-restore-20261122T020000Z
dbsize_expected:
  description: Number of keys in all databases recorded in the manifest.
  returned: always
  type: int
  sample: 200000
dbsize:
  description: Number of keys in all databases after the restore (in check mode, the number now, before it).
  returned: always
  type: int
  sample: 200000
keyspace:
  description: C(INFO keyspace) per database after the restore (in check mode, from the manifest).
  returned: always
  type: dict
  sample: {"db0": {"keys": 150000, "expires": 20, "avg_ttl": 0}}
verified_files:
  description: Number of files whose SHA-256 matched the manifest.
  returned: always
  type: int
  sample: 1
commands:
  description: The stop and start commands that ran (or would run).
  returned: always
  type: list
  elements: str
  sample: ["systemctl stop redis-server", "systemctl start redis-server"]
steps:
  description: Steps taken (or planned), in order, with their durations in seconds.
  returned: always
  type: list
  elements: dict
  sample: [{"step": "verify checksums", "duration_s": 0.4}]
duration_s:
  description: Wall-clock seconds the module spent.
  returned: always
  type: float
  sample: 4.7
"""

import os
import shutil
import subprocess
import tempfile
import time
from typing import Any, Callable

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    BackupSet,
    BackupSetError,
    Steps,
    find_set,
    fsync_dir,
    keep_name,
    open_set_path,
    open_storage,
    remove_tree,
)
from ansible_collections.runbook.stack.plugins.module_utils._process import Interrupted, terminate_on_signals
from ansible_collections.runbook.stack.plugins.module_utils._redis import (
    CLIENT_ERRORS,
    HAS_REDIS,
    REDIS_IMPORT_ERROR,
    ConnInfo,
    DataPaths,
    RedisError,
    aof_manifest,
    check_rdb_magic,
    compare_keyspace,
    conn_info,
    connect,
    describe,
    parse_keyspace,
    poll,
    port_open,
    read_data_paths,
    redis_argument_spec,
    redis_cli_env,
    total_keys,
)
from ansible_collections.runbook.stack.plugins.module_utils._text import one_line

KIND = "redis"


# ------------------------------------------------------------------------------------------------
# the set
# ------------------------------------------------------------------------------------------------


def resolve_set(params: dict[str, Any], source: str) -> BackupSet:
    if params["path"]:
        return open_set_path(params["path"], kind=KIND)
    return find_set(open_storage(params["backup_root"]), KIND, source, params["backup_id"])


def verify_set(bset: BackupSet) -> tuple[str, int]:
    """Every checksum and the RDB magic; returns (RDB path in the set, files verified)."""
    problems = bset.verify()
    if problems:
        shown = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
        raise BackupSetError(f"backup set {bset.location} failed verification, nothing was changed: {shown}")
    facts = bset.manifest.get("facts") or {}
    if "keyspace" not in facts or "rdb_file" not in facts:
        raise BackupSetError(
            f"the manifest of {bset.location} has no facts.keyspace/rdb_file; it was not written by redis_snapshot"
        )
    rdb = os.path.join(bset.location, str(facts["rdb_file"]))
    try:
        check_rdb_magic(rdb)
    except RedisError as exc:
        raise BackupSetError(f"backup set {bset.location}: {exc}; nothing was changed") from None
    return rdb, len(bset.manifest["files"])


# ------------------------------------------------------------------------------------------------
# the server process
# ------------------------------------------------------------------------------------------------


def control_argv(params: dict[str, Any], action: str) -> list[str]:
    if params["service"]:
        return ["systemctl", action, params["service"]]
    return list(params[f"{action}_command"])


def run_control(argv: list[str], info: ConnInfo, timeout: int) -> tuple[int, str]:
    """Run a stop/start command; (rc, output tail). Output goes to a file, not a pipe: a server that
    forks into the background would keep a pipe open."""
    with tempfile.TemporaryFile() as out:
        try:
            # Popen: the started server must outlive the module, so no die_with_parent, own session.
            proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
                argv,
                env=redis_cli_env(info),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return 127, f"cannot run {argv[0]}: {exc.strerror or exc}"
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -1, f"did not return within {timeout} s"
        out.seek(0)
        return rc, one_line(out.read()[-1000:].decode("utf-8", "replace"), info.password)


def ready(info: ConnInfo) -> dict[str, Any] | None:
    """INFO persistence+keyspace when the server answers and has finished loading, else None."""
    try:
        client = connect(info)
    except RedisError:
        return None
    try:
        reply = client.info("persistence", "keyspace")
        return reply if not int(reply.get("loading", 0)) else None
    except CLIENT_ERRORS:
        return None
    finally:
        client.close()


def stop_server(params: dict[str, Any], info: ConnInfo, commands: list[str]) -> None:
    argv = control_argv(params, "stop")
    commands.append(" ".join(argv))
    rc, output = run_control(argv, info, params["timeout"])
    if poll(lambda: not port_open(info.host, info.port), params["timeout"]) is None:
        raise RedisError(
            f"the server at {info.where} still answers after {' '.join(argv)} (rc {rc}: {output or 'no output'})"
        )


def start_server(params: dict[str, Any], info: ConnInfo, commands: list[str]) -> dict[str, Any]:
    argv = control_argv(params, "start")
    commands.append(" ".join(argv))
    rc, output = run_control(argv, info, params["timeout"])
    if rc != 0:
        raise RedisError(f"{' '.join(argv)} failed (rc {rc}): {output or 'no output'}")
    reply = poll(lambda: ready(info), params["timeout"], interval=0.2)
    if reply is None:
        raise RedisError(
            f"the server at {info.where} did not answer with loading:0 within {params['timeout']} s after {' '.join(argv)}"
        )
    return reply


# ------------------------------------------------------------------------------------------------
# the files
# ------------------------------------------------------------------------------------------------


def pre_restore(path: str, backup_id: str, taken: Callable[[str], bool] = os.path.lexists) -> str:
    """``<path>.pre-restore-<backup_id>``, or with ``.2``, ``.3``... appended when an earlier restore of
    the same set already keeps a file under that name (it is never overwritten)."""
    kept, last = keep_name(lambda more: f"{path}.pre-restore-{backup_id}{more}", taken, ".", 999)
    if last is not None:
        raise RedisError(f"{kept} to {last} all exist; remove the ones no longer needed")
    return kept


def install_file(src: str, dest: str, like: os.stat_result | None) -> None:
    """Copy src to dest atomically (temp file in dest's directory, fsync, rename) with like's owner/mode."""
    directory = os.path.dirname(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.restore-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fout, open(src, "rb") as fin:
            shutil.copyfileobj(fin, fout, 4 * 1024 * 1024)
            fout.flush()
            if like is not None:
                os.fchmod(fout.fileno(), like.st_mode & 0o7777)
                if os.geteuid() == 0:
                    os.fchown(fout.fileno(), like.st_uid, like.st_gid)
            os.fsync(fout.fileno())
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def reference_stat(path: str, directory: str) -> os.stat_result:
    """The previous file's stat, else the data directory's (owner) with the file mode set to 0600."""
    if os.path.exists(path):
        return os.stat(path)
    st = os.stat(directory)
    return os.stat_result((0o100600, *tuple(st)[1:]))


class FileSwap:
    """Moves the server's data files aside and puts the set's RDB in place; undo() reverses it."""

    def __init__(self, paths: DataPaths, backup_id: str) -> None:
        self.paths = paths
        self.backup_id = backup_id
        self.data_file = paths.rdb_path
        self.previous_file = pre_restore(self.data_file, backup_id)
        self.aof_path = paths.aof_path if paths.appendonly else None
        self.previous_aof = pre_restore(self.aof_path, backup_id) if self.aof_path else None
        self.moved: list[tuple[str, str]] = []  # (original, kept-as)
        self.installed: list[str] = []

    def _move_aside(self, original: str, kept: str) -> bool:
        if not os.path.lexists(original):
            return False
        os.rename(original, kept)
        self.moved.append((original, kept))
        fsync_dir(os.path.dirname(original))
        return True

    def apply(self, rdb: str) -> None:
        like = reference_stat(self.data_file, self.paths.dir)
        self._move_aside(self.data_file, self.previous_file)
        self.installed.append(self.data_file)
        install_file(rdb, self.data_file, like)
        if not self.aof_path:
            return
        if self.paths.appenddirname:
            self._install_aof_dir(rdb, like)
        else:  # before Redis 7: one AOF file; an AOF that starts with an RDB preamble loads as the RDB
            aof_like = reference_stat(self.aof_path, self.paths.dir)
            self._move_aside(self.aof_path, self.previous_aof)
            self.installed.append(self.aof_path)
            install_file(rdb, self.aof_path, aof_like)

    def _install_aof_dir(self, rdb: str, like: os.stat_result) -> None:
        base, manifest = aof_manifest(self.paths.appendfilename)
        dir_like = os.stat(self.aof_path) if os.path.isdir(self.aof_path) else os.stat(self.paths.dir)
        staging = tempfile.mkdtemp(prefix=f".{self.paths.appenddirname}.restore-", dir=self.paths.dir)
        try:
            install_file(rdb, os.path.join(staging, base), like)
            manifest_src = os.path.join(staging, ".manifest-src")
            with open(manifest_src, "wb") as fh:
                fh.write(manifest)
            install_file(manifest_src, os.path.join(staging, f"{self.paths.appendfilename}.manifest"), like)
            os.unlink(manifest_src)
            os.chmod(staging, dir_like.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.chown(staging, dir_like.st_uid, dir_like.st_gid)
            self._move_aside(self.aof_path, self.previous_aof)
            self.installed.append(self.aof_path)
            os.rename(staging, self.aof_path)
            fsync_dir(self.paths.dir)
        except BaseException:
            if os.path.lexists(staging):
                remove_tree(staging)
            raise

    def undo(self) -> None:
        for path in self.installed:
            if os.path.lexists(path):
                remove_tree(path)
        for original, kept in reversed(self.moved):
            os.rename(kept, original)
        fsync_dir(self.paths.dir)
        self.installed, self.moved = [], []

    @property
    def kept_file(self) -> str | None:
        return self.previous_file if any(o == self.data_file for o, _k in self.moved) else None

    @property
    def kept_aof(self) -> str | None:
        return self.previous_aof if any(o == self.aof_path for o, _k in self.moved) else None


# ------------------------------------------------------------------------------------------------
# the restore
# ------------------------------------------------------------------------------------------------


def run(params: dict[str, Any], info: ConnInfo, source: str, check_mode: bool, warn: Any) -> dict[str, Any]:
    steps = Steps()
    commands: list[str] = []
    with steps.step("find backup set"):
        bset = resolve_set(params, source)
    with steps.step("verify checksums and RDB magic"):
        rdb, verified = verify_set(bset)
    facts = bset.manifest["facts"]
    expected = {str(k): {f: int(n) for f, n in v.items()} for k, v in facts["keyspace"].items()}
    exact = bool(facts.get("keyspace_exact", True))

    with steps.step("read data paths from the server"):
        client = connect(info)
        try:
            paths = read_data_paths(client)
            current = parse_keyspace(client.info("keyspace"))
        finally:
            client.close()
    swap = FileSwap(paths, bset.backup_id)
    result: dict[str, Any] = {
        "changed": True,
        "backup_id": bset.backup_id,
        "path": bset.location,
        "data_file": swap.data_file,
        "previous_file": swap.previous_file if os.path.exists(swap.data_file) else None,
        "aof": paths.appendonly,
        "aof_path": swap.aof_path,
        "previous_aof": swap.previous_aof if swap.aof_path and os.path.lexists(swap.aof_path) else None,
        "dbsize_expected": total_keys(expected),
        "verified_files": verified,
    }
    if check_mode:
        planned = [
            " ".join(control_argv(params, "stop")),
            f"rename {swap.data_file} to {swap.previous_file}",
            f"install {rdb} as {swap.data_file}",
        ]
        if swap.aof_path:
            planned += [f"rename {swap.aof_path} to {swap.previous_aof}", f"install {rdb} as the AOF base"]
        planned += [" ".join(control_argv(params, "start")), "wait for loading:0", "compare key counts"]
        result.update(
            dbsize=total_keys(current),
            keyspace=expected,
            commands=[" ".join(control_argv(params, a)) for a in ("stop", "start")],
            steps=steps.items + [{"step": s} for s in planned],
        )
        return result

    with steps.step("stop the server"):
        stop_server(params, info, commands)
    try:
        with steps.step("move the current data aside and put the RDB in place"):
            swap.apply(rdb)
        with steps.step("start the server and wait for loading:0"):
            reply = start_server(params, info, commands)
        found = parse_keyspace(reply)
        problems = compare_keyspace(expected, found)
        if problems and exact:
            raise RedisError("key counts do not match the manifest: " + "; ".join(problems[:5]))
        if problems:
            warn(
                "key counts differ from the manifest, which the snapshot marked as not exact "
                "(the server was written to while it was taken): " + "; ".join(problems[:5])
            )
    except BaseException as exc:
        cause = str(exc) or type(exc).__name__
        back = roll_back(params, info, swap, commands)
        raise RedisError(f"{cause}; {back}") from None
    result.update(
        previous_file=swap.kept_file,
        previous_aof=swap.kept_aof,
        dbsize=total_keys(found),
        keyspace=found,
        commands=commands,
        steps=steps.items,
    )
    return result


def roll_back(params: dict[str, Any], info: ConnInfo, swap: FileSwap, commands: list[str]) -> str:
    """Put the previous files back and start the server; a sentence saying how that went."""
    try:
        if port_open(info.host, info.port):
            stop_server(params, info, commands)
        swap.undo()
        start_server(params, info, commands)
    except (RedisError, OSError) as exc:
        kept = ", ".join(k for _o, k in swap.moved) or "none"
        return (
            f"putting the previous data back failed too ({one_line(exc, info.password)}); "
            f"the previous files are kept as: {kept}"
        )
    return "the previous data is back in place and the server is running"


def main() -> None:
    argument_spec = redis_argument_spec()
    argument_spec.update(
        path=dict(type="path"),
        backup_root=dict(type="path"),
        backup_id=dict(type="str", default="latest"),
        source=dict(type="str"),
        service=dict(type="str"),
        stop_command=dict(type="list", elements="str"),
        start_command=dict(type="list", elements="str"),
        timeout=dict(type="int", default=300),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[("path", "backup_root"), ("service", "stop_command"), ("service", "start_command")],
        required_one_of=[("path", "backup_root"), ("service", "stop_command")],
        required_together=[("stop_command", "start_command")],
    )
    if not HAS_REDIS:
        module.fail_json(msg=missing_required_lib("redis"), exception=REDIS_IMPORT_ERROR)
    p = module.params
    if p["timeout"] < 1:
        module.fail_json(msg=f"timeout must be a positive number of seconds, got {p['timeout']}")
    for name in ("stop_command", "start_command"):
        if p[name] is not None and not [a for a in p[name] if a]:
            module.fail_json(msg=f"{name} must be a non-empty list (argv)")
    where = f"{p['login_host']}:{p['login_port']}"
    what = p["path"] or f"backup {p['backup_id']} under {p['backup_root']}"
    started = time.monotonic()
    info = None
    try:
        info = conn_info(p)
        with terminate_on_signals():
            result = run(p, info, p["source"] or info.where, module.check_mode, module.warn)
    except (RedisError, BackupSetError) as exc:
        module.fail_json(msg=f"cannot restore Redis at {where} from {what}: {exc}", duration_s=_since(started))
    except CLIENT_ERRORS as exc:
        cause = describe(exc, info) if info else str(exc)
        module.fail_json(msg=f"cannot restore Redis at {where} from {what}: {cause}", duration_s=_since(started))
    except OSError as exc:
        module.fail_json(msg=f"cannot restore Redis at {where} from {what}: {exc.strerror or exc}")
    except Interrupted as exc:
        module.fail_json(msg=f"restore of Redis at {where} {exc}")
    result["duration_s"] = _since(started)
    module.exit_json(**result)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


if __name__ == "__main__":
    main()
