# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options of the postgresql_* modules; kept in step with _postgresql.connection.postgres_argument_spec()."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or IP address of the PostgreSQL server.
      - When neither this nor O(login_unix_socket) is set, libpq's default (local socket) is used.
      - Falls back to the E(PGHOST) environment variable.
    type: str
    aliases: [host]
  login_port:
    description:
      - TCP port of the PostgreSQL server. Falls back to E(PGPORT).
    type: int
    default: 5432
    aliases: [port]
  login_user:
    description:
      - Role to connect as. Backups and restores need a role that can read every object (restores
        need one that can create databases and terminate sessions, typically a superuser).
      - Falls back to E(PGUSER).
    type: str
    default: postgres
    aliases: [login]
  login_password:
    description:
      - Password of O(login_user). Falls back to E(PGPASSWORD), which is how AWX machine/custom
        credentials inject it. It is passed to client tools through the environment, never on a
        command line, and never returned.
    type: str
  login_db:
    description:
      - Maintenance database the module connects to for cluster-level work (listing databases,
        creating, renaming and dropping them).
    type: str
    default: postgres
    aliases: [maintenance_db]
  login_unix_socket:
    description:
      - Directory of the server's Unix-domain socket; used when O(login_host) is not set.
    type: str
  connect_timeout:
    description:
      - Seconds to wait for a connection before failing.
    type: int
    default: 10
  ssl_mode:
    description:
      - libpq SSL mode.
    type: str
    default: prefer
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - CA certificate file used to verify the server with O(ssl_mode=verify-ca) or O(ssl_mode=verify-full).
    type: path
    aliases: [ssl_rootcert]
requirements:
  - psycopg2 (Python library) on the host that runs the module.
  - PostgreSQL client tools (pg_dump, pg_restore) of the server's major version or newer where the module drives them.
notes:
  - All options of this fragment can be set once for a play with
    C(module_defaults) and the action group C(group/runbook.stack.postgresql).
"""
