# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where s3_snapshot and s3_restore find the sets: ``backup_root`` (s3://bucket/prefix) or the deprecated
``backup_bucket`` + ``backup_prefix`` (_s3/copy_plan.py), and the modules' handling of these options,
run end to end against a fake of the S3 calls a check-mode snapshot makes; no network."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.runbook.stack.plugins.module_utils._backup_set.contract import SET_REFERENCE_KEYS
from ansible_collections.runbook.stack.plugins.module_utils._s3.copy_plan import (
    deprecated_root_message,
    snapshot_root,
    snapshot_root_spec,
    split_backup_prefix,
)
from ansible_collections.runbook.stack.plugins.module_utils._s3.errors import S3Error
from ansible_collections.runbook.stack.plugins.modules import s3_restore, s3_snapshot

CONN = {"endpoint_url": "http://127.0.0.1:9", "access_key": "AKIDEXAMPLE", "secret_key": "not-a-real-secret-key"}


# --------------------------------------------------------------------------------------------
# snapshot_root: the options as (backup bucket, backup prefix)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("root", "bucket", "prefix"),
    [
        ("s3://backups", "backups", "s3"),
        ("s3://backups/", "backups", "s3"),
        ("s3://app-data/backups", "app-data", "backups/s3"),
        ("s3://app-data//deep/backups/", "app-data", "deep/backups/s3"),
    ],
)
def test_backup_root_is_the_root_of_sets_of_kind_s3(root, bucket, prefix):
    assert snapshot_root(root, None, None) == (bucket, prefix)
    assert split_backup_prefix(prefix)[1] == "s3"


def test_the_deprecated_options_mean_what_they_meant():
    assert snapshot_root(None, "backups", None) == ("backups", "s3")
    assert snapshot_root(None, "app-data", "backups/s3") == ("app-data", "backups/s3")
    assert snapshot_root(None, "app-data", "objects") == ("app-data", "objects")
    # the same sets, named both ways
    assert snapshot_root("s3://app-data/backups", None, None) == snapshot_root(None, "app-data", "backups/s3")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("/var/backups", None, None),
            r"^backup_root must be an S3 backup root s3://bucket/prefix .*got '/var/backups'$",
        ),
        (("https://bkt/x", None, None), r"^backup_root must be an S3 backup root"),
        (("s3://", None, None), r"^backup_root: 's3://' has no valid bucket name"),
        (("s3://bkt/a/../b", None, None), r"^backup_root: .*'\.' and '\.\.' are not allowed"),
        (("s3://bkt", "bkt", None), r"^backup_root and backup_bucket are mutually exclusive"),
        (("s3://bkt", "bkt", "s3"), r"^backup_root and backup_bucket and backup_prefix are mutually exclusive"),
        ((None, None, None), r"^backup_root is required"),
        ((None, None, "backups/s3"), r"^backup_prefix needs backup_bucket"),
    ],
)
def test_bad_roots_fail_naming_the_option(args, message):
    with pytest.raises(S3Error, match=message):
        snapshot_root(*args)


def test_the_deprecation_names_the_backup_root_to_use():
    assert deprecated_root_message("s3://bkt", None, None) is None
    assert deprecated_root_message(None, "backups", None) == (
        "backup_bucket and backup_prefix are deprecated: give the backup root as backup_root: s3://backups"
    )
    assert deprecated_root_message(None, "app-data", "backups/s3").endswith("backup_root: s3://app-data/backups")
    other = deprecated_root_message(None, "app-data", "backups/objects")
    assert "kind 's3'" in other and "kind 'objects'" in other and "s3://app-data/backups/s3/" in other
    assert deprecated_root_message(None, "bkt", "Bad Kind").endswith("backup_root (s3://bucket/prefix)")


# --------------------------------------------------------------------------------------------
# the modules
# --------------------------------------------------------------------------------------------


class FakeS3:
    """The calls of a check-mode s3_snapshot: list the source, see that the backup bucket exists."""

    def __init__(self, objects: dict[str, dict[str, int]]) -> None:
        self.objects = objects  # {bucket: {key: size}}

    def get_paginator(self, name: str) -> FakeS3:
        assert name == "list_objects_v2"
        return self

    def paginate(self, Bucket: str, Prefix: str, **_kw: Any):
        keys = sorted(k for k in self.objects.get(Bucket, {}) if k.startswith(Prefix))
        yield {"Contents": [{"Key": k, "Size": self.objects[Bucket][k], "ETag": '"e"'} for k in keys]}

    def list_objects_v2(self, Bucket: str, Prefix: str, MaxKeys: int) -> dict[str, Any]:
        keys = sorted(k for k in self.objects.get(Bucket, {}) if k.startswith(Prefix))[:MaxKeys]
        return {"KeyCount": len(keys), "Contents": [{"Key": k} for k in keys]}


def run_module(monkeypatch, capsys, module: Any, args: dict[str, Any]) -> dict[str, Any]:
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": CONN | args})))
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    with pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def deprecations(monkeypatch) -> list[dict[str, Any]]:
    """What the module passes to AnsibleModule.deprecate (where ansible-core puts it depends on whether
    controller code was imported in this process, as other unit tests do)."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(basic.AnsibleModule, "deprecate", lambda self, msg, **kw: calls.append(dict(kw, msg=msg)))
    return calls


@pytest.fixture
def fake_s3(monkeypatch) -> FakeS3:
    fake = FakeS3({"app-uploads": {"a.png": 10, "b/c.txt": 32}, "backups": {"s3/other/20261122T010000Z/x": 1}})
    monkeypatch.setattr(s3_snapshot, "client", lambda info, **kw: fake)
    return fake


def test_snapshot_check_mode_with_backup_root(monkeypatch, capsys, fake_s3, deprecations):
    res = run_module(
        monkeypatch,
        capsys,
        s3_snapshot,
        {"bucket": "app-uploads", "backup_root": "s3://backups", "_ansible_check_mode": True},
    )
    assert res["changed"] is True and (res["objects"], res["bytes"]) == (2, 42), res
    assert res["location"] == "s3://backups/s3/app-uploads"
    assert res["backup_set"] == dict.fromkeys(SET_REFERENCE_KEYS) | {
        "kind": "s3",
        "source": "app-uploads",
        "root": "s3://backups",
    }
    assert deprecations == []


def test_snapshot_with_the_deprecated_options_works_and_says_so(monkeypatch, capsys, fake_s3, deprecations):
    res = run_module(
        monkeypatch,
        capsys,
        s3_snapshot,
        {"bucket": "app-uploads", "backup_bucket": "backups", "backup_prefix": "s3", "_ansible_check_mode": True},
    )
    assert res["changed"] is True and res["location"] == "s3://backups/s3/app-uploads", res
    assert res["backup_set"]["root"] == "s3://backups"
    assert deprecations == [
        {
            "msg": "backup_bucket and backup_prefix are deprecated: give the backup root as backup_root: s3://backups",
            "version": "2.0.0",
            "collection_name": "runbook.stack",
        }
    ]


@pytest.mark.parametrize("module", [s3_snapshot, s3_restore])
def test_a_backup_root_that_is_not_s3_fails_naming_the_option(monkeypatch, capsys, module):
    res = run_module(monkeypatch, capsys, module, {"bucket": "app-uploads", "backup_root": "/var/backups"})
    assert res["failed"] is True
    assert "backup_root must be an S3 backup root s3://bucket/prefix" in res["msg"], res
    assert "'/var/backups'" in res["msg"]


@pytest.mark.parametrize("module", [s3_snapshot, s3_restore])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"backup_root": "s3://backups", "backup_bucket": "backups"}, "mutually exclusive: backup_root|backup_bucket"),
        ({"backup_root": "s3://backups", "backup_prefix": "s3"}, "mutually exclusive: backup_root|backup_prefix"),
        ({}, "one of the following is required: backup_root, backup_bucket"),
        ({"backup_prefix": "s3"}, "one of the following is required: backup_root, backup_bucket"),
    ],
)
def test_the_root_options_are_checked_before_anything_runs(monkeypatch, capsys, module, args, message):
    res = run_module(monkeypatch, capsys, module, {"bucket": "app-uploads"} | args)
    assert res["failed"] is True and message in res["msg"], res


def test_restore_takes_source_as_the_source_bucket(monkeypatch, capsys):
    # an option error after the names are resolved: the message names the source bucket given as source
    res = run_module(
        monkeypatch,
        capsys,
        s3_restore,
        {"bucket": "scratch", "source": "app-data", "backup_root": "s3://backups", "concurrency": 0},
    )
    assert res["failed"] is True
    assert res["msg"].startswith("cannot restore backup latest of bucket 'app-data' into bucket 'scratch': concurrency")


def test_the_spec_and_rules_are_those_the_doc_fragment_documents():
    spec, rules = snapshot_root_spec()
    assert spec == {"backup_root": {"type": "str"}, "backup_bucket": {"type": "str"}, "backup_prefix": {"type": "str"}}
    assert rules["required_one_of"] == [("backup_root", "backup_bucket")]
    import yaml

    from ansible_collections.runbook.stack.plugins.doc_fragments.backup_set import ModuleDocFragment

    documented = yaml.safe_load(ModuleDocFragment.S3_ROOT)["options"]
    assert {name: {"type": doc["type"]} for name, doc in documented.items()} == spec


def test_restore_with_the_deprecated_options_says_so(monkeypatch, capsys, deprecations):
    args = {"bucket": "app-data", "backup_bucket": "app-data", "backup_prefix": "backups/s3", "concurrency": 0}
    res = run_module(monkeypatch, capsys, s3_restore, args)
    assert res["failed"] is True and "concurrency must be between 1 and 256" in res["msg"], res
    assert [(d["msg"], d["version"], d["collection_name"]) for d in deprecations] == [
        (
            "backup_bucket and backup_prefix are deprecated: give the backup root as backup_root: s3://app-data/backups",
            "2.0.0",
            "runbook.stack",
        )
    ]
