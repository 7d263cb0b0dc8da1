#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: redis_aof_archive
short_description: Copy the AOF generations of a Redis 7 server into an archive for point-in-time restores
version_added: 0.1.0
description:
  - Copies every file of the server's current multi-part AOF (Redis 7, C(appendonlydir)) that is not
    archived yet, and the manifest, into O(dest) (an S3 prefix C(s3://bucket/prefix), or a local
    directory such as a mount of off-host storage), so that M(runbook.stack.redis_restore_to_time) can
    later rebuild the data as it was at any second the archive holds.
  - "Layout: C(<dest>/redis-aof/<source>/<generation>/) holds one AOF base file, the incr files that
    follow it and a copy of the manifest; a generation id is C(<base time>-seq<n>-<sha256 prefix>).
    C(<dest>/redis-aof/<source>/index.json) records every file's sha256, size and first and last
    C(#TS) annotation, the time each base represents (its RDB C(ctime), or the first C(#TS) of an AOF
    base), and up to which second each generation's writes are held. Directories are created 0700,
    files 0600. The index is written last; a run that stops half-way leaves the previous index valid."
  - "On S3 (O(dest=s3://bucket/prefix), the bucket must exist; the S3 connection options below) every
    archived file is stored as part objects C(<generation>/<file>.parts/<start>-<end>), each sent with
    Content-MD5: a grown incr file only sends its new bytes as a new part; once a file has more than 32
    parts it is sent again in 64 MiB parts. The index is only replaced when its ETag is still the one
    the run read, so a second archiver of the same server into the same prefix is refused."
  - The incr file the server is writing grows; each run archives its complete commands (never a command
    that was being written) when it is longer and its first bytes are the archived ones (sha256 of that
    prefix). A base file and an incr file that did not change are
    not read again, so a run with nothing new reports C(changed=false).
  - The server must have C(appendonly yes) and C(aof-timestamp-enabled yes) (the C(#TS) annotations
    are what a restore to a time cuts at). Otherwise the module fails naming the setting, unless
    O(configure=true), which sets both with C(CONFIG SET) (not persisted to the config file; use
    M(runbook.stack.redis_config) with C(persist) for that).
  - "How it is meant to run: on a schedule, every N seconds (a cron job or systemd timer running a
    playbook, or an AWX schedule); N bounds the writes that can be lost with the host. An AOF rewrite
    (C(BGREWRITEAOF), manual or automatic) deletes the previous generation's files, so whatever was
    written since the last run is lost for restores to a time in that window
    (M(runbook.stack.redis_restore_to_time) refuses such a time and names the gap). With
    O(rewrite=true) the module itself runs C(BGREWRITEAOF) after archiving: it keeps the current incr
    files open, starts the rewrite, waits for it, copies the rest of the old incr files through the
    open descriptors (the server has stopped writing them) and archives the new generation, so the
    archive has no gap. Set C(auto-aof-rewrite-percentage 0) on the server and let a scheduled run
    with O(rewrite=true) do the rewrites."
  - "Continuous archiving (seconds of RPO): O(follow_seconds) keeps the module running, with an archive
    pass every O(interval) seconds. Between passes it keeps the current incr files open, so when any
    rewrite (automatic ones too) deletes them, the next pass still reads their rest and seals the
    generation: no gap. For a permanent archiver use the same code as a service outside Ansible,
    C(python -m ansible_collections.runbook.stack.plugins.module_utils._redis_aof_follow --config <file.json>)
    (see C(docs/pitr.md) of the collection)."
  - The module must run on the Redis host (it reads the AOF directory), as a user that may read it.
author:
  - runbook.stack maintainers (@runbook-stack)
extends_documentation_fragment:
  - runbook.stack.redis
  - runbook.stack.s3
  - runbook.stack._attributes
  - runbook.stack._attributes.actiongroup_redis_s3
attributes:
  check_mode:
    support: full
    details:
      - Reads the settings, the manifest and the archive index and returns the files that would be
        copied; nothing is written, no setting is changed and no rewrite is started.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - A run when the server has written nothing since the last one reports no change. With
        O(rewrite=true) every run starts a rewrite and reports a change. O(follow_seconds) reports a
        change when any pass archived something.
options:
  dest:
    description:
      - Archive root, a local directory or V(s3://bucket/prefix); the files go to C(<dest>/redis-aof/<source>/).
      - The S3 connection options are only used for an V(s3://) root, and boto3 is only needed for it.
    type: path
    required: true
  source:
    description:
      - Name of the server in the archive layout.
      - Defaults to C(<login_host>:<login_port>).
    type: str
  data_dir:
    description:
      - The AOF directory (C(appendonlydir)) or the data directory that contains it.
      - Defaults to C(CONFIG GET dir) joined with C(CONFIG GET appenddirname).
    type: path
  configure:
    description:
      - Set C(appendonly yes) and C(aof-timestamp-enabled yes) with C(CONFIG SET) when they are off,
        instead of failing. Turning C(appendonly) on makes the server write a new AOF base first; the
        module waits for it.
    type: bool
    default: false
  rewrite:
    description:
      - After archiving, run C(BGREWRITEAOF), wait for it, and archive the end of the old generation
        and the new one (see the description).
    type: bool
    default: false
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
  follow_seconds:
    description:
      - Keep archiving for this many seconds, one pass every O(interval) seconds and one at the end
        (see the description). V(0) archives once.
      - Mutually exclusive with O(rewrite).
    type: int
    default: 0
  interval:
    description:
      - Seconds between the passes of O(follow_seconds).
    type: float
    default: 5
  timeout:
    description:
      - Seconds to wait for an AOF rewrite (one started by O(configure) or O(rewrite), or one already running).
    type: int
    default: 600
notes:
  - Only Redis 7 multi-part AOF (an AOF directory with a manifest) is supported.
  - O(validate_certs) and O(connect_timeout) belong to both the Redis and the S3 connection (the module is
    in both action groups, and with C(module_defaults) of both groups the group listed last sets them).
  - One archive run at a time per archive on a host (a lock file; for S3 in the temporary directory); a
    run waits up to 10 seconds for another one to finish.
  - O(db) is not used; the AOF holds every database.
seealso:
  - module: runbook.stack.redis_aof_archive_info
  - module: runbook.stack.redis_restore_to_time
  - module: runbook.stack.redis_config
"""

EXAMPLES = r"""
- name: Archive the AOF of the local Redis (run every minute from a systemd timer)
  runbook.stack.redis_aof_archive:
    login_password: "{{ vault_redis_password }}"
    dest: /mnt/backup/runbook

- name: Archive, then rewrite the AOF without leaving a gap (nightly)
  runbook.stack.redis_aof_archive:
    login_password: "{{ vault_redis_password }}"
    dest: /mnt/backup/runbook
    rewrite: true

- name: Archive off-host to S3, following the AOF for ten minutes (a pass every 5 seconds)
  runbook.stack.redis_aof_archive:
    login_password: "{{ vault_redis_password }}"
    dest: s3://redis-pitr/prod
    endpoint_url: https://s3.internal.example.com
    access_key: "{{ vault_backup_access_key }}"
    secret_key: "{{ vault_backup_secret_key }}"
    follow_seconds: 600
"""

RETURN = r"""
path:
  description: The archive directory (or S3 URL) of this server.
  returned: always
  type: str
  sample: /mnt/backup/runbook/redis-aof/127.0.0.1%3A6379
aof_dir:
  description: The server's AOF directory that was read.
  returned: always
  type: str
  sample: /var/lib/redis/appendonlydir
copied:
  description: Files copied (or, in check mode, that would be copied), as C(<generation>/<file>).
  returned: always
  type: list
  elements: str
  sample: [20261205T215230Z-seq2-6f1c2a9b/appendonly.aof.2.incr.aof]
generation:
  description: Id of the generation the server writes now (in check mode, null when it is not archived yet).
  returned: always
  type: str
  sample: 20261205T215230Z-seq2-6f1c2a9b
configured:
  description: Settings changed with CONFIG SET (in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: [aof-timestamp-enabled]
rewritten:
  description: Whether a BGREWRITEAOF ran (or would run).
  returned: always
  type: bool
passes:
  description: Archive passes made (1 without O(follow_seconds); 0 in check mode).
  returned: always
  type: int
  sample: 121
held:
  description:
    - The time range the archive can restore to, in unix seconds and UTC. C(oldest) is the time of the
      oldest archived base; C(newest) is the last second whose writes are all archived (the second
      before the last archive run started); C(last_write) is the newest C(#TS) annotation archived (at or
      before C(newest)). C(gaps) lists the ranges in between that a rewrite dropped before they were
      archived. In check mode, the range held before this run.
  returned: always
  type: dict
  sample: {"oldest": 1796507550, "newest": 1796507610, "oldest_utc": "2026-12-05T21:52:30Z",
           "newest_utc": "2026-12-05T21:53:30Z", "last_write": 1796507602, "gaps": [], "generations": 2}
duration_s:
  description: Wall-clock seconds the module spent.
  returned: always
  type: float
  sample: 0.4
"""

import os
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils import _s3
from ansible_collections.runbook.stack.plugins.module_utils._backup_set import BackupSetError, private_umask
from ansible_collections.runbook.stack.plugins.module_utils._common.process import Interrupted, terminate_on_signals
from ansible_collections.runbook.stack.plugins.module_utils._redis import (
    CLIENT_ERRORS,
    HAS_REDIS,
    REDIS_IMPORT_ERROR,
    RedisError,
    conn_info,
    connect,
    describe,
    redis_argument_spec,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof import (
    aof_dir_of,
    aof_settings,
    held_range,
    plan_archive,
    read_manifest,
    read_manifest_file,
    wait_rewrite_idle,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof_archive_store import (
    archive_lock,
    is_s3,
    open_store,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof_archiver import Follower, archive, rewrite_aof


def follow(store: Any, aof_dir: str, appendfilename: str, seconds: int, interval: float) -> tuple[list[str], int]:
    """Archive passes every ``interval`` seconds for ``seconds`` (and one at the end); (files copied, passes).
    A pass that found a file deleted by a rewrite is followed by the next one, which finishes it."""
    follower = Follower(store, aof_dir, appendfilename, lock_wait=min(interval, 10))
    copied: list[str] = []
    passes = 0
    deadline = time.monotonic() + seconds
    try:
        while True:
            started = time.monotonic()
            try:
                copied += [c for c in follower.run_pass().copied if c not in copied]
                passes += 1
            except FileNotFoundError:
                if started >= deadline:  # a rewrite deleted a file mid-pass: the next pass finishes it
                    raise
            if started >= deadline:
                return copied, passes
            time.sleep(max(0.0, min(interval - (time.monotonic() - started), deadline - time.monotonic())))
    finally:
        follower.close()


def run(client: Any, params: dict[str, Any], source: str, s3: Any, check_mode: bool) -> dict[str, Any]:
    settings = aof_settings(client)
    wanted = {"appendonly": "yes", "aof-timestamp-enabled": "yes"}
    off = [name for name, value in wanted.items() if settings.get(name) != value]
    if off and not params["configure"]:
        raise RedisError(
            " and ".join(f"{n} is {settings.get(n) or 'unset'}" for n in off)
            + "; point-in-time archiving needs appendonly yes and aof-timestamp-enabled yes "
            "(set them in the server's config, or configure=true to CONFIG SET them)"
        )
    store = open_store(params["dest"], source, s3)
    index = store.load_index()
    aof_dir = aof_dir_of(settings, params["data_dir"])
    result: dict[str, Any] = {"path": store.path, "aof_dir": aof_dir, "configured": off, "rewritten": params["rewrite"]}
    if check_mode:
        if off:  # the AOF is written anew after the change: all of it would be copied
            generation, names = None, ["(every file of the AOF written after CONFIG SET)"]
        else:
            generation, names = plan_archive(index, aof_dir, read_manifest(aof_dir, settings["appendfilename"])[1])
        result.update(
            copied=[f"{generation or '(new generation)'}/{n}" for n in names],
            generation=generation,
            held=held_range(index),
            passes=0,
            changed=bool(off or names or params["rewrite"]),
        )
        return result
    for name in off:
        client.config_set(name, wanted[name])
    if off:
        wait_rewrite_idle(client, params["timeout"])  # appendonly yes writes a new base first
    passes = 1
    if params["follow_seconds"]:
        copied, passes = follow(
            store, aof_dir, settings["appendfilename"], params["follow_seconds"], params["interval"]
        )
        index = store.load_index()
        generation = index["generations"][-1]["id"] if index["generations"] else None
    else:
        with archive_lock(store, wait=10):
            index = store.load_index()  # again, under the lock
            if params["rewrite"]:
                generation, copied = rewrite_aof(
                    client, params["timeout"], store, index, aof_dir, settings["appendfilename"]
                )
            else:
                path, parts, raw = read_manifest_file(aof_dir, settings["appendfilename"])
                done = archive(store, index, aof_dir, parts, (os.path.basename(path), raw))
                generation, copied = done.generation, [f"{done.generation}/{n}" for n in done.copied]
            store.save_index(index)
            store.finish()
    result.update(
        copied=copied,
        generation=generation,
        held=held_range(index),
        passes=passes,
        changed=bool(off or copied or params["rewrite"]),
    )
    return result


def main() -> None:
    argument_spec = redis_argument_spec() | _s3.s3_argument_spec()  # validate_certs, connect_timeout: shared
    argument_spec.update(
        dest=dict(type="path", required=True),
        source=dict(type="str"),
        data_dir=dict(type="path"),
        configure=dict(type="bool", default=False),
        rewrite=dict(type="bool", default=False),
        follow_seconds=dict(type="int", default=0),
        interval=dict(type="float", default=5),
        timeout=dict(type="int", default=600),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_REDIS:
        module.fail_json(msg=missing_required_lib("redis"), exception=REDIS_IMPORT_ERROR)
    p = module.params
    if is_s3(p["dest"]) and not _s3.HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=_s3.BOTO3_IMPORT_ERROR)
    if p["timeout"] < 1:
        module.fail_json(msg=f"timeout must be a positive number of seconds, got {p['timeout']}")
    if p["follow_seconds"] < 0 or p["interval"] <= 0:
        module.fail_json(
            msg=f"follow_seconds must be 0 or more and interval positive, got {p['follow_seconds']} and {p['interval']}"
        )
    if p["source"] is not None and not p["source"]:
        module.fail_json(msg="source must not be an empty string")
    if p["rewrite"] and p["follow_seconds"]:
        module.fail_json(msg="rewrite and follow_seconds are mutually exclusive")
    started = time.monotonic()
    where = f"{p['login_host']}:{p['login_port']}"
    info, client = None, None
    try:
        info = conn_info(p)
        s3 = _s3.conn_info(p) if is_s3(p["dest"]) else None
        client = connect(info)
        with terminate_on_signals(), private_umask():
            result = run(client, p, p["source"] or info.where, s3, module.check_mode)
    except (RedisError, BackupSetError, _s3.S3Error) as exc:
        module.fail_json(msg=f"cannot archive the AOF of Redis at {where}: {exc}", duration_s=_since(started))
    except CLIENT_ERRORS as exc:
        cause = describe(exc, info) if info else str(exc)
        module.fail_json(msg=f"cannot archive the AOF of Redis at {where}: {cause}", duration_s=_since(started))
    except FileNotFoundError as exc:
        module.fail_json(
            msg=f"cannot archive the AOF of Redis at {where}: {exc.filename} vanished while it was read "
            "(the server rewrote its AOF meanwhile); run the module again",
            duration_s=_since(started),
        )
    except OSError as exc:
        module.fail_json(
            msg=f"cannot archive the AOF of Redis at {where} into {p['dest']}: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename else ""),
            duration_s=_since(started),
        )
    except Interrupted as exc:
        module.fail_json(
            msg=f"AOF archive of Redis at {where} {exc}; the index still describes the files before this run"
        )
    finally:
        if client is not None:
            client.close()
    result["duration_s"] = _since(started)
    module.exit_json(**result)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


if __name__ == "__main__":
    main()
