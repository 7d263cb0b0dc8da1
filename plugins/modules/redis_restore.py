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
    starts the server and fails with a message that says what happened, whether the previous data is back
    and whether the server runs. When the start command fails again in that roll-back, the server is
    started the way it ran before the restore (its C(executable) and C(config_file) from C(INFO server),
    with C(--daemonize yes), as the user it ran as), so that a broken start command does not leave it
    stopped; with O(service) or O(host_data_dir), or when it was not started from a config file, it stays
    stopped and the message says so.
  - A stop command that fails (it cannot run, exit status 127, or it exits non-zero) while the server
    still answers fails the module within a few seconds, with the command's exit status and output, and
    nothing changed; it does not wait for O(timeout).
  - "Interrupted restores: before the stop, the module writes a journal
    C(<dir>/.runbook-redis-restore-<login_port>.json) (the data paths, the names of the kept files, how
    the server ran) and removes it once the restore or its roll-back is done (a journal of a run that is
    still alive makes another run refuse). A restore killed with
    SIGKILL (or a host that crashed) can leave the server stopped, its RDB file already renamed to
    C(<dbfilename>.pre-restore-<backup_id>) and a partial temporary copy beside it. A rerun of the same set
    with O(data_dir) that finds the server down and this journal finishes that restore: it removes the
    partial files and what the interrupted run had installed, installs the verified RDB again, starts the
    server and compares the key counts (RV(resumed) is true, and a warning says that the server was down).
    The file the interrupted run kept stays where it is and is returned as RV(previous_file). The journal is
    found through a note in the user's state directory, or through O(data_dir)."
  - When the server is down and there is no such journal, the module fails with a message that says that
    Redis at C(host:port) is down and how to go on; it changes nothing.
  - The module must run on the Redis host, as a user that may write the Redis data directory and run the
    stop and start commands. O(login_host) and O(login_port) must reach that server. When Redis runs in a
    container on that host, O(host_data_dir) names the host directory mounted at its data directory.
author:
  - runbook.stack maintainers (@runbook-stack)
extends_documentation_fragment:
  - runbook.stack.redis
  - runbook.stack._attributes
  - runbook.stack._attributes.operation
  - runbook.stack._attributes.actiongroup_redis
attributes:
  check_mode:
    details:
      - Verifies every checksum and the RDB magic, reads the data paths from the server, and returns the
        files that would be replaced and the expected key counts. The server is neither stopped nor changed.
  idempotent:
    details: Every real run stops the server and loads the set again, so C(changed) is always true.
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
      - Mutually exclusive with O(stop_command) and O(start_command); one of the two ways is required,
        unless O(manage_service=false).
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
  data_dir:
    description:
      - The server's data directory (C(CONFIG GET dir)), where the journal of a restore in progress is kept;
        with O(host_data_dir), that directory on this host (O(host_data_dir) itself, which is then enough).
      - Rarely needed. While a restore runs, the module also notes its data directory in
        C($XDG_STATE_HOME/runbook.stack/redis-restore-<login_host>-<login_port>.json) (default
        C(~/.local/state)) of the user it runs as, so a rerun as the same user finds an interrupted
        restore without this option; set it when the rerun runs as another user or that note is lost.
      - When the server answers, the directory it reports (mapped to O(host_data_dir)) is used and must be
        this one.
    type: path
  manage_service:
    description:
      - Whether the module stops and starts the server itself (O(service), or O(stop_command) and
        O(start_command)), inside one run that rolls back on any failure.
      - V(false) is for a caller that stops and starts the server its own way, as the
        C(runbook.stack.dr_restore) role does through C(runbook.stack.component) (its C(stop) and
        C(start) entry points). The restore then takes three runs, chosen with O(step), and the caller rolls
        back with O(step=roll_back) when one fails. O(service), O(stop_command) and O(start_command) must
        not be set. The return values a step has nothing to say about are null.
    type: bool
    default: true
  step:
    description:
      - With O(manage_service=false), the part of the restore this run does.
      - V(install), with the server stopped by the caller - verifies the set, writes the journal, moves the
        current data aside and puts the snapshot in place (removing the partial files of an interrupted
        earlier run, or taking over the interrupted restore of the same set). In check mode it may run
        while the server is up, reads its data paths and returns them as RV(data_paths) for the real run.
        A failure puts the previous data back before the module fails; the server stays stopped.
      - V(verify), after the caller started the server - waits for C(loading:0), compares the key counts
        with the manifest as the one-run restore does, and on success ends the restore (removes the journal).
      - V(roll_back), with the server stopped by the caller - puts back the data the restore in progress
        set aside (from its journal), removes the restored copies and partial files, and ends it. A file the
        restore never moved aside is left as it is. Without a restore in progress (an install that failed
        has already put everything back) it changes nothing and warns.
    type: str
    choices: [install, verify, roll_back]
  data_paths:
    description:
      - With O(step=install) on a stopped server, where it keeps its data - the RV(data_paths) that a
        check-mode run of O(step=install) returned while the server ran (C(dir), C(dbfilename),
        C(appendonly), C(appendfilename), C(appenddirname)).
      - Not needed to finish an interrupted restore (its journal has them).
      - With O(host_data_dir), the RV(data_paths) of a check-mode run with the same O(host_data_dir) (their
        C(dir) is that directory); another C(dir) is refused.
    type: dict
  host_data_dir:
    description:
      - The host directory mounted at the server's data directory (C(CONFIG GET dir)) when Redis runs in a
        container, for example V(/srv/shop/redis-data) for a Compose volume C(./redis-data:/data) of the
        project in C(/srv/shop). The module reads and writes the data files there (the RDB file, the AOF,
        the kept C(.pre-restore-<backup_id>) copies and the journal of a restore in progress) instead of at
        the path the server reports, which is the container's (V(/data)). RV(data_file), RV(previous_file),
        RV(data_paths) and the other paths it returns are in this directory.
      - It must be an existing directory. Set it in every run of a restore (each O(step), a rerun that
        finishes an interrupted restore), since it also tells where the journal is.
      - The server's process is then not looked at (its process id is the container's), so when the start
        command fails in a roll-back, the server is not started another way.
      - Not needed when the server runs on the host itself, or in a container whose data directory is
        mounted at the same path on the host.
    type: path
    version_added: 0.2.0
notes:
  - O(db) is not used; a restore always replaces every database of the server.
  - Stop the server with a command that saves (C(SHUTDOWN SAVE); C(SHUTDOWN) and C(systemctl stop) save
    only when save points are configured), so that the kept C(.pre-restore-<backup_id>) file holds the
    last state of the server and a roll-back brings exactly that back. Writes that were never saved
    are lost with any stop.
  - The kept previous files are never removed or overwritten by this module. When an earlier restore
    of the same set already keeps C(<file>.pre-restore-<backup_id>), this one keeps the current file as
    C(<file>.pre-restore-<backup_id>.2) (then C(.3), ...); RV(previous_file) names the one written.
  - With Redis in a container (Docker Compose, say), run the module on the Docker host with O(host_data_dir)
    set to the host side of the volume mounted at the server's data directory, and stop and start the
    container (O(stop_command) and O(start_command), or O(manage_service=false) and a caller that does).
    A server directory that does not exist on this host fails the module, pointing to O(host_data_dir).
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

# docker-compose.yml in /srv/shop: the redis service has "volumes: [./redis-data:/data]" and
# "ports: [127.0.0.1:6379:6379]"; the module runs on the Docker host
- name: Restore Redis running in a Compose project
  runbook.stack.redis_restore:
    login_password: "{{ vault_redis_password }}"
    backup_root: /var/backups/runbook
    source: "127.0.0.1:6379"
    host_data_dir: /srv/shop/redis-data
    stop_command: [docker, compose, -f, /srv/shop/docker-compose.yml, stop, redis]
    start_command: [docker, compose, -f, /srv/shop/docker-compose.yml, start, redis]

- name: Finish a restore that was killed while Redis was stopped (rerun as another user than the first run)
  runbook.stack.redis_restore:
    backup_root: /var/backups/runbook
    backup_id: 20261122T020000Z
    service: redis-server
    data_dir: /var/lib/redis

- name: The caller stops and starts the server (here through runbook.stack.component); the module restores
  block:
    - name: Verify the set and read the data paths while the server runs
      runbook.stack.redis_restore:
        backup_root: /var/backups/runbook
        manage_service: false
        step: install
      check_mode: true
      register: plan
    - name: Stop Redis
      ansible.builtin.include_role:
        name: runbook.stack.component
        tasks_from: stop
      vars:
        component: "{{ redis_component }}"
    - name: Put the set in place
      runbook.stack.redis_restore:
        backup_root: /var/backups/runbook
        backup_id: "{{ plan.backup_id }}"
        manage_service: false
        step: install
        data_paths: "{{ plan.data_paths }}"
    - name: Start Redis
      ansible.builtin.include_role:
        name: runbook.stack.component
        tasks_from: start
      vars:
        component: "{{ redis_component }}"
    - name: Compare the key counts and end the restore
      runbook.stack.redis_restore:
        backup_root: /var/backups/runbook
        backup_id: "{{ plan.backup_id }}"
        manage_service: false
        step: verify
  rescue:
    - name: Stop Redis again
      ansible.builtin.include_role:
        name: runbook.stack.component
        tasks_from: stop
      vars:
        component: "{{ redis_component }}"
    - name: Put the previous data back
      runbook.stack.redis_restore:
        backup_root: /var/backups/runbook
        backup_id: "{{ plan.backup_id }}"
        manage_service: false
        step: roll_back
        data_paths: "{{ plan.data_paths }}"
    - name: Start Redis with its previous data
      ansible.builtin.include_role:
        name: runbook.stack.component
        tasks_from: start
      vars:
        component: "{{ redis_component }}"

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
resumed:
  description: Whether this run finished an interrupted restore of the same set (the server was down).
  returned: always
  type: bool
removed_leftovers:
  description:
    - Partial temporary files and directories of an interrupted restore found in the data directory,
      which the run removes (in check mode, would remove).
  returned: always
  type: list
  elements: str
  sample: [/var/lib/redis/.dump.rdb.restore-k2j4x9a1]
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
step:
  description: With O(manage_service=false), the step that ran.
  returned: when O(manage_service=false)
  type: str
  sample: install
data_paths:
  description:
    - Where the server keeps its data, to pass to O(data_paths) of the real O(step=install) run.
    - With O(host_data_dir), C(dir) is that directory (the server's data directory as this host sees it).
  returned: when O(step=install)
  type: dict
  sample: {"dir": "/var/lib/redis", "dbfilename": "dump.rdb", "appendonly": true,
           "appendfilename": "appendonly.aof", "appenddirname": "appendonlydir"}
restored_files:
  description: With O(step=roll_back), the kept files and directories that were put back.
  returned: when O(step=roll_back)
  type: list
  elements: str
  sample: [/var/lib/redis/dump.rdb.pre-restore-20261122T020000Z]
duration_s:
  description: Wall-clock seconds the module spent.
  returned: always
  type: float
  sample: 4.7
"""

import os
import time
from dataclasses import asdict
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    BackupSet,
    BackupSetError,
    find_set,
    iso,
    open_set_path,
    open_storage,
    remove_tree,
    utcnow,
)
from ansible_collections.runbook.stack.plugins.module_utils._common.process import Interrupted, terminate_on_signals
from ansible_collections.runbook.stack.plugins.module_utils._common.steps import Steps
from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line
from ansible_collections.runbook.stack.plugins.module_utils._redis import (
    CLIENT_ERRORS,
    HAS_REDIS,
    REDIS_IMPORT_ERROR,
    ConnInfo,
    Journal,
    RedisError,
    check_rdb_magic,
    conn_info,
    describe,
    journal_path,
    parse_keyspace,
    port_open,
    redis_argument_spec,
    restore_leftovers,
    total_keys,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis.connection import poll
from ansible_collections.runbook.stack.plugins.module_utils._redis.control import (
    control_argv,
    ready,
    start_server,
    start_with,
    stop_server,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis.persistence import DataPaths, named_data_dir
from ansible_collections.runbook.stack.plugins.module_utils._redis.restore import (
    FileSwap,
    Server,
    check_key_counts,
    check_not_running,
    drop_journal,
    fallback_start,
    journal_dir,
    manifest_keyspace,
    read_journal,
    read_server,
    write_journal,
)

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


def down_message(params: dict[str, Any], info: ConnInfo, cause: str, found: str) -> str:
    how = f" ({' '.join(control_argv(params, 'start'))})" if params["manage_service"] else ""
    return f"Redis at {info.where} is down ({cause}) and {found}. Start it{how}, check that it answers, and rerun"


def interrupted_restore(params: dict[str, Any], info: ConnInfo, bset: BackupSet, cause: str) -> tuple[Journal, str]:
    """The journal of an interrupted restore of this set into this (stopped) server; RedisError that
    says the server is down when there is none to finish."""
    data_dir = given_data_dir(params) or journal_dir(info)
    if not data_dir:
        raise RedisError(
            down_message(
                params,
                info,
                cause,
                "no restore of it that was interrupted is known here (when one ran as another user, "
                "set data_dir to the server's data directory to finish it)",
            )
        )
    path = journal_path(data_dir, info.port)
    journal = read_journal(path)
    if journal is None:
        raise RedisError(down_message(params, info, cause, f"no interrupted restore of it was found in {data_dir}"))
    check_not_running(journal, path)
    if (journal.backup_id, journal.source) != (bset.backup_id, bset.source_dir):
        raise RedisError(
            f"Redis at {info.where} is down in the middle of a restore of set {journal.backup_id} of "
            f"{journal.source} (journal {path}), not {bset.backup_id} of {bset.source_dir}: rerun with "
            f"backup_id={journal.backup_id} to finish it, or put {journal.previous_file} back as "
            f"{journal.paths.rdb_path}, remove the journal and start the server"
        )
    return journal, path


# ------------------------------------------------------------------------------------------------
# the restore
# ------------------------------------------------------------------------------------------------


def put_in_place(swap: FileSwap, rdb: str, resumed: bool, leftovers: list[str], steps: Steps) -> None:
    """With the server stopped: take over an interrupted restore of the same set (``resumed``) or
    remove the partial files of an earlier one, then move the current data aside and put the RDB in place."""
    if resumed:
        with steps.step("take over the interrupted restore and remove its partial files"):
            swap.adopt()
    elif leftovers:
        with steps.step("remove the partial files of an earlier interrupted restore"):
            for path in leftovers:
                remove_tree(path)
    with steps.step("move the current data aside and put the RDB in place"):
        swap.apply(rdb)


def run(params: dict[str, Any], info: ConnInfo, source: str, check_mode: bool, warn: Any) -> dict[str, Any]:
    steps = Steps()
    commands: list[str] = []
    with steps.step("find backup set"):
        bset = resolve_set(params, source)
    with steps.step("verify checksums and RDB magic"):
        rdb, verified = verify_set(bset)
    facts = bset.manifest["facts"]
    expected = manifest_keyspace(facts)
    exact = bool(facts.get("keyspace_exact", True))

    with steps.step("read data paths from the server"):
        server, down = read_server(info, params["host_data_dir"])
    resumed: Journal | None = None
    if server is None:  # down: only an interrupted restore of this set is finished
        resumed, jpath = interrupted_restore(params, info, bset, down)
        server = Server(resumed.paths, {}, resumed.original_start, resumed.original_user)
        swap = FileSwap(server.paths, bset.backup_id, resumed.previous_file, resumed.previous_aof)
        warn(
            f"Redis at {info.where} is down: finishing the restore of set {bset.backup_id} that was "
            f"interrupted (started {resumed.started_at} by pid {resumed.pid}, journal {jpath})"
        )
    else:
        if params["data_dir"] and os.path.realpath(params["data_dir"]) != os.path.realpath(server.paths.dir):
            reported = "host_data_dir" if params["host_data_dir"] else "the directory the server reports"
            raise RedisError(f"data_dir {params['data_dir']} is not {reported} ({server.paths.dir})")
        jpath = journal_path(server.paths.dir, info.port)
        stale = read_journal(jpath)
        if stale is not None:
            check_not_running(stale, jpath)
        swap = FileSwap(server.paths, bset.backup_id)
    leftovers = [
        os.path.join(server.paths.dir, n) for n in restore_leftovers(server.paths, os.listdir(server.paths.dir))
    ]
    result: dict[str, Any] = {
        "changed": True,
        "backup_id": bset.backup_id,
        "path": bset.location,
        "data_file": swap.data_file,
        "previous_file": swap.previous_file
        if os.path.exists(swap.data_file) or (resumed and os.path.exists(swap.previous_file))
        else None,
        "aof": server.paths.appendonly,
        "aof_path": swap.aof_path,
        "previous_aof": swap.previous_aof
        if swap.aof_path and (os.path.lexists(swap.aof_path) or (resumed and os.path.lexists(swap.previous_aof)))
        else None,
        "dbsize_expected": total_keys(expected),
        "verified_files": verified,
        "resumed": resumed is not None,
        "removed_leftovers": leftovers,
    }
    if check_mode:
        planned = [] if resumed else [" ".join(control_argv(params, "stop"))]
        planned += swap.plan(rdb, leftovers)
        planned += [" ".join(control_argv(params, "start")), "wait for loading:0", "compare key counts"]
        result.update(
            dbsize=total_keys(server.keyspace),
            keyspace=expected,
            commands=[" ".join(control_argv(params, a)) for a in ("stop", "start") if a == "start" or not resumed],
            steps=steps.items + [{"step": s} for s in planned],
        )
        return result

    journal = Journal(
        backup_id=bset.backup_id,
        source=bset.source_dir,
        port=info.port,
        paths=server.paths,
        previous_file=swap.previous_file,
        previous_aof=swap.previous_aof,
        pid=os.getpid(),
        started_at=resumed.started_at if resumed else iso(utcnow()),
        original_start=server.original_start,
        original_user=server.original_user,
    )
    with steps.step("record the restore in progress"):
        jpath = write_journal(journal, info)
    if not resumed:
        try:
            with steps.step("stop the server"):
                stop_server(params, info, commands)
        except BaseException as exc:
            drop_journal(jpath, info)
            raise RedisError(f"{exc}; nothing was changed") from None
    try:
        put_in_place(swap, rdb, resumed is not None, leftovers, steps)
        with steps.step("start the server and wait for loading:0"):
            reply = start_server(params, info, commands)
        found = parse_keyspace(reply)
        check_key_counts(expected, found, exact, warn)
    except BaseException as exc:
        cause = str(exc) or type(exc).__name__
        back = roll_back(params, info, swap, commands, journal, jpath)
        raise RedisError(f"{cause}; {back}") from None
    drop_journal(jpath, info)
    result.update(
        previous_file=swap.kept_file,
        previous_aof=swap.kept_aof,
        dbsize=total_keys(found),
        keyspace=found,
        commands=commands,
        steps=steps.items,
    )
    return result


def roll_back(
    params: dict[str, Any], info: ConnInfo, swap: FileSwap, commands: list[str], journal: Journal, jpath: str
) -> str:
    """Put the previous files back and start the server; a sentence saying how that went and what
    state the data and the server are in."""
    try:
        if port_open(info.host, info.port):
            stop_server(params, info, commands)
        swap.undo()
    except (RedisError, OSError) as exc:
        kept = ", ".join(k for _o, k in swap.moved) or "none"
        state = "running" if port_open(info.host, info.port) else "stopped"
        return (
            f"putting the previous data back failed too ({one_line(exc, info.password)}); "
            f"the previous files are kept as: {kept}; the server at {info.where} is {state}"
        )
    drop_journal(jpath, info)
    try:
        start_server(params, info, commands)
    except RedisError as exc:
        again = one_line(exc, info.password)
        argv, user = fallback_start(
            journal.original_start, journal.original_user, params["service"], bool(params["host_data_dir"])
        )
        if argv is None:
            return (
                f"the previous data is back in place, but the server did not start again: {again}; it was not "
                f"started another way ({user}), so the server at {info.where} is stopped: fix the start command "
                "and start it"
            )
        try:
            start_with(argv, info, params["timeout"], commands, user if isinstance(user, tuple) else None)
        except RedisError as exc2:
            return (
                f"the previous data is back in place, but the server did not start again: {again}; starting it "
                f"as it ran before failed too ({one_line(exc2, info.password)}), so the server at {info.where} "
                "is stopped: fix the start command and start it"
            )
        return (
            f"the previous data is back in place; the server did not start again with the start command "
            f"({again}), so it was started as it ran before the restore ({' '.join(argv)}) and is running"
        )
    return "the previous data is back in place and the server is running"


# ------------------------------------------------------------------------------------------------
# a restore whose caller stops and starts the server (manage_service: false)
# ------------------------------------------------------------------------------------------------


def given_data_dir(params: dict[str, Any]) -> str | None:
    """The data directory (on this host) the caller named: data_paths.dir, else data_dir, else
    host_data_dir, which the other two must then be."""
    paths_dir = (params["data_paths"] or {}).get("dir")
    return named_data_dir(
        paths_dir or params["data_dir"],
        params["host_data_dir"],
        "data_paths.dir" if paths_dir else "data_dir",
        ": pass the data_paths that a check-mode run with the same host_data_dir returned",
    )


def paths_option(params: dict[str, Any]) -> DataPaths | None:
    """DataPaths from the data_paths option (what a check-mode run returned), None when not set."""
    given = params["data_paths"]
    if not given:
        return None
    if not given.get("dir") or not given.get("dbfilename"):
        raise RedisError("data_paths needs dir and dbfilename (pass the data_paths a check-mode run returned)")
    return DataPaths(
        dir=given["dir"],
        dbfilename=given["dbfilename"],
        appendonly=bool(given.get("appendonly")),
        appendfilename=given.get("appendfilename") or "appendonly.aof",
        appenddirname=given.get("appenddirname") or None,
    )


def install(params: dict[str, Any], info: ConnInfo, source: str, check_mode: bool, warn: Any) -> dict[str, Any]:
    """step install: the set verified and put in place while the caller keeps the server stopped.
    The journal stays until step verify (or roll_back) ends the restore."""
    steps = Steps()
    with steps.step("find backup set"):
        bset = resolve_set(params, source)
    with steps.step("verify checksums and RDB magic"):
        rdb, verified = verify_set(bset)
    expected = bset.manifest["facts"]["keyspace"]
    with steps.step("read data paths from the server"):
        server, down = read_server(info, params["host_data_dir"])
    resumed: Journal | None = None
    if server is not None:
        if not check_mode:
            raise RedisError(
                f"Redis at {info.where} still answers: with manage_service false the caller stops it before "
                "step install (runbook.stack.component, tasks_from: stop); nothing was changed"
            )
        paths = server.paths
        keyspace = server.keyspace
    else:
        keyspace = {}
        data_dir = given_data_dir(params) or journal_dir(info)
        found = read_journal(journal_path(data_dir, info.port)) if data_dir else None
        if found is not None and (found.backup_id, found.source) == (bset.backup_id, bset.source_dir):
            check_not_running(found, journal_path(data_dir, info.port))
            resumed, paths = found, found.paths
            warn(
                f"Redis at {info.where} is down: finishing the restore of set {bset.backup_id} that was "
                f"interrupted (started {found.started_at} by pid {found.pid})"
            )
        elif found is not None:
            resumed, _path = interrupted_restore(params, info, bset, down)  # raises: another set's restore
            paths = resumed.paths
        else:
            given = paths_option(params)
            if given is None:
                raise RedisError(
                    f"Redis at {info.where} is down ({down}) and data_paths is not set: run this module in check "
                    "mode while the server runs and pass the data_paths it returns; nothing was changed"
                )
            paths = given
    swap = FileSwap(
        paths, bset.backup_id, resumed.previous_file if resumed else None, resumed.previous_aof if resumed else None
    )
    leftovers = [os.path.join(paths.dir, n) for n in restore_leftovers(paths, os.listdir(paths.dir))]
    result: dict[str, Any] = {
        "changed": True,
        "step": "install",
        "backup_id": bset.backup_id,
        "path": bset.location,
        "data_paths": asdict(paths),
        "data_file": swap.data_file,
        "aof": paths.appendonly,
        "aof_path": swap.aof_path,
        "dbsize_expected": total_keys(expected),
        "verified_files": verified,
        "resumed": resumed is not None,
        "removed_leftovers": leftovers,
        "commands": [],
    }
    if check_mode:
        planned = swap.plan(rdb, leftovers)
        result.update(
            previous_file=swap.previous_file if os.path.lexists(swap.data_file) or resumed else None,
            previous_aof=swap.previous_aof if swap.aof_path and (os.path.lexists(swap.aof_path) or resumed) else None,
            dbsize=total_keys(keyspace),
            keyspace=expected,
            steps=steps.items + [{"step": s} for s in planned],
        )
        return result
    journal = Journal(
        backup_id=bset.backup_id,
        source=bset.source_dir,
        port=info.port,
        paths=paths,
        previous_file=swap.previous_file,
        previous_aof=swap.previous_aof,
        pid=os.getpid(),
        started_at=resumed.started_at if resumed else iso(utcnow()),
    )
    with steps.step("record the restore in progress"):
        jpath = write_journal(journal, info)
    try:
        put_in_place(swap, rdb, resumed is not None, leftovers, steps)
    except BaseException as exc:
        cause = str(exc) or type(exc).__name__
        try:
            swap.undo()
        except OSError as exc2:
            kept = ", ".join(k for _o, k in swap.moved) or "none"
            raise RedisError(
                f"{cause}; putting the previous data back failed too ({exc2.strerror or exc2}); the previous files "
                f"are kept as: {kept} (journal {jpath})"
            ) from None
        drop_journal(jpath, info)
        raise RedisError(f"{cause}; the previous data is back in place (the server is still stopped)") from None
    result.update(previous_file=swap.kept_file, previous_aof=swap.kept_aof, steps=steps.items)
    return result


def verify(params: dict[str, Any], info: ConnInfo, source: str, check_mode: bool, warn: Any) -> dict[str, Any]:
    """step verify: after the caller started the server, wait for loading:0 and compare the key
    counts with the set's manifest; on a match the restore ends (its journal is removed)."""
    steps = Steps()
    with steps.step("find backup set"):
        bset = resolve_set(params, source)
    facts = bset.manifest.get("facts") or {}
    if "keyspace" not in facts:
        raise BackupSetError(
            f"the manifest of {bset.location} has no facts.keyspace; it was not written by redis_snapshot"
        )
    expected = manifest_keyspace(facts)
    data_dir = given_data_dir(params) or journal_dir(info)
    jpath = journal_path(data_dir, info.port) if data_dir else None
    journal = read_journal(jpath) if jpath else None
    if journal is not None and (journal.backup_id, journal.source) != (bset.backup_id, bset.source_dir):
        raise RedisError(
            f"the restore in progress in {data_dir} is of set {journal.backup_id} of {journal.source}, "
            f"not {bset.backup_id} of {bset.source_dir} (journal {jpath})"
        )
    result: dict[str, Any] = {
        "changed": False,
        "step": "verify",
        "backup_id": bset.backup_id,
        "path": bset.location,
        "dbsize_expected": total_keys(expected),
        "previous_file": journal.previous_file if journal else None,
        "previous_aof": journal.previous_aof if journal else None,
        "resumed": False,
        "commands": [],
    }
    if check_mode:
        result.update(keyspace=expected, steps=[{"step": "wait for loading:0"}, {"step": "compare key counts"}])
        return result
    with steps.step("wait for loading:0"):
        reply = poll(lambda: ready(info), params["timeout"], interval=0.2)
    if reply is None:
        raise RedisError(
            f"the server at {info.where} did not answer with loading:0 within {params['timeout']} s; "
            f"the restore is not finished (journal {jpath}): stop the server and run step roll_back"
        )
    found = parse_keyspace(reply)
    with steps.step("compare key counts"):
        check_key_counts(
            expected,
            found,
            bool(facts.get("keyspace_exact", True)),
            warn,
            then=f"; the restore is not finished (journal {jpath}): stop the server and run step roll_back",
        )
    if journal is not None:
        drop_journal(jpath, info)
    result.update(changed=journal is not None, dbsize=total_keys(found), keyspace=found, steps=steps.items)
    return result


def roll_back_step(params: dict[str, Any], info: ConnInfo, source: str, check_mode: bool, warn: Any) -> dict[str, Any]:
    """step roll_back: with the server stopped by the caller, put the data the restore in progress
    set aside back in place (from its journal) and end it. Files it never moved stay as they are."""
    data_dir = given_data_dir(params) or journal_dir(info)
    jpath = journal_path(data_dir, info.port) if data_dir else None
    journal = read_journal(jpath) if jpath else None
    if journal is None:  # nothing was moved (install failed and put everything back), or it ended
        if not data_dir:
            raise RedisError(f"cannot tell where Redis at {info.where} keeps its data: set data_paths or data_dir")
        warn(
            f"there is no restore in progress into Redis at {info.where} (no journal in {data_dir}): nothing to roll back"
        )
        return {"changed": False, "step": "roll_back", "restored_files": [], "removed_leftovers": [], "resumed": False}
    if port_open(info.host, info.port):
        raise RedisError(
            f"Redis at {info.where} still answers: stop it (runbook.stack.component, tasks_from: stop) before "
            "step roll_back; nothing was changed"
        )
    swap = FileSwap(journal.paths, journal.backup_id, journal.previous_file, journal.previous_aof)
    for original, kept in swap.moved_aside():  # what is in its place is the restored copy
        swap.installed.append(original)
        swap.moved.append((original, kept))
    leftovers = [
        os.path.join(journal.paths.dir, n) for n in restore_leftovers(journal.paths, os.listdir(journal.paths.dir))
    ]
    result: dict[str, Any] = {
        "changed": True,
        "step": "roll_back",
        "backup_id": journal.backup_id,
        "data_file": swap.data_file,
        "aof_path": swap.aof_path,
        "restored_files": [kept for _o, kept in swap.moved],
        "removed_leftovers": leftovers,
        "resumed": False,
        "commands": [],
    }
    if check_mode:
        result["steps"] = [{"step": f"rename {k} to {o}"} for o, k in swap.moved] + [
            {"step": f"remove {p}"} for p in leftovers
        ]
        return result
    steps = Steps()
    with steps.step("put the previous data back"):
        for path in leftovers:
            remove_tree(path)
        swap.undo()
    drop_journal(jpath, info)
    result["steps"] = steps.items
    return result


CALLER_STEPS = {"install": install, "verify": verify, "roll_back": roll_back_step}
# what every run returns (RETURN: always); a step that has nothing to say about one returns null
ALWAYS = ("backup_id", "path", "data_file", "previous_file", "aof", "aof_path", "previous_aof", "dbsize_expected")
ALWAYS += ("dbsize", "keyspace", "resumed", "removed_leftovers", "verified_files", "commands", "steps")


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
        data_dir=dict(type="path"),
        manage_service=dict(type="bool", default=True),
        step=dict(type="str", choices=["install", "verify", "roll_back"]),
        data_paths=dict(type="dict"),
        host_data_dir=dict(type="path"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[("path", "backup_root"), ("service", "stop_command"), ("service", "start_command")],
        required_one_of=[("path", "backup_root")],
        required_if=[("manage_service", True, ("service", "stop_command"), True), ("manage_service", False, ("step",))],
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
    if not p["manage_service"] and (p["service"] or p["stop_command"] or p["start_command"]):
        module.fail_json(
            msg="manage_service is false: the caller stops and starts the server, so service, stop_command and "
            "start_command must not be set"
        )
    if p["manage_service"] and p["step"]:
        module.fail_json(
            msg=f"step {p['step']} is for manage_service false (a caller that stops and starts the server)"
        )
    where = f"{p['login_host']}:{p['login_port']}"
    what = p["path"] or f"backup {p['backup_id']} under {p['backup_root']}"
    do = run if p["manage_service"] else CALLER_STEPS[p["step"]]
    started = time.monotonic()
    info = None
    try:
        info = conn_info(p)
        with terminate_on_signals():
            result = do(p, info, p["source"] or info.where, module.check_mode, module.warn)
    except (RedisError, BackupSetError) as exc:
        module.fail_json(msg=f"cannot restore Redis at {where} from {what}: {exc}", duration_s=_since(started))
    except CLIENT_ERRORS as exc:
        cause = describe(exc, info) if info else str(exc)
        module.fail_json(msg=f"cannot restore Redis at {where} from {what}: {cause}", duration_s=_since(started))
    except OSError as exc:
        module.fail_json(msg=f"cannot restore Redis at {where} from {what}: {exc.strerror or exc}")
    except Interrupted as exc:
        module.fail_json(msg=f"restore of Redis at {where} {exc}")
    for key in ALWAYS:
        result.setdefault(key, None)
    result["duration_s"] = _since(started)
    module.exit_json(**result)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


if __name__ == "__main__":
    main()
