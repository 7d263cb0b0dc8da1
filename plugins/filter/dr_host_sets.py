# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``runbook.stack.dr_host_sets``: the component sets of a DR set that one host restores
(roles dr_restore and restore_test)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError


def dr_host_sets(components, kinds, source_host):
    """The entries of ``components`` (a DR set's, as runbook.stack.dr_set_info returns them) of the
    kinds ``kinds`` that the host restoring for ``source_host`` takes: the sets that record no host,
    every bucket snapshot (restored once, server-side), and the PostgreSQL and Redis sets taken on
    ``source_host``; in that order, each group in the DR set's order."""
    if isinstance(components, (str, bytes)) or not isinstance(components, Sequence):
        raise AnsibleFilterError(f"dr_host_sets: the components must be a list, got {components!r}")
    if isinstance(kinds, (str, bytes)) or not isinstance(kinds, Sequence):
        raise AnsibleFilterError(f"dr_host_sets: kinds must be a list, got {kinds!r}")
    for i, c in enumerate(components):
        if not isinstance(c, Mapping) or "kind" not in c:
            raise AnsibleFilterError(f"dr_host_sets: components[{i}] must be a dict with a kind, got {c!r}")
    wanted = [c for c in components if c["kind"] in kinds]
    return (
        [c for c in wanted if "host" not in c]
        + [c for c in wanted if "host" in c and c["kind"] == "s3"]
        + [c for c in wanted if "host" in c and c["kind"] != "s3" and c["host"] == source_host]
    )


class FilterModule:
    """runbook.stack filters."""

    def filters(self):
        return {"dr_host_sets": dr_host_sets}
