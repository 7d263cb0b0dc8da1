"""runbook.stack.dr_host_sets: which sets of a DR set a host restores."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.stack.plugins.filter.dr_host_sets import FilterModule, dr_host_sets

COMPONENTS = [
    {"kind": "postgresql", "source": "shop", "host": "db1"},
    {"kind": "postgresql", "source": "billing", "host": "db2"},
    {"kind": "redis", "source": "10.0.0.5:6379", "host": "cache1"},
    {"kind": "s3", "source": "receipts", "host": "storage1"},
    {"kind": "postgresql", "source": "legacy"},
    {"kind": "s3", "source": "media"},
]


def sources(sets):
    return [s["source"] for s in sets]


def test_a_host_takes_its_own_sets_the_hostless_ones_and_every_bucket():
    assert sources(dr_host_sets(COMPONENTS, ["postgresql", "redis", "s3"], "db1")) == [
        "legacy",
        "media",
        "receipts",
        "shop",
    ]


def test_another_host_never_gets_a_set_taken_elsewhere():
    assert sources(dr_host_sets(COMPONENTS, ["postgresql", "redis"], "cache1")) == ["legacy", "10.0.0.5:6379"]
    assert sources(dr_host_sets(COMPONENTS, ["postgresql"], "db-new")) == ["legacy"]


def test_a_replacement_host_takes_the_sets_of_the_host_it_replaces():
    assert sources(dr_host_sets(COMPONENTS, ["postgresql"], "db2")) == ["legacy", "billing"]


def test_kinds_limit_the_choice():
    assert sources(dr_host_sets(COMPONENTS, ["s3"], "db1")) == ["media", "receipts"]
    assert dr_host_sets(COMPONENTS, [], "db1") == []


@pytest.mark.parametrize(
    ("components", "kinds", "message"),
    [
        ("shop", ["postgresql"], "the components must be a list"),
        ([{"source": "x"}], ["postgresql"], r"components\[0\] must be a dict with a kind"),
        (COMPONENTS, "postgresql", "kinds must be a list"),
    ],
)
def test_bad_input_names_what_is_wrong(components, kinds, message):
    with pytest.raises(AnsibleFilterError, match=message):
        dr_host_sets(components, kinds, "db1")


def test_registered():
    assert FilterModule().filters()["dr_host_sets"] is dr_host_sets
