# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis helpers of the redis_* modules (private), one file per concern:

- ``connection.py``: connection options, ConnInfo, RedisError, connect, redis-cli argv and
  environment, waiting for a server (port_open, poll);
- ``info.py``: pure parsing of what the server reports (memory sizes, INFO, keyspace, CONFIG values);
- ``persistence.py``: data paths, BGSAVE and the wait for it, RDB checks, copying the RDB;
- ``journal.py``: the journal and locator of an interrupted restore, how the server ran before;
- ``control.py``: stopping and starting the server on this host (was _redis_control.py).

This ``__init__`` is a one-release re-export shim: it re-exports every public name of the former
``_redis.py`` so that ``from ...module_utils._redis import X`` keeps working for one release. New
code imports from the file that defines the name; the shim goes in the release after.
"""

from __future__ import annotations

from ansible_collections.runbook.stack.plugins.module_utils._redis.connection import (
    CLIENT_ERRORS,
    HAS_REDIS,
    REDIS_IMPORT_ERROR,
    ConnInfo,
    RedisError,
    conn_info,
    connect,
    describe,
    poll,
    port_open,
    redis_argument_spec,
    redis_cli_argv,
    redis_cli_env,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis.info import (
    compare_keyspace,
    config_value,
    hit_rate,
    normalize_config,
    parse_info_text,
    parse_keyspace,
    parse_memory,
    total_keys,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis.journal import (
    JOURNAL_FORMAT,
    Journal,
    journal_bytes,
    journal_path,
    locator_path,
    original_start,
    parse_journal,
    process_owner,
    restore_leftovers,
    state_home,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis.persistence import (
    DONE,
    RDB_MAGIC,
    WAIT,
    DataPaths,
    SaveMarker,
    aof_manifest,
    busy_persisting,
    check_rdb_magic,
    copy_stable,
    data_paths,
    read_data_paths,
    request_bgsave,
    save_advanced,
    save_marker,
    save_progress,
    wait_for_save,
    wait_until_idle,
)

__all__ = [
    "CLIENT_ERRORS",
    "DONE",
    "HAS_REDIS",
    "JOURNAL_FORMAT",
    "RDB_MAGIC",
    "REDIS_IMPORT_ERROR",
    "WAIT",
    "ConnInfo",
    "DataPaths",
    "Journal",
    "RedisError",
    "SaveMarker",
    "aof_manifest",
    "busy_persisting",
    "check_rdb_magic",
    "compare_keyspace",
    "config_value",
    "conn_info",
    "connect",
    "copy_stable",
    "data_paths",
    "describe",
    "hit_rate",
    "journal_bytes",
    "journal_path",
    "locator_path",
    "normalize_config",
    "original_start",
    "parse_info_text",
    "parse_journal",
    "parse_keyspace",
    "parse_memory",
    "poll",
    "port_open",
    "process_owner",
    "read_data_paths",
    "redis_argument_spec",
    "redis_cli_argv",
    "redis_cli_env",
    "request_bgsave",
    "restore_leftovers",
    "save_advanced",
    "save_marker",
    "save_progress",
    "state_home",
    "total_keys",
    "wait_for_save",
    "wait_until_idle",
]
