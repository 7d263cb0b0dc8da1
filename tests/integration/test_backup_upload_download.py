# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_upload / backup_download (and backup_info / backup_prune on s3:// roots) against the lab's
SeaweedFS, with real backup sets written by the same LocalSetWriter the backup modules use."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import PYTHON, module_env
from test_s3_modules import _keys
from test_s3_modules import _s3 as lab_client

from ansible_collections.runbook.stack.plugins.module_utils._backup_set import MANIFEST, LocalSetWriter, utcnow

MIB = 1024 * 1024
SMALL = {"threshold": "5MB", "part": "5MB"}


def conn(lab: dict[str, Any], **kw: Any) -> dict[str, Any]:
    s3 = lab["s3"]
    return dict(endpoint_url=s3["endpoint_url"], access_key=s3["access_key"], secret_key=s3["secret_key"]) | kw


def tuning(concurrency: int = 4) -> dict[str, Any]:
    return {"multipart_threshold": SMALL["threshold"], "part_size": SMALL["part"], "concurrency": concurrency}


def make_set(
    root: Path, files: dict[str, bytes], source: str = "app", age: dt.timedelta | None = None
) -> LocalSetWriter:
    when = utcnow() - (age or dt.timedelta(0))
    writer = LocalSetWriter(str(root), "postgresql", source, now=lambda: when).create()
    for rel, data in files.items():
        path = Path(writer.path, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    writer.seal(tool={"name": "test"})
    return writer


def assert_failed(res: dict[str, Any], *words: str) -> None:
    assert res.get("failed") is True and res["_rc"] != 0, res
    for word in words:
        assert word in res["msg"], res["msg"]
    assert "Traceback" not in res["_stdout"] + res["_stderr"]


@pytest.fixture
def s3cli(lab):
    return lab_client(lab)


@pytest.fixture
def bucket(s3cli):
    name = f"rbud-{uuid.uuid4().hex[:8]}"
    s3cli.create_bucket(Bucket=name)
    yield name
    for upload in s3cli.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3cli.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    keys = _keys(s3cli, name)
    if keys:
        s3cli.delete_objects(Bucket=name, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
    s3cli.delete_bucket(Bucket=name)


@pytest.fixture
def payload() -> dict[str, bytes]:
    """A big file (multipart at a 5 MiB threshold), small ones, an empty one, nested directories."""
    return {
        "data/big.bin": os.urandom(12 * MIB + 123),
        "data/3021.dat.gz": os.urandom(70_000),
        "data/toc.dat": b"table of contents\n",
        "data/sub/empty": b"",
    }


def tree(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------
# the round trip
# ------------------------------------------------------------------------------------------------


def test_upload_info_download_roundtrip_check_mode_and_idempotence(lab, module, s3cli, bucket, tmp_path, payload):
    src_root, dst_root = tmp_path / "src", tmp_path / "dst"
    writer = make_set(src_root, payload)
    dest = f"s3://{bucket}/offsite"
    set_prefix = f"offsite/postgresql/app/{writer.backup_id}/"
    up_args = conn(lab, src_root=str(src_root), kind="postgresql", source="app", dest=dest) | tuning()

    res = module("backup_upload", up_args, check_mode=True)
    assert res["_rc"] == 0 and res["changed"] is True, res
    assert (res["files"], res["bytes"], res["skipped_files"], res["found"]) == (
        4,
        sum(map(len, payload.values())),
        0,
        "absent",
    )
    assert res["multipart_files"] == 1
    assert _keys(s3cli, bucket) == set(), "check mode must not upload anything"
    manifest = json.loads(Path(writer.path, MANIFEST).read_bytes())
    uploaded = {
        "kind": "postgresql",
        "source": "app",
        "backup_id": writer.backup_id,
        "root": dest,
        "location": f"{dest}/postgresql/app/{writer.backup_id}",
        "started": manifest["started"],
        "finished": manifest["finished"],
        "size_bytes": sum(map(len, payload.values())),
        "file_count": 4,
    }
    assert res["backup_set"] == uploaded, "the set a run would write is known in check mode"

    res = module("backup_upload", up_args)
    assert res["_rc"] == 0 and res["changed"] is True, res
    assert res["location"] == f"{dest}/postgresql/app/{writer.backup_id}" and res["backup_id"] == writer.backup_id
    assert res["files"] == 4 and res["multipart_files"] == 1 and res["duration_s"] >= 0
    assert [s["step"] for s in res["steps"]][-1] == "write and check the manifest"
    assert res["backup_set"] == uploaded
    assert _keys(s3cli, bucket) == {set_prefix + p for p in [*payload, MANIFEST]}
    big = s3cli.head_object(Bucket=bucket, Key=set_prefix + "data/big.bin")
    assert big["ETag"].strip('"').endswith("-3"), "12 MiB in 5 MiB parts is a 3-part upload"
    assert big["Metadata"]["sha256"] == hashlib.sha256(payload["data/big.bin"]).hexdigest()
    manifest_obj = s3cli.get_object(Bucket=bucket, Key=set_prefix + MANIFEST)["Body"].read()
    assert manifest_obj == Path(writer.path, MANIFEST).read_bytes()

    info = module("backup_info", conn(lab, root=dest, verify=True))
    assert info["_rc"] == 0, info
    assert [(s["backup_id"], s["valid"], s["error"]) for s in info["sets"]] == [(writer.backup_id, True, None)]
    assert info["latest"]["path"] == res["location"]

    again = module("backup_upload", up_args)
    assert again["_rc"] == 0 and again["changed"] is False, again
    assert (again["files"], again["skipped_files"], again["found"]) == (0, 4, "identical")

    down_args = conn(lab, src=dest, kind="postgresql", source="app", dest_root=str(dst_root)) | tuning(3)
    res = module("backup_download", down_args, check_mode=True)
    assert res["_rc"] == 0 and res["changed"] is True and res["files"] == 4, res
    assert not dst_root.exists(), "check mode must not create anything"

    res = module("backup_download", down_args)
    assert res["_rc"] == 0 and res["changed"] is True, res
    local = dst_root / "postgresql" / "app" / writer.backup_id
    assert res["location"] == str(local) and res["backup_id"] == writer.backup_id
    assert res["backup_set"] == uploaded | {"root": str(dst_root), "location": str(local)}
    assert tree(local) == tree(Path(writer.path)), "files and manifest byte-identical"
    assert (local / MANIFEST).read_bytes() == Path(writer.path, MANIFEST).read_bytes()
    assert sorted(p.name for p in local.parent.iterdir()) == [writer.backup_id], "no .partial directory left"
    for path in [local, *local.rglob("*")]:
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path
    assert local.parent.stat().st_mode & 0o777 == 0o700

    again = module("backup_download", down_args)
    assert again["_rc"] == 0 and again["changed"] is False and again["found"] == "identical", again
    local_info = module("backup_info", {"root": str(dst_root), "verify": True})
    assert [(s["backup_id"], s["valid"]) for s in local_info["sets"]] == [(writer.backup_id, True)]


def test_upload_by_path_and_download_latest_picks_the_newest(lab, module, s3cli, bucket, tmp_path):
    older = make_set(tmp_path / "src", {"a": b"old"}, age=dt.timedelta(hours=2))
    newer = make_set(tmp_path / "src", {"a": b"new"}, age=dt.timedelta(hours=1))
    dest = f"s3://{bucket}"
    for writer in (older, newer):
        res = module("backup_upload", conn(lab, path=writer.path, dest=dest))
        assert res["_rc"] == 0 and res["changed"] is True and res["backup_id"] == writer.backup_id, res
    res = module("backup_download", conn(lab, src=dest, kind="postgresql", source="app", dest_root=str(tmp_path / "d")))
    assert res["_rc"] == 0 and res["backup_id"] == newer.backup_id, res
    assert Path(res["location"], "a").read_bytes() == b"new"


# ------------------------------------------------------------------------------------------------
# interrupted, corrupted, conflicting
# ------------------------------------------------------------------------------------------------


def start_module(name: str, args: dict[str, Any], workdir: Path) -> subprocess.Popen:
    """The module as run_module() runs it, but in the background (to be killed)."""
    args_file = workdir / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": False}}))
    args_file.chmod(0o600)
    return subprocess.Popen(
        [str(PYTHON), "-m", f"ansible_collections.runbook.stack.plugins.modules.{name}", str(args_file)],
        cwd=workdir,
        env=module_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_killed_upload_leaves_no_manifest_and_a_rerun_completes_it(lab, module, s3cli, bucket, tmp_path):
    # 40 files sent one at a time: the upload lasts long enough that the kill, sent once the first
    # file is listed, lands mid-way even when this machine is busy
    writer = make_set(tmp_path / "src", {f"data/{n}.bin": os.urandom(2 * MIB) for n in range(40)})
    dest = f"s3://{bucket}/p"
    prefix = f"p/postgresql/app/{writer.backup_id}/"
    args = conn(lab, path=writer.path, dest=dest) | tuning(concurrency=1)
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    proc = start_module("backup_upload", args, work)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _keys(s3cli, bucket, prefix) and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the upload finished before it could be killed"
    keys = _keys(s3cli, bucket, prefix)
    assert keys and prefix + MANIFEST not in keys and len(keys) < 40, sorted(keys)

    info = module("backup_info", conn(lab, root=dest))
    (entry,) = info["sets"]
    assert entry["valid"] is False and "no manifest" in entry["error"]

    res = module("backup_upload", args)
    assert res["_rc"] == 0 and res["changed"] is True and res["found"] == "incomplete", res
    assert res["skipped_files"] >= 1 and res["files"] + res["skipped_files"] == 40
    info = module("backup_info", conn(lab, root=dest, verify=True))
    assert [(s["valid"], s["error"]) for s in info["sets"]] == [(True, None)]
    assert s3cli.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == [], "stale multipart uploads aborted"


def test_download_of_a_corrupted_object_fails_and_leaves_nothing(lab, module, s3cli, bucket, tmp_path, payload):
    writer = make_set(tmp_path / "src", payload)
    dest = f"s3://{bucket}/p"
    assert module("backup_upload", conn(lab, path=writer.path, dest=dest) | tuning())["changed"] is True
    key = f"p/postgresql/app/{writer.backup_id}/data/3021.dat.gz"
    s3cli.put_object(Bucket=bucket, Key=key, Body=os.urandom(70_000))  # same size, other bytes
    dst_root = tmp_path / "dst"
    res = module("backup_download", conn(lab, src=dest, kind="postgresql", source="app", dest_root=str(dst_root)))
    assert_failed(res, "checksum mismatch on data/3021.dat.gz", writer.backup_id)
    source_dir = dst_root / "postgresql" / "app"
    assert list(source_dir.iterdir()) == [], "neither the set nor its .partial directory may stay"


def test_corrupted_local_set_is_refused(lab, module, s3cli, bucket, tmp_path, payload):
    writer = make_set(tmp_path / "src", payload)
    target = Path(writer.path, "data", "toc.dat")
    data = bytearray(target.read_bytes())
    data[3] ^= 0x20
    target.write_bytes(bytes(data))
    res = module("backup_upload", conn(lab, path=writer.path, dest=f"s3://{bucket}/p"))
    assert_failed(res, "checksum mismatch on data/toc.dat")
    assert _keys(s3cli, bucket) == set()


def test_a_different_set_with_the_same_id_is_never_overwritten(lab, module, s3cli, bucket, tmp_path):
    writer = make_set(tmp_path / "src", {"a": b"one"})
    dest = f"s3://{bucket}/p"
    assert module("backup_upload", conn(lab, path=writer.path, dest=dest))["changed"] is True
    mkey = f"p/postgresql/app/{writer.backup_id}/{MANIFEST}"
    other = Path(writer.path, MANIFEST).read_bytes().replace(b'"name": "test"', b'"name": "other"')
    s3cli.put_object(Bucket=bucket, Key=mkey, Body=other)
    res = module("backup_upload", conn(lab, path=writer.path, dest=dest))
    assert_failed(res, "different manifest", writer.backup_id, "never overwritten")
    assert s3cli.get_object(Bucket=bucket, Key=mkey)["Body"].read() == other

    # locally: a different set under the same id stays as it is
    s3cli.put_object(Bucket=bucket, Key=mkey, Body=Path(writer.path, MANIFEST).read_bytes())
    dst_root = tmp_path / "dst"
    clash = dst_root / "postgresql" / "app" / writer.backup_id
    clash.mkdir(parents=True)
    (clash / "a").write_bytes(b"mine")
    res = module("backup_download", conn(lab, src=dest, kind="postgresql", source="app", dest_root=str(dst_root)))
    assert_failed(res, "already exists", "never replaced")
    assert tree(clash) == {"a": b"mine"}


# ------------------------------------------------------------------------------------------------
# backup_prune on an S3 root
# ------------------------------------------------------------------------------------------------


def test_prune_on_an_s3_root(lab, module, s3cli, bucket, tmp_path):
    dest = f"s3://{bucket}/r"
    sets = [make_set(tmp_path / "src", {"data/x/a": os.urandom(100)}, age=dt.timedelta(days=d)) for d in (3, 2, 1)]
    for writer in sets:
        assert module("backup_upload", conn(lab, path=writer.path, dest=dest))["changed"] is True
    # an interrupted upload of an old id whose objects were written just now: it may still be running
    old_id = (utcnow() - dt.timedelta(days=5)).strftime("%Y%m%dT%H%M%SZ")
    s3cli.put_object(Bucket=bucket, Key=f"r/postgresql/app/{old_id}/a", Body=b"partial")
    before = _keys(s3cli, bucket)
    args = conn(lab, root=dest, kind="postgresql", keep_last=2, remove_incomplete_older_than_h=1)

    res = module("backup_prune", args, check_mode=True)
    assert res["_rc"] == 0 and res["changed"] is True, res
    assert [s["backup_id"] for s in res["removed"]] == [sets[0].backup_id]
    assert res["removed"][0]["path"] == f"{dest}/postgresql/app/{sets[0].backup_id}"
    assert _keys(s3cli, bucket) == before, "check mode removes nothing"

    res = module("backup_prune", args)
    assert res["_rc"] == 0 and res["changed"] is True, res
    assert [s["backup_id"] for s in res["removed"]] == [sets[0].backup_id]
    assert [s["backup_id"] for s in res["kept"]] == [sets[2].backup_id, sets[1].backup_id]
    assert res["removed_incomplete"] == []
    assert [s["backup_id"] for s in res["left_in_place"]] == [old_id]
    assert "last written 0.0 h ago" in res["left_in_place"][0]["error"]
    assert res["freed_bytes"] == 100 + len(Path(sets[0].path, MANIFEST).read_bytes())
    assert not _keys(s3cli, bucket, f"r/postgresql/app/{sets[0].backup_id}/")
    assert _keys(s3cli, bucket, f"r/postgresql/app/{sets[1].backup_id}/")

    again = module("backup_prune", args)
    assert again["_rc"] == 0 and again["changed"] is False, again
    info = module("backup_info", conn(lab, root=dest))
    assert sorted(s["backup_id"] for s in info["sets"]) == sorted([old_id, sets[1].backup_id, sets[2].backup_id])


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


def test_bad_input_fails_clearly(lab, module, s3cli, bucket, tmp_path):
    writer = make_set(tmp_path / "src", {"a": b"x"})
    base = conn(lab, path=writer.path, dest=f"s3://{bucket}/p")

    started = time.monotonic()
    res = module("backup_upload", base | {"endpoint_url": "http://127.0.0.1:1", "connect_timeout": 2})
    assert_failed(res, "unreachable")
    assert time.monotonic() - started < 30

    secret = "wrong-secret-Zq81x"
    for name, args in (
        ("backup_upload", base | {"secret_key": secret}),
        (
            "backup_download",
            conn(lab, secret_key=secret, src=f"s3://{bucket}/p", kind="postgresql", source="app")
            | {"dest_root": str(tmp_path / "d")},
        ),
        ("backup_info", conn(lab, secret_key=secret, root=f"s3://{bucket}/p")),
    ):
        res = module(name, args)
        assert_failed(res, "access denied")
        assert secret not in res["_stdout"] + res["_stderr"], name

    assert_failed(
        module("backup_upload", base | {"dest": "s3://rb-no-such-bucket-q/p"}), "rb-no-such-bucket-q", "does not exist"
    )
    assert_failed(module("backup_upload", base | {"dest": "s3:///p"}), "no valid bucket")
    assert_failed(module("backup_upload", base | {"dest": f"https://{bucket}/p"}), "not an s3:// URL")
    res = module("backup_upload", base | {"src_root": str(tmp_path / "src"), "kind": "postgresql", "source": "app"})
    assert_failed(res, "mutually exclusive", "path", "src_root")
    assert_failed(module("backup_upload", base | {"part_size": "1MB"}), "part_size must be between")
    res = module(
        "backup_download",
        conn(lab, src=f"s3://{bucket}/p", kind="postgresql", source="app", dest_root=str(tmp_path / "d")),
    )
    assert_failed(res, "no valid postgresql backup set of 'app'")
    assert _keys(s3cli, bucket) == set()
