# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of what s3_restore keeps (plan_restore's ``replaced``, the kept areas, the diff); no network."""

from __future__ import annotations

import pytest

from ansible_collections.runbook.stack.plugins.module_utils._s3 import copy_plan

MD5_A = "0cc175b9c0f1b6a831c399e269772661"
MD5_B = "92eb5ffee6ae2fec3ad71c777531578f"
BID = "20261122T020000Z"


def entry(key: str, size: int = 1, etag: str = MD5_A) -> dict:
    return {"key": key, "size": size, "etag": etag, "backup_etag": etag}


def test_replaced_lists_changed_and_deleted_objects_only():
    entries = [entry("a"), entry("b"), entry("c")]
    target = {"a": (1, MD5_A), "b": (1, f'"{MD5_B}"'), "late": (7, MD5_B)}  # c is missing
    mirror = copy_plan.plan_restore(entries, target, "mirror", "", "")
    assert mirror.replaced == [("b", 1, MD5_B), ("late", 7, MD5_B)]
    # missing keeps the changed one (it is overwritten), not the extra (it stays)
    assert copy_plan.plan_restore(entries, target, "missing", "", "").replaced == [("b", 1, MD5_B)]
    # overwrite copies the identical one again: nothing of it is lost, so it is not kept
    over = copy_plan.plan_restore(entries, target, "overwrite", "", "")
    assert [k for _e, k in over.copy] == ["a", "b", "c"] and over.replaced == [("b", 1, MD5_B)]


def test_mirror_leaves_kept_areas_alone():
    target = {
        "a": (1, MD5_A),
        f"pre-restore-{BID}/late": (1, MD5_B),
        f"pre-restore-{BID}.2/late": (1, MD5_B),
        "pre-restore-notes/x": (1, MD5_B),  # not a kept area: user data with a similar name
    }
    plan = copy_plan.plan_restore([entry("a")], target, "mirror", "", "")
    assert plan.delete == ["pre-restore-notes/x"] and [k for k, _s, _e in plan.replaced] == plan.delete


@pytest.mark.parametrize(
    "key, selected, kept",
    [
        (f"pre-restore-{BID}/img/a.png", "", True),
        (f"pre-restore-{BID}.12/img/a.png", "", True),
        (f"pre-restore-{BID}/img/a.png", "pre-restore-", False),  # the kept area named on purpose
        (f"pre-restore-{BID}/img/a.png", f"pre-restore-{BID}/", False),
        (f"img/pre-restore-{BID}/a.png", "", False),  # only at the bucket root
        ("pre-restore-20261122/a", "", False),
        (f"pre-restore-{BID}", "", False),
    ],
)
def test_is_kept_key(key, selected, kept):
    assert copy_plan.is_kept_key(key, selected) is kept


def test_keep_prefix_name_and_its_pattern_agree():
    for suffix in ("", ".2", ".99"):
        name = copy_plan.keep_prefix_name(BID, suffix)
        assert name == f"pre-restore-{BID}{suffix}/" and copy_plan.is_kept_key(f"{name}k")


def test_restore_diff_shows_copies_and_kept_copies():
    entries = [entry("a", size=3), entry("b", size=2)]
    plan = copy_plan.plan_restore(entries, {"a": (5, MD5_B), "z": (4, MD5_B)}, "mirror", "", "")
    keep = f"pre-restore-{BID}/"
    diff = copy_plan.restore_diff(plan, "bkt", keep, BID, 10)
    assert diff["before"] == "a (5 bytes)\nz (4 bytes)\n"
    assert diff["after"] == (
        f"a (3 bytes, from the snapshot)\n{keep}a (5 bytes, kept)\nb (2 bytes, from the snapshot)\n{keep}z (4 bytes, kept)\n"
    )
    assert diff["before_header"] == "s3://bkt" and BID in diff["after_header"]
    short = copy_plan.restore_diff(plan, "bkt", None, BID, 1)
    assert short["before"] == "a (5 bytes)\n... and 2 more objects\n"
    assert short["after"] == "a (3 bytes, from the snapshot)\n... and 2 more objects\n"
