# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``runbook.stack.control_commands``: the stop and start commands of a component (the
runbook.stack.component definition), for the restore modules that stop and start a server
themselves (redis_restore, redis_restore_to_time, postgresql_pitr_restore)."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError


def control_commands(component):
    """``{"stop": argv, "start": argv}`` of a component: ``systemctl stop|start <unit>`` (and
    ``service``: the unit), ``docker stop|start <container>``, ``docker compose stop|start <service>``
    of its project, or its own ``control.stop`` / ``control.start`` (None when it has none). ``{}``
    for an empty component (none of that service in the inventory)."""
    if not isinstance(component, Mapping):
        raise AnsibleFilterError(f"control_commands: expected a component (a dict), got {component!r}")
    if not component:
        return {}
    name = component.get("name", "?")
    control = component.get("control")
    if not isinstance(control, Mapping):
        raise AnsibleFilterError(f"control_commands: component {name} has no control dict")
    kind = control.get("type")
    if kind == "command":
        return {"stop": _argv(name, control, "stop"), "start": _argv(name, control, "start")}
    if kind == "compose":
        return _compose(name, control)
    field = {"systemd": "unit", "docker": "container"}.get(kind)
    if field is None:
        raise AnsibleFilterError(
            f"control_commands: component {name} has control.type {kind!r}; expected systemd, docker, compose"
            " or command"
        )
    target = control.get(field)
    if not isinstance(target, str) or not target:
        raise AnsibleFilterError(f"control_commands: component {name} (control.type {kind}) needs control.{field}")
    if kind == "systemd":  # also the unit, for the modules that take it (``service``)
        return {"stop": ["systemctl", "stop", target], "start": ["systemctl", "start", target], "service": target}
    return {"stop": ["docker", "stop", target], "start": ["docker", "start", target]}


def _compose(name, control):
    """``docker compose [--file ...] [--project-name ...] --project-directory <src> stop|start <service>``:
    the container the service has (a start never creates or recreates one, as the component's own
    start does with ``up``; a restore starts the server it stopped)."""
    base = ["docker", "compose"]
    for key in ("project_src", "service"):
        if not isinstance(control.get(key), str) or not control.get(key):
            raise AnsibleFilterError(f"control_commands: component {name} (control.type compose) needs control.{key}")
    files = control.get("files") or []
    if not isinstance(files, (list, tuple)) or not all(isinstance(f, str) for f in files):
        raise AnsibleFilterError(f"control_commands: component {name}: control.files must be a list of file names")
    for compose_file in files:  # relative to the project directory, not to where the command runs
        base += ["--file", posixpath.join(control["project_src"], compose_file)]
    if control.get("project_name"):
        base += ["--project-name", str(control["project_name"])]
    base += ["--project-directory", control["project_src"]]
    timeout = str(control.get("stop_timeout", 30))
    return {
        "stop": [*base, "stop", "--timeout", timeout, control["service"]],
        "start": [*base, "start", control["service"]],
    }


def _argv(name, control, action):
    argv = control.get(action)
    if argv in (None, [], ""):
        return None
    if not isinstance(argv, (list, tuple)) or not all(isinstance(a, str) for a in argv):
        raise AnsibleFilterError(
            f"control_commands: component {name}: control.{action} must be an argv list of strings"
        )
    return list(argv)


class FilterModule:
    """runbook.stack filters."""

    def filters(self):
        return {"control_commands": control_commands}
