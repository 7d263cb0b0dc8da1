# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stopping and starting a Redis server on this host (private), shared by redis_restore and
redis_restore_to_time: the stop/start commands (a systemd unit or argv lists), waiting for the port
to close, and for the server to answer with ``loading:0`` after the start."""

from __future__ import annotations

from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._common.process import run_detached
from ansible_collections.runbook.stack.plugins.module_utils._redis.connection import (
    CLIENT_ERRORS,
    ConnInfo,
    RedisError,
    connect,
    poll,
    port_open,
    redis_cli_env,
)

# a stop command that failed (non-zero rc, or it could not run at all) gets this long for the port
# to close anyway, not the whole timeout: a stop that cannot work fails fast
STOP_GRACE_S = 5.0


def control_argv(params: dict[str, Any], action: str) -> list[str]:
    if params["service"]:
        return ["systemctl", action, params["service"]]
    return list(params[f"{action}_command"])


def run_control(argv: list[str], info: ConnInfo, timeout: int, user: tuple[int, int] | None = None) -> tuple[int, str]:
    """Run a stop/start command; (rc, output tail). ``user``: (uid, gid) to run it as (root only)."""
    ids: dict[str, Any] = dict(user=user[0], group=user[1], extra_groups=[]) if user else {}
    return run_detached(argv, redis_cli_env(info), timeout, ids=ids, secret=info.password)


def ready(info: ConnInfo) -> dict[str, Any] | None:
    """INFO persistence+keyspace when the server answers and has finished loading, else None."""
    try:
        client = connect(info)
    except RedisError:
        return None
    try:
        reply = client.info("persistence", "keyspace")
        return reply if not int(reply.get("loading", 0)) else None
    except CLIENT_ERRORS:
        return None
    finally:
        client.close()


def stop_server(params: dict[str, Any], info: ConnInfo, commands: list[str]) -> None:
    argv = control_argv(params, "stop")
    command = " ".join(argv)
    commands.append(command)
    rc, output = run_control(argv, info, params["timeout"])
    wait = params["timeout"] if rc == 0 else min(float(params["timeout"]), STOP_GRACE_S)
    if poll(lambda: not port_open(info.host, info.port), wait) is None:
        if rc != 0:
            raise RedisError(
                f"the stop command {command} failed (rc {rc}): {output or 'no output'}, and "
                f"the server at {info.where} still answers"
            )
        raise RedisError(
            f"the server at {info.where} still answers {params['timeout']} s after {command} (rc 0: {output or 'no output'})"
        )


def start_server(params: dict[str, Any], info: ConnInfo, commands: list[str]) -> dict[str, Any]:
    return start_with(control_argv(params, "start"), info, params["timeout"], commands)


def start_with(argv: list[str], info: ConnInfo, timeout: int, commands: list[str], user: Any = None) -> dict[str, Any]:
    """Run a start command and wait until the server answers with loading:0; RedisError otherwise."""
    command = " ".join(argv)
    commands.append(command)
    rc, output = run_control(argv, info, timeout, user)
    if rc != 0:
        raise RedisError(f"the start command {command} failed (rc {rc}): {output or 'no output'}")
    reply = poll(lambda: ready(info), timeout, interval=0.2)
    if reply is None:
        raise RedisError(f"the server at {info.where} did not answer with loading:0 within {timeout} s after {command}")
    return reply
