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
    archived yet, and the manifest, into O(dest) (a local directory, for example a mount of off-host
    storage), so that M(runbook.stack.redis_restore_to_time) can later rebuild the data as it was at
    any second the archive holds.
  - "Layout: C(<dest>/redis-aof/<source>/<generation>/) holds one AOF base file, the incr files that
    follow it and a copy of the manifest; a generation id is C(<base time>-seq<n>-<sha256 prefix>).
    C(<dest>/redis-aof/<source>/index.json) records every file's sha256, size and first and last
    C(#TS) annotation, the time each base represents (its RDB C(ctime), or the first C(#TS) of an AOF
    base), and up to which second each generation's writes are held. Directories are created 0700,
    files 0600."
  - The incr file the server is writing grows; each run copies its complete commands (never a command
    that was being written) and replaces the archived copy when it is longer and its first bytes are
    the archived ones (sha256 of that prefix). A base file and an incr file that did not change are
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
  - The module must run on the Redis host (it reads the AOF directory), as a user that may read it.
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
      - Reads the settings, the manifest and the archive index and returns the files that would be
        copied; nothing is written, no setting is changed and no rewrite is started.
  diff_mode:
    support: none
  idempotent:
    description: Running the module twice against an unchanged system reports no change.
    support: partial
    details:
      - A run when the server has written nothing since the last one reports no change. With
        O(rewrite=true) every run starts a rewrite and reports a change.
  platform:
    platforms: posix
  action_group:
    membership: [runbook.stack.redis]
options:
  dest:
    description:
      - Archive root; the files go to C(<dest>/redis-aof/<source>/).
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
  timeout:
    description:
      - Seconds to wait for an AOF rewrite (one started by O(configure) or O(rewrite), or one already running).
    type: int
    default: 600
notes:
  - Only Redis 7 multi-part AOF (an AOF directory with a manifest) is supported.
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
"""

RETURN = r"""
path:
  description: The archive directory of this server.
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

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import BackupSetError, private_umask
from ansible_collections.runbook.stack.plugins.module_utils._process import Interrupted, terminate_on_signals
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
    archive,
    archive_lock,
    held_range,
    load_index,
    plan_archive,
    prepare_dirs,
    read_manifest,
    rewrite_aof,
    save_index,
    source_root,
    wait_rewrite_idle,
)


def run(client: Any, params: dict[str, Any], source: str, check_mode: bool) -> dict[str, Any]:
    settings = aof_settings(client)
    wanted = {"appendonly": "yes", "aof-timestamp-enabled": "yes"}
    off = [name for name, value in wanted.items() if settings.get(name) != value]
    if off and not params["configure"]:
        raise RedisError(
            " and ".join(f"{n} is {settings.get(n) or 'unset'}" for n in off)
            + "; point-in-time archiving needs appendonly yes and aof-timestamp-enabled yes "
            "(set them in the server's config, or configure=true to CONFIG SET them)"
        )
    directory = source_root(params["dest"], source)
    index = load_index(directory, source)
    aof_dir = aof_dir_of(settings, params["data_dir"])
    result: dict[str, Any] = {"path": directory, "aof_dir": aof_dir, "configured": off, "rewritten": params["rewrite"]}
    if check_mode:
        if off:  # the AOF is written anew after the change: all of it would be copied
            generation, names = None, ["(every file of the AOF written after CONFIG SET)"]
        else:
            generation, names = plan_archive(index, aof_dir, read_manifest(aof_dir, settings["appendfilename"])[1])
        result.update(
            copied=[f"{generation or '(new generation)'}/{n}" for n in names],
            generation=generation,
            held=held_range(index),
            changed=bool(off or names or params["rewrite"]),
        )
        return result
    for name in off:
        client.config_set(name, wanted[name])
    if off:
        wait_rewrite_idle(client, params["timeout"])  # appendonly yes writes a new base first
    prepare_dirs(params["dest"], source)
    with archive_lock(directory):
        index = load_index(directory, source)  # again, under the lock
        if params["rewrite"]:
            generation, copied = rewrite_aof(
                client, params["timeout"], directory, index, aof_dir, settings["appendfilename"]
            )
        else:
            manifest_path, parts = read_manifest(aof_dir, settings["appendfilename"])
            with open(manifest_path, "rb") as fh:
                manifest = (os.path.basename(manifest_path), fh.read())
            done = archive(directory, index, aof_dir, parts, manifest)
            generation, copied = done.generation, [f"{done.generation}/{n}" for n in done.copied]
        save_index(directory, index)
    result.update(
        copied=copied,
        generation=generation,
        held=held_range(index),
        changed=bool(off or copied or params["rewrite"]),
    )
    return result


def main() -> None:
    argument_spec = redis_argument_spec()
    argument_spec.update(
        dest=dict(type="path", required=True),
        source=dict(type="str"),
        data_dir=dict(type="path"),
        configure=dict(type="bool", default=False),
        rewrite=dict(type="bool", default=False),
        timeout=dict(type="int", default=600),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_REDIS:
        module.fail_json(msg=missing_required_lib("redis"), exception=REDIS_IMPORT_ERROR)
    p = module.params
    if p["timeout"] < 1:
        module.fail_json(msg=f"timeout must be a positive number of seconds, got {p['timeout']}")
    if p["source"] is not None and not p["source"]:
        module.fail_json(msg="source must not be an empty string")
    started = time.monotonic()
    where = f"{p['login_host']}:{p['login_port']}"
    info, client = None, None
    try:
        info = conn_info(p)
        client = connect(info)
        with terminate_on_signals(), private_umask():
            result = run(client, p, p["source"] or info.where, module.check_mode)
    except (RedisError, BackupSetError) as exc:
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
