# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One-release re-export shim (private): the in-place pgBackRest restore moved to
``_postgresql/in_place_restore.py`` (plan and run) and ``_postgresql/local_server.py`` (the server on
this host). This file re-exports every public name it had, so existing imports keep working for one
release; new code imports from those files. It goes in the release after.
"""

from __future__ import annotations

from ansible_collections.runbook.stack.plugins.module_utils._postgresql.in_place_restore import (
    RECOVERY_POINT_SOURCE,
    check_current,
    check_placement,
    clear_staging,
    in_place_restore_argv,
    make_plan,
    pg_major,
    restore_in_place,
    roll_back,
    run_in_place,
    utc_iso,
)
from ansible_collections.runbook.stack.plugins.module_utils._postgresql.local_server import (
    GONE_GRACE_S,
    LOG_LINES,
    POLL_S,
    STOP_GRACE_S,
    Plan,
    control_env,
    log_offset,
    log_tail,
    poll,
    postmaster_pid,
    process_alive,
    reload_conf,
    run_control,
    server_answers,
    server_facts,
    start_server,
    stop_server,
    wait_ready,
)

__all__ = [
    "GONE_GRACE_S",
    "LOG_LINES",
    "POLL_S",
    "RECOVERY_POINT_SOURCE",
    "STOP_GRACE_S",
    "Plan",
    "check_current",
    "check_placement",
    "clear_staging",
    "control_env",
    "in_place_restore_argv",
    "log_offset",
    "log_tail",
    "make_plan",
    "pg_major",
    "poll",
    "postmaster_pid",
    "process_alive",
    "reload_conf",
    "restore_in_place",
    "roll_back",
    "run_control",
    "run_in_place",
    "server_answers",
    "server_facts",
    "start_server",
    "stop_server",
    "utc_iso",
    "wait_ready",
]
