# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options of the redis_* modules; kept in step with _redis.connection.redis_argument_spec()."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or IP address of the Redis server.
    type: str
    default: 127.0.0.1
  login_port:
    description:
      - TCP port of the Redis server.
    type: int
    default: 6379
  login_user:
    description:
      - ACL user name (Redis 6 and later). When not set, the server's C(default) user is used.
    type: str
  login_password:
    description:
      - Password of O(login_user) (or of the C(default) user, C(requirepass)).
      - Falls back to the E(REDISCLI_AUTH) environment variable, which is how AWX credentials
        inject it. It is never returned or written into an error message.
    type: str
  db:
    description:
      - Logical database number the module works on.
    type: int
    default: 0
  tls:
    description:
      - Connect with TLS.
    type: bool
    default: false
  validate_certs:
    description:
      - Verify the server certificate when O(tls=true). Set to V(false) only for self-signed lab servers.
    type: bool
    default: true
  ca_certs:
    description:
      - CA certificate file used to verify the server when O(tls=true).
    type: path
  connect_timeout:
    description:
      - Seconds to wait for the TCP (and TLS) connection before failing.
    type: float
    default: 5
  socket_timeout:
    description:
      - Seconds to wait for the answer to one command before failing.
    type: float
    default: 5
requirements:
  - redis (Python library, redis-py) on the host that runs the module.
notes:
  - All options of this fragment can be set once for a play with
    C(module_defaults) and the action group C(group/runbook.stack.redis).
"""
