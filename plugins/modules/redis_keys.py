#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_keys
short_description: Count, delete or expire Redis keys that match a pattern
version_added: 0.1.0
description:
  - Walks the keys of O(db) that match O(pattern) with C(SCAN) (C(COUNT) O(batch_size)) and counts
    them, deletes them with C(UNLINK) or gives them a time to live with C(EXPIRE).
  - By default each batch runs on the server as one short Lua script (C(SCAN) then C(UNLINK) or
    C(EXPIRE) of what it returned), so the keys never travel to the module and a batch costs one
    round trip. Each script handles one C(SCAN) batch only, so it blocks the server no longer than
    the C(SCAN) call and the deletes of that batch would. C(KEYS) is never used.
  - Where scripts are not allowed (O(server_side=false), C(EVAL) renamed or denied by an ACL) the
    module sends each batch's deletes or expiries in a pipeline together with the next C(SCAN) call
    instead; it switches to that path by itself when the server refuses the script.
  - An empty pattern or one made only of V(*) matches every key; O(action=delete) and
    O(action=expire) then need O(allow_all=true).
  - In check mode the module only counts; it returns the number of matching keys and a sample of
    them and predicts C(changed) (true when a key matches), without touching any key.
extends_documentation_fragment:
  - runbook.stack.redis
  - runbook.stack._attributes
  - runbook.stack._attributes.actiongroup_redis
attributes:
  check_mode:
    support: full
    details: Counts and samples the matching keys; nothing is deleted or expired.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - O(action=count) never changes anything. O(action=delete) reports no change once no key matches.
      - O(action=expire) sets the time to live again on every run, so it reports a change whenever a key matches.
options:
  pattern:
    description:
      - Glob-style pattern as C(SCAN MATCH) takes it, for example V(session:*) or V(cache:user:??:*).
      - An empty pattern is treated as V(*).
    type: str
    required: true
  action:
    description:
      - V(count) only counts; V(delete) removes the keys with C(UNLINK) (memory is freed in the
        background); V(expire) sets a time to live of O(ttl) seconds on each key.
    type: str
    choices: [count, delete, expire]
    default: count
  ttl:
    description:
      - Time to live in seconds for O(action=expire); required then and must be above 0.
    type: int
  batch_size:
    description:
      - C(COUNT) hint of each C(SCAN) call, and so the largest number of keys in one pipeline.
    type: int
    default: 1000
  max_per_second:
    description:
      - Upper bound on the keys examined per second, to spare a busy server. Unlimited when not set.
      - Each C(SCAN) call counts as O(batch_size) keys examined (its C(COUNT) hint); the module
        sleeps between calls to stay below the rate.
    type: float
  sample_size:
    description:
      - How many of the matching keys to return in RV(sample).
    type: int
    default: 10
  allow_all:
    description:
      - Allow O(action=delete) or O(action=expire) with a pattern that matches every key.
    type: bool
    default: false
  server_side:
    description:
      - Run each batch as a Lua script on the server (V(true)), or walk the keys from the module
        with pipelines (V(false)). With V(true) the module still falls back to pipelines when the
        server refuses scripts; RV(method) says which path ran.
    type: bool
    default: true
notes:
  - C(SCAN) may return a key more than once while the server resizes its hash table, so
    RV(matched) can exceed the number of distinct keys; RV(affected) counts what the server
    actually deleted or expired.
  - Keys written while the module runs may or may not be seen.
seealso:
  - module: runbook.stack.redis_health_info
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: How many sessions are there?
  runbook.stack.redis_keys:
    login_host: cache1.internal.example.com
    pattern: "session:*"
  register: sessions

- name: Drop the rendered-page cache, at most 50000 keys per second
  runbook.stack.redis_keys:
    login_host: cache1.internal.example.com
    login_password: "{{ vault_redis_password }}"
    pattern: "page:*"
    action: delete
    batch_size: 5000
    max_per_second: 50000

- name: Let the feature-flag cache run out within an hour
  runbook.stack.redis_keys:
    login_host: cache1.internal.example.com
    pattern: "flags:*"
    action: expire
    ttl: 3600
"""

RETURN = r"""
matched:
  description: Keys that matched O(pattern) as C(SCAN) returned them.
  type: int
  returned: always
  sample: 500000
affected:
  description: Keys deleted or given a time to live; V(0) for O(action=count) and in check mode.
  type: int
  returned: always
  sample: 500000
sample:
  description: Up to O(sample_size) matching keys (bytes that are not UTF-8 are shown escaped).
  type: list
  elements: str
  returned: always
  sample: ["session:8c1f", "session:91aa"]
method:
  description: How the batches ran; V(server_script) (Lua script per batch) or V(client_pipeline).
  type: str
  returned: always
  sample: server_script
scan_calls:
  description: C(SCAN) calls made.
  type: int
  returned: always
  sample: 1000
duration_s:
  description: Seconds the module spent.
  type: float
  returned: always
  sample: 1.84
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
    redis_argument_spec,
)


def matches_all(pattern: str) -> bool:
    """True when a SCAN MATCH pattern matches every key ('' or only '*')."""
    return pattern.strip("*") == ""


def check_options(params: dict[str, Any]) -> None:
    action = params["action"]
    if params["batch_size"] < 1:
        raise RedisError(f"batch_size must be 1 or more, got {params['batch_size']}")
    if params["sample_size"] < 0:
        raise RedisError(f"sample_size must be 0 or more, got {params['sample_size']}")
    if params["max_per_second"] is not None and params["max_per_second"] <= 0:
        raise RedisError(f"max_per_second must be above 0, got {params['max_per_second']}")
    if action == "expire" and (params["ttl"] is None or params["ttl"] <= 0):
        raise RedisError(f"action=expire needs ttl above 0 (seconds), got {params['ttl']}")
    if action != "expire" and params["ttl"] is not None:
        raise RedisError(f"ttl is only used with action=expire, not action={action}")
    if action in ("delete", "expire") and matches_all(params["pattern"]) and not params["allow_all"]:
        raise RedisError(
            f"refusing to {action} every key of db {params['db']} (pattern {params['pattern']!r}): set allow_all=true"
        )


def _text(key: bytes) -> str:
    return key.decode("utf-8", "backslashreplace")


# One SCAN batch on the server: ARGV = cursor, pattern, count, action, ttl, sample size.
# Returns {next cursor, keys matched, keys affected, up to <sample size> matched keys}. UNLINK takes
# its keys in slices, so no call exceeds Lua's argument limit however many keys SCAN returned.
BATCH_SCRIPT = """
local res = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local keys = res[2]
local affected = 0
if ARGV[4] == 'delete' then
  for i = 1, #keys, 1000 do
    affected = affected + redis.call('UNLINK', unpack(keys, i, math.min(i + 999, #keys)))
  end
elseif ARGV[4] == 'expire' then
  for i = 1, #keys do
    affected = affected + redis.call('EXPIRE', keys[i], ARGV[5])
  end
end
local sample = {}
for i = 1, math.min(tonumber(ARGV[6]), #keys) do
  sample[i] = keys[i]
end
return {res[1], #keys, affected, sample}
"""

# Replies that mean "scripts are not available here", as opposed to a fault of the batch itself.
_NO_SCRIPT_HINTS = ("unknown command", "noperm", "no permissions", "scripting", "disabled", "not allowed")


class ScriptRefused(Exception):
    """The server refused the batch script before any key was touched."""


def script_refused(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(hint in text for hint in _NO_SCRIPT_HINTS)


def _pace(examined: int, max_per_second: float | None, started: float) -> None:
    if max_per_second:
        ahead = examined / max_per_second - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)


def walk_server_side(
    client: Any,
    pattern: str,
    action: str,
    ttl: int | None,
    batch_size: int,
    sample_size: int,
    max_per_second: float | None,
) -> dict[str, Any]:
    """Like :func:`walk`, with each batch's SCAN and UNLINK/EXPIRE in one Lua script on the server.

    Raises :class:`ScriptRefused` when the server refuses the script on the first batch (callers
    fall back to :func:`walk`); nothing has been changed then."""
    script = client.register_script(BATCH_SCRIPT)
    matched = affected = scan_calls = examined = 0
    sample: list[str] = []
    started = time.monotonic()
    cursor: Any = 0
    while True:
        try:
            reply = script(args=[cursor, pattern, batch_size, action, ttl or 0, max(sample_size - len(sample), 0)])
        except CLIENT_ERRORS as exc:
            if scan_calls == 0 and script_refused(exc):
                raise ScriptRefused(str(exc)) from None
            raise
        cursor, found, done, keys = reply
        scan_calls += 1
        examined += batch_size
        matched += int(found)
        affected += int(done)
        sample.extend(_text(k) for k in keys[: sample_size - len(sample)])
        if int(cursor) == 0:
            break
        _pace(examined, max_per_second, started)
    return dict(matched=matched, affected=affected, sample=sample, scan_calls=scan_calls, method="server_script")


def walk(
    client: Any,
    pattern: str,
    action: str,
    ttl: int | None,
    batch_size: int,
    sample_size: int,
    max_per_second: float | None,
) -> dict[str, int | list[str]]:
    """SCAN the keys that match ``pattern`` and apply ``action`` (``count`` touches nothing).

    Each round trip sends the deletes/expiries of the previous batch and the next SCAN in one
    non-transactional pipeline.
    """
    matched = affected = scan_calls = examined = 0
    sample: list[str] = []
    started = time.monotonic()
    cursor, keys = client.scan(0, match=pattern, count=batch_size)
    scan_calls = 1
    while True:
        matched += len(keys)
        examined += batch_size
        if len(sample) < sample_size:
            sample.extend(_text(k) for k in keys[: sample_size - len(sample)])
        _pace(examined, max_per_second, started)
        pipe = client.pipeline(transaction=False)
        if keys and action == "delete":
            pipe.unlink(*keys)
        elif keys and action == "expire":
            for key in keys:
                pipe.expire(key, ttl)
        last = cursor == 0
        if not last:
            pipe.scan(cursor, match=pattern, count=batch_size)
            scan_calls += 1
        if not len(pipe):
            break
        replies = pipe.execute()
        if keys and action == "delete":
            affected += int(replies[0])
        elif keys and action == "expire":
            affected += sum(1 for reply in replies[: len(keys)] if reply)
        if last:
            break
        cursor, keys = replies[-1]
    return dict(matched=matched, affected=affected, sample=sample, scan_calls=scan_calls, method="client_pipeline")


def main() -> None:
    argument_spec = redis_argument_spec()
    argument_spec.update(
        pattern=dict(type="str", required=True),
        action=dict(type="str", default="count", choices=["count", "delete", "expire"]),
        ttl=dict(type="int"),
        batch_size=dict(type="int", default=1000),
        max_per_second=dict(type="float"),
        sample_size=dict(type="int", default=10),
        allow_all=dict(type="bool", default=False),
        server_side=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_REDIS:
        module.fail_json(msg=missing_required_lib("redis"), exception=REDIS_IMPORT_ERROR)

    params = module.params
    started = time.monotonic()
    client = None
    info = None
    pattern = params["pattern"] or "*"
    action = params["action"]
    try:
        check_options(params)
        info = conn_info(params)
        client = connect(info, decode=False)
        walk_args = (
            client,
            pattern,
            "count" if module.check_mode else action,
            params["ttl"],
            params["batch_size"],
            params["sample_size"],
            params["max_per_second"],
        )
        result = None
        if params["server_side"]:
            try:
                result = walk_server_side(*walk_args)
            except ScriptRefused as exc:
                module.warn(f"Lua scripts are not available on this server ({describe(exc, info)}); using pipelines")
        if result is None:
            result = walk(*walk_args)
    except RedisError as exc:
        module.fail_json(msg=str(exc), duration_s=round(time.monotonic() - started, 3))
    except CLIENT_ERRORS as exc:
        cause = describe(exc, info) if info else str(exc)
        where = info.where if info else "Redis"
        module.fail_json(
            msg=f"cannot {action} keys matching {pattern!r} in db {params['db']} of Redis at {where}: {cause}",
            duration_s=round(time.monotonic() - started, 3),
        )
    finally:
        if client is not None:
            client.close()
    # check mode walked with action=count: a key that matched is a key the real run would change
    predicted = action != "count" and result["matched"] > 0
    changed = predicted if module.check_mode else result["affected"] > 0
    module.exit_json(changed=changed, duration_s=round(time.monotonic() - started, 3), **result)


if __name__ == "__main__":
    main()
