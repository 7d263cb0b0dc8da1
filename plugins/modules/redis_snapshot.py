#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: redis_snapshot
short_description: Take an RDB snapshot of a Redis server into a verified backup set
version_added: 0.1.0
description:
  - Writes the whole dataset of one Redis server (every logical database) as one RDB file into a new
    backup set C(<dest>/redis/<source>/<backup_id>/dump.rdb) and seals it with a C(manifest.json)
    that lists the file with its size and SHA-256 and records the number of keys of every database.
  - With O(method=bgsave) (the default) the module waits until no save or AOF rewrite started by
    someone else is running, asks for a fresh C(BGSAVE), and waits until the server's save history
    (C(rdb_saves), or C(rdb_last_save_time) before Redis 7) has moved past where it stood before the
    request, so a save that finishes before the first poll is seen and a save started earlier by
    another client is never taken for ours. It then copies the RDB file (C(CONFIG GET dir) and
    C(dbfilename)) through one open file descriptor, so a save that replaces the file meanwhile
    cannot mix two files. The module must run on the host of the Redis server, and C(CONFIG) must be
    allowed. When Redis runs in a container on that host, O(host_data_dir) names the host directory
    mounted at the server's data directory.
  - Before it copies the RDB file, the module checks that this save wrote it (the C(ctime) field of its
    header, when the save began by the server's clock, is not older than the C(BGSAVE) request; the
    file's modification time for a header without one), so a file at a wrong place (an old C(dump.rdb)
    in a wrong O(host_data_dir), say) is never taken for a fresh snapshot; the module fails and keeps
    no set.
  - With O(method=replication) the module drives C(redis-cli --rdb), which asks the server for a full
    replication sync and writes the RDB it receives. This works from any host and when C(CONFIG) is
    renamed or forbidden, and needs C(redis-cli) on E(PATH) and a user allowed to C(SYNC).
  - The key counts per database (C(INFO keyspace)) are read in the same reply that shows the save
    finished. C(facts.keyspace_exact) in the manifest tells whether the server was written to while
    the snapshot was taken; M(runbook.stack.redis_restore) checks the counts strictly only then.
  - If anything fails, or the module is stopped, the partial directory is removed. A module killed
    with SIGKILL leaves a directory without a manifest, which no reader treats as a backup
    (M(runbook.stack.backup_prune) removes it later); C(redis-cli) dies with the module.
  - The backup-set format is described in C(docs/backup-format.md) of the collection.
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
      - Connects, reads the key counts, checks that O(dest) is writable and that the RDB file
        (O(method=bgsave)) or C(redis-cli) (O(method=replication)) can be reached; writes nothing and
        asks for no save. C(changed) is predicted true.
  idempotent:
    details: Every real run takes a new snapshot and creates a new backup set.
options:
  dest:
    description:
      - Backup root directory. The set is created at C(<dest>/redis/<source>/<backup_id>/).
      - It (and any missing parent), C(<kind>) and C(<source>) below it are created with mode 0700 when
        missing; directories that already exist keep their mode.
      - Everything the module and C(redis-cli) write is created with mode 0600 (directories 0700) from the
        start (umask 0077), so a backup killed mid-way leaves no file that other users can read.
    type: path
    required: true
    aliases: [backup_root]
  source:
    description:
      - Name of the server in the backup layout.
      - Defaults to C(<login_host>:<login_port>), for example V(127.0.0.1:6379).
    type: str
  method:
    description:
      - V(bgsave) asks the server for a fresh C(BGSAVE) and copies its RDB file (the module runs on
        the Redis host; C(CONFIG GET) must be allowed).
      - V(replication) receives the RDB over a replication sync with C(redis-cli --rdb) (any host,
        no C(CONFIG) needed).
    type: str
    choices: [bgsave, replication]
    default: bgsave
  timeout:
    description:
      - Seconds to wait for the snapshot, including a save or AOF rewrite of someone else that has to
        finish first (O(method=bgsave)) or the whole C(redis-cli --rdb) transfer (O(method=replication)).
    type: int
    default: 3600
  host_data_dir:
    description:
      - The host directory mounted at the server's data directory (C(CONFIG GET dir)) when Redis runs in
        a container, for example V(/srv/shop/redis-data) for a Compose volume C(./redis-data:/data) of
        the project in C(/srv/shop). The module reads the RDB file there instead of at the path the
        server reports, which is the container's (V(/data)).
      - It must be an existing directory. When the RDB file found there was not written by this save, it
        is not the directory the server writes to, and the module fails (no set is kept).
      - Only for O(method=bgsave); with O(method=replication), which reads no file of the server, setting
        it is an error.
      - Not needed when the server runs on the host itself, or in a container whose data directory is
        mounted at the same path on the host.
    type: path
    version_added: 0.2.0
notes:
  - O(db) is not used; a snapshot always holds every database of the server.
  - With O(method=bgsave) the server needs enough memory for a fork (copy-on-write), as for any C(BGSAVE).
  - With O(method=bgsave) and Redis in a container (Docker Compose, say), run the module on the Docker host
    with O(host_data_dir) set to the host side of the volume mounted at the server's data directory; a
    server directory that does not exist on this host fails the module, pointing to O(host_data_dir).
seealso:
  - module: runbook.stack.redis_restore
  - module: runbook.stack.backup_info
  - module: runbook.stack.backup_prune
requirements:
  - redis-cli (only for O(method=replication))
"""

EXAMPLES = r"""
- name: Snapshot the local cache server
  runbook.stack.redis_snapshot:
    login_host: 127.0.0.1
    login_port: 6379
    login_password: "{{ vault_redis_password }}"
    dest: /var/backups/runbook
  register: redis_snap

- name: Show where it went
  ansible.builtin.debug:
    msg: "{{ redis_snap.backup_id }}: {{ redis_snap.dbsize }} keys in {{ redis_snap.path }}"

# docker-compose.yml in /srv/shop: the redis service has "volumes: [./redis-data:/data]" and
# "ports: [127.0.0.1:6379:6379]"; the module runs on the Docker host
- name: Snapshot Redis running in a Compose project
  runbook.stack.redis_snapshot:
    login_password: "{{ vault_redis_password }}"
    host_data_dir: /srv/shop/redis-data
    dest: /var/backups/runbook

- name: Snapshot a managed server where CONFIG is renamed, over replication
  runbook.stack.redis_snapshot:
    login_host: cache1.internal.example.com
    login_user: backup
    login_password: "{{ vault_redis_backup_password }}"
    tls: true
    ca_certs: /etc/ssl/certs/internal-ca.pem
    method: replication
    source: cache1
    dest: /var/backups/runbook
    timeout: 1800
"""

RETURN = r"""
backup_id:
  description:
    - Id of the new set (UTC start time). Not returned in check mode.
    - Deprecated, use C(backup_set.backup_id); to be removed in runbook.stack 2.0.0.
  returned: success and not check mode
  type: str
  sample: 20261122T020000Z
source:
  description:
    - Name of the server in the backup layout (O(source), or its default C(<login_host>:<login_port>)).
    - Deprecated, use C(backup_set.source); to be removed in runbook.stack 2.0.0.
  returned: success
  type: str
  sample: 127.0.0.1:6379
path:
  description:
    - Directory of the set (in check mode, the directory the set would be created in).
    - Deprecated, use C(backup_set.location); to be removed in runbook.stack 2.0.0.
  returned: always
  type: str
  sample: /var/backups/runbook/redis/127.0.0.1%3A6379/20261122T020000Z
size_bytes:
  description: Size of the RDB file in the set (in check mode, of the server's current RDB file, or null).
  returned: always
  type: int
  sample: 52428800
dbsize:
  description: Number of keys in all databases when the snapshot was taken (in check mode, now).
  returned: always
  type: int
  sample: 200000
keyspace:
  description: C(INFO keyspace) per database (C(keys), C(expires), C(avg_ttl)) when the snapshot was taken.
  returned: always
  type: dict
  sample: {"db0": {"keys": 150000, "expires": 20, "avg_ttl": 0}, "db3": {"keys": 50000, "expires": 0, "avg_ttl": 0}}
keyspace_exact:
  description: Whether no write reached the server while the snapshot was taken, so that RV(keyspace) describes the file exactly.
  returned: success and not check mode
  type: bool
method:
  description: The method used.
  returned: always
  type: str
  sample: bgsave
rdb_source:
  description:
    - The server's RDB file that is (or would be) copied, on this host (in O(host_data_dir) when it is set);
      null for O(method=replication).
  returned: always
  type: str
  sample: /var/lib/redis/dump.rdb
redis_version:
  description: Version of the server.
  returned: always
  type: str
  sample: 7.0.15
commands:
  description: Commands that ran (or would run); the password travels in E(REDISCLI_AUTH), never here.
  returned: always
  type: list
  elements: str
  sample: ["BGSAVE SCHEDULE"]
manifest:
  description: The manifest as written. Not returned in check mode.
  returned: success and not check mode
  type: dict
steps:
  description: Phases of the snapshot with their durations in seconds. Empty in check mode.
  returned: always
  type: list
  elements: dict
  sample: [{"step": "BGSAVE and wait for it", "duration_s": 2.41}]
duration_s:
  description: Wall-clock seconds the module spent.
  returned: always
  type: float
  sample: 3.2
backup_set:
  description:
    - The set written, in the shape every module that writes sets returns; its C(kind), C(source), C(backup_id)
      and C(root) name it as a component of M(runbook.stack.dr_set).
    - In check mode, what only a real run knows (a new set's id, location, times and size) is null.
    - On failure, likewise the set that was to be written (C(kind), C(source), C(root)), with C(backup_id) null;
      not returned when the connection options themselves are wrong.
  returned: success, and on failure once the connection options are read
  type: dict
  contains:
    kind: {description: Kind of the set., type: str, sample: postgresql}
    source: {description: Its source name., type: str, sample: app}
    backup_id: {description: Its backup id (UTC start time)., type: str, sample: 20261122T020000Z}
    root: {description: "Its backup root, a local directory or C(s3://bucket/prefix).", type: str, sample: /var/backups/runbook}
    location: {description: Its directory or S3 URL., type: str, sample: /var/backups/runbook/postgresql/app/20261122T020000Z}
    started: {description: When the backup started (UTC)., type: str, sample: "2026-11-22T02:00:00.412Z"}
    finished: {description: When it finished (UTC)., type: str, sample: "2026-11-22T02:00:12.905Z"}
    size_bytes: {description: "Bytes of its files (of an S3 snapshot set, its objects).", type: int, sample: 52428800}
    file_count: {description: "Its files (of an S3 snapshot set, its objects), the manifest not counted.", type: int, sample: 42}
"""

import hashlib
import os
import shutil
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    BackupSetError,
    LocalSetWriter,
    check_dest_writable,
    private_umask,
    set_rel,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.contract import set_reference
from ansible_collections.runbook.stack.plugins.module_utils._common.process import (
    BoundedChild,
    ChildTimeout,
    Interrupted,
    terminate_on_signals,
)
from ansible_collections.runbook.stack.plugins.module_utils._common.steps import Steps
from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line
from ansible_collections.runbook.stack.plugins.module_utils._redis import (
    CLIENT_ERRORS,
    HAS_REDIS,
    REDIS_IMPORT_ERROR,
    ConnInfo,
    RedisError,
    check_rdb_magic,
    conn_info,
    connect,
    copy_stable,
    describe,
    parse_keyspace,
    redis_argument_spec,
    redis_cli_argv,
    redis_cli_env,
    request_bgsave,
    save_advanced,
    save_marker,
    total_keys,
    wait_for_save,
    wait_until_idle,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis.persistence import (
    DataPaths,
    check_fresh_rdb,
    mapping_hint,
    on_host,
    server_clock,
    server_data_paths,
)

KIND = "redis"
RDB_NAME = "dump.rdb"


def fetch(client: Any) -> Any:
    """INFO persistence and keyspace in one reply (one instant of the server)."""
    return lambda: client.info("persistence", "keyspace")


def find_redis_cli() -> str:
    path = shutil.which("redis-cli")
    if not path:
        raise RedisError("redis-cli was not found on PATH (method=replication drives redis-cli --rdb)")
    return path


def rdb_paths_or_hint(client: Any) -> DataPaths:
    """The data paths the server reports (CONFIG GET), not yet mapped to this host."""
    try:
        return server_data_paths(client)
    except RedisError as exc:
        raise RedisError(
            f"{exc}; method=bgsave needs CONFIG GET to find the RDB file: use method=replication"
        ) from None


def rdb_location(client: Any, host_dir: str | None) -> tuple[DataPaths, str]:
    """The server's data paths on this host (in ``host_dir`` when it is set), and what an RDB file
    missing or older than our save there says."""
    served = rdb_paths_or_hint(client)
    paths = on_host(served, host_dir)
    return paths, mapping_hint(served.dir, paths.dir if host_dir else None)


def plan(client: Any, info: ConnInfo, params: dict[str, Any], source: str) -> dict[str, Any]:
    server = client.info("server")
    keyspace = parse_keyspace(client.info("keyspace"))
    check_dest_writable(params["dest"])
    parent = os.path.join(os.path.abspath(params["dest"]), os.path.dirname(set_rel(KIND, source, "x")))
    rdb_source = size = None
    if params["method"] == "bgsave":
        paths, _hint = rdb_location(client, params["host_data_dir"])
        rdb_source = paths.rdb_path
        size = os.stat(rdb_source).st_size if os.path.exists(rdb_source) else None
        commands = ["BGSAVE SCHEDULE"]
    else:
        commands = [" ".join(redis_cli_argv(find_redis_cli(), info, os.path.join(parent, "<backup_id>", RDB_NAME)))]
    return {
        "changed": True,
        "source": source,
        "path": parent,
        "size_bytes": size,
        "dbsize": total_keys(keyspace),
        "keyspace": keyspace,
        "method": params["method"],
        "rdb_source": rdb_source,
        "redis_version": str(server.get("redis_version", "")),
        "commands": commands,
        "steps": [],
        "backup_set": set_reference(params["dest"], kind=KIND, source=source),
    }


def bgsave(
    client: Any, writer: LocalSetWriter, timeout: int, steps: Steps, paths: DataPaths, hint: str
) -> dict[str, Any]:
    """Fresh BGSAVE, wait for it, copy its RDB into the set (after checking that this save wrote it);
    facts of the save. ``paths``: the server's data paths on this host; ``hint``: what an RDB file
    missing or older than the save there says (:func:`mapping_hint`)."""
    info_now = fetch(client)
    deadline = time.monotonic() + timeout
    with steps.step("wait for a save or AOF rewrite already running"):
        idle = wait_until_idle(info_now, timeout)
    with steps.step("BGSAVE and wait for it"):
        while True:
            marker = save_marker(idle)
            if marker.saves is None:
                # before Redis 7 only the save time (whole seconds) tells saves apart: start in a new second
                while int(client.time()[0]) <= marker.last_save_time:
                    time.sleep(0.1)
            since = server_clock(client)  # our save begins at this second or later
            outcome = request_bgsave(client)
            if outcome != "busy":
                break
            # another client's save began between our look and our request: wait for it, then ask again
            idle = wait_until_idle(info_now, max(1.0, deadline - time.monotonic()))
        done = wait_for_save(info_now, marker, outcome == "started", max(1.0, deadline - time.monotonic()))
    with steps.step("copy the RDB file into the set"):
        target = os.path.join(writer.path, RDB_NAME)
        try:
            fin = open(paths.rdb_path, "rb")  # noqa: SIM115 - closed below, after the copy
        except OSError as exc:
            missing = f": {hint}" if isinstance(exc, FileNotFoundError) else ""
            raise RedisError(f"cannot read the RDB file {paths.rdb_path}: {exc.strerror or exc}{missing}") from None
        with fin:
            check_fresh_rdb(fin, since, hint)  # not an older file at a wrong place
            # Opened after our save finished: unless yet another save completed since, this is our file.
            later = client.info("persistence")
            ours = not save_advanced(later, save_marker(done)) and not int(later.get("rdb_bgsave_in_progress", 0))
            digest = hashlib.sha256()
            copy_stable(fin, target, digest=digest)
        check_rdb_magic(target)
    keyspace = parse_keyspace(done)
    exact = ours and int(done.get("rdb_changes_since_last_save", 1)) == 0
    return {
        "keyspace": keyspace,
        "keyspace_exact": exact,
        "last_save_time": int(done.get("rdb_last_save_time", 0)),
        "rdb_source": paths.rdb_path,
        "aof_enabled": bool(int(done.get("aof_enabled", 0))),
        "commands": ["BGSAVE SCHEDULE"],
        "known_sha256": {RDB_NAME: digest.hexdigest()},
    }


def key_counts(keyspace: dict[str, dict[str, int]]) -> dict[str, tuple[int, int]]:
    """(keys, expires) per db: what a write changes (avg_ttl drifts on its own as time passes)."""
    return {db: (v.get("keys", 0), v.get("expires", 0)) for db, v in keyspace.items()}


def replication(client: Any, info: ConnInfo, writer: LocalSetWriter, timeout: int, steps: Steps) -> dict[str, Any]:
    """redis-cli --rdb into the set; facts around the transfer."""
    redis_cli = find_redis_cli()
    target = os.path.join(writer.path, RDB_NAME)
    argv = redis_cli_argv(redis_cli, info, target)
    before = client.info("persistence", "keyspace")
    # a child, not run_command: it must die with the module (PR_SET_PDEATHSIG) and be bounded
    with steps.step("redis-cli --rdb"), BoundedChild(argv, redis_cli_env(info)) as child:
        try:
            rc = child.wait(timeout)
        except ChildTimeout:
            raise RedisError(f"redis-cli --rdb did not finish within {timeout} s") from None
        output = one_line(child.output(2000).decode("utf-8", "replace"), info.password)
    if rc != 0:
        raise RedisError(f"redis-cli --rdb exited {rc}: {output or 'no output'}")
    if not os.path.exists(target):
        raise RedisError(f"redis-cli --rdb wrote no file: {output or 'no output'}")
    check_rdb_magic(target)
    after = client.info("persistence", "keyspace")
    keyspace = parse_keyspace(after)
    changes_before = int(before.get("rdb_changes_since_last_save", 0))
    changes_after = int(after.get("rdb_changes_since_last_save", 0))
    unchanged = changes_after == changes_before and key_counts(parse_keyspace(before)) == key_counts(keyspace)
    if int(after.get("rdb_saves", -1)) != int(before.get("rdb_saves", -1)):
        # the transfer's save has been reaped: a disk-based sync reset the counter at its fork (0 =
        # no write since); a diskless one does not reset it (counter and keyspace unchanged)
        exact = changes_after == 0 or unchanged
    else:
        exact = unchanged
    return {
        "keyspace": keyspace,
        "keyspace_exact": exact,
        "last_save_time": None,
        "rdb_source": None,
        "aof_enabled": bool(int(after.get("aof_enabled", 0))),
        "commands": [" ".join(argv)],
    }


def run(client: Any, info: ConnInfo, params: dict[str, Any], source: str) -> dict[str, Any]:
    server = client.info("server")
    version = str(server.get("redis_version", ""))
    check_dest_writable(params["dest"])
    steps = Steps()
    # where the RDB file is: a wrong host_data_dir fails before anything is written
    rdb = rdb_location(client, params["host_data_dir"]) if params["method"] == "bgsave" else None
    writer = LocalSetWriter(params["dest"], KIND, source)
    try:
        writer.create()
        if rdb is not None:
            got = bgsave(client, writer, params["timeout"], steps, *rdb)
        else:
            got = replication(client, info, writer, params["timeout"], steps)
        keyspace = got["keyspace"]
        with steps.step("fsync and SHA-256, write manifest"):
            manifest = writer.seal(
                known_sha256=got.get("known_sha256"),
                source_identity={"host": info.host, "port": info.port, "run_id": server.get("run_id")},
                tool={
                    "name": "redis-cli --rdb" if params["method"] == "replication" else "BGSAVE",
                    "method": params["method"],
                },
                server={"version": version, "mode": server.get("redis_mode")},
                facts={
                    "method": params["method"],
                    "rdb_file": RDB_NAME,
                    "dbsize": total_keys(keyspace),
                    "keyspace": keyspace,
                    "keyspace_exact": got["keyspace_exact"],
                    "redis_version": version,
                    "last_save_time": got["last_save_time"],
                    "aof_enabled": got["aof_enabled"],
                },
            )
    except BaseException:
        writer.discard()
        raise
    return {
        "changed": True,
        "source": source,
        "backup_id": writer.backup_id,
        "path": writer.path,
        "size_bytes": manifest["total_size_bytes"],
        "dbsize": manifest["facts"]["dbsize"],
        "keyspace": keyspace,
        "keyspace_exact": got["keyspace_exact"],
        "method": params["method"],
        "rdb_source": got["rdb_source"],
        "redis_version": version,
        "commands": got["commands"],
        "manifest": manifest,
        "steps": steps.items,
        "backup_set": set_reference(params["dest"], manifest, location=writer.path),
    }


def main() -> None:
    argument_spec = redis_argument_spec()
    argument_spec.update(
        dest=dict(type="path", required=True, aliases=["backup_root"]),
        source=dict(type="str"),
        method=dict(type="str", default="bgsave", choices=["bgsave", "replication"]),
        timeout=dict(type="int", default=3600),
        host_data_dir=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_REDIS:
        module.fail_json(msg=missing_required_lib("redis"), exception=REDIS_IMPORT_ERROR)
    p = module.params
    if p["timeout"] < 1:
        module.fail_json(msg=f"timeout must be a positive number of seconds, got {p['timeout']}")
    if p["source"] is not None and not p["source"]:
        module.fail_json(msg="source must not be an empty string")
    if p["host_data_dir"] and p["method"] == "replication":
        module.fail_json(
            msg="host_data_dir is for method=bgsave (the RDB file is read from the server's data directory); "
            "method=replication receives the RDB over the connection and reads no file of the server: unset it"
        )

    started = time.monotonic()
    info = None
    where = f"{p['login_host']}:{p['login_port']}"
    client = None
    # a failure names the set it was to write (source derived from the connection): callers such as
    # the backup role's metrics know which set failed
    failed: dict[str, Any] = {}
    try:
        info = conn_info(p)
        source = p["source"] or info.where
        failed["backup_set"] = set_reference(p["dest"], kind=KIND, source=source)
        client = connect(info)
        if module.check_mode:
            result = plan(client, info, p, source)
        else:
            with terminate_on_signals(), private_umask():  # 0600/0700 also if killed mid-way
                result = run(client, info, p, source)
    except (RedisError, BackupSetError) as exc:
        module.fail_json(msg=f"cannot snapshot Redis at {where}: {exc}", duration_s=_since(started), **failed)
    except CLIENT_ERRORS as exc:
        cause = describe(exc, info) if info else str(exc)
        module.fail_json(msg=f"cannot snapshot Redis at {where}: {cause}", duration_s=_since(started), **failed)
    except OSError as exc:
        module.fail_json(msg=f"cannot snapshot Redis at {where} into {p['dest']}: {exc.strerror or exc}", **failed)
    except Interrupted as exc:
        module.fail_json(msg=f"snapshot of Redis at {where} {exc}; the partial backup set was removed", **failed)
    finally:
        if client is not None:
            client.close()
    result["duration_s"] = _since(started)
    module.exit_json(**result)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


if __name__ == "__main__":
    main()
