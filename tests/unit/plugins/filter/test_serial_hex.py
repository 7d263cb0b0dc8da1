# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The serial_hex filter prints serials the way tls_certificate_install and openssl do."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.stack.plugins.filter.serial_hex import FilterModule, serial_hex


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (0x987B57EF7A209438162F1BE316D9189980B848F, "0987B57EF7A209438162F1BE316D9189980B848F"),
        (0x5188B953A977328D3E4423BD5C3F283121A93267, "5188B953A977328D3E4423BD5C3F283121A93267"),
        (1, "01"),
        (255, "FF"),
        ("4096", "1000"),
    ],
)
def test_even_length_upper_case(number, expected):
    assert serial_hex(number) == expected


@pytest.mark.parametrize("bad", [None, "zz", True, -5])
def test_bad_input_names_the_filter(bad):
    with pytest.raises(AnsibleFilterError, match="serial_hex"):
        serial_hex(bad)


def test_registered_under_its_name():
    assert FilterModule().filters()["serial_hex"] is serial_hex
