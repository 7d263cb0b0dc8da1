#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_health_info
short_description: Report the health of a Redis server
version_added: 0.1.0
description:
  - Connects to a Redis server, measures a C(PING) round trip and reports the number of keys in
    O(db), the replication role and state, memory use and limits, persistence (RDB and AOF),
    keys per database, clients and the cache hit rate computed from C(keyspace_hits) and
    C(keyspace_misses).
  - The hit rate is compared with O(min_hit_rate); the runbooks alert below V(0.8).
  - A server that cannot be reached or rejects the credentials fails the module with a message that
    names host, port and cause (never the password).
  - The module only reads. It runs the same way in check mode.
extends_documentation_fragment:
  - runbook.stack.redis
  - runbook.stack._attributes
  - runbook.stack._attributes.info_module
  - runbook.stack._attributes.actiongroup_redis
options:
  min_hit_rate:
    description:
      - Hit rate below which RV(hit_rate_ok) is false.
    type: float
    default: 0.8
seealso:
  - module: runbook.stack.redis_keys
  - module: runbook.stack.redis_config
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Read the health of the cache
  runbook.stack.redis_health_info:
    login_host: cache1.internal.example.com
    login_password: "{{ vault_redis_password }}"
  register: redis_health

- name: Alert when the hit rate is too low or the last save failed
  ansible.builtin.assert:
    that:
      - redis_health.hit_rate_ok
      - redis_health.persistence.rdb_last_bgsave_status == 'ok'
    fail_msg: "cache1: hit rate {{ redis_health.hit_rate }}, last save {{ redis_health.persistence.rdb_last_bgsave_status }}"
"""

RETURN = r"""
ping_ms:
  description: Round-trip time of one C(PING) in milliseconds.
  type: float
  returned: always
  sample: 0.213
version:
  description: Server version (C(redis_version)).
  type: str
  returned: always
  sample: 7.2.4
dbsize:
  description: Number of keys in O(db) (C(DBSIZE)).
  type: int
  returned: always
  sample: 1204
role:
  description: Replication role, V(master) or V(slave).
  type: str
  returned: always
  sample: master
replication:
  description: Replication state.
  type: dict
  returned: always
  contains:
    connected_slaves:
      description: Replicas connected to this primary.
      type: int
      sample: 1
    master_host:
      description: Primary this replica follows; null on a primary.
      type: str
      sample: 10.0.0.5
    master_link_status:
      description: V(up) or V(down) on a replica; null on a primary.
      type: str
      sample: up
    master_repl_offset:
      description: Replication offset.
      type: int
      sample: 123456
memory:
  description: Memory use and limits.
  type: dict
  returned: always
  contains:
    used_bytes:
      description: C(used_memory).
      type: int
      sample: 1048576
    peak_bytes:
      description: C(used_memory_peak).
      type: int
      sample: 2097152
    maxmemory_bytes:
      description: C(maxmemory); V(0) means no limit.
      type: int
      sample: 0
    maxmemory_policy:
      description: Eviction policy.
      type: str
      sample: allkeys-lru
    fragmentation_ratio:
      description: C(mem_fragmentation_ratio).
      type: float
      sample: 1.12
persistence:
  description: RDB and AOF state.
  type: dict
  returned: always
  contains:
    rdb_last_save_time:
      description: Unix time of the last successful save.
      type: int
      sample: 1763895600
    rdb_last_bgsave_status:
      description: V(ok) or V(err).
      type: str
      sample: ok
    rdb_bgsave_in_progress:
      description: Whether a background save runs now.
      type: bool
      sample: false
    rdb_changes_since_last_save:
      description: Writes since the last save.
      type: int
      sample: 17
    aof_enabled:
      description: Whether the append-only file is on.
      type: bool
      sample: false
    aof_rewrite_in_progress:
      description: Whether an AOF rewrite runs now.
      type: bool
      sample: false
    aof_last_write_status:
      description: V(ok) or V(err).
      type: str
      sample: ok
keyspace:
  description: Keys, keys with a TTL and average TTL per database that holds keys.
  type: dict
  returned: always
  sample: {"db0": {"keys": 1204, "expires": 10, "avg_ttl": 0}}
clients:
  description: Client connections.
  type: dict
  returned: always
  contains:
    connected:
      description: C(connected_clients).
      type: int
      sample: 12
    blocked:
      description: C(blocked_clients).
      type: int
      sample: 0
    maxclients:
      description: C(maxclients).
      type: int
      sample: 10000
keyspace_hits:
  description: Successful key lookups since the statistics were reset.
  type: int
  returned: always
  sample: 9000
keyspace_misses:
  description: Failed key lookups since the statistics were reset.
  type: int
  returned: always
  sample: 1000
hit_rate:
  description: RV(keyspace_hits) / (RV(keyspace_hits) + RV(keyspace_misses)); null when there were no lookups.
  type: float
  returned: always
  sample: 0.9
hit_rate_ok:
  description: Whether RV(hit_rate) is at least O(min_hit_rate); true when there were no lookups.
  type: bool
  returned: always
  sample: true
duration_s:
  description: Seconds the module spent collecting the report.
  type: float
  returned: always
  sample: 0.012
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._redis import (
    CLIENT_ERRORS,
    HAS_REDIS,
    REDIS_IMPORT_ERROR,
    RedisError,
    conn_info,
    connect,
    describe,
    hit_rate,
    parse_keyspace,
    redis_argument_spec,
)


def _int(info: dict[str, Any], key: str) -> int:
    try:
        return int(info.get(key) or 0)
    except (TypeError, ValueError):
        return 0


def _float(info: dict[str, Any], key: str) -> float | None:
    try:
        return float(info[key])
    except (KeyError, TypeError, ValueError):
        return None


def health(client: Any, min_hit_rate: float) -> dict[str, Any]:
    """The health report of a connected client."""
    started = time.perf_counter()
    client.ping()
    ping_ms = round((time.perf_counter() - started) * 1000, 3)
    info = client.info("everything")
    dbsize = int(client.dbsize())
    hits = _int(info, "keyspace_hits")
    misses = _int(info, "keyspace_misses")
    rate = hit_rate(hits, misses)
    role = str(info.get("role", ""))
    return dict(
        ping_ms=ping_ms,
        version=str(info.get("redis_version", "")),
        dbsize=dbsize,
        role=role,
        replication=dict(
            connected_slaves=_int(info, "connected_slaves"),
            master_host=info.get("master_host"),
            master_link_status=info.get("master_link_status"),
            master_repl_offset=_int(info, "master_repl_offset"),
        ),
        memory=dict(
            used_bytes=_int(info, "used_memory"),
            peak_bytes=_int(info, "used_memory_peak"),
            maxmemory_bytes=_int(info, "maxmemory"),
            maxmemory_policy=info.get("maxmemory_policy"),
            fragmentation_ratio=_float(info, "mem_fragmentation_ratio"),
        ),
        persistence=dict(
            rdb_last_save_time=_int(info, "rdb_last_save_time"),
            rdb_last_bgsave_status=info.get("rdb_last_bgsave_status"),
            rdb_bgsave_in_progress=bool(_int(info, "rdb_bgsave_in_progress")),
            rdb_changes_since_last_save=_int(info, "rdb_changes_since_last_save"),
            aof_enabled=bool(_int(info, "aof_enabled")),
            aof_rewrite_in_progress=bool(_int(info, "aof_rewrite_in_progress")),
            aof_last_write_status=info.get("aof_last_write_status"),
        ),
        keyspace=parse_keyspace(info),
        clients=dict(
            connected=_int(info, "connected_clients"),
            blocked=_int(info, "blocked_clients"),
            maxclients=_int(info, "maxclients"),
        ),
        keyspace_hits=hits,
        keyspace_misses=misses,
        hit_rate=rate,
        hit_rate_ok=rate is None or rate >= min_hit_rate,
    )


def main() -> None:
    argument_spec = redis_argument_spec()
    argument_spec.update(min_hit_rate=dict(type="float", default=0.8))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_REDIS:
        module.fail_json(msg=missing_required_lib("redis"), exception=REDIS_IMPORT_ERROR)

    started = time.monotonic()
    client = None
    info = None
    try:
        info = conn_info(module.params)
        client = connect(info)
        result = health(client, module.params["min_hit_rate"])
    except RedisError as exc:
        module.fail_json(msg=str(exc), duration_s=round(time.monotonic() - started, 3))
    except CLIENT_ERRORS as exc:
        cause = describe(exc, info) if info else str(exc)
        where = info.where if info else "Redis"
        module.fail_json(msg=f"cannot read health of Redis at {where}: {cause}")
    finally:
        if client is not None:
            client.close()
    module.exit_json(changed=False, duration_s=round(time.monotonic() - started, 3), **result)


if __name__ == "__main__":
    main()
