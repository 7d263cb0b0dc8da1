#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_wal_archive
short_description: Configure continuous WAL archiving of a PostgreSQL cluster into a pgBackRest S3 repository
version_added: 0.1.0
description:
  - Writes the pgBackRest configuration of a stanza (S3 repository and the local cluster), sets
    C(archive_mode), C(archive_command) and C(archive_timeout) with C(ALTER SYSTEM), reloads the
    server configuration, creates the stanza in the repository when it is missing and runs
    C(pgbackrest check) (a WAL switch that must reach the archive).
  - The reload runs on every run (it is harmless) because PostgreSQL 15 was measured not to fire
    C(archive_timeout) after a restart until the configuration was reloaded. Run this module as a
    post-start step after every restart of the server.
  - C(archive_mode) only takes effect after a restart. The module never restarts the server; it
    returns RV(restart_required) and skips the check until the server runs with archiving on.
  - The configuration file holds the S3 keys (C(archive_command) runs without the module's
    environment); it is written with mode 0600 and owned by O(os_user).
extends_documentation_fragment:
  - runbook.stack.postgresql
  - runbook.stack.pgbackrest
  - runbook.stack._attributes
  - runbook.stack._attributes.actiongroup_postgresql
attributes:
  check_mode:
    support: full
    details: Reports which of configuration, settings and stanza would change; writes nothing and does not reload.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A second run changes nothing (it reloads the configuration again, which is not reported as a change).
options:
  repo_bucket:
    description: S3 bucket of the repository.
    type: str
    required: true
  repo_path:
    description: Path of the repository inside the bucket.
    type: str
    default: /pgbackrest
  s3_endpoint:
    description:
      - S3 endpoint host name (C(repo1-s3-endpoint)); pgBackRest always uses HTTPS.
    type: str
    required: true
  s3_region:
    description: Region the requests are signed for.
    type: str
    default: us-east-1
  s3_uri_style:
    description: V(path) for MinIO, SeaweedFS and most self-hosted servers; V(host) for AWS S3.
    type: str
    default: path
    choices: [host, path]
  storage_host:
    description:
      - Host to connect to instead of O(s3_endpoint) (C(repo1-storage-host)). The server certificate
        must name this host (pgBackRest 2.45 matches DNS names only, not IP addresses).
    type: str
  storage_port:
    description: TCP port of the S3 server.
    type: int
    default: 443
  storage_ca_file:
    description: CA certificate file that verifies the S3 server.
    type: path
  storage_verify_tls:
    description: Verify the S3 server's certificate.
    type: bool
    default: true
  retention_full:
    description: Full backups to keep (C(repo1-retention-full)); older ones and their WAL are expired after each backup.
    type: int
    default: 2
  archive_timeout:
    description: Seconds after which a WAL segment with changes is switched and archived (bounds the RPO of an idle server).
    type: int
    default: 60
  data_dir:
    description: Data directory of the cluster (C(pg1-path)). Default is the server's C(data_directory).
    type: path
  socket_dir:
    description:
      - Unix socket directory pgBackRest uses to reach the server. Default is O(login_unix_socket), else the
        first of the server's C(unix_socket_directories).
    type: path
  log_path:
    description: Directory of pgBackRest's log files (must be writable by O(os_user)).
    type: path
    default: /var/log/pgbackrest
  lock_path:
    description: Directory of pgBackRest's lock files.
    type: path
    default: /tmp/pgbackrest
  spool_path:
    description: pgBackRest's spool directory (also read by C(restore)); must be writable by O(os_user).
    type: path
    default: /var/spool/pgbackrest
  global_options:
    description: Further pgBackRest options for the C([global]) section, for example C(process-max) or C(compress-type).
    type: dict
    default: {}
  create_stanza:
    description: Run C(pgbackrest stanza-create) when the stanza is missing in the repository.
    type: bool
    default: true
  check:
    description: Run C(pgbackrest check) once archiving is active.
    type: bool
    default: true
seealso:
  - module: runbook.stack.postgresql_physical_backup
  - module: runbook.stack.postgresql_pitr_restore
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Archive WAL of the main cluster to S3 (also run after every restart)
  runbook.stack.postgresql_wal_archive:
    login_unix_socket: /var/run/postgresql
    stanza: main
    os_user: postgres
    repo_bucket: db-backups
    s3_endpoint: s3.eu-central-1.amazonaws.com
    s3_region: eu-central-1
    s3_uri_style: host
    access_key: "{{ vault_backup_access_key }}"
    secret_key: "{{ vault_backup_secret_key }}"
  become: true
  register: wal

- name: Restart when archive_mode was switched on
  ansible.builtin.service:
    name: postgresql
    state: restarted
  when: wal.restart_required
"""

RETURN = r"""
config_file:
  description: The configuration file written.
  type: str
  returned: always
  sample: /etc/pgbackrest/pgbackrest.conf
config_changed:
  description: Whether the configuration file was (or would be) rewritten.
  type: bool
  returned: always
settings_changed:
  description: Settings set (or to be set) with ALTER SYSTEM.
  type: list
  elements: str
  returned: always
  sample: [archive_mode, archive_command]
archive_command:
  description: The archive_command wanted.
  type: str
  returned: always
  sample: /usr/bin/pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=main archive-push %p
restart_required:
  description: Whether the server must be restarted for C(archive_mode) to take effect.
  type: bool
  returned: always
reloaded:
  description: Whether C(pg_reload_conf()) ran (always outside check mode).
  type: bool
  returned: always
stanza_created:
  description: Whether the stanza was (or would be) created in the repository.
  type: bool
  returned: always
checked:
  description: Whether C(pgbackrest check) ran and passed.
  type: bool
  returned: always
check_skipped:
  description: Why the check did not run.
  type: str
  returned: when RV(checked) is false
commands:
  description: pgbackrest commands that ran (no secrets; the keys travel in the environment).
  type: list
  elements: str
  returned: always
duration_s:
  description: Seconds the module took.
  type: float
  returned: always
"""

import os
import pwd
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.stack.plugins.module_utils._common.process import Interrupted, terminate_on_signals
from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest import (
    STATUS_MISSING_STANZA_DATA,
    STATUS_MISSING_STANZA_PATH,
    PgBackRestError,
    archive_command,
    elapsed,
    pgbackrest_argument_spec,
    render_config,
    runner_from_params,
    shown,
    stanza_info,
    stanza_unreachable,
)
from ansible_collections.runbook.stack.plugins.module_utils._postgresql import (
    DB_ERRORS,
    HAS_PSYCOPG2,
    PSYCOPG2_IMPORT_ERROR,
    PostgresError,
    conn_info,
    connect,
    error_text,
    postgres_argument_spec,
    query,
)


def config_sections(params: dict[str, Any], data_dir: str, socket_dir: str | None) -> dict[str, dict[str, Any]]:
    glob: dict[str, Any] = {
        "repo1-type": "s3",
        "repo1-path": params["repo_path"],
        "repo1-s3-bucket": params["repo_bucket"],
        "repo1-s3-endpoint": params["s3_endpoint"],
        "repo1-s3-region": params["s3_region"],
        "repo1-s3-uri-style": params["s3_uri_style"],
        "repo1-storage-host": params.get("storage_host"),
        "repo1-storage-port": params["storage_port"],
        "repo1-storage-ca-file": params.get("storage_ca_file"),
        "repo1-storage-verify-tls": params["storage_verify_tls"],
        "repo1-s3-key": params.get("access_key"),
        "repo1-s3-key-secret": params.get("secret_key"),
        "repo1-retention-full": params["retention_full"],
        "log-path": params["log_path"],
        "lock-path": params["lock_path"],
        "spool-path": params["spool_path"],
        "log-level-file": "info",
    }
    glob.update({str(k): v for k, v in (params.get("global_options") or {}).items()})
    stanza = {
        "pg1-path": data_dir,
        "pg1-port": params["login_port"],
        "pg1-socket-path": socket_dir,
        "pg1-user": params["login_user"],
    }
    return {"global": glob, params["stanza"]: stanza}


def write_private(path: str, text: str, user: str | None) -> None:
    os.makedirs(os.path.dirname(path) or ".", mode=0o750, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    if user and os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(tmp, entry.pw_uid, entry.pw_gid)
    os.replace(tmp, path)


def current_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PgBackRestError(f"cannot read config_file {path}: {exc.strerror}") from None


def file_value(conn: Any, name: str) -> str | None:
    """What the configuration files (postgresql.auto.conf included) say now, applied or not yet."""
    rows = query(
        conn,
        "SELECT setting FROM pg_file_settings WHERE name = %s AND error IS NULL ORDER BY seqno DESC LIMIT 1",
        [name],
    )
    return rows[0][0] if rows else None


def settings_to_change(conn: Any, wanted: dict[str, str]) -> list[str]:
    out = []
    for name, want in wanted.items():
        live = query(conn, "SELECT setting FROM pg_settings WHERE name = %s", [name])[0][0]
        if want not in (live, file_value(conn, name)):
            out.append(name)
    return out


def main() -> None:
    argument_spec = (
        postgres_argument_spec()
        | pgbackrest_argument_spec()
        | dict(
            repo_bucket=dict(type="str", required=True),
            repo_path=dict(type="str", default="/pgbackrest"),
            s3_endpoint=dict(type="str", required=True),
            s3_region=dict(type="str", default="us-east-1"),
            s3_uri_style=dict(type="str", default="path", choices=["host", "path"]),
            storage_host=dict(type="str"),
            storage_port=dict(type="int", default=443),
            storage_ca_file=dict(type="path"),
            storage_verify_tls=dict(type="bool", default=True),
            retention_full=dict(type="int", default=2),
            archive_timeout=dict(type="int", default=60),
            data_dir=dict(type="path"),
            socket_dir=dict(type="path"),
            log_path=dict(type="path", default="/var/log/pgbackrest"),
            lock_path=dict(type="path", default="/tmp/pgbackrest"),
            spool_path=dict(type="path", default="/var/spool/pgbackrest"),
            global_options=dict(type="dict", default={}),
            create_stanza=dict(type="bool", default=True),
            check=dict(type="bool", default=True),
        )
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    params = module.params
    started = time.monotonic()
    result: dict[str, Any] = dict(
        config_file=params["config_file"],
        config_changed=False,
        settings_changed=[],
        restart_required=False,
        reloaded=False,
        stanza_created=False,
        checked=False,
        commands=[],
    )
    conn = None
    try:
        if params["archive_timeout"] < 1 or params["retention_full"] < 1:
            raise PgBackRestError("archive_timeout and retention_full must be 1 or more")
        runner = runner_from_params(params, params.get("login_password"))
        info = conn_info(params)
        conn = connect(info)
        data_dir = params.get("data_dir") or query(conn, "SHOW data_directory")[0][0]
        socket_dir = params.get("socket_dir") or params.get("login_unix_socket")
        if not socket_dir:
            dirs = [d.strip() for d in query(conn, "SHOW unix_socket_directories")[0][0].split(",") if d.strip()]
            socket_dir = dirs[0] if dirs else None
        text = render_config(config_sections(params, data_dir, socket_dir))
        result["config_changed"] = current_text(params["config_file"]) != text
        command = archive_command(runner.binary, params["config_file"], params["stanza"])
        wanted = {"archive_mode": "on", "archive_command": command, "archive_timeout": str(params["archive_timeout"])}
        result["archive_command"] = command
        result["settings_changed"] = settings_to_change(conn, wanted)
        if not module.check_mode:
            with terminate_on_signals():
                if result["config_changed"]:
                    write_private(params["config_file"], text, runner.os_user)
                for name in result["settings_changed"]:
                    with conn.cursor() as cur:
                        cur.execute(f"ALTER SYSTEM SET {name} = %s", [wanted[name]])
                query(conn, "SELECT pg_reload_conf()")  # the archive_timeout trap: always reload
                result["reloaded"] = True
                time.sleep(0.2)  # the postmaster applies SIGHUP asynchronously
        live_mode = query(conn, "SHOW archive_mode")[0][0]
        result["restart_required"] = live_mode == "off"
        if module.check_mode and result["config_changed"] and current_text(params["config_file"]) is None:
            result["stanza_created"] = params["create_stanza"]
            module.exit_json(changed=True, duration_s=elapsed(started), **result)
        state = stanza_info(runner)
        cause = stanza_unreachable(state)
        if cause:
            raise PgBackRestError(f"cannot reach the repository of stanza {params['stanza']!r}: {cause}")
        result["commands"].append(shown(runner.argv("info", "--output=json")))
        missing = state["status_code"] in (STATUS_MISSING_STANZA_PATH, STATUS_MISSING_STANZA_DATA)
        result["stanza_created"] = missing and params["create_stanza"]
        if not module.check_mode:
            with terminate_on_signals():
                if result["stanza_created"]:
                    runner.run("stanza-create", what=f"cannot create stanza {params['stanza']!r}")
                    result["commands"].append(shown(runner.argv("stanza-create")))
                if not params["check"]:
                    result["check_skipped"] = "check=false"
                elif result["restart_required"]:
                    result["check_skipped"] = "archive_mode is off until the server restarts"
                elif missing and not params["create_stanza"]:
                    result["check_skipped"] = "the stanza does not exist and create_stanza=false"
                else:
                    runner.run("check", what=f"pgbackrest check of stanza {params['stanza']!r} failed")
                    result["commands"].append(shown(runner.argv("check")))
                    result["checked"] = True
        else:
            result["check_skipped"] = "check mode"
    except PostgresError as exc:
        module.fail_json(msg=str(exc), duration_s=elapsed(started), **result)
    except DB_ERRORS as exc:
        module.fail_json(
            msg=f"cannot configure WAL archiving of stanza {params['stanza']!r}: {error_text(exc)}", **result
        )
    except Interrupted as exc:
        module.fail_json(msg=f"WAL archiving setup of stanza {params['stanza']!r} {exc}", **result)
    finally:
        if conn is not None:
            conn.close()
    changed = bool(result["config_changed"] or result["settings_changed"] or result["stanza_created"])
    module.exit_json(changed=changed, duration_s=elapsed(started), **result)


if __name__ == "__main__":
    main()
