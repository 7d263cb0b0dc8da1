# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Continuous archiving of a Redis 7 AOF: an archive pass every ``interval`` seconds until stopped,
as a long-running process outside Ansible (a systemd unit, a lab service)::

    PYTHONPATH=<dir holding ansible_collections> \\
        python -m ansible_collections.runbook.stack.plugins.module_utils._redis_aof_follow --config <file.json>

The JSON config (keys, all optional except ``archive``)::

    {"archive": "s3://bucket/prefix" or "/local/dir", "source": "<host>:<port>", "data_dir": "/var/lib/redis",
     "interval": 5, "configure": false,
     "redis": {"login_host": ..., "login_port": ..., "login_user": ..., "login_password": ..., "tls": ...,
               "validate_certs": ..., "ca_certs": ..., "connect_timeout": ..., "socket_timeout": ...},
     "s3": {"endpoint_url": ..., "access_key": ..., "secret_key": ..., "session_token": ..., "region": ...,
            "validate_certs": ..., "ca_bundle": ..., "addressing_style": ..., "connect_timeout": ..., "read_timeout": ...}}

The ``redis`` and ``s3`` options are those of the modules (same names, defaults and environment
fallbacks: REDISCLI_AUTH, AWS_ENDPOINT_URL(_S3), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN, AWS_REGION, AWS_CA_BUNDLE); secrets come from the file or the environment, never
from the command line. One log line (stderr) per pass that archived something; Redis or S3 being
unreachable is logged (again when the cause changes, at most once a minute otherwise) and retried
every interval, and while Redis is down the AOF directory is still archived from disk with the last
settings read. SIGTERM or SIGINT: one last pass, then exit 0. Exit 2: the config is unusable.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils import _s3
from ansible_collections.runbook.stack.plugins.module_utils._backup_set import BackupSetError, private_umask
from ansible_collections.runbook.stack.plugins.module_utils._redis import (
    CLIENT_ERRORS,
    HAS_REDIS,
    RedisError,
    conn_info,
    connect,
    describe,
    redis_argument_spec,
)
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof import aof_dir_of, aof_settings
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof_archive_store import is_s3, open_store
from ansible_collections.runbook.stack.plugins.module_utils._redis_aof_archiver import Follower

PROG = "python -m ansible_collections.runbook.stack.plugins.module_utils._redis_aof_follow"
REPEAT_S = 60.0
TOP_KEYS = {"archive", "source", "data_dir", "interval", "configure", "redis", "s3"}
WANTED = {"appendonly": "yes", "aof-timestamp-enabled": "yes"}


class ConfigError(Exception):
    """The config file cannot be used."""


def _convert(value: Any, kind: str, where: str) -> Any:
    if value is None:
        return None
    try:
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind in ("int", "float"):
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value) if kind == "int" else float(value)
        if kind == "path":
            return os.path.expanduser(str(value))
        return str(value)
    except ValueError:
        raise ConfigError(f"{where} must be of type {kind}, got {value!r}") from None


def options_from_spec(spec: dict[str, Any], given: Any, section: str) -> dict[str, Any]:
    """The options of an argument spec from a config section: given values, else the environment
    fallback, else the default; unknown keys are refused (a typo would silently use the default)."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ConfigError(f"{section} must be an object")
    aliases = {a: name for name, opt in spec.items() for a in opt.get("aliases", [])}
    unknown = sorted(k for k in given if k not in spec and k not in aliases)
    if unknown:
        raise ConfigError(f"unknown key(s) in {section}: {', '.join(unknown)} (known: {', '.join(sorted(spec))})")
    values = {aliases.get(k, k): v for k, v in given.items()}
    out = {}
    for name, opt in spec.items():
        value = values.get(name)
        if value is None and "fallback" in opt:
            value = next((os.environ[e] for e in opt["fallback"][1] if os.environ.get(e)), None)
        if value is None:
            value = opt.get("default")
        value = _convert(value, opt.get("type", "str"), f"{section}.{name}")
        if value is not None and opt.get("choices") and value not in opt["choices"]:
            raise ConfigError(f"{section}.{name} must be one of {', '.join(opt['choices'])}, got {value!r}")
        out[name] = value
    return out


def load_config(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    if not HAS_REDIS:
        raise ConfigError("the redis Python library (redis-py) is missing")
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) in {path}: {', '.join(unknown)} (known: {', '.join(sorted(TOP_KEYS))})")
    archive = raw.get("archive")
    if not isinstance(archive, str) or not archive:
        raise ConfigError(f"{path}: archive (a directory or s3://bucket/prefix) is required")
    cfg = {
        "archive": archive if is_s3(archive) else os.path.abspath(os.path.expanduser(archive)),
        "source": raw.get("source"),
        "data_dir": _convert(raw.get("data_dir"), "path", "data_dir"),
        "interval": _convert(raw.get("interval", 5), "float", "interval"),
        "configure": _convert(raw.get("configure", False), "bool", "configure"),
        "redis": options_from_spec(redis_argument_spec(), raw.get("redis"), "redis"),
    }
    if cfg["interval"] <= 0:
        raise ConfigError(f"interval must be a positive number of seconds, got {cfg['interval']}")
    if cfg["source"] is not None and (not isinstance(cfg["source"], str) or not cfg["source"]):
        raise ConfigError("source must be a non-empty string")
    try:
        cfg["redis_conn"] = conn_info(cfg["redis"])
        if is_s3(archive):
            if not _s3.HAS_BOTO3:
                raise ConfigError("an s3:// archive needs the boto3 Python library")
            cfg["s3"] = options_from_spec(_s3.s3_argument_spec(), raw.get("s3"), "s3")
            cfg["s3_conn"] = _s3.conn_info(cfg["s3"])
            _s3.parse_s3_url(archive)
    except ConfigError:
        raise
    except Exception as exc:  # pylint: disable=broad-except  # RedisError / S3Error of the option checks
        raise ConfigError(str(exc)) from None
    return cfg


class FollowService:
    """One archive pass per :meth:`step`, with the Redis client, the store and the Follower kept
    between steps and every fault logged instead of raised."""

    def __init__(self, cfg: dict[str, Any], log: logging.Logger) -> None:
        self.cfg = cfg
        self.log = log
        self.info = cfg["redis_conn"]
        self.source = cfg["source"] or self.info.where
        self.client: Any = None
        self.settings: dict[str, str] | None = None
        self.store: Any = None
        self.follower: Follower | None = None
        self.failing: dict[str, tuple[str, float]] = {}
        self.passes = 0
        self.redis_up = False
        self.newest_utc: str | None = None

    def _report(self, what: str, message: str) -> None:
        last = self.failing.get(what)
        now = time.monotonic()
        if last is None or last[0] != message or now - last[1] >= REPEAT_S:
            self.log.warning("%s: %s; retrying every %g s", what, message, self.cfg["interval"])
            self.failing[what] = (message, now)

    def _recovered(self, what: str) -> None:
        if self.failing.pop(what, None):
            self.log.info("%s: working again", what)

    def _settings(self) -> dict[str, str]:
        if self.client is not None:
            try:
                return aof_settings(self.client)
            except (RedisError, *CLIENT_ERRORS):
                self.client.close()
                self.client = None  # a new connection says why
        self.client = connect(self.info)
        return aof_settings(self.client)

    def _read_settings(self) -> None:
        try:
            settings = self._settings()
            off = [n for n, v in WANTED.items() if settings.get(n) != v]
            if off and self.cfg["configure"]:
                for name in off:
                    self.client.config_set(name, WANTED[name])
                self.log.info("set %s with CONFIG SET", " and ".join(f"{n} {WANTED[n]}" for n in off))
                settings = aof_settings(self.client)
                off = [n for n, v in WANTED.items() if settings.get(n) != v]
            if off:
                self._report(
                    f"Redis at {self.info.where}",
                    " and ".join(f"{n} is {settings.get(n) or 'unset'}" for n in off)
                    + "; point-in-time archiving needs appendonly yes and aof-timestamp-enabled yes "
                    "(or configure true in the config); not archiving",
                )
                self.settings = None
                return
            self._recovered(f"Redis at {self.info.where}")
            self.settings = settings
            self.redis_up = True
        except (RedisError, *CLIENT_ERRORS) as exc:
            if self.client is not None:
                self.client.close()
            self.client = None
            self.redis_up = False
            cause = describe(exc, self.info) if isinstance(exc, CLIENT_ERRORS) else str(exc)
            fallback = "; archiving from disk with the last settings read" if self.settings else ""
            self._report(f"Redis at {self.info.where}", f"unreachable ({cause}){fallback}")

    def step(self) -> None:
        self._read_settings()
        if self.settings is None:
            return
        try:
            if self.store is None:
                self.store = open_store(self.cfg["archive"], self.source, self.cfg.get("s3_conn"))
            aof_dir = aof_dir_of(self.settings, self.cfg["data_dir"])
            appendfilename = self.settings["appendfilename"]
            if self.follower is None or (self.follower.aof_dir, self.follower.appendfilename) != (
                aof_dir,
                appendfilename,
            ):
                if self.follower is not None:
                    self.follower.close()
                self.follower = Follower(self.store, aof_dir, appendfilename, lock_wait=min(self.cfg["interval"], 10))
            done = self.follower.run_pass(server_gone=not self.redis_up)
        except Exception as exc:  # pylint: disable=broad-except  # logged and retried: the process must go on
            self._report(f"archive {self.cfg['archive']}", _cause(exc, self.cfg))
            return
        if done.lost:
            self._report(
                f"AOF directory {self.follower.aof_dir}",
                f"unreadable ({done.lost}); archiving what the incr files held open still hold",
            )
        else:
            self._recovered(f"AOF directory {self.follower.aof_dir}")
        self._recovered(f"archive {self.cfg['archive']}")
        self.passes += 1
        self.newest_utc = done.held["newest_utc"]
        if done.copied:
            held = done.held
            finished = ""
            if done.finished:
                finished = f"; finished generation {done.finished} after a rewrite ({'sealed' if done.sealed else 'NOT sealed: a gap'})"
            self.log.info(
                "archived %d file(s), %d new bytes: %s%s; restorable %s .. %s, %d gap(s)",
                len(done.copied),
                done.bytes,
                ", ".join(done.copied),
                finished,
                held["oldest_utc"],
                held["newest_utc"],
                len(held["gaps"]),
            )

    def close(self) -> None:
        if self.follower is not None:
            self.follower.close()
        if self.client is not None:
            self.client.close()


def _cause(exc: BaseException, cfg: dict[str, Any]) -> str:
    if isinstance(exc, (RedisError, BackupSetError, _s3.S3Error)):
        text = str(exc)
    elif isinstance(exc, OSError):
        text = f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    else:
        text = f"{type(exc).__name__}: {exc}"
    for secret in (cfg["redis"].get("login_password"), (cfg.get("s3") or {}).get("secret_key")):
        if secret:
            text = text.replace(secret, "********")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Archive a Redis 7 AOF every few seconds until stopped.")
    parser.add_argument("--config", required=True, help="JSON config file (see the module's docstring)")
    parser.add_argument("--once", action="store_true", help="run one pass and exit (0 when it archived without fault)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"redis-aof-follow: {exc}", file=sys.stderr)  # pylint: disable=ansible-bad-function  # a program, not a module
        return 2
    logging.Formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)sZ %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    log = logging.getLogger("redis_aof_follow")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("%s received: one last pass, then exit", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service = FollowService(cfg, log)
    with private_umask():
        if args.once:
            service.step()
            service.close()
            return 0 if service.passes and not service.failing else 1
        log.info(
            "following the AOF of Redis at %s into %s every %g s (source %s)",
            service.info.where,
            cfg["archive"],
            cfg["interval"],
            service.source,
        )
        while not stop.is_set():
            started = time.monotonic()
            service.step()
            stop.wait(max(0.0, cfg["interval"] - (time.monotonic() - started)))
        service.step()
        service.close()
    log.info("stopped after %d pass(es); restorable up to %s", service.passes, service.newest_utc)
    return 0


if __name__ == "__main__":
    sys.exit(main())  # pylint: disable=ansible-bad-function  # a program, not a module
