# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers over what a Redis server reports (private): memory sizes, INFO text and keyspace, the
hit rate, CONFIG values in the form CONFIG GET reports them, and key counts of a restored keyspace."""

from __future__ import annotations

import re
from typing import Any

# ---------------------------------------------------------------------------------------------
# memory sizes and INFO
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# CONFIG values
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# key counts
# ---------------------------------------------------------------------------------------------


def compare_keyspace(expected: dict[str, dict[str, int]], found: dict[str, dict[str, int]]) -> list[str]:
    """Problems when a restored keyspace does not match the snapshot's.

    Keys with a time to live may have expired since the snapshot (Redis drops them on load), so a db
    may hold between ``keys - expires`` and ``keys`` keys."""
    problems = []
    for db in sorted(set(expected) | set(found), key=lambda d: int(d[2:]) if d[2:].isdigit() else 0):
        want = expected.get(db, {})
        keys, expires = int(want.get("keys", 0)), int(want.get("expires", 0))
        got = int(found.get(db, {}).get("keys", 0))
        if not keys - expires <= got <= keys:
            if expires:
                problems.append(f"{db} has {got} keys, the snapshot had {keys} ({expires} with a time to live)")
            else:
                problems.append(f"{db} has {got} keys, the snapshot had {keys}")
    return problems


def total_keys(keyspace: dict[str, dict[str, int]]) -> int:
    return sum(int(v.get("keys", 0)) for v in keyspace.values())
