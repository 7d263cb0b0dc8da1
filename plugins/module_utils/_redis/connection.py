# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis connection options, errors and client for the redis_* modules (private), with the argv and
environment of redis-cli for the same server and the waits for a server to appear or go.

Helpers take plain values, never the AnsibleModule; only a module's main() touches params and
fail_json. Every foreseeable fault is raised as :class:`RedisError` with a message that names the
server and the cause and never contains a password. redis-py is imported (guarded) here only; the
other files of the package take ``redis`` from here.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from ansible.module_utils.basic import env_fallback

from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line

try:
    import redis
    import redis.backoff
    import redis.retry

    HAS_REDIS = True
    REDIS_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported by the module via missing_required_lib
    redis = None
    HAS_REDIS = False
    REDIS_IMPORT_ERROR = traceback.format_exc()


class RedisError(Exception):
    """A foreseeable Redis fault, already phrased for the operator."""


# redis-py's base error when available: main() catches these once, next to RedisError.
CLIENT_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError,) if HAS_REDIS else ()


def redis_argument_spec() -> dict[str, Any]:
    """Connection options shared by every redis_* module (doc fragment: runbook.stack.redis)."""
    return dict(
        login_host=dict(type="str", default="127.0.0.1"),
        login_port=dict(type="int", default=6379),
        login_user=dict(type="str"),
        login_password=dict(type="str", no_log=True, fallback=(env_fallback, ["REDISCLI_AUTH"])),
        db=dict(type="int", default=0),
        tls=dict(type="bool", default=False),
        validate_certs=dict(type="bool", default=True),
        ca_certs=dict(type="path"),
        connect_timeout=dict(type="float", default=5.0),
        socket_timeout=dict(type="float", default=5.0),
    )


@dataclass(frozen=True)
class ConnInfo:
    host: str
    port: int
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    tls: bool = False
    validate_certs: bool = True
    ca_certs: str | None = None
    connect_timeout: float = 5.0
    socket_timeout: float = 5.0

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def conn_info(params: dict[str, Any]) -> ConnInfo:
    """ConnInfo from module params (validated values, not the module)."""
    port = params.get("login_port") or 6379
    if not 0 < int(port) < 65536:
        raise RedisError(f"login_port {port} is not a valid TCP port")
    for name in ("connect_timeout", "socket_timeout"):
        value = params.get(name)
        if value is not None and value <= 0:
            raise RedisError(f"{name} must be a positive number of seconds, got {value}")
    db = params.get("db") or 0
    if db < 0:
        raise RedisError(f"db must be 0 or more, got {db}")
    return ConnInfo(
        host=params.get("login_host") or "127.0.0.1",
        port=int(port),
        user=params.get("login_user") or None,
        password=params.get("login_password") or None,
        db=int(db),
        tls=bool(params.get("tls")),
        validate_certs=params.get("validate_certs", True) is not False,
        ca_certs=params.get("ca_certs"),
        connect_timeout=float(params.get("connect_timeout") or 5.0),
        socket_timeout=float(params.get("socket_timeout") or 5.0),
    )


def describe(exc: BaseException, info: ConnInfo) -> str:
    """The cause of a redis-py error, phrased for the operator, password removed."""
    text = one_line(exc, info.password) or type(exc).__name__
    if HAS_REDIS and isinstance(exc, redis.AuthenticationError):
        return f"authentication failed ({text})"
    if HAS_REDIS and isinstance(exc, redis.TimeoutError):
        return f"timed out ({text})"
    return text


def connect(info: ConnInfo, decode: bool = True) -> Any:
    """A redis.Redis client that has answered PING; faults become RedisError naming host:port.

    ``decode=False`` returns bytes (keys that are not UTF-8, and no decoding cost on bulk work)."""
    kwargs: dict[str, Any] = dict(
        host=info.host,
        port=info.port,
        db=info.db,
        username=info.user,
        password=info.password,
        socket_connect_timeout=info.connect_timeout,
        socket_timeout=info.socket_timeout,
        decode_responses=decode,
        client_name="runbook.stack",
        # no silent retries: a dead or stalled server fails within the configured timeouts
        retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
    )
    if info.tls:
        kwargs.update(ssl=True, ssl_cert_reqs="required" if info.validate_certs else "none")
        if info.ca_certs:
            kwargs["ssl_ca_certs"] = info.ca_certs
        if not info.validate_certs:
            kwargs["ssl_check_hostname"] = False
    try:
        client = redis.Redis(**kwargs)
        client.ping()
    except redis.RedisError as exc:
        raise RedisError(f"cannot connect to Redis at {info.where} (db {info.db}): {describe(exc, info)}") from None
    return client


# ---------------------------------------------------------------------------------------------
# redis-cli for the same server
# ---------------------------------------------------------------------------------------------


def redis_cli_argv(redis_cli: str, info: ConnInfo, out_file: str) -> list[str]:
    """``redis-cli --rdb`` for the server of ``info``; the password goes in REDISCLI_AUTH, never here."""
    argv = [redis_cli, "-h", info.host, "-p", str(info.port)]
    if info.user:
        argv += ["--user", info.user]
    if info.tls:
        argv.append("--tls")
        if info.ca_certs:
            argv += ["--cacert", info.ca_certs]
        if not info.validate_certs:
            argv.append("--insecure")
    return [*argv, "--rdb", out_file]


def redis_cli_env(info: ConnInfo, base: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in (os.environ if base is None else base).items() if k != "REDISCLI_AUTH"}
    if info.password:
        env["REDISCLI_AUTH"] = info.password
    return env


# ---------------------------------------------------------------------------------------------
# waiting for a server
# ---------------------------------------------------------------------------------------------


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def poll(
    check: Callable[[], Any], timeout: float, interval: float = 0.1, clock=time.monotonic, sleep=time.sleep
) -> Any:
    """Call ``check`` until it returns something truthy (returned) or ``timeout`` seconds pass (None)."""
    deadline = clock() + timeout
    while True:
        value = check()
        if value:
            return value
        if clock() >= deadline:
            return None
        sleep(min(interval, max(0.0, deadline - clock())))
