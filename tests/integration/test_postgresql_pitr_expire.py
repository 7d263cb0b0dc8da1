"""postgresql_physical_backup type=expire: pgbackrest expire on demand, predicted in check mode.

Reuses the fixture of test_postgresql_pitr (a throwaway cluster of this module's own, a throwaway
nginx TLS front before the lab SeaweedFS, a bucket of its own) with a stanza and configuration file
of its own (stanza ``expire``, retention high enough that the backups themselves expire nothing).
"""

from __future__ import annotations

import json

import pytest
from conftest import run_module
from pgbackrest_lab import as_user, pg_start, pg_stop
from test_postgresql_pitr import (  # noqa: F401  # pylint: disable=unused-import
    archive_args,
    common,
    stack,
)

STANZA = "expire"


def base(st) -> dict:
    return common(st) | dict(config_file=str(st["root"] / "expire.conf"), stanza=STANZA)


def info_labels(st) -> list[str]:
    """Backup labels as pgbackrest itself lists them (the configuration file holds the S3 keys)."""
    proc = as_user(
        "pgbackrest", f"--config={st['root'] / 'expire.conf'}", f"--stanza={STANZA}", "info", "--output=json"
    )
    return [b["label"] for b in json.loads(proc.stdout)[0]["backup"]]


def expire(st, check_mode: bool = False, **extra) -> dict:
    return run_module("postgresql_physical_backup", base(st) | dict(type="expire") | extra, check_mode=check_mode)


@pytest.fixture(scope="module")
def fulls(stack):  # noqa: F811
    st = stack
    args = archive_args(st) | dict(config_file=str(st["root"] / "expire.conf"), stanza=STANZA, retention_full=9)
    res = run_module("postgresql_wal_archive", args)
    assert res["_rc"] == 0 and res["restart_required"], res
    pg_stop(st["data"], "fast")
    pg_start(st["data"], st["port"], st["sock"], st["root"] / "pg.log")
    res = run_module("postgresql_wal_archive", args)
    assert res["_rc"] == 0 and res["checked"], res
    labels = []
    for _round in range(3):
        res = run_module("postgresql_physical_backup", base(st) | dict(type="full"), timeout=300)
        assert res["_rc"] == 0 and res["type"] == "full" and res["expired"] == [], res
        labels.append(res["label"])
    assert info_labels(st) == labels
    return labels


def test_expire_retention_full(stack, fulls):  # noqa: F811
    st = stack
    first, second, third = fulls

    # check mode: the two older fulls predicted, nothing expired
    res = expire(st, check_mode=True, retention_full=1)
    assert res["_rc"] == 0, res
    assert res["changed"] and res["expired"] == [first, second] and res["kept"] == [third], res
    assert "--repo1-retention-full=1" in res["command"] and " expire" in res["command"], res
    assert info_labels(st) == fulls

    # the configured retention (9) expires nothing, predicted and real
    res = expire(st, check_mode=True)
    assert res["_rc"] == 0 and not res["changed"] and res["expired"] == [] and res["kept"] == fulls, res
    res = expire(st)
    assert res["_rc"] == 0 and not res["changed"] and res["expired"] == [], res
    assert info_labels(st) == fulls

    # real run: two gone, pgbackrest lists one
    res = expire(st, retention_full=1)
    assert res["_rc"] == 0, res
    assert res["changed"] and res["expired"] == [first, second] and res["kept"] == [third], res
    assert info_labels(st) == [third]

    # rerun: nothing left to expire
    res = expire(st, retention_full=1)
    assert res["_rc"] == 0 and not res["changed"] and res["expired"] == [] and res["kept"] == [third], res


def test_expire_set(stack, fulls):  # noqa: F811
    st = stack
    third = fulls[-1]
    assert info_labels(st) == [third]

    # the newest (now only) full backup: refused in check mode and for real, still there
    for check_mode in (True, False):
        res = expire(st, check_mode=check_mode, set=third)
        assert res.get("failed"), res
        assert f"set '{third}' is the only full backup" in res["msg"], res
    assert info_labels(st) == [third]
    # pgBackRest itself refuses it too (the module's rule is pgBackRest's)
    proc = as_user(
        "pgbackrest", f"--config={st['root'] / 'expire.conf'}", f"--stanza={STANZA}", f"--set={third}", "expire",
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "cannot be expired until another full backup" in proc.stdout + proc.stderr, proc

    # an incremental backup expired by its label: only it goes
    res = run_module("postgresql_physical_backup", base(st) | dict(type="incr"), timeout=300)
    assert res["_rc"] == 0 and res["type"] == "incr", res
    incr = res["label"]
    res = expire(st, check_mode=True, set=incr)
    assert res["_rc"] == 0 and res["changed"] and res["expired"] == [incr] and res["kept"] == [third], res
    assert info_labels(st) == [third, incr]
    res = expire(st, set=incr)
    assert res["_rc"] == 0 and res["changed"] and res["expired"] == [incr] and res["kept"] == [third], res
    assert f"--set={incr}" in res["command"], res
    assert info_labels(st) == [third]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (dict(type="expire", retention_full=0), "retention_full must be 1 or more, got 0"),
        (dict(type="expire", set="20200101-000000F"), "set '20200101-000000F' names no backup of this stanza"),
        (dict(type="expire", set="newest"), "set 'newest' is not a pgBackRest backup label"),
        (dict(type="full", retention_full=1), "retention_full applies only to type=expire, not to a full backup"),
        (dict(type="incr", set="20200101-000000F"), "set applies only to type=expire"),
    ],
)
def test_expire_bad_input(stack, fulls, extra, message):  # noqa: F811
    st = stack
    before = info_labels(st)
    res = run_module("postgresql_physical_backup", base(st) | extra)
    assert res.get("failed") and message in res["msg"], res
    assert info_labels(st) == before
