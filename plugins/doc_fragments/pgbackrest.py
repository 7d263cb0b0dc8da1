# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of the modules that run pgBackRest; kept in step with _pgbackrest.pgbackrest_argument_spec()."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  stanza:
    description:
      - pgBackRest stanza (one PostgreSQL cluster in the repository).
    type: str
    required: true
  config_file:
    description:
      - pgBackRest configuration file, as written by M(runbook.stack.postgresql_wal_archive).
    type: path
    default: /etc/pgbackrest/pgbackrest.conf
  os_user:
    description:
      - Operating-system user that runs pgbackrest (the owner of the data directory, usually V(postgres)).
      - Needs the module to run as root when it is another user than the one running the module.
      - When not set, pgbackrest runs as the module's user.
    type: str
  access_key:
    description:
      - S3 access key of the repository. Falls back to E(AWS_ACCESS_KEY_ID).
      - Passed to pgbackrest as E(PGBACKREST_REPO1_S3_KEY), never on the command line. When not set, the
        key in O(config_file) is used.
    type: str
    aliases: [aws_access_key_id]
  secret_key:
    description:
      - S3 secret key of the repository. Falls back to E(AWS_SECRET_ACCESS_KEY).
      - Passed as E(PGBACKREST_REPO1_S3_KEY_SECRET), never on the command line, never returned.
    type: str
  pgbackrest_bin:
    description:
      - The pgbackrest program (a name looked up on E(PATH), or a path).
    type: path
    default: pgbackrest
  command_timeout:
    description:
      - Seconds one pgbackrest command may run before it is stopped and the module fails.
    type: float
    default: 3600
requirements:
  - pgBackRest (Debian package C(pgbackrest)) on the database host.
"""
