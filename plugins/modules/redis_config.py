#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_config
short_description: Set Redis server settings at runtime with CONFIG SET
version_added: 0.1.0
description:
  - Reads every setting of O(settings) with C(CONFIG GET), compares it with the wanted value and
    sets only the ones that differ with C(CONFIG SET). An unknown setting fails the module before
    anything is set.
  - Values are compared the way Redis reports them. Memory units are normalised first (V(1gb)
    equals V(1073741824); V(k), V(m), V(g) are powers of 1000 and V(kb), V(mb), V(gb) powers of
    1024, as in C(redis.conf)), whitespace is collapsed (C(save)) and booleans become V(yes)/V(no).
  - With O(persist=true) the module runs C(CONFIG REWRITE) after a change so the server's config
    file keeps the new values across restarts. A server started without a config file cannot do
    that and the module fails (the runtime change has been made by then).
extends_documentation_fragment:
  - runbook.stack.redis
  - runbook.stack._attributes
  - runbook.stack._attributes.actiongroup_redis
attributes:
  check_mode:
    support: full
    details: Reads and compares the settings and reports what would change; nothing is set.
  diff_mode:
    support: full
    details: The diff shows the changed settings before and after.
  idempotent:
    support: full
    details:
      - Settings whose normalised value already matches are not set again.
      - A value Redis rewrites into another form (for example one class of C(client-output-buffer-limit)
        where Redis reports all three) is reported as changed on every run; give it in Redis' form.
options:
  settings:
    description:
      - Setting names and their wanted values, for example V(maxmemory) with V(2gb) and
        V(maxmemory-policy) with V(allkeys-lru).
      - Glob characters are not allowed in names.
    type: dict
    required: true
  persist:
    description:
      - Run C(CONFIG REWRITE) when a setting changed, so the config file keeps the new values.
    type: bool
    default: false
notes:
  - The connection option O(db) is not used by this module.
seealso:
  - module: runbook.stack.redis_health_info
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Cap the cache at 2 GiB and evict least recently used keys
  runbook.stack.redis_config:
    login_host: cache1.internal.example.com
    login_password: "{{ vault_redis_password }}"
    settings:
      maxmemory: 2gb
      maxmemory-policy: allkeys-lru
    persist: true

- name: Log commands slower than 5 ms
  runbook.stack.redis_config:
    login_host: cache1.internal.example.com
    settings:
      slowlog-log-slower-than: 5000
"""

RETURN = r"""
changed_settings:
  description: Names of the settings that were (or in check mode would be) set.
  type: list
  elements: str
  returned: always
  sample: [maxmemory]
before:
  description: Value of every setting of O(settings) before the run, as C(CONFIG GET) reported it.
  type: dict
  returned: always
  sample: {"maxmemory": "0", "maxmemory-policy": "allkeys-lru"}
after:
  description: Value of every setting of O(settings) after the run (as read back; predicted in check mode).
  type: dict
  returned: always
  sample: {"maxmemory": "2147483648", "maxmemory-policy": "allkeys-lru"}
persisted:
  description: Whether C(CONFIG REWRITE) ran.
  type: bool
  returned: always
  sample: true
duration_s:
  description: Seconds the module spent.
  type: float
  returned: always
  sample: 0.004
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line
from ansible_collections.runbook.stack.plugins.module_utils._redis import (
    CLIENT_ERRORS,
    HAS_REDIS,
    REDIS_IMPORT_ERROR,
    RedisError,
    config_value,
    conn_info,
    connect,
    describe,
    normalize_config,
    redis_argument_spec,
)

if HAS_REDIS:
    import redis


def read_settings(client: Any, names: list[str], where: str) -> dict[str, str]:
    """CONFIG GET of each name; RedisError naming every unknown setting."""
    bad = [n for n in names if any(c in n for c in "*?[]")]
    if bad:
        raise RedisError(f"setting names may not contain glob characters: {', '.join(sorted(bad))}")
    current: dict[str, str] = {}
    unknown = []
    for name in names:
        reply = {str(k).lower(): v for k, v in client.config_get(name).items()}
        if name.lower() in reply:
            current[name] = str(reply[name.lower()])
        elif len(reply) == 1:  # an alias (slaveof -> replicaof)
            current[name] = str(next(iter(reply.values())))
        else:
            unknown.append(name)
    if unknown:
        raise RedisError(
            f"unknown Redis setting(s) {', '.join(repr(n) for n in sorted(unknown))} on {where}; nothing was changed"
        )
    return current


def set_settings(client: Any, wanted: dict[str, str], where: str) -> None:
    """CONFIG SET of all names in one command (atomic on Redis 7), one by one on older servers."""
    args: list[str] = []
    for name, value in wanted.items():
        args += [name, value]
    try:
        major = int(str(client.info("server").get("redis_version", "7")).split(".", maxsplit=1)[0])
        if len(wanted) == 1 or major >= 7:
            client.execute_command("CONFIG SET", *args)
        else:
            for name, value in wanted.items():
                client.config_set(name, value)
    except redis.ResponseError as exc:
        raise RedisError(f"cannot set {', '.join(sorted(wanted))} on Redis at {where}: {one_line(exc)}") from None


def main() -> None:
    argument_spec = redis_argument_spec()
    argument_spec.update(
        settings=dict(type="dict", required=True),
        persist=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_REDIS:
        module.fail_json(msg=missing_required_lib("redis"), exception=REDIS_IMPORT_ERROR)

    params = module.params
    started = time.monotonic()
    client = None
    info = None
    persisted = False
    try:
        if not params["settings"]:
            raise RedisError("settings is empty: name at least one setting")
        wanted = {str(k): config_value(v) for k, v in params["settings"].items()}
        info = conn_info(params)
        client = connect(info)
        before = read_settings(client, list(wanted), info.where)
        to_set = {n: v for n, v in wanted.items() if normalize_config(v) != normalize_config(before[n])}
        after = dict(before)
        if to_set and not module.check_mode:
            set_settings(client, to_set, info.where)
            after.update(read_settings(client, list(to_set), info.where))
            if params["persist"]:
                try:
                    client.config_rewrite()
                except redis.ResponseError as exc:
                    raise RedisError(
                        f"set {', '.join(sorted(to_set))} at runtime on Redis at {info.where}, but CONFIG REWRITE "
                        f"failed, so the config file was not updated: {one_line(exc)}"
                    ) from None
                persisted = True
        elif to_set:
            after.update({n: normalize_config(v) for n, v in to_set.items()})
    except RedisError as exc:
        module.fail_json(msg=str(exc), duration_s=round(time.monotonic() - started, 3))
    except CLIENT_ERRORS as exc:
        cause = describe(exc, info) if info else str(exc)
        where = info.where if info else "Redis"
        module.fail_json(
            msg=f"cannot configure Redis at {where}: {cause}", duration_s=round(time.monotonic() - started, 3)
        )
    finally:
        if client is not None:
            client.close()
    changed_names = sorted(to_set)
    result: dict[str, Any] = dict(
        changed=bool(to_set),
        changed_settings=changed_names,
        before=before,
        after=after,
        persisted=persisted,
        duration_s=round(time.monotonic() - started, 3),
    )
    if module._diff:
        result["diff"] = dict(
            before={n: before[n] for n in changed_names},
            after={n: after[n] for n in changed_names},
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
