# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_info / backup_prune run as Ansible runs them, against real backup sets on disk.

The sets are written with the same LocalSetWriter the backup modules use (real files, real
manifests); no server is needed. ``module`` comes from conftest.py (not ``lab``: nothing to start).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".cache" / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import (
    MANIFEST,
    LocalSetWriter,
    utcnow,
)

pytestmark = [pytest.mark.playbook]

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def make_set(
    root: Path, source: str = "app", age: dt.timedelta = HOUR, kind: str = "postgresql", payload: bytes = b"x" * 2048
) -> LocalSetWriter:
    """A sealed set whose backup id lies ``age`` in the past (the files themselves are real)."""
    when = utcnow() - age
    writer = LocalSetWriter(str(root), kind, source, now=lambda: when).create()
    data = Path(writer.path, "data")
    data.mkdir()
    (data / "toc.dat").write_bytes(b"toc " + source.encode())
    (data / "3021.dat.gz").write_bytes(payload)
    writer.seal(tool={"name": "test"}, facts={"tables": {"public.t": 1}})
    return writer


def make_incomplete(root: Path, source: str = "app", age: dt.timedelta = HOUR, idle: dt.timedelta | None = None) -> str:
    """A directory an interrupted backup left behind (no manifest); its files last written ``idle`` ago."""
    when = utcnow() - age
    writer = LocalSetWriter(str(root), "postgresql", source, now=lambda: when).create()
    Path(writer.path, "data").mkdir()
    Path(writer.path, "data", "1.dat").write_bytes(b"p" * 100)
    if idle is not None:
        stamp = (utcnow() - idle).timestamp()
        for path in (Path(writer.path, "data", "1.dat"), Path(writer.path, "data"), Path(writer.path)):
            os.utime(path, (stamp, stamp))
    return writer.path


def disk_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def on_disk(root: Path, source: str = "app", kind: str = "postgresql") -> list[str]:
    base = root / kind / source
    return sorted((p.name for p in base.iterdir()), reverse=True) if base.is_dir() else []


def ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["backup_id"] for e in entries]


def warnings(res: dict[str, Any]) -> list[str]:
    """Warning texts (ansible-core >= 2.19 returns structured warnings)."""
    return [w if isinstance(w, str) else w["event"]["msg"] for w in res.get("warnings", [])]


def assert_failed(res: dict[str, Any], *words: str) -> None:
    assert res.get("failed") is True, res
    assert res["_rc"] != 0
    for word in words:
        assert word in res["msg"], res["msg"]
    assert "Traceback" not in res["_stdout"] + res["_stderr"]


# ------------------------------------------------------------------------------------------------
# backup_info
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def populated(tmp_path: Path) -> dict[str, Any]:
    root = tmp_path / "backups"
    sets = {
        "app_old": make_set(root, "app", 50 * HOUR),
        "app_mid": make_set(root, "app", 26 * HOUR),
        "app_new": make_set(root, "app", 2 * HOUR),
        "billing": make_set(root, "billing", 1 * HOUR),
        "cache": make_set(root, "cache:6379", 3 * HOUR, kind="redis"),
    }
    incomplete = make_incomplete(root, "app", age=HOUR / 2)
    return {"root": root, "sets": sets, "incomplete": incomplete}


def test_info_lists_every_set_newest_first(module, populated):
    s = populated["sets"]
    res = module("backup_info", {"root": str(populated["root"])})
    assert res["_rc"] == 0 and res["changed"] is False, res
    incomplete_id = os.path.basename(populated["incomplete"])
    assert ids(res["sets"]) == [
        incomplete_id,
        s["billing"].backup_id,
        s["app_new"].backup_id,
        s["cache"].backup_id,
        s["app_mid"].backup_id,
        s["app_old"].backup_id,
    ]
    first = res["sets"][0]
    assert first["valid"] is False and "no manifest" in first["error"] and first["source"] == "app"
    assert first["size_bytes"] is None and first["file_count"] is None
    billing = res["sets"][1]
    assert billing == {
        "kind": "postgresql",
        "source": "billing",
        "backup_id": s["billing"].backup_id,
        "path": s["billing"].path,
        "valid": True,
        "error": None,
        "started": billing["started"],
        "finished": billing["finished"],
        "size_bytes": len(b"toc billing") + 2048,
        "file_count": 2,
    }
    assert billing["started"].endswith("Z") and "manifest" not in billing
    assert (res["valid_count"], res["invalid_count"]) == (5, 1)
    assert res["latest"]["backup_id"] == s["billing"].backup_id
    assert {k: v["backup_id"] for k, v in res["latest_by_source"].items()} == {
        "postgresql/app": s["app_new"].backup_id,
        "postgresql/billing": s["billing"].backup_id,
        "redis/cache:6379": s["cache"].backup_id,
    }


def test_info_filters_by_kind_and_source(module, populated):
    s = populated["sets"]
    root = str(populated["root"])
    res = module("backup_info", {"root": root, "kind": "postgresql", "source": "app"})
    assert len(res["sets"]) == 4 and {e["source"] for e in res["sets"]} == {"app"}
    assert res["latest"]["backup_id"] == s["app_new"].backup_id
    assert res["latest"]["path"] == s["app_new"].path

    res = module("backup_info", {"root": root, "kind": "postgresql", "source": "app", "include_invalid": False})
    assert ids(res["sets"]) == [s["app_new"].backup_id, s["app_mid"].backup_id, s["app_old"].backup_id]
    assert (res["valid_count"], res["invalid_count"]) == (3, 1)

    res = module("backup_info", {"root": root, "kind": "redis"})
    assert ids(res["sets"]) == [s["cache"].backup_id] and res["sets"][0]["source"] == "cache:6379"

    res = module("backup_info", {"root": root, "source": "billing"})
    assert ids(res["sets"]) == [s["billing"].backup_id]

    res = module("backup_info", {"root": root, "kind": "postgresql", "source": "nope"})
    assert res["sets"] == [] and res["latest"] is None and res["latest_by_source"] == {}


def test_info_include_manifest_and_check_mode(module, populated):
    root = str(populated["root"])
    res = module("backup_info", {"root": root, "source": "billing", "include_manifest": True}, check_mode=True)
    assert res["_rc"] == 0 and res["changed"] is False
    manifest = res["sets"][0]["manifest"]
    assert manifest["format"] == "runbook.stack/backup-set" and manifest["facts"] == {"tables": {"public.t": 1}}
    assert [f["path"] for f in manifest["files"]] == ["data/3021.dat.gz", "data/toc.dat"]
    assert manifest == json.loads(Path(populated["sets"]["billing"].path, MANIFEST).read_text())


def test_info_verify_finds_a_flipped_byte(module, populated):
    s = populated["sets"]
    root = str(populated["root"])
    for name in ("app_mid", "app_new"):
        target = Path(s[name].path, "data", "3021.dat.gz")
        data = bytearray(target.read_bytes())
        data[1000] ^= 0x40
        target.write_bytes(bytes(data))

    res = module("backup_info", {"root": root, "kind": "postgresql", "source": "app", "include_invalid": False})
    assert len(res["sets"]) == 3, "same sizes: listing alone cannot see the damage"

    res = module("backup_info", {"root": root, "kind": "postgresql", "source": "app", "verify": True})
    by_id = {e["backup_id"]: e for e in res["sets"]}
    for name in ("app_mid", "app_new"):
        assert by_id[s[name].backup_id]["valid"] is False
        assert by_id[s[name].backup_id]["error"] == "checksum mismatch on data/3021.dat.gz"
    assert by_id[s["app_old"].backup_id]["valid"] is True
    assert res["latest"]["backup_id"] == s["app_old"].backup_id
    assert (res["valid_count"], res["invalid_count"]) == (1, 3)


def test_info_missing_root_is_empty(module, tmp_path):
    res = module("backup_info", {"root": str(tmp_path / "never-created")})
    assert res["_rc"] == 0 and res.get("failed") is not True, res
    assert res["sets"] == [] and res["latest"] is None and res["latest_by_source"] == {}
    assert (res["valid_count"], res["invalid_count"]) == (0, 0)


def test_info_bad_input_fails_clearly(module, tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    assert_failed(module("backup_info", {"root": str(tmp_path / "a-file")}), "cannot list", "Not a directory")
    assert_failed(module("backup_info", {"root": "ftp://bucket/prefix"}), "only local directories")
    assert_failed(module("backup_info", {"root": str(tmp_path), "kind": "Postgres-QL"}), "invalid backup kind")
    assert_failed(module("backup_info", {"root": str(tmp_path), "source": ""}), "source must not be an empty")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory")
def test_info_unreadable_root_fails(module, tmp_path):
    root = tmp_path / "locked"
    root.mkdir(mode=0o000)
    try:
        assert_failed(module("backup_info", {"root": str(root)}), "cannot list", "Permission denied")
    finally:
        root.chmod(0o700)


# ------------------------------------------------------------------------------------------------
# backup_prune
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def daily(tmp_path: Path) -> dict[str, Any]:
    """Five daily sets of 'app' (1 to 5 days old) and two of 'billing'."""
    root = tmp_path / "backups"
    app = [make_set(root, "app", n * DAY) for n in (1, 2, 3, 4, 5)]
    billing = [make_set(root, "billing", n * DAY + HOUR) for n in (1, 6)]
    return {"root": root, "app": [w.backup_id for w in app], "billing": [w.backup_id for w in billing], "writers": app}


def test_prune_check_mode_reports_and_removes_nothing(module, daily):
    root = daily["root"]
    before = {src: on_disk(root, src) for src in ("app", "billing")}
    res = module(
        "backup_prune", {"root": str(root), "kind": "postgresql", "source": "app", "keep_last": 2}, check_mode=True
    )
    assert res["_rc"] == 0 and res["changed"] is True, res
    assert ids(res["removed"]) == daily["app"][2:]
    assert ids(res["kept"]) == daily["app"][:2]
    assert res["freed_bytes"] == sum(disk_bytes(w.path) for w in daily["writers"][2:])
    assert {src: on_disk(root, src) for src in ("app", "billing")} == before
    for writer in daily["writers"]:
        assert Path(writer.path, MANIFEST).is_file()


def test_prune_removes_exactly_the_expected_sets_then_is_idempotent(module, daily):
    root = daily["root"]
    expected_bytes = sum(disk_bytes(w.path) for w in daily["writers"][2:])
    res = module("backup_prune", {"root": str(root), "kind": "postgresql", "source": "app", "keep_last": 2})
    assert res["_rc"] == 0 and res["changed"] is True, res
    assert ids(res["removed"]) == daily["app"][2:]
    assert all(e["valid"] for e in res["removed"]) and res["removed"][0]["size_bytes"] == 2048 + len(b"toc app")
    assert res["freed_bytes"] == expected_bytes
    assert res["removed_incomplete"] == [] and res["left_in_place"] == []
    assert on_disk(root, "app") == daily["app"][:2]
    assert on_disk(root, "billing") == daily["billing"], "another source must not be touched"

    again = module("backup_prune", {"root": str(root), "kind": "postgresql", "source": "app", "keep_last": 2})
    assert again["changed"] is False and again["removed"] == [] and again["freed_bytes"] == 0
    assert ids(again["kept"]) == daily["app"][:2]


def test_prune_every_source_on_its_own(module, daily):
    root = daily["root"]
    res = module("backup_prune", {"root": str(root), "kind": "postgresql", "keep_last": 1})
    assert res["changed"] is True
    assert sorted(ids(res["removed"])) == sorted(daily["app"][1:] + daily["billing"][1:])
    assert on_disk(root, "app") == daily["app"][:1]
    assert on_disk(root, "billing") == daily["billing"][:1]


def test_prune_keep_days_never_removes_the_newest(module, tmp_path):
    root = tmp_path / "backups"
    old = [make_set(root, "app", n * DAY).backup_id for n in (10, 11, 12)]
    res = module("backup_prune", {"root": str(root), "kind": "postgresql", "keep_days": 1})
    assert ids(res["kept"]) == old[:1] and ids(res["removed"]) == old[1:]
    assert on_disk(root) == old[:1]


def test_prune_keep_days_and_keep_last_keep_what_either_keeps(module, daily):
    root = daily["root"]
    # keep_days 2.5 keeps the 1- and 2-day-old sets; keep_last 3 keeps the third one as well
    res = module(
        "backup_prune", {"root": str(root), "kind": "postgresql", "source": "app", "keep_days": 2.5, "keep_last": 3}
    )
    assert ids(res["kept"]) == daily["app"][:3] and ids(res["removed"]) == daily["app"][3:]
    # now the age rule is the generous one
    res = module(
        "backup_prune", {"root": str(root), "kind": "postgresql", "source": "app", "keep_days": 3.5, "keep_last": 1}
    )
    assert res["changed"] is False and ids(res["kept"]) == daily["app"][:3]
    assert on_disk(root) == daily["app"][:3]


def test_prune_newest_invalid_set_does_not_shield_older_ones(module, tmp_path):
    root = tmp_path / "backups"
    good = [make_set(root, "app", n * DAY).backup_id for n in (2, 3, 4)]
    broken = make_set(root, "app", 1 * DAY)
    os.unlink(Path(broken.path, "data", "toc.dat"))  # newest, but damaged: not a backup
    res = module("backup_prune", {"root": str(root), "kind": "postgresql", "keep_last": 1})
    assert ids(res["kept"]) == good[:1] and ids(res["removed"]) == good[1:]
    assert ids(res["left_in_place"]) == [broken.backup_id] and "missing" in res["left_in_place"][0]["error"]
    assert any("left in place" in w and broken.path in w for w in warnings(res)), res
    assert on_disk(root) == [broken.backup_id, good[0]], "a damaged set is left for a human"


def test_prune_incomplete_directories_old_and_young(module, tmp_path):
    root = tmp_path / "backups"
    newest = make_set(root, "app", HOUR).backup_id
    old = make_incomplete(root, age=48 * HOUR, idle=48 * HOUR)
    running = make_incomplete(root, age=47 * HOUR, idle=dt.timedelta(minutes=5))  # long backup, still writing
    young = make_incomplete(root, age=2 * HOUR, idle=2 * HOUR)
    args = {"root": str(root), "kind": "postgresql", "keep_last": 1}

    res = module("backup_prune", args, check_mode=True)
    assert res["changed"] is True
    assert [e["path"] for e in res["removed_incomplete"]] == [old]
    assert res["removed_incomplete"][0]["size_bytes"] == 100 and res["freed_bytes"] == 100
    assert res["removed"] == [] and ids(res["kept"]) == [newest]
    assert sorted(e["path"] for e in res["left_in_place"]) == sorted([running, young])
    assert os.path.isdir(old), "check mode removes nothing"
    assert "warnings" not in res, "an incomplete directory is not a damaged set"

    res = module("backup_prune", args)
    assert res["changed"] is True and [e["path"] for e in res["removed_incomplete"]] == [old]
    assert not os.path.exists(old)
    assert os.path.isdir(running) and os.path.isdir(young)
    assert on_disk(root) == sorted([newest, os.path.basename(running), os.path.basename(young)], reverse=True)

    res = module("backup_prune", {**args, "remove_incomplete_older_than_h": 1})
    assert [e["path"] for e in res["removed_incomplete"]] == [young], "5 minutes idle is never old enough"
    assert os.path.isdir(running)


def test_prune_diff_mode(module, daily):
    root = daily["root"]
    res = module("backup_prune", {"root": str(root), "kind": "postgresql", "keep_last": 3}, check_mode=True, diff=True)
    diff = res["diff"]
    assert diff["before"] == {"app": daily["app"], "billing": daily["billing"]}
    assert diff["after"] == {"app": daily["app"][:3], "billing": daily["billing"]}
    assert diff["before_header"] == diff["after_header"] == f"{root}/postgresql"
    assert "diff" not in module("backup_prune", {"root": str(root), "kind": "postgresql", "keep_last": 3})


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({"keep_last": 0}, ["keep_last must be at least 1, got 0"]),
        ({"keep_last": -3}, ["keep_last must be at least 1"]),
        ({"keep_days": -1}, ["keep_days must be greater than 0, got -1"]),
        ({"keep_days": 0}, ["keep_days must be greater than 0"]),
        ({"keep_last": 2, "remove_incomplete_older_than_h": 0}, ["remove_incomplete_older_than_h must be at least 1"]),
        ({}, ["keep_last", "keep_days"]),
        ({"keep_last": "many"}, ["keep_last"]),
        ({"keep_last": 2, "kind": "Postgres-QL"}, ["invalid backup kind 'Postgres-QL'"]),
        ({"keep_last": 2, "kind": "../etc"}, ["invalid backup kind"]),
        ({"keep_last": 2, "source": ""}, ["source must not be an empty string"]),
        ({"keep_last": 2, "root": "ftp://bucket/prefix"}, ["only local directories"]),
    ],
)
def test_prune_bad_input_fails_clearly_and_touches_nothing(module, daily, args, words):
    root = daily["root"]
    res = module("backup_prune", {"root": str(root), "kind": "postgresql", **args})
    assert_failed(res, *words)
    assert on_disk(root, "app") == daily["app"] and on_disk(root, "billing") == daily["billing"]


def test_prune_failure_message_names_kind_source_and_root(module, daily):
    res = module("backup_prune", {"root": str(daily["root"]), "kind": "postgresql", "source": "app", "keep_last": 0})
    assert_failed(res, f"cannot prune postgresql backups of source 'app' under {daily['root']}: keep_last")


@pytest.mark.parametrize("check_mode", [True, False])
def test_prune_missing_root_is_nothing_to_prune_and_creates_nothing(module, tmp_path, check_mode):
    # before the first backup (backup.yml --check on a fresh host): no root, so no set to prune
    root = tmp_path / "never" / "backed-up"
    res = module("backup_prune", {"root": str(root), "kind": "dr", "source": "shop", "keep_last": 7}, check_mode)
    assert res["_rc"] == 0 and res["changed"] is False, res
    assert res["removed"] == [] and res["kept"] == [] and res["freed_bytes"] == 0
    assert not (tmp_path / "never").exists(), "pruning creates nothing"


def test_prune_root_that_is_not_a_directory_fails(module, tmp_path):
    root = tmp_path / "backups"
    root.write_text("a file where the backup root should be")
    res = module("backup_prune", {"root": str(root), "kind": "postgresql", "keep_last": 2}, check_mode=True)
    assert_failed(res, f"cannot prune postgresql backups of every source under {root}", "is not a directory")


def test_prune_missing_kind_directory_is_nothing_to_do(module, daily):
    res = module("backup_prune", {"root": str(daily["root"]), "kind": "redis", "keep_last": 1})
    assert res["_rc"] == 0 and res["changed"] is False and res["removed"] == [] and res["kept"] == []


# ------------------------------------------------------------------------------------------------
# through ansible-playbook (result keys, check mode and diff as Ansible handles them)
# ------------------------------------------------------------------------------------------------

PLAYBOOK = """
- name: Backup modules through ansible-playbook
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    root: "{root}"
  tasks:
    - name: Prune in check mode
      runbook.stack.backup_prune:
        root: "{{{{ root }}}}"
        kind: postgresql
        keep_last: 2
      check_mode: true
      diff: true
      register: predicted

    - name: Prune for real
      runbook.stack.backup_prune:
        root: "{{{{ root }}}}"
        kind: postgresql
        keep_last: 2
      register: pruned

    - name: Prune again
      runbook.stack.backup_prune:
        root: "{{{{ root }}}}"
        kind: postgresql
        keep_last: 2
      register: again

    - name: List what is left
      runbook.stack.backup_info:
        root: "{{{{ root }}}}"
        kind: postgresql
        source: app
      register: info

    - name: Check the results
      ansible.builtin.assert:
        that:
          - predicted is changed
          - predicted.removed | map(attribute='backup_id') | list == {removed}
          - pruned is changed
          - pruned.removed | map(attribute='backup_id') | list == {removed}
          - again is not changed
          - info is not changed
          - info.latest.backup_id == "{newest}"
          - info.sets | map(attribute='backup_id') | list == {kept}
"""


def test_modules_through_ansible_playbook(daily, tmp_path):
    root = daily["root"]
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        PLAYBOOK.format(
            root=root,
            removed=json.dumps(daily["app"][2:]),
            kept=json.dumps(daily["app"][:2]),
            newest=daily["app"][0],
        )
    )
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_NOCOLOR": "1",
    }
    proc = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            "localhost,",
            "-e",
            f"ansible_python_interpreter={ROOT / '.venv' / 'bin' / 'python'}",
            str(playbook),
        ],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(ROOT),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "failed=0" in proc.stdout and "[WARNING]" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert on_disk(root, "app") == daily["app"][:2]
