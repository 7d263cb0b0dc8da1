#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: maintenance_mode
short_description: Switch a maintenance flag on or off (a flag file and/or a Redis key)
version_added: 0.1.0
description:
  - Turns maintenance mode on or off through the signals applications and load balancers read, for
    example an nginx C(if (-f /var/www/maintenance.flag)) rule, or a Redis key the application checks.
    Set O(flag_file), O(redis_key) or both; at least one is required.
  - When on, the flag file and the key hold the same JSON document with the keys C(enabled) (true),
    C(reason), C(since) (UTC time the flag was first set) and C(set_by). Readers should only test
    whether the file or key exists; the content is for people.
  - The flag file is written atomically (temporary file in the same directory, fsync, rename) with
    mode 0644; its directory must exist. O(state=off) removes the file and deletes the key.
  - All current state is read (and Redis reached) before anything is changed, so a wrong password or
    an unreachable server changes nothing.
extends_documentation_fragment:
  - runbook.stack.redis
  - runbook.stack._attributes
  - runbook.stack._attributes.actiongroup_redis
attributes:
  check_mode:
    support: full
    details: Reads the flag file and the key and reports what would change; nothing is written or deleted.
  diff_mode:
    support: full
    details: Before and after show, for the flag file and the key, whether the flag is on and its reason and start time.
  idempotent:
    support: full
    details:
      - On when already on, or off when already off, is no change.
      - A different O(reason) is a change; the flag is rewritten with the new reason and keeps its original C(since) time.
      - Without O(reason), an existing flag is left as it is, whatever its content.
options:
  state:
    description:
      - V(on) (alias V(present)) sets the flag, V(off) (alias V(absent)) removes it.
      - An unquoted YAML V(on)/V(off), which YAML reads as a boolean, is understood too.
    type: str
    choices: ['on', 'off', present, absent]
    default: 'on'
  flag_file:
    description:
      - Path of the flag file, for example C(/var/www/maintenance.flag). Its directory must exist.
    type: path
  redis_key:
    description:
      - Name of the Redis key, for example V(maintenance), in database O(db). The Redis connection
        options are only used when this is set.
      - An existing key of another type than string is never overwritten; the module fails instead.
    type: str
  reason:
    description:
      - Why maintenance is on, recorded in the flag file and the key (and shown in diffs).
      - Not used with O(state=off).
    type: str
  ttl:
    description:
      - Seconds after which Redis deletes the key by itself, so a forgotten maintenance window ends.
        Only for O(redis_key); the flag file never expires.
      - Applied when the key is written. An existing key without an expiry gets one; an existing
        key that already expires keeps its remaining time (run with O(state=off) first to restart it).
    type: int
notes:
  - With O(redis_key) unset, no connection is made and the Redis options are ignored.
seealso:
  - module: runbook.stack.redis_health_info
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Maintenance page on (nginx returns 503 while the flag file exists; the app reads the key)
  runbook.stack.maintenance_mode:
    state: "on"
    flag_file: /var/www/maintenance.flag
    redis_key: maintenance
    reason: "PostgreSQL 15 -> 16 upgrade, CHG-2291"
    ttl: 7200
    login_host: cache1.internal.example.com
    login_password: "{{ vault_redis_password }}"

- name: Maintenance page off
  runbook.stack.maintenance_mode:
    state: "off"
    flag_file: /var/www/maintenance.flag
    redis_key: maintenance
    login_host: cache1.internal.example.com
    login_password: "{{ vault_redis_password }}"

- name: Flag file only, in a play with the Redis options set once
  hosts: web
  module_defaults:
    group/runbook.stack.redis:
      login_host: cache1.internal.example.com
  tasks:
    - name: Announce the window on each web server
      runbook.stack.maintenance_mode:
        flag_file: /var/www/maintenance.flag
        reason: certificate swap
"""

RETURN = r"""
previous:
  description: Whether the flag was on before the run, per signal; null for a signal that is not configured.
  type: dict
  returned: always
  contains:
    flag_file:
      description: The flag file existed.
      type: bool
      sample: false
    redis_key:
      description: The key existed.
      type: bool
      sample: false
enabled:
  description: Whether maintenance mode is on after the run (in check mode, would be).
  type: bool
  returned: always
  sample: true
reason:
  description: The reason recorded now (or in check mode, would be); null when off or none was given.
  type: str
  returned: always
  sample: PostgreSQL 15 -> 16 upgrade, CHG-2291
since:
  description: When maintenance mode was switched on (UTC), kept across reruns; null when off.
  type: str
  returned: always
  sample: "2026-03-01T02:00:00Z"
ttl:
  description: Seconds the key has left (-1 when it does not expire); null without O(redis_key) or when off.
  type: int
  returned: always
  sample: 7200
duration_s:
  description: Seconds the module spent.
  type: float
  returned: always
  sample: 0.006
"""

import datetime as _dt
import json
import os
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._common.files import atomic_write
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

FLAG_MODE = 0o644
SET_BY = "runbook.stack.maintenance_mode"


class MaintenanceError(Exception):
    """A foreseeable fault with the flag file or the arguments, phrased for the operator."""


def parse_flag(raw: bytes | str | None) -> dict[str, Any] | None:
    """The state a flag's content stands for: None when absent, else reason/since (None when the
    content is not this module's JSON: any existing file or key still means on)."""
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except (TypeError, ValueError):
        doc = None
    if not isinstance(doc, dict):
        return {"reason": None, "since": None, "foreign": True}
    reason = doc.get("reason")
    since = doc.get("since")
    return {
        "reason": str(reason) if reason is not None else None,
        "since": str(since) if since is not None else None,
        "foreign": False,
    }


def flag_document(reason: str | None, since: str) -> str:
    return json.dumps({"enabled": True, "reason": reason, "since": since, "set_by": SET_BY}, sort_keys=True)


def needs_write(current: dict[str, Any] | None, reason: str | None) -> bool:
    """Whether ``state=on`` must (re)write a flag: it is missing, or a given reason differs."""
    if current is None:
        return True
    return reason is not None and (current["foreign"] or current["reason"] != reason)


def read_flag_file(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(65536)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise MaintenanceError(f"flag_file {path} is a directory") from None
    except OSError as exc:
        raise MaintenanceError(f"cannot read flag_file {path}: {exc.strerror or exc}") from None
    return parse_flag(raw)


def check_flag_dir(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise MaintenanceError(f"cannot use flag_file {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise MaintenanceError(f"cannot use flag_file {path}: directory {directory} is not writable")


def read_redis_flag(client: Any, key: str, where: str) -> tuple[dict[str, Any] | None, int | None]:
    """(flag state, remaining ttl) of the key; MaintenanceError for a key of another type."""
    kind = client.type(key)
    if kind == "none":
        return None, None
    if kind != "string":
        raise MaintenanceError(f"Redis key {key!r} on {where} holds a {kind}, not a string: refusing to touch it")
    return parse_flag(client.get(key)), int(client.ttl(key))


def view(flag: dict[str, Any] | None) -> dict[str, Any]:
    if flag is None:
        return {"enabled": False}
    return {"enabled": True, "reason": flag.get("reason"), "since": flag.get("since")}


def main() -> None:
    argument_spec = redis_argument_spec()
    argument_spec.update(
        state=dict(type="str", default="on", choices=["on", "off", "present", "absent"]),
        flag_file=dict(type="path"),
        redis_key=dict(type="str", no_log=False),
        reason=dict(type="str"),
        ttl=dict(type="int"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_one_of=[("flag_file", "redis_key")],
        supports_check_mode=True,
    )
    params = module.params
    if params["redis_key"] is not None and not HAS_REDIS:
        module.fail_json(msg=missing_required_lib("redis"), exception=REDIS_IMPORT_ERROR)

    started = time.monotonic()
    want_on = params["state"] in ("on", "present")
    reason = params["reason"] if want_on else None
    flag_path = params["flag_file"]
    key = params["redis_key"]
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    client = None
    info = None
    done: list[str] = []

    def fail(msg: str) -> None:
        if done:
            msg += f" (already done: {', '.join(done)})"
        module.fail_json(msg=msg, duration_s=round(time.monotonic() - started, 3))

    try:
        if params["ttl"] is not None and params["ttl"] <= 0:
            raise MaintenanceError(f"ttl must be a positive number of seconds, got {params['ttl']}")
        if params["ttl"] is not None and key is None:
            raise MaintenanceError("ttl is only used with redis_key (the flag file never expires)")
        if key is not None and not key:
            raise MaintenanceError("redis_key is empty")

        # ------------------------------------------------ read everything first
        file_flag = key_flag = None
        key_ttl = None
        if flag_path:
            file_flag = read_flag_file(flag_path)
            if (want_on and needs_write(file_flag, reason)) or (not want_on and file_flag is not None):
                check_flag_dir(flag_path)
        if key is not None:
            info = conn_info(params)
            client = connect(info)
            key_flag, key_ttl = read_redis_flag(client, key, info.where)

        previous = {
            "flag_file": file_flag is not None if flag_path else None,
            "redis_key": key_flag is not None if key is not None else None,
        }
        present = [f for f in (file_flag, key_flag) if f is not None]
        # one start time for both signals: the earliest one already recorded, else now
        since = min([f["since"] for f in present if f["since"]] or [now]) if want_on else None

        file_write = bool(flag_path) and want_on and needs_write(file_flag, reason)
        file_remove = bool(flag_path) and not want_on and file_flag is not None
        key_write = key is not None and want_on and needs_write(key_flag, reason)
        key_expire = (
            key is not None
            and want_on
            and not key_write
            and params["ttl"] is not None
            and key_flag is not None
            and key_ttl == -1
        )
        key_remove = key is not None and not want_on and key_flag is not None
        changed = any((file_write, file_remove, key_write, key_expire, key_remove))

        def after(flag: dict[str, Any] | None, write: bool) -> dict[str, Any] | None:
            if not want_on:
                return None
            if write:
                return {"reason": reason if reason is not None else (flag or {}).get("reason"), "since": since}
            return flag

        file_after = after(file_flag, file_write) if flag_path else None
        key_after = after(key_flag, key_write) if key is not None else None

        ttl_after = None
        if key is not None and want_on:
            if (key_write and params["ttl"] is not None) or key_expire:
                ttl_after = params["ttl"]
            else:
                ttl_after = key_ttl if key_ttl is not None else -1

        # ------------------------------------------------ then change what differs
        if changed and not module.check_mode:
            if file_write:
                try:
                    doc = flag_document(file_after["reason"], file_after["since"] or since)
                    atomic_write(flag_path, (doc + "\n").encode(), FLAG_MODE)
                except OSError as exc:
                    raise MaintenanceError(f"cannot write flag_file {flag_path}: {exc.strerror or exc}") from None
                done.append(f"flag_file {flag_path} written")
            if file_remove:
                try:
                    os.unlink(flag_path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise MaintenanceError(f"cannot remove flag_file {flag_path}: {exc.strerror or exc}") from None
                done.append(f"flag_file {flag_path} removed")
            if key_write:
                doc = flag_document(key_after["reason"], key_after["since"] or since)
                if params["ttl"] is not None:
                    client.set(key, doc, ex=params["ttl"])
                elif key_flag is not None:
                    client.set(key, doc, keepttl=True)
                else:
                    client.set(key, doc)
                done.append(f"Redis key {key!r} written")
            if key_expire:
                client.expire(key, params["ttl"])
            if key_remove:
                client.delete(key)
            if key_write or key_expire:
                ttl_after = int(client.ttl(key))
    except (MaintenanceError, RedisError) as exc:
        fail(str(exc))
    except CLIENT_ERRORS as exc:
        where = info.where if info else "Redis"
        fail(f"cannot switch maintenance mode on Redis key {key!r} at {where}: {describe(exc, info) if info else exc}")
    finally:
        if client is not None:
            client.close()

    current = file_after if flag_path else key_after
    if current is None and key is not None:
        current = key_after
    result: dict[str, Any] = dict(
        changed=changed,
        previous=previous,
        enabled=want_on,
        reason=(current or {}).get("reason") if want_on else None,
        since=(current or {}).get("since") if want_on else None,
        ttl=ttl_after,
        duration_s=round(time.monotonic() - started, 3),
    )
    if module._diff:
        before: dict[str, Any] = {}
        after_view: dict[str, Any] = {}
        if flag_path:
            before["flag_file"] = view(file_flag)
            after_view["flag_file"] = view(file_after)
        if key is not None:
            before["redis_key"] = view(key_flag)
            after_view["redis_key"] = view(key_after)
        result["diff"] = dict(before=before, after=after_view)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
