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


def test_compose_stops_and_starts_the_service_of_its_project():
    assert control_commands(comp(type="compose", project_src="/srv/shop", service="redis", stop_timeout=60)) == {
        "stop": ["docker", "compose", "--project-directory", "/srv/shop", "stop", "--timeout", "60", "redis"],
        "start": ["docker", "compose", "--project-directory", "/srv/shop", "start", "redis"],
    }
    # compose files are relative to the project directory (as the component's own tasks take them),
    # whatever directory the command runs in
    got = control_commands(
        comp(
            type="compose", project_src="/srv/shop", service="cache", files=["a.yml", "/etc/b.yml"], project_name="shop"
        )
    )
    assert got["stop"] == [
        "docker", "compose", "--file", "/srv/shop/a.yml", "--file", "/etc/b.yml", "--project-name", "shop",
        "--project-directory", "/srv/shop", "stop", "--timeout", "30", "cache",
    ]  # fmt: skip
    assert got["start"][-2:] == ["start", "cache"]


@pytest.mark.parametrize(
    ("component", "needle"),
    [
        (comp(type="systemd"), "component redis (control.type systemd) needs control.unit"),
        (comp(type="docker", container=""), "needs control.container"),
        (comp(type="launchd", unit="x"), "control.type 'launchd'; expected systemd, docker, compose or command"),
        (comp(type="compose", service="redis"), "component redis (control.type compose) needs control.project_src"),
        (comp(type="compose", project_src="/srv/shop"), "component redis (control.type compose) needs control.service"),
        (comp(type="compose", project_src="/srv/shop", service="redis", files="a.yml"), "control.files must be a list"),
        ({"name": "redis"}, "component redis has no control dict"),
        (comp(type="command", stop="labctl down"), "control.stop must be an argv list of strings"),
        (["redis"], "expected a component (a dict)"),
    ],
)
def test_bad_components_name_the_component_and_the_cause(component, needle):
    with pytest.raises(AnsibleFilterError, match="control_commands: ") as err:
        control_commands(component)
    assert needle in str(err.value)
