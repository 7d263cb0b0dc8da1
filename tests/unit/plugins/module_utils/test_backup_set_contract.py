# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup-set reference every set-writing module returns (``backup_set``, _backup_set/contract.py),
and the ``backup_root`` alias of the modules that take a local root, run end to end on local sets
(dr_set, dr_set_info, backup_info, backup_prune); no server."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import dr
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.contract import (
    SET_REFERENCE_KEYS,
    root_url,
    set_reference,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.ids import BackupSetError
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.manifest import (
    manifest_bytes,
    set_file_count,
    set_size,
)
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.reader import find_set
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.storage import LocalStorage
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.writer import LocalSetWriter
from ansible_collections.runbook.stack.plugins.modules import backup_info, backup_prune, dr_set, dr_set_info

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 22, 2, 0, 0, tzinfo=UTC)


def sealed(root: Path, kind: str = "postgresql", source: str = "app", files: dict[str, bytes] | None = None):
    times = [T0, T0 + dt.timedelta(seconds=12)]
    writer = LocalSetWriter(str(root), kind, source, now=lambda: times.pop(0) if len(times) > 1 else times[0])
    writer.create()
    for rel, data in (files or {"data/toc.dat": b"toc\n", "data/1.dat": b"x" * 100}).items():
        Path(writer.path, rel).parent.mkdir(parents=True, exist_ok=True)
        Path(writer.path, rel).write_bytes(data)
    return writer, writer.seal()


# --------------------------------------------------------------------------------------------
# set_reference
# --------------------------------------------------------------------------------------------


def test_reference_of_a_local_set_written(tmp_path):
    writer, manifest = sealed(tmp_path, source="shop db")
    ref = set_reference(str(tmp_path), manifest, location=writer.path)
    assert tuple(ref) == SET_REFERENCE_KEYS
    assert ref == {
        "kind": "postgresql",
        "source": "shop db",
        "backup_id": "20261122T020000Z",
        "root": str(tmp_path),
        "location": writer.path,
        "started": "2026-11-22T02:00:00.000Z",
        "finished": "2026-11-22T02:00:12.000Z",
        "size_bytes": 104,
        "file_count": 2,
    }
    # the default location is where the writer put it (the source directory name encoded)
    assert (
        set_reference(str(tmp_path), manifest)["location"]
        == writer.path
        == str(tmp_path / "postgresql/shop%20db/20261122T020000Z")
    )
    # and it is the set a reader finds under that root with those names
    found = find_set(LocalStorage(ref["root"]), ref["kind"], ref["source"], ref["backup_id"])
    assert found.location == ref["location"]


def test_reference_root_is_absolute_or_an_s3_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert root_url("backups/") == str(tmp_path / "backups")
    assert root_url("s3://bkt/backups/") == "s3://bkt/backups"
    assert root_url("s3://bkt") == "s3://bkt"


def test_reference_of_an_s3_snapshot_set_counts_its_objects():
    manifest = {
        "kind": "s3",
        "source": "app-uploads",
        "backup_id": "20261122T020000Z",
        "started": "2026-11-22T02:00:00Z",
        "finished": "2026-11-22T02:00:05Z",
        "files": [],
        "total_size_bytes": 0,
        "objects": [{"key": "a", "size": 10}, {"key": "b/c", "size": 32}],
    }
    ref = set_reference("s3://backups/", manifest)
    assert ref["root"] == "s3://backups"
    assert ref["location"] == "s3://backups/s3/app-uploads/20261122T020000Z"
    assert (ref["size_bytes"], ref["file_count"]) == (42, 2)


def test_reference_in_check_mode_has_nulls_for_what_only_a_run_knows(tmp_path):
    ref = set_reference(str(tmp_path), kind="redis", source="127.0.0.1:6379")
    assert ref == dict.fromkeys(SET_REFERENCE_KEYS) | {
        "kind": "redis",
        "source": "127.0.0.1:6379",
        "root": str(tmp_path),
    }
    with pytest.raises(BackupSetError, match="needs its kind and source"):
        set_reference(str(tmp_path))


# --------------------------------------------------------------------------------------------
# the modules, end to end on local sets
# --------------------------------------------------------------------------------------------


def run_module(monkeypatch, capsys, module: Any, args: dict[str, Any]) -> dict[str, Any]:
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args})))
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    with pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def test_dr_set_returns_the_dr_set_as_a_backup_set(monkeypatch, capsys, tmp_path):
    _writer, _manifest = sealed(tmp_path / "sets")
    component = {"kind": "postgresql", "source": "app", "backup_id": "latest", "root": str(tmp_path / "sets")}
    args = {"backup_root": str(tmp_path / "dr"), "name": "shop", "components": [component]}

    predicted = run_module(monkeypatch, capsys, dr_set, dict(args, _ansible_check_mode=True))
    assert predicted["backup_set"] == dict.fromkeys(SET_REFERENCE_KEYS) | {
        "kind": "dr",
        "source": "shop",
        "root": str(tmp_path / "dr"),
    }
    assert not (tmp_path / "dr").exists()

    done = run_module(monkeypatch, capsys, dr_set, args)
    ref = done["backup_set"]
    assert (ref["kind"], ref["source"], ref["backup_id"], ref["root"]) == (
        "dr",
        "shop",
        done["backup_id"],
        str(tmp_path / "dr"),
    )
    assert ref["location"] == done["path"] and Path(ref["location"], "manifest.json").is_file()
    assert (ref["started"], ref["finished"]) == (done["manifest"]["started"], done["manifest"]["finished"])
    assert ref["file_count"] == 1 and ref["size_bytes"] == Path(ref["location"], "components.json").stat().st_size

    # dr_set_info finds it by backup_root and source, the names the reference uses
    info = run_module(
        monkeypatch,
        capsys,
        dr_set_info,
        {"backup_root": ref["root"], "source": ref["source"], "backup_id": ref["backup_id"]},
    )
    assert info["backup_id"] == ref["backup_id"], info


def test_backup_info_and_prune_take_backup_root(monkeypatch, capsys, tmp_path):
    writer, _manifest = sealed(tmp_path)
    listed = run_module(monkeypatch, capsys, backup_info, {"backup_root": str(tmp_path)})
    assert [s["path"] for s in listed["sets"]] == [writer.path]
    pruned = run_module(
        monkeypatch, capsys, backup_prune, {"backup_root": str(tmp_path), "kind": "postgresql", "keep_last": 1}
    )
    assert pruned["changed"] is False and Path(writer.path).is_dir()


# ---- size and count of a set: its files and, for an S3 snapshot, its objects


S3_MANIFEST = {
    "kind": "s3",
    "source": "receipts",
    "backup_id": "20261201T020000Z",
    "started": "2026-12-01T02:00:00Z",
    "finished": "2026-12-01T02:00:05Z",
    "files": [{"path": "objects.json", "size": 100}],
    "total_size_bytes": 100,
    "objects": [{"key": "a", "size": 1000}, {"key": "b", "size": 2000}],
    "facts": {"bucket": "receipts"},
}


class _FoundSet:
    """What check_dr_component reads of a component set found on storage."""

    def __init__(self, manifest: dict) -> None:
        self.manifest = manifest
        self.valid, self.error = True, None
        self.backup_id, self.location, self.rel = manifest["backup_id"], "s3://b/s3/receipts/x", "s3/receipts/x"
        data = manifest_bytes(manifest)
        self.storage = type("S", (), {"read_bytes": staticmethod(lambda rel: data)})()

    def verify(self, workers: int = 2) -> list:
        return []


def test_the_size_of_an_s3_snapshot_set_counts_its_objects():
    assert set_size(S3_MANIFEST) == 3100 and set_file_count(S3_MANIFEST) == 3
    assert set_size({"total_size_bytes": 7, "files": [{}]}) == 7
    ref = set_reference("s3://backups", S3_MANIFEST)
    assert (ref["size_bytes"], ref["file_count"]) == (3100, 3)


def test_a_dr_set_records_the_same_size_as_the_reference_and_accepts_the_older_figure():
    found = _FoundSet(S3_MANIFEST)
    ref = {"kind": "s3", "source": "receipts", "backup_id": S3_MANIFEST["backup_id"], "root": "s3://backups"}
    recorded = dr.describe_component(ref, found)
    assert recorded["size_bytes"] == 3100
    assert dr.check_dr_component(recorded, found, verify=False) == []
    # a DR set written when the size was the files' only is still intact
    assert dr.check_dr_component({**recorded, "size_bytes": 100}, found, verify=False) == []
    # any other figure is not
    problems = dr.check_dr_component({**recorded, "size_bytes": 999}, found, verify=False)
    assert problems and "size_bytes: 999 in the DR set, 3100 in its manifest" in problems[0], problems
