# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``runbook.stack.serial_hex``: a certificate serial number as openssl prints it."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.stack.plugins.module_utils._tls import hex_serial


def serial_hex(number):
    """Even-length upper-case hex of an integer serial (community.crypto returns it as an int)."""
    if isinstance(number, bool):
        raise AnsibleFilterError(f"serial_hex: expected an integer serial number, got {number!r}")
    try:
        value = int(number)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"serial_hex: expected an integer serial number, got {number!r}") from None
    if value < 0:
        raise AnsibleFilterError(f"serial_hex: a serial number cannot be negative, got {value}")
    return hex_serial(value)


class FilterModule:
    """runbook.stack filters."""

    def filters(self):
        return {"serial_hex": serial_hex}
