# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers of _pgbackrest_expire: options, the prediction of pgbackrest expire, configured retention."""

from __future__ import annotations

import pytest

from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest import PgBackRestError
from ansible_collections.runbook.stack.plugins.module_utils._pgbackrest_expire import (
    configured_retention,
    dependents,
    expire_options,
    predict_expire,
    set_refusal,
)

F1, F2, F3 = "20261201-010000F", "20261202-010000F", "20261203-010000F"
F1D = f"{F1}_20261201-020000D"
F1DI = f"{F1}_20261201-030000I"
F2I = f"{F2}_20261202-020000I"
F2D = f"{F2}_20261202-030000D"
F3I = f"{F3}_20261203-020000I"


def b(label: str, prior: str | None = None, db: int = 1) -> dict:
    kind = {"F": "full", "D": "diff", "I": "incr"}[label[-1]]
    return dict(label=label, type=kind, prior=prior, database_id=db)


def chain() -> list[dict]:
    """F1 <- D <- I, F2 <- I, F2 <- D, F3 <- I (oldest first, as parse_info lists them)."""
    return [b(F1), b(F1D, F1), b(F1DI, F1D), b(F2), b(F2I, F2), b(F2D, F2), b(F3), b(F3I, F3)]


def test_options():
    assert expire_options({"type": "expire", "retention_full": 1}) == [
        "--repo1-retention-full=1",
        "--repo1-retention-full-type=count",
    ]
    assert expire_options({"type": "expire", "set": F1}) == [f"--set={F1}"]
    assert expire_options({"type": "expire"}) == []
    assert expire_options({"type": "full", "retention_full": None, "set": None}) == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"type": "expire", "retention_full": 0}, "retention_full must be 1 or more, got 0"),
        ({"type": "expire", "set": "latest"}, "set 'latest' is not a pgBackRest backup label"),
        ({"type": "expire", "set": F1, "retention_full": 2}, "set and retention_full cannot be combined"),
        ({"type": "full", "retention_full": 2}, "retention_full applies only to type=expire, not to a full backup"),
        ({"type": "incr", "set": F1}, "set applies only to type=expire"),
    ],
)
def test_bad_options(params, message):
    with pytest.raises(PgBackRestError, match=message):
        expire_options(params)


def test_dependents_follow_prior_chain():
    assert dependents(chain(), F1) == [F1, F1D, F1DI]
    assert dependents(chain(), F1D) == [F1D, F1DI]
    assert dependents(chain(), F2) == [F2, F2I, F2D]
    assert dependents(chain(), F3I) == [F3I]


def test_retention_full_drops_oldest_fulls_with_dependents():
    assert predict_expire(chain(), retention_full=1) == sorted([F1, F1D, F1DI, F2, F2I, F2D])
    assert predict_expire(chain(), retention_full=2) == [F1, F1D, F1DI]
    assert predict_expire(chain(), retention_full=3) == []
    assert predict_expire(chain(), retention_full=9) == []
    assert predict_expire([], retention_full=1) == []
    # no retention configured or given: nothing (pgBackRest only warns)
    assert predict_expire(chain()) == []


def test_retention_diff_counts_fulls_but_expires_only_diffs():
    # full + diff, oldest first: F1 F1D F2 F2D F3; keep the newest 2 (F2D, F3): F1D (and its incr) go, fulls stay
    assert predict_expire(chain(), retention_diff=2) == [F1D, F1DI]
    # applied after full retention
    assert predict_expire(chain(), retention_full=2, retention_diff=1) == sorted([F1, F1D, F1DI, F2D])


def test_set_expires_label_and_dependents_only():
    assert predict_expire(chain(), label=F2) == [F2, F2I, F2D]
    assert predict_expire(chain(), label=F1DI, retention_full=1) == [F1DI]  # no retention with a set
    # the newest full with an older full of the same database: pgBackRest allows it (and warns)
    assert predict_expire(chain(), label=F3) == [F3, F3I]


def test_set_refusals():
    assert "names no backup of this stanza" in set_refusal(chain(), "20261109-010000F")
    only = [b(F3), b(F3I, F3)]
    assert "is the only full backup" in set_refusal(only, F3)
    assert set_refusal(only, F3I) == ""
    other_db = [b(F2, db=1), b(F3, db=2)]
    assert "belongs to another database" in set_refusal(other_db, F3)
    assert set_refusal(other_db, F2) == ""
    with pytest.raises(PgBackRestError, match=f"set '{F3}' is the only full backup"):
        predict_expire(only, label=F3)
    with pytest.raises(PgBackRestError, match="names no backup"):
        predict_expire(only, label=F1)


def test_configured_retention(tmp_path):
    conf = tmp_path / "pgbackrest.conf"
    conf.write_text("[global]\nrepo1-retention-full=4\nrepo1-retention-diff=3\n\n[main]\nrepo1-retention-full=2\n")
    assert configured_retention(str(conf), "main") == (2, 3, "count")
    assert configured_retention(str(conf), "other") == (4, 3, "count")
    conf.write_text("[global]\nrepo1-retention-full-type=time\n[main]\npg1-path=/x\n")
    assert configured_retention(str(conf), "main") == (None, None, "time")
    conf.write_text("[global]\nrepo1-retention-full=two\n")
    with pytest.raises(PgBackRestError, match="not a number"):
        configured_retention(str(conf), "main")
