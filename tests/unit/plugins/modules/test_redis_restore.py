# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""redis_restore's choice of how to start the server again when its start command fails during a
roll-back (pure logic)."""

from __future__ import annotations

import os

from ansible_collections.runbook.stack.plugins.modules.redis_restore import fallback_start

ARGV = ["/usr/bin/redis-server", "/etc/redis/redis.conf", "--daemonize", "yes"]
ME = (os.geteuid(), os.getegid())


def test_a_server_started_from_a_config_file_is_started_as_it_ran():
    assert fallback_start(ARGV, ME) == (ARGV, None)


def test_a_systemd_unit_is_never_started_beside_systemd():
    argv, why = fallback_start(ARGV, ME, service="redis-server")
    assert argv is None and why == "it is the systemd unit redis-server, which only systemd starts"


def test_no_config_file_or_unknown_user_gives_the_reason():
    assert fallback_start(None, ME) == (None, "it was not started from a config file")
    assert fallback_start(ARGV, None) == (None, "the user it ran as is unknown")


def test_a_server_in_a_container_is_not_started_another_way():
    argv, why = fallback_start(ARGV, ME, container=True)
    assert argv is None
    assert why == "host_data_dir is set: it runs in a container, which only its own start command starts"
