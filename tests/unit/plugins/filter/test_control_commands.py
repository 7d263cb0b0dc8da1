# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""runbook.stack.control_commands: a component's stop and start argv, for the restore modules."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.stack.plugins.filter.control_commands import FilterModule, control_commands


def comp(**control):
    return {"name": "redis", "tier": "cache", "control": control}


def test_each_control_type():
    assert control_commands(comp(type="systemd", unit="redis-server")) == {
        "stop": ["systemctl", "stop", "redis-server"],
        "start": ["systemctl", "start", "redis-server"],
        "service": "redis-server",
    }
    assert control_commands(comp(type="docker", container="cache")) == {
        "stop": ["docker", "stop", "cache"],
        "start": ["docker", "start", "cache"],
    }
    assert control_commands(
        comp(type="command", stop=["labctl", "down", "redis"], start=["labctl", "up", "redis"])
    ) == {
        "stop": ["labctl", "down", "redis"],
        "start": ["labctl", "up", "redis"],
    }
    # a command component without a stop command (a pid-file stop) has none to give
    assert control_commands(comp(type="command", start=["x"])) == {"stop": None, "start": ["x"]}
    assert control_commands({}) == {}
    assert FilterModule().filters()["control_commands"] is control_commands


@pytest.mark.parametrize(
    ("component", "needle"),
    [
        (comp(type="systemd"), "component redis (control.type systemd) needs control.unit"),
        (comp(type="docker", container=""), "needs control.container"),
        (comp(type="launchd", unit="x"), "control.type 'launchd'; expected systemd, docker or command"),
        ({"name": "redis"}, "component redis has no control dict"),
        (comp(type="command", stop="labctl down"), "control.stop must be an argv list of strings"),
        (["redis"], "expected a component (a dict)"),
    ],
)
def test_bad_components_name_the_component_and_the_cause(component, needle):
    with pytest.raises(AnsibleFilterError, match="control_commands: ") as err:
        control_commands(component)
    assert needle in str(err.value)
