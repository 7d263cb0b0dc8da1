# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the health_check role: the play-wide report and the S3 component's facts.

``runbook.stack.health_report`` builds ``health_check_report`` from every host's results;
``runbook.stack.health_s3_facts`` turns the loop of ``s3_health_info`` readings into one component's facts.
Both are pure: the role passes the data in (and the timestamp), they return plain dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleError, AnsibleFilterError
from jinja2 import Undefined

_MISSING = object()


def _host_var(host_vars: Mapping[str, Any], name: str) -> Any:
    """A host's variable, or _MISSING when it is not set or templates to undefined (Jinja's ``default``)."""
    if name not in host_vars:
        return _MISSING
    try:
        value = host_vars[name]
    except AnsibleError:
        return _MISSING
    # hostvars template on access: a variable whose template is undefined counts as not set
    return _MISSING if isinstance(value, Undefined) else value


def _declared_components(host: str, host_vars: Mapping[str, Any]) -> list[Any]:
    """``health_check_components``, else ``runbook_components``, else [] of a host."""
    for name in ("health_check_components", "runbook_components"):
        value = _host_var(host_vars, name)
        if value is not _MISSING:
            if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
                raise AnsibleFilterError(f"health_report: {name} of host {host} must be a list, got {value!r}")
            return list(value)
    return []


def _unreachable_entry(host: str, component: Any) -> dict[str, Any]:
    """A declared component of a host that failed or was unreachable before its check."""
    if not isinstance(component, Mapping) or "name" not in component:
        raise AnsibleFilterError(f"health_report: a component of host {host} has no name: {component!r}")
    return {
        "name": component["name"],
        "host": host,
        "value": {
            "status": "unreachable",
            "host": host,
            "service": component.get("service"),
            "tier": component.get("tier"),
            "error": f"host {host} failed or was unreachable before its check",
        },
    }


def host_entries(
    hostvars: Mapping[str, Any], hosts_all: Sequence[str], hosts_ok: Sequence[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every host's entries ({name, host, value}) in play order, and the hosts without any component.

    A host still in the play that recorded ``health_check__results`` contributes them; any other
    host of the play contributes its declared components as unreachable.
    """
    entries: list[dict[str, Any]] = []
    empty: list[str] = []
    for host in hosts_all:
        host_vars = hostvars[host]
        results = _host_var(host_vars, "health_check__results") if host in hosts_ok else _MISSING
        if results is not _MISSING:
            host_part = list(results)
        else:
            host_part = [_unreachable_entry(host, c) for c in _declared_components(host, host_vars)]
        if not host_part:
            empty.append(host)
        entries.extend(host_part)
    return entries, empty


def keyed_components(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Entries keyed by component name, ``<host>/<name>`` when a name is used more than once."""
    counts: dict[Any, int] = {}
    for entry in entries:
        counts[entry["name"]] = counts.get(entry["name"], 0) + 1
    keyed: dict[str, Any] = {}
    for entry in entries:
        name = entry["name"]
        key = name if counts[name] == 1 else f"{entry['host']}/{name}"
        keyed[key] = entry["value"]
    return keyed


def health_report(
    hostvars: Mapping[str, Any], hosts_all: Sequence[str], hosts_ok: Sequence[str], timestamp: str
) -> dict[str, Any]:
    """The report of every component of every host of the play.

    ``hostvars`` is Ansible's ``hostvars``, ``hosts_all`` ``ansible_play_hosts_all``, ``hosts_ok``
    ``ansible_play_hosts``. Healthy when every component is ok and every host had one to check;
    ``hosts_without_components`` is there only when some host had none.
    """
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError(
            f"health_report: expected hostvars (a mapping of hosts), got {type(hostvars).__name__}"
        )
    for name, hosts in (("hosts_all", hosts_all), ("hosts_ok", hosts_ok)):
        if not isinstance(hosts, Sequence) or isinstance(hosts, (str, bytes)):
            raise AnsibleFilterError(f"health_report: {name} must be a list of host names, got {hosts!r}")
    try:
        entries, empty = host_entries(hostvars, hosts_all, hosts_ok)
        components = keyed_components(entries)
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"health_report: malformed health_check__results or hostvars: {exc!r}") from exc
    healthy = not empty and all(value.get("status") == "ok" for value in components.values())
    report: dict[str, Any] = {
        "status": "healthy" if healthy else "unhealthy",
        "timestamp": timestamp,
        "components": components,
    }
    if empty:
        report["hosts_without_components"] = empty
    return report


def _loop_value(result: Mapping[str, Any]) -> Any:
    """The loop item of one registered loop result, whatever its ``loop_var``."""
    return result.get(result.get("ansible_loop_var", "item"))


def health_s3_facts(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The S3 component's facts from the ``results`` of a loop of ``s3_health_info`` (one per bucket).

    ``endpoint`` of the first reading, ``buckets`` ({bucket: {exists, listable}}, the endpoint-only
    reading has no entry) and, when any reading is not healthy, ``error`` (every cause, ``; ``-joined).
    """
    if not isinstance(results, Sequence) or isinstance(results, (str, bytes)):
        raise AnsibleFilterError(f"health_s3_facts: expected the results list of a loop, got {results!r}")
    buckets: dict[str, Any] = {}
    errors: list[str] = []
    for result in results:
        if not isinstance(result, Mapping):
            raise AnsibleFilterError(f"health_s3_facts: expected a registered result, got {result!r}")
        bucket = _loop_value(result)
        if bucket and "healthy" in result:
            buckets[bucket] = {"exists": result.get("bucket_exists"), "listable": result.get("listable")}
        if not result.get("healthy", False):
            cause = result["error"] if "error" in result else result.get("msg", "no answer")
            errors.append(str(cause))
    facts: dict[str, Any] = {
        "endpoint": results[0].get("endpoint") if results else None,
        "buckets": buckets,
    }
    if errors:
        facts["error"] = "; ".join(errors)
    return facts


class FilterModule:
    """runbook.stack filters of the health_check role."""

    def filters(self):
        return {"health_report": health_report, "health_s3_facts": health_s3_facts}
