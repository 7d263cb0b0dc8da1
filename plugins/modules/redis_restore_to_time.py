#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: redis_restore_to_time
short_description: Restore a Redis 7 server to the data it held at a given second, from an AOF archive
version_added: 0.1.0
description:
  - Rebuilds the AOF of the Redis server on this host as it was at the end of second O(target_time), from
    the archive written by M(runbook.stack.redis_aof_archive), and puts it in place. Every database of
    the server is replaced.
  - "Choice of files: the newest archived generation whose base time (the RDB C(ctime) of the base, or
    the first C(#TS) of an AOF base) is at or before O(target_time), and its incr files whose first
    C(#TS) is at or before it (commands before a file's first C(#TS) count as of the second of the
    C(#TS) before them, the base's time for the first file; Redis writes one only when the second
    changed). They are copied (from S3 downloaded, part by part) with the server's
    C(appendfilename) and a manifest into a staging directory beside the live C(appendonlydir), each
    checked against the SHA-256 and size in the archive index, and C(redis-check-aof --truncate-to-timestamp
    <target_time>) cuts the last incr file after the last write of that second. C(redis-check-aof) on the
    result must then report every file valid."
  - The archive can be local or on S3 (O(archive_root=s3://bucket/prefix), with the S3 connection options);
    the server's data directory is not needed for the archive, so a server whose data directory was lost
    is restored from S3 alone. The server must be running when the module starts (its data may be
    empty), or be down with O(data_dir) set; a O(data_dir) that no longer exists is created (0700, owned
    by the module's user).
  - "Times the archive does not hold are refused before anything is changed: a time before the oldest
    archived base (C(redis-check-aof) would silently keep everything of a newer base), a time after the
    newest second whose writes were all archived (the writes between it and the target were not
    archived: run M(runbook.stack.redis_aof_archive) first, or restore to that newest second), and a
    time inside a gap that an AOF rewrite left between two archive runs. The message gives the range
    held. M(runbook.stack.redis_aof_archive_info) lists it beforehand."
  - Only when the staging copy checked out does the module stop the server (O(service) or
    O(stop_command), as M(runbook.stack.redis_restore) does), rename the live AOF directory to
    C(<appenddirname>.pre-restore-<UTC stamp>) (kept; never removed by the module), rename the staging
    directory into its place, start the server and wait until it answers and has finished loading. Any
    failure after the stop puts the previous AOF directory back and starts the server again with the same
    start command; the message says so. The server's process is never looked at (nor started another way).
  - With O(rewrite_after=true) (the default) the module then runs C(BGREWRITEAOF), so the server goes on
    in a new AOF generation and later archive runs keep the restored timeline apart from the archived
    one.
  - The server must be running, with C(appendonly yes) (otherwise it would not load the AOF). The module
    must run on the Redis host, as a user that may write the data directory and run the stop and start
    commands. When Redis runs in a container on that host, O(host_data_dir) names the host directory
    mounted at its data directory; a data directory the server reports that does not exist on this host
    fails the module before anything is changed, pointing to O(host_data_dir).
author:
  - runbook.stack maintainers (@runbook-stack)
extends_documentation_fragment:
  - runbook.stack.redis
  - runbook.stack.s3
  - runbook.stack._attributes
  - runbook.stack._attributes.operation
  - runbook.stack._attributes.actiongroup_redis_s3
attributes:
  check_mode:
    details:
      - Checks the archive (range, SHA-256), assembles the AOF for O(target_time) in a temporary directory
        outside the data directory and runs C(redis-check-aof) on it, then removes it; returns the files
        that would be used. The server is neither stopped nor changed.
  idempotent:
    details: Every real run stops the server and loads the rebuilt AOF, so C(changed) is always true.
options:
  archive_root:
    description:
      - The O(runbook.stack.redis_aof_archive#module:dest) of the archive runs, a directory or V(s3://bucket/prefix).
      - The S3 connection options are only used for an V(s3://) root, and boto3 is only needed for it.
    type: path
    required: true
  source:
    description:
      - Name of the archived server. Defaults to C(<login_host>:<login_port>), the default of the archive module.
    type: str
  target_time:
    description:
      - The second to restore to, as unix seconds (V(1796507550)) or ISO 8601 (V(2026-12-05T21:52:30Z);
        without a zone, UTC). Every write of that second is kept; fractions are cut.
      - V(latest) is the newest second whose writes are all in the archive.
    type: str
    required: true
  service:
    description:
      - systemd unit of the Redis server, stopped and started with C(systemctl).
      - Mutually exclusive with O(stop_command) and O(start_command); one of the two ways is required.
    type: str
  stop_command:
    description:
      - Command (argv list, no shell) that stops the server, for example V([redis-cli, -p, "6379", shutdown]).
        It runs with E(REDISCLI_AUTH) set to O(login_password). Requires O(start_command).
    type: list
    elements: str
  start_command:
    description:
      - Command (argv list, no shell) that starts the server and returns. Requires O(stop_command).
    type: list
    elements: str
  validate_certs:
    description:
      - Verify the TLS certificate of the Redis server (when O(tls=true)) and of the S3 endpoint (V(https)).
      - Shared by both connections; set it on the task when they need different values.
    type: bool
    default: true
  connect_timeout:
    description:
      - Seconds to wait for the TCP (and TLS) connection to the Redis server, and to the S3 endpoint.
    type: float
    default: 5
  redis_check_aof:
    description:
      - The C(redis-check-aof) program (a name looked up on E(PATH), or a path). It must be of the same
        Redis version as the server.
    type: str
    default: redis-check-aof
  rewrite_after:
    description:
      - Run C(BGREWRITEAOF) after the restored server has loaded (see the description).
    type: bool
    default: true
  data_dir:
    description:
      - The server's data directory (C(dir)) on this host, used only when the server is down (killed, its
        data lost). The restore then puts the AOF directory there and starts the server. A running
        server's own C(CONFIG GET dir) (mapped to O(host_data_dir)) is always used instead.
      - With O(host_data_dir) it must be that directory (O(host_data_dir) itself, which is then enough),
        whether the server is down or not; another one (the container's path, say) is refused.
      - Without it (or O(host_data_dir)), a server that is down is refused and nothing is changed.
    type: path
  host_data_dir:
    description:
      - The host directory mounted at the server's data directory (C(CONFIG GET dir)) when Redis runs in a
        container, for example V(/srv/shop/redis-data) for a Compose volume C(./redis-data:/data) of the
        project in C(/srv/shop). The module writes there what it would write in the server's data
        directory (the staging copy C(.<appenddirname>.pitr-*), the restored C(<appenddirname>) and the
        kept C(<appenddirname>.pre-restore-<stamp>)) instead of at the path the server reports, which is the
        container's (V(/data)). RV(aof_path) and RV(previous_aof) are in this directory.
      - It must be an existing directory. When the server runs, it must hold the server's AOF (its
        C(<appenddirname>/<appendfilename>.manifest)), or the module fails before anything is changed.
        When the server is down, it is the data directory to restore into (see O(data_dir)).
      - Not needed when the server runs on the host itself, or in a container whose data directory is
        mounted at the same path on the host.
    type: path
    version_added: 0.2.0
  appenddirname:
    description: The server's C(appenddirname), used with O(data_dir) when the server is down.
    type: str
    default: appendonlydir
  appendfilename:
    description: The server's C(appendfilename), used with O(data_dir) when the server is down.
    type: str
    default: appendonly.aof
  timeout:
    description:
      - Seconds to wait for each of the stop and start commands, the port to close, the load, the rewrite
        and each C(redis-check-aof) run.
    type: int
    default: 300
notes:
  - O(db) is not used; a restore always replaces every database of the server.
  - O(validate_certs) and O(connect_timeout) belong to both the Redis and the S3 connection (the module is
    in both action groups, and with C(module_defaults) of both groups the group listed last sets them).
  - A restore killed with SIGKILL while the server is stopped can leave it stopped; the previous AOF
    directory is then kept as C(<appenddirname>.pre-restore-<stamp>) and the staging copy as
    C(.<appenddirname>.pitr-*) in the data directory. Unlike M(runbook.stack.redis_restore), there is no
    journal to finish such a run.
  - With Redis in a container (Docker Compose, say), run the module on the Docker host with O(host_data_dir)
    set to the host side of the volume mounted at the server's data directory, and stop and start the
    container with O(stop_command) and O(start_command). The container's user must be able to read what
    the module writes there; run as root, the module gives the restored files the owner of the AOF directory
    it replaces (or of O(host_data_dir)).
seealso:
  - module: runbook.stack.redis_aof_archive
  - module: runbook.stack.redis_aof_archive_info
  - module: runbook.stack.redis_restore
requirements:
  - redis-check-aof (Debian package redis-tools or redis-server) of the server's version
"""

EXAMPLES = r"""
- name: Show what a restore to 02:14:59 UTC would use, without stopping the server
  runbook.stack.redis_restore_to_time:
    login_password: "{{ vault_redis_password }}"
    archive_root: /mnt/backup/runbook
    target_time: "2026-12-05T02:14:59Z"
    service: redis-server
  check_mode: true

- name: Restore from the S3 archive after the data directory was lost
  runbook.stack.redis_restore_to_time:
    login_password: "{{ vault_redis_password }}"
    archive_root: s3://redis-pitr/prod
    endpoint_url: https://s3.internal.example.com
    access_key: "{{ vault_backup_access_key }}"
    secret_key: "{{ vault_backup_secret_key }}"
    target_time: latest
    service: redis-server

# docker-compose.yml in /srv/shop: the redis service has "volumes: [./redis-data:/data]" and
# "ports: [127.0.0.1:6379:6379]"; the module runs on the Docker host
- name: Restore Redis running in a Compose project to 02:14:59 UTC
  runbook.stack.redis_restore_to_time:
    login_password: "{{ vault_redis_password }}"
    archive_root: /mnt/backup/runbook
    source: "127.0.0.1:6379"
    target_time: "2026-12-05T02:14:59Z"
    host_data_dir: /srv/shop/redis-data
    stop_command: [docker, compose, -f, /srv/shop/docker-compose.yml, stop, redis]
    start_command: [docker, compose, -f, /srv/shop/docker-compose.yml, start, redis]

- name: Restore the local Redis to the second before a bad deploy
  runbook.stack.redis_restore_to_time:
    login_password: "{{ vault_redis_password }}"
    archive_root: /mnt/backup/runbook
    source: "127.0.0.1:6379"
    target_time: "{{ deploy_started_epoch | int - 1 }}"
    service: redis-server
"""

RETURN = r"""
target_time:
  description: The second restored to (unix seconds).
  returned: always
  type: int
  sample: 1796507550
target_time_utc:
  description: RV(target_time) in UTC.
  returned: always
  type: str
  sample: "2026-12-05T21:52:30Z"
held:
  description: The range the archive holds (see M(runbook.stack.redis_aof_archive_info)).
  returned: always
  type: dict
generation:
  description: Id of the archived generation used.
  returned: always
  type: str
  sample: 20261205T215230Z-seq2-6f1c2a9b
files:
  description: The AOF files of the restored (in check mode, of the assembled) manifest, in order.
  returned: always
  type: list
  elements: str
  sample: [appendonly.aof.2.base.rdb, appendonly.aof.2.incr.aof]
aof_path:
  description: The server's AOF directory (with O(host_data_dir), in that directory).
  returned: always
  type: str
  sample: /var/lib/redis/appendonlydir
previous_aof:
  description: Where the previous AOF directory was kept; null in check mode and when there was none.
  returned: always
  type: str
  sample: /var/lib/redis/appendonlydir.pre-restore-20261205T221500Z
dbsize:
  description: Keys in all databases after the restore (in check mode, now).
  returned: always
  type: int
  sample: 1200
keyspace:
  description: C(INFO keyspace) per database after the restore (in check mode, now).
  returned: always
  type: dict
  sample: {"db0": {"keys": 1200, "expires": 0, "avg_ttl": 0}}
rewritten:
  description: Whether BGREWRITEAOF ran after the restore.
  returned: always
  type: bool
commands:
  description: The commands that ran (or, in check mode, would run), secrets stripped.
  returned: always
  type: list
  elements: str
  sample: ["redis-check-aof --truncate-to-timestamp 1796507550 .../appendonly.aof.manifest", "systemctl stop redis-server"]
steps:
  description: Steps taken (or planned), in order, with their durations in seconds.
  returned: always
  type: list
  elements: dict
duration_s:
  description: Wall-clock seconds the module spent.
  returned: always
  type: float
  sample: 2.1
"""

import os
import shutil
import subprocess
import tempfile
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils import _s3
from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    BackupSetError,
    format_backup_id,
    keep_name,
    remove_tree,
    utcnow,
)
from ansible_collections.runbook.stack.plugins.module_utils._common.files import fsync_dir
from ansible_collections.runbook.stack.plugins.module_utils._common.process import Interrupted, terminate_on_signals
from ansible_collections.runbook.stack.plugins.module_utils._common.steps import Steps
from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line
from ansible_collections.runbook.stack.plugins.module_utils._redis import (
    CLIENT_ERRORS,
    HAS_REDIS,
    REDIS_IMPORT_ERROR,
    ConnInfo,
    RedisError,
    conn_info,
    connect,
    describe,
    parse_keyspace,
    port_open,
    redis_argument_spec,
    total_keys,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis.connection import poll
from ansible_collections.runbook.stack.plugins.module_utils._redis.control import (
    control_argv,
    ready,
    start_server,
    stop_server,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis.persistence import (
    dir_on_host,
    mapping_hint,
    named_data_dir,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof import (
    aof_settings,
    held_range,
    parse_time,
    utc,
    wait_rewrite_idle,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof_archive_read import assemble, select
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof_archive_store import (
    is_s3,
    open_store,
)


def check_aof(tool: str, args: list[str], timeout: int, commands: list[str]) -> str:
    """Run redis-check-aof; its output. RedisError unless it exits 0."""
    argv = [tool, *args]
    commands.append(" ".join(argv))
    try:
        proc = subprocess.run(  # pylint: disable=ansible-bad-function
            argv, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RedisError(f"cannot run {tool}: {getattr(exc, 'strerror', None) or exc}") from None
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RedisError(f"{' '.join(argv)} failed (rc {proc.returncode}): {one_line(out[-600:])}")
    return out


def build(tool: str, store: Any, sel: Any, staging: str, appendfilename: str, timeout: int, commands: list[str]):
    """Fetch the AOF files of the selection into ``staging`` (each checked against the archive index),
    cut them at the target and check them."""
    manifest, files = assemble(store, sel, staging, appendfilename)
    if sel.incr:
        check_aof(tool, ["--truncate-to-timestamp", str(sel.target), manifest], timeout, commands)
    out = check_aof(tool, [manifest], timeout, commands)
    if "All AOF files and manifest are valid" not in out:
        raise RedisError(f"{tool} did not report the assembled AOF valid: {one_line(out[-600:])}")
    return files


def server_state(params: dict[str, Any], info: ConnInfo, warnings: list[str]) -> tuple[dict[str, str], dict[str, Any]]:
    """The AOF settings and keyspace of the running server, its ``dir`` as this host sees it (mapped to
    host_data_dir: :func:`dir_on_host`, where its AOF manifest must then be); of a server that is down (killed, its data lost), the settings
    from data_dir (or host_data_dir), appenddirname and appendfilename. data_dir and host_data_dir,
    both set, must be the same directory."""
    host_dir = params["host_data_dir"]
    hint = ": data_dir is the data directory on this host, host_data_dir itself (or leave data_dir out)"
    if not port_open(info.host, info.port):
        data_dir = named_data_dir(params["data_dir"], host_dir, hint=hint)
        if not data_dir:
            raise RedisError(
                f"Redis at {info.where} is down and data_dir is not set: set data_dir (host_data_dir when Redis "
                "runs in a container; and appenddirname and appendfilename when they are not the defaults) to "
                "restore into a server that is down; nothing was changed"
            )
        warnings.append(
            f"Redis at {info.where} is down: restoring into {data_dir} from the module's options "
            f"(appenddirname {params['appenddirname']}, appendfilename {params['appendfilename']}) and starting it"
        )
        settings = {
            "appendonly": "yes",
            "dir": data_dir,
            "appenddirname": params["appenddirname"],
            "appendfilename": params["appendfilename"],
        }
        return settings, {}
    client = connect(info)
    try:
        settings, keyspace = aof_settings(client), parse_keyspace(client.info("keyspace"))
    finally:
        client.close()
    server_dir = settings["dir"]
    here = settings["dir"] = dir_on_host(server_dir, host_dir)
    named_data_dir(params["data_dir"], host_dir, hint=hint)
    manifest = os.path.join(here, settings["appenddirname"], f"{settings['appendfilename']}.manifest")
    if host_dir and settings.get("appendonly") == "yes" and not os.path.isfile(manifest):
        # a server with appendonly yes always has its manifest: this is not where it writes
        raise RedisError(f"{manifest} does not exist: {mapping_hint(server_dir, here)}; nothing was changed")
    return settings, keyspace


def run(params: dict[str, Any], info: ConnInfo, source: str, s3: Any, check_mode: bool) -> dict[str, Any]:
    steps, commands = Steps(), []
    tool = shutil.which(params["redis_check_aof"])
    if not tool:
        raise RedisError(f"redis_check_aof {params['redis_check_aof']} was not found (install redis-tools)")
    store = open_store(params["archive_root"], source, s3)
    if not store.exists():
        raise RedisError(f"there is no AOF archive of {source} in {store.path}")
    with steps.step("choose the archived files"):
        index = store.load_index()
        held = held_range(index)
        wanted = params["target_time"].strip()
        target = held["newest"] if wanted == "latest" else parse_time(wanted)
        sel = select(index, target or 0, store.path)
    warnings: list[str] = []
    with steps.step("read the server's settings"):
        settings, keyspace = server_state(params, info, warnings)
    if settings.get("appendonly") != "yes":
        raise RedisError("appendonly is no: the server would not load the restored AOF; nothing was changed")
    aof_path = os.path.join(settings["dir"], settings["appenddirname"])
    result: dict[str, Any] = {
        "changed": True,
        "target_time": target,
        "target_time_utc": utc(target),
        "held": held,
        "generation": sel.generation["id"],
        "aof_path": aof_path,
        "previous_aof": None,
        "rewritten": False,
    }
    if warnings:
        result["warnings"] = warnings
    where = tempfile.gettempdir() if check_mode else settings["dir"]
    if not check_mode and not os.path.isdir(where):  # the data directory was lost: the restore brings it back
        os.makedirs(where, mode=0o700)
    staging = tempfile.mkdtemp(prefix=f".{settings['appenddirname']}.pitr-", dir=where)
    try:
        with steps.step("fetch the archived files (sha256 checked), truncate them to the target and check them"):
            files = build(tool, store, sel, staging, settings["appendfilename"], params["timeout"], commands)
    except BaseException as exc:
        remove_tree(staging)
        if isinstance(exc, RedisError):
            raise RedisError(f"{exc}; nothing was changed") from None
        raise
    result["files"] = files
    if check_mode:
        remove_tree(staging)
        planned = [" ".join(control_argv(params, "stop")), f"rename {aof_path} to {aof_path}.pre-restore-<stamp>"]
        planned += [f"install the assembled AOF as {aof_path}", " ".join(control_argv(params, "start"))]
        result.update(
            dbsize=total_keys(keyspace),
            keyspace=keyspace,
            rewritten=params["rewrite_after"],
            commands=commands + [" ".join(control_argv(params, a)) for a in ("stop", "start")],
            steps=steps.items + [{"step": s} for s in planned],
        )
        return result
    try:
        swap(params, info, settings, staging, aof_path, steps, commands, result)
    finally:
        if os.path.lexists(staging):
            remove_tree(staging)
    if params["rewrite_after"]:
        with steps.step("BGREWRITEAOF (a new AOF generation)"):
            rewrite(params, info, result)
        result["rewritten"] = True
    result.update(commands=commands, steps=steps.items)
    return result


def rewrite(params: dict[str, Any], info: ConnInfo, result: dict[str, Any]) -> None:
    """BGREWRITEAOF on the restored server, which loaded the AOF moments ago. A server that stopped
    answering since gets the timeout to answer again; when it does not, the error says that the
    restore itself is done."""
    if poll(lambda: ready(info), params["timeout"], interval=0.2) is None:
        raise RedisError(
            f"the server at {info.where} loaded the restored AOF ({result['dbsize']} keys) but stopped answering "
            f"before the AOF rewrite (see its log): the restore is in place in {result['aof_path']} "
            f"(the previous AOF kept as {result['previous_aof'] or 'none'}); start the server and run BGREWRITEAOF"
        )
    client = connect(info)
    try:
        client.bgrewriteaof()
        wait_rewrite_idle(client, params["timeout"])
    finally:
        client.close()


def swap(
    params: dict[str, Any],
    info: ConnInfo,
    settings: dict[str, str],
    staging: str,
    aof_path: str,
    steps: Steps,
    commands: list[str],
    result: dict[str, Any],
) -> None:
    """Stop, put the assembled AOF in place (the live one kept), start; on any failure put it back."""
    stamp = format_backup_id(utcnow())
    previous, last = keep_name(lambda more: f"{aof_path}.pre-restore-{stamp}{more}", os.path.lexists, ".", 99)
    if last is not None:
        raise RedisError(f"{previous} to {last} all exist; nothing was changed")
    live = os.stat(aof_path) if os.path.lexists(aof_path) else None
    os.chmod(staging, live.st_mode & 0o7777 if live else 0o700)
    # the server's user must own what it loads and appends to: the live AOF directory's owner, or, when
    # it is gone (a lost data directory), the data directory's
    owner = live or os.stat(settings["dir"])
    if os.geteuid() == 0:
        for name in [*os.listdir(staging), "."]:
            os.chown(os.path.join(staging, name), owner.st_uid, owner.st_gid)
    try:
        with steps.step("stop the server"):
            stop_server(params, info, commands)
    except BaseException as exc:
        raise RedisError(f"{exc}; nothing was changed") from None
    moved = False
    try:
        with steps.step("move the AOF directory aside and the assembled one in"):
            if live:
                os.rename(aof_path, previous)
                moved = True
            os.rename(staging, aof_path)
            fsync_dir(settings["dir"])
        with steps.step("start the server and wait for loading:0"):
            reply = start_server(params, info, commands)
    except BaseException as exc:
        cause = str(exc) or type(exc).__name__
        raise RedisError(
            f"{cause}; {roll_back(params, info, aof_path, previous if moved else None, commands)}"
        ) from None
    found = parse_keyspace(reply)
    result.update(previous_aof=previous if moved else None, dbsize=total_keys(found), keyspace=found)


def roll_back(params: dict[str, Any], info: ConnInfo, aof_path: str, previous: str | None, commands: list[str]) -> str:
    """Stop the server if it runs, put the previous AOF directory back (``previous`` None: there was
    none) and start it; a sentence saying how that went."""
    try:
        if port_open(info.host, info.port):
            stop_server(params, info, commands)
        if os.path.lexists(aof_path):  # the assembled copy (the archive still holds its files)
            remove_tree(aof_path)
        if previous:
            os.rename(previous, aof_path)
        fsync_dir(os.path.dirname(aof_path))
    except (RedisError, OSError) as exc:
        return (
            f"putting the previous AOF back failed too ({one_line(exc, info.password)}); it is kept as {previous}; "
            f"the server at {info.where} is {'running' if port_open(info.host, info.port) else 'stopped'}"
        )
    try:
        start_server(params, info, commands)
    except RedisError as exc:
        return f"the previous AOF is back in place, but the server did not start again: {one_line(exc, info.password)}"
    return "the previous AOF is back in place and the server is running"


def main() -> None:
    argument_spec = redis_argument_spec() | _s3.s3_argument_spec()  # validate_certs, connect_timeout: shared
    argument_spec.update(
        archive_root=dict(type="path", required=True),
        source=dict(type="str"),
        target_time=dict(type="str", required=True),
        service=dict(type="str"),
        stop_command=dict(type="list", elements="str"),
        start_command=dict(type="list", elements="str"),
        redis_check_aof=dict(type="str", default="redis-check-aof"),
        rewrite_after=dict(type="bool", default=True),
        timeout=dict(type="int", default=300),
        data_dir=dict(type="path"),
        host_data_dir=dict(type="path"),
        appenddirname=dict(type="str", default="appendonlydir"),
        appendfilename=dict(type="str", default="appendonly.aof"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[("service", "stop_command"), ("service", "start_command")],
        required_one_of=[("service", "stop_command")],
        required_together=[("stop_command", "start_command")],
    )
    if not HAS_REDIS:
        module.fail_json(msg=missing_required_lib("redis"), exception=REDIS_IMPORT_ERROR)
    p = module.params
    if is_s3(p["archive_root"]) and not _s3.HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=_s3.BOTO3_IMPORT_ERROR)
    if p["timeout"] < 1:
        module.fail_json(msg=f"timeout must be a positive number of seconds, got {p['timeout']}")
    for name in ("stop_command", "start_command"):
        if p[name] is not None and not [a for a in p[name] if a]:
            module.fail_json(msg=f"{name} must be a non-empty list (argv)")
    where = f"{p['login_host']}:{p['login_port']}"
    what = f"{p['target_time']} from the AOF archive in {p['archive_root']}"
    started = time.monotonic()
    info = None
    try:
        info = conn_info(p)
        s3 = _s3.conn_info(p) if is_s3(p["archive_root"]) else None
        with terminate_on_signals():
            result = run(p, info, p["source"] or info.where, s3, module.check_mode)
    except (RedisError, BackupSetError, _s3.S3Error) as exc:
        module.fail_json(msg=f"cannot restore Redis at {where} to {what}: {exc}", duration_s=_since(started))
    except CLIENT_ERRORS as exc:
        cause = describe(exc, info) if info else str(exc)
        module.fail_json(msg=f"cannot restore Redis at {where} to {what}: {cause}", duration_s=_since(started))
    except OSError as exc:
        module.fail_json(
            msg=f"cannot restore Redis at {where} to {what}: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename else ""),
            duration_s=_since(started),
        )
    except Interrupted as exc:
        module.fail_json(msg=f"restore of Redis at {where} to {p['target_time']} {exc}")
    result["duration_s"] = _since(started)
    module.exit_json(**result)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


if __name__ == "__main__":
    main()
