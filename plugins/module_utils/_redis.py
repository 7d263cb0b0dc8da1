# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis connection, errors and parsing helpers shared by the redis_* modules (private).

Helpers take plain values, never the AnsibleModule; only a module's main() touches params and
fail_json. Every foreseeable fault is raised as :class:`RedisError` with a message that names the
server and the cause and never contains a password.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.basic import env_fallback

from ansible_collections.runbook.stack.plugins.module_utils._text import one_line

try:
    import redis

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
        retry_on_timeout=False,
        client_name="runbook.stack",
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


# ------------------------------------------------------------------------------------------------
# pure helpers
# ------------------------------------------------------------------------------------------------

# Redis memory units (redis.conf): k=1000, kb=1024, m=1e6, mb=1024^2, g=1e9, gb=1024^3.
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
}
_MEMORY_RE = re.compile(r"^\s*(-?\d+)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_memory(value: Any) -> int:
    """Bytes of a Redis memory value such as ``1gb``, ``100mb``, ``512k`` or ``1048576``."""
    if isinstance(value, bool):
        raise ValueError(f"not a memory size: {value!r}")
    if isinstance(value, int):
        return value
    match = _MEMORY_RE.match(str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a memory size: {value!r}")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_keyspace(info: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per-db key counts from INFO keyspace (redis-py dict or raw ``keys=1,expires=0,...`` text)."""
    result: dict[str, dict[str, int]] = {}
    for name, value in info.items():
        if not re.fullmatch(r"db\d+", str(name)):
            continue
        if isinstance(value, dict):
            fields = value
        else:
            fields = dict(part.split("=", 1) for part in str(value).split(",") if "=" in part)
        result[str(name)] = {k: int(v) for k, v in fields.items() if str(v).lstrip("-").isdigit()}
    return result


def parse_info_text(text: str) -> dict[str, str]:
    """``key:value`` lines of raw INFO output (sections and comments skipped)."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            key, _sep, value = line.partition(":")
            result[key] = value
    return result


def hit_rate(hits: int, misses: int) -> float | None:
    """keyspace_hits / (hits + misses), four decimals; None when there were no lookups."""
    total = int(hits) + int(misses)
    if total <= 0:
        return None
    return round(int(hits) / total, 4)


_UNIT_TOKEN_RE = re.compile(r"^-?\d+(k|kb|m|mb|g|gb)$", re.IGNORECASE)


def config_value(value: Any) -> str:
    """A setting value as CONFIG SET takes it: booleans as yes/no, lists joined by spaces."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return " ".join(config_value(v) for v in value)
    return str(value).strip()


def normalize_config(value: Any) -> str:
    """A setting value in the form CONFIG GET reports it, for comparison.

    Whitespace is collapsed, yes/no are lower-cased and every token with a memory unit
    (``1gb``, ``512k``) becomes its number of bytes; other tokens are kept as they are.
    """
    tokens = []
    for token in config_value(value).split():
        if _UNIT_TOKEN_RE.match(token):
            token = str(parse_memory(token))
        elif token.lower() in ("yes", "no"):
            token = token.lower()
        tokens.append(token)
    return " ".join(tokens)
