# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the backup-set format (plugins/module_utils/_backup_set/); local files only."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
import urllib.parse
from pathlib import Path
from typing import Any, Callable

import pytest

from ansible_collections.runbook.stack.plugins.module_utils import _backup_set as bs
from ansible_collections.runbook.stack.plugins.module_utils._backup_set import storage as bs_storage
from ansible_collections.runbook.stack.plugins.module_utils._backup_set import writer as bs_writer
from ansible_collections.runbook.stack.plugins.module_utils._backup_set.retention import plan_prune, scan_tree

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 22, 2, 0, 0, 250000, tzinfo=UTC)
FILES = {"data/toc.dat": b"table of contents\n", "data/3021.dat.gz": b"\x1f\x8b" + b"x" * 1000, "extra.txt": b""}


def clock(*times: dt.datetime) -> Callable[[], dt.datetime]:
    """A fake ``now`` returning the given times in order, then the last one forever."""
    seq = list(times)

    def now() -> dt.datetime:
        return seq.pop(0) if len(seq) > 1 else seq[0]

    return now


def make_set(
    root: Path,
    kind: str = "postgresql",
    source: str = "app",
    when: dt.datetime = T0,
    files: dict[str, bytes] | None = None,
    **fields: Any,
) -> bs.LocalSetWriter:
    writer = bs.LocalSetWriter(str(root), kind, source, now=clock(when, when + dt.timedelta(seconds=3))).create()
    for rel, data in (FILES if files is None else files).items():
        path = Path(writer.path, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o644)
    writer.seal(**fields)
    return writer


def load(root: Path, writer: bs.LocalSetWriter) -> bs.BackupSet:
    storage = bs.LocalStorage(str(root))
    return bs.BackupSet(storage, writer.kind, bs.source_dirname(writer.source), writer.backup_id).load()


def rewrite_manifest(writer: bs.LocalSetWriter, change: Callable[[dict[str, Any]], None]) -> None:
    path = Path(writer.path, bs.MANIFEST)
    manifest = json.loads(path.read_bytes())
    change(manifest)
    path.write_text(json.dumps(manifest))


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --------------------------------------------------------------------------------------------
# backup ids
# --------------------------------------------------------------------------------------------


def test_format_backup_id_is_utc_to_the_second():
    assert bs.format_backup_id(T0) == "20261122T020000Z"
    cet = dt.timezone(dt.timedelta(hours=2))
    assert bs.format_backup_id(dt.datetime(2026, 11, 22, 4, 0, 1, tzinfo=cet)) == "20261122T020001Z"


def test_parse_backup_id_round_trips_to_aware_utc():
    parsed = bs.parse_backup_id("20261122T020000Z")
    assert parsed == dt.datetime(2026, 11, 22, 2, 0, 0, tzinfo=UTC)
    assert parsed.tzinfo is not None and parsed.utcoffset() == dt.timedelta(0)
    assert bs.format_backup_id(parsed) == "20261122T020000Z"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "latest",
        "2026-11-22T02:00:00Z",
        "20261122T020000",
        "20261122T020000z",
        "20261122t020000Z",
        "20261122T0200000Z",
        "20261399T000000Z",  # right shape, impossible date
        "20261122T250000Z",
        "20261122T020000Z\n",  # '$' would accept the trailing newline
        "\u0662\u0660\u0662\u0666\u0661\u0661\u0662\u0662T020000Z",  # non-ASCII digits
        None,
        20261122,
    ],
)
def test_invalid_backup_ids_are_rejected(bad):
    with pytest.raises(bs.BackupSetError, match="invalid backup id"):
        bs.parse_backup_id(bad)
    assert not bs.is_backup_id(bad)


def test_iso_is_utc_with_milliseconds():
    assert bs.iso(T0) == "2026-11-22T02:00:00.250Z"


# --------------------------------------------------------------------------------------------
# source names and kinds
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "dirname"),
    [
        ("app", "app"),
        ("App_1.db-x", "App_1.db-x"),
        ("tenant/app", "tenant%2Fapp"),
        ("my db", "my%20db"),
        ("café", "caf%C3%A9"),
        ("db:5432", "db%3A5432"),
        ("100%", "100%25"),
        (".", "%2E"),
        ("..", "%2E%2E"),
        ("...", "..."),
        (".hidden", ".hidden"),
    ],
)
def test_source_dirname_encoding(source, dirname):
    assert bs.source_dirname(source) == dirname


SOURCES = ["app", "a/b", "a%2Fb", "a b", "a%20b", ".", "%2E", "..", "%2E%2E", "café", "caf%C3%A9", "x\n", "日本"]


def test_source_dirname_is_one_safe_component_reversible_and_unique():
    names = [bs.source_dirname(s) for s in SOURCES]
    for source, name in zip(SOURCES, names):
        assert "/" not in name and name not in (".", "..")
        assert all(ch.isascii() and (ch.isalnum() or ch in "._-%") for ch in name), name
        assert urllib.parse.unquote(name, errors="strict") == source
    assert len(set(names)) == len(SOURCES)


def test_source_dirname_rejects_empty():
    with pytest.raises(bs.BackupSetError, match="must not be empty"):
        bs.source_dirname("")


@pytest.mark.parametrize("kind", ["postgresql", "redis", "s3_bucket", "pg2"])
def test_valid_kinds(kind):
    assert bs.validate_kind(kind) == kind


@pytest.mark.parametrize("kind", ["", "PostgreSQL", "1pg", "pg-x", "../x", "pg/x", "postgresql\n", None])
def test_invalid_kinds(kind):
    with pytest.raises(bs.BackupSetError, match="invalid backup kind"):
        bs.validate_kind(kind)


def test_set_rel_encodes_source():
    assert bs.set_rel("postgresql", "a/b", "20261122T020000Z") == "postgresql/a%2Fb/20261122T020000Z"


def test_open_storage_rejects_urls_and_empty(tmp_path):
    with pytest.raises(bs.BackupSetError, match="only local directories and s3://"):
        bs.open_storage("ftp://host/prefix")
    with pytest.raises(bs.BackupSetError, match="does not take S3 connection options"):
        bs.open_storage("s3://bucket/prefix")
    with pytest.raises(bs.BackupSetError, match="must not be empty"):
        bs.open_storage("")
    assert isinstance(bs.open_storage(str(tmp_path)), bs.LocalStorage)


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def test_create_makes_a_0700_directory_named_by_the_start_time(tmp_path):
    old = os.umask(0o022)
    try:
        writer = bs.LocalSetWriter(str(tmp_path), "postgresql", "my db", now=clock(T0)).create()
    finally:
        os.umask(old)
    assert writer.backup_id == "20261122T020000Z"
    assert writer.started == T0
    assert writer.path == str(tmp_path / "postgresql" / "my%20db" / "20261122T020000Z")
    assert os.path.isdir(writer.path)
    assert mode(writer.path) == 0o700
    assert mode(tmp_path / "postgresql" / "my%20db") == 0o700
    assert os.listdir(writer.path) == []


def test_seal_writes_a_0600_manifest_with_sizes_and_hashes(tmp_path):
    writer = make_set(tmp_path, source="my db", tool={"name": "pg_dump"}, facts={"tables": {"public.t": 3}})
    manifest_path = Path(writer.path, bs.MANIFEST)
    on_disk = json.loads(manifest_path.read_bytes())

    assert mode(manifest_path) == 0o600
    for rel in FILES:
        assert mode(Path(writer.path, rel)) == 0o600, rel
    assert mode(Path(writer.path, "data")) == 0o700
    assert not [n for n in os.listdir(writer.path) if n.startswith(".tmp-")]

    assert on_disk["format"] == "runbook.stack/backup-set"
    assert on_disk["format_version"] == 1
    assert (on_disk["kind"], on_disk["source"], on_disk["backup_id"]) == ("postgresql", "my db", writer.backup_id)
    assert on_disk["started"] == "2026-11-22T02:00:00.250Z"
    assert on_disk["finished"] == "2026-11-22T02:00:03.250Z"
    assert on_disk["duration_s"] == 3.0
    assert on_disk["tool"] == {"name": "pg_dump"}
    assert on_disk["facts"] == {"tables": {"public.t": 3}}
    assert on_disk["source_identity"] == {} and on_disk["server"] == {}
    expected = [
        {"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for rel, data in sorted(FILES.items())
    ]
    assert on_disk["files"] == expected
    assert on_disk["total_size_bytes"] == sum(len(d) for d in FILES.values())
    assert bs.MANIFEST not in [f["path"] for f in on_disk["files"]]
    assert manifest_path.read_bytes().endswith(b"}\n")
    assert load(tmp_path, writer).valid


def test_manifest_keeps_non_ascii_readable(tmp_path):
    writer = make_set(tmp_path, source="café")
    assert '"source": "café"' in Path(writer.path, bs.MANIFEST).read_text(encoding="utf-8")


def test_seal_syncs_the_data_before_the_manifest(tmp_path, monkeypatch):
    events: list[str] = []
    real_fsync_tree, real_write = bs.fsync_tree, bs.atomic_write

    def fsync_tree(base: str) -> None:
        events.append("fsync data")
        real_fsync_tree(base)

    def write_file_atomic(path: str, data: bytes, mode: int = bs.FILE_MODE) -> None:
        events.append(f"write {os.path.basename(path)}")
        real_write(path, data, mode)

    monkeypatch.setattr(bs_writer, "fsync_tree", fsync_tree)
    monkeypatch.setattr(bs_writer, "atomic_write", write_file_atomic)
    make_set(tmp_path)
    assert events == ["fsync data", "write manifest.json"]


def test_write_file_atomic_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "m.json"
    target.write_bytes(b"old")
    bs.atomic_write(str(target), b"new")
    assert target.read_bytes() == b"new"
    assert mode(target) == 0o600
    assert os.listdir(tmp_path) == ["m.json"]


def test_two_writers_in_the_same_second_get_different_true_ids(tmp_path, monkeypatch):
    sleeps: list[float] = []
    monkeypatch.setattr(bs_writer.time, "sleep", sleeps.append)
    first = bs.LocalSetWriter(str(tmp_path), "postgresql", "app", now=clock(T0)).create()
    same_second = T0.replace(microsecond=900000)
    next_second = T0 + dt.timedelta(seconds=1, microseconds=1000)
    second = bs.LocalSetWriter(str(tmp_path), "postgresql", "app", now=clock(same_second, next_second)).create()

    assert first.backup_id == "20261122T020000Z"
    assert second.backup_id == "20261122T020001Z"
    assert second.started == next_second  # the id is the time it really started, not a shifted one
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 0.2
    assert sorted(os.listdir(tmp_path / "postgresql" / "app")) == ["20261122T020000Z", "20261122T020001Z"]


def test_same_second_different_sources_do_not_wait(tmp_path, monkeypatch):
    monkeypatch.setattr(bs_writer.time, "sleep", lambda s: pytest.fail("no wait expected"))
    a = bs.LocalSetWriter(str(tmp_path), "postgresql", "a", now=clock(T0)).create()
    b = bs.LocalSetWriter(str(tmp_path), "postgresql", "b", now=clock(T0)).create()
    assert a.backup_id == b.backup_id


def test_writer_gives_up_when_the_clock_never_moves(tmp_path, monkeypatch):
    monkeypatch.setattr(bs_writer.time, "sleep", lambda s: None)
    bs.LocalSetWriter(str(tmp_path), "postgresql", "app", now=clock(T0)).create()
    with pytest.raises(bs.BackupSetError, match="unique backup id"):
        bs.LocalSetWriter(str(tmp_path), "postgresql", "app", now=clock(T0)).create(max_wait_s=0)


def test_discard_removes_the_partial_directory_only(tmp_path):
    writer = bs.LocalSetWriter(str(tmp_path), "postgresql", "app", now=clock(T0)).create()
    Path(writer.path, "data").mkdir()
    Path(writer.path, "data", "1.dat").write_bytes(b"partial")
    storage = bs.LocalStorage(str(tmp_path))
    [partial] = bs.list_sets(storage)
    assert partial.incomplete and not partial.valid

    writer.discard()
    assert not os.path.exists(writer.path)
    assert os.path.isdir(tmp_path / "postgresql" / "app")
    assert bs.list_sets(storage) == []


def test_writer_rejects_bad_kind_and_empty_source(tmp_path):
    with pytest.raises(bs.BackupSetError, match="invalid backup kind"):
        bs.LocalSetWriter(str(tmp_path), "Bad Kind", "app")
    with pytest.raises(bs.BackupSetError, match="must not be empty"):
        bs.LocalSetWriter(str(tmp_path), "postgresql", "").create()


# --------------------------------------------------------------------------------------------
# validity
# --------------------------------------------------------------------------------------------


def test_directory_without_manifest_is_incomplete(tmp_path):
    writer = make_set(tmp_path)
    os.unlink(Path(writer.path, bs.MANIFEST))
    found = load(tmp_path, writer)
    assert not found.valid and found.incomplete
    assert "no manifest" in found.error
    assert found.summary()["size_bytes"] is None and found.summary()["file_count"] is None


def _set(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(manifest: dict[str, Any]) -> None:
        target: Any = manifest
        for key in path[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        last = path[-1]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda manifest: manifest.pop(key)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (_set(["format"], "something/else"), "manifest format is 'something/else'"),
        (_set(["format_version"], 2), "unsupported manifest format_version 2"),
        (_set(["format_version"], "1"), "unsupported manifest format_version '1'"),
        (_drop("files"), "manifest has no 'files'"),
        (_drop("started"), "manifest has no 'started'"),
        (_set(["kind"], "redis"), "manifest kind 'redis' does not match directory kind 'postgresql'"),
        (_set(["source"], "other"), "manifest source 'other' does not match directory 'app'"),
        (_set(["backup_id"], "20261122T020001Z"), "manifest backup_id '20261122T020001Z' does not match"),
        (_set(["files"], {"a": 1}), "'files' is not a list"),
        (_set(["files", "0"], {"path": "data/3021.dat.gz"}), "lacks path/size/sha256"),
        (_set(["files", "0", "path"], "../x"), "unsafe path '../x'"),
        (_set(["files", "0", "path"], "data/../../x"), "unsafe path"),
        (_set(["files", "0", "path"], "/etc/passwd"), "unsafe path '/etc/passwd'"),
        (_set(["files", "0", "path"], "manifest.json"), "unsafe path 'manifest.json'"),
        (_set(["files", "0", "size"], "1002"), "invalid size '1002'"),
        (_set(["files", "0", "size"], -1), "invalid size -1"),
        (_set(["files", "0", "sha256"], "abc"), "invalid sha256 'abc'"),
    ],
)
def test_manifest_problems_make_the_set_invalid(tmp_path, change, error):
    writer = make_set(tmp_path)
    assert load(tmp_path, writer).valid
    rewrite_manifest(writer, change)
    found = load(tmp_path, writer)
    assert not found.valid and not found.incomplete
    assert error in found.error
    assert found.manifest is None


def test_manifest_that_is_not_json_is_invalid(tmp_path):
    writer = make_set(tmp_path)
    Path(writer.path, bs.MANIFEST).write_bytes(b'{"format": "runbook.stack/backup-set", ')
    found = load(tmp_path, writer)
    assert not found.valid and not found.incomplete
    assert found.error.startswith("manifest is not valid JSON")


def test_manifest_that_is_a_json_list_is_invalid(tmp_path):
    writer = make_set(tmp_path)
    Path(writer.path, bs.MANIFEST).write_text("[]")
    assert load(tmp_path, writer).error == "manifest is not a JSON object"


def test_missing_file_is_invalid(tmp_path):
    writer = make_set(tmp_path)
    os.unlink(Path(writer.path, "data", "toc.dat"))
    found = load(tmp_path, writer)
    assert not found.valid
    assert found.error == "file data/toc.dat listed in the manifest is missing"


def test_size_mismatch_is_invalid_on_listing(tmp_path):
    writer = make_set(tmp_path)
    with open(Path(writer.path, "data", "3021.dat.gz"), "ab") as fh:
        fh.write(b"!")
    found = load(tmp_path, writer)
    assert not found.valid
    assert found.error == "size mismatch on data/3021.dat.gz: manifest 1002 bytes, found 1003"
    assert bs.BackupSet(found.storage, found.kind, found.source_dir, found.backup_id).load(check_sizes=False).valid


def test_verify_detects_one_flipped_byte_and_names_the_file(tmp_path):
    writer = make_set(tmp_path)
    found = load(tmp_path, writer)
    assert found.valid and found.verify() == []

    target = Path(writer.path, "data", "3021.dat.gz")
    data = bytearray(target.read_bytes())
    data[500] ^= 0x01
    target.write_bytes(bytes(data))

    found = load(tmp_path, writer)
    assert found.valid  # same size: listing cannot tell
    assert found.verify() == ["checksum mismatch on data/3021.dat.gz"]
    assert found.verify(workers=1) == ["checksum mismatch on data/3021.dat.gz"]


def test_verify_reports_missing_file_and_unloaded_sets(tmp_path):
    writer = make_set(tmp_path)
    found = load(tmp_path, writer)
    os.unlink(Path(writer.path, "extra.txt"))
    assert found.verify() == ["file extra.txt listed in the manifest is missing"]
    os.unlink(Path(writer.path, bs.MANIFEST))
    assert load(tmp_path, writer).verify() == ["no manifest (incomplete or interrupted backup)"]


def test_summary_has_the_same_keys_for_valid_and_invalid_sets(tmp_path):
    good = make_set(tmp_path, when=T0)
    bad = make_set(tmp_path, when=T0 + dt.timedelta(hours=1))
    os.unlink(Path(bad.path, bs.MANIFEST))
    ok, broken = load(tmp_path, good).summary(), load(tmp_path, bad).summary()
    assert set(ok) == set(broken)
    assert ok["valid"] is True and ok["error"] is None
    assert ok["size_bytes"] == sum(len(d) for d in FILES.values()) and ok["file_count"] == len(FILES)
    assert ok["path"] == good.path
    assert broken["valid"] is False and "no manifest" in broken["error"]


def test_source_of_an_incomplete_set_is_decoded(tmp_path):
    writer = bs.LocalSetWriter(str(tmp_path), "postgresql", "my db/x", now=clock(T0)).create()
    [found] = bs.list_sets(bs.LocalStorage(str(tmp_path)))
    assert found.incomplete and found.source == "my db/x" and found.source_dir == "my%20db%2Fx"
    assert found.location == writer.path


# --------------------------------------------------------------------------------------------
# listing and finding
# --------------------------------------------------------------------------------------------


def hours(n: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=n)


@pytest.fixture
def populated(tmp_path: Path) -> Path:
    make_set(tmp_path, "postgresql", "app", hours(0))
    make_set(tmp_path, "postgresql", "app", hours(2))
    make_set(tmp_path, "postgresql", "billing", hours(1))
    make_set(tmp_path, "redis", "cache:6379", hours(3))
    broken = make_set(tmp_path, "postgresql", "app", hours(4))  # newest of app, but corrupt
    os.unlink(Path(broken.path, "data", "toc.dat"))
    (tmp_path / "postgresql" / "app" / "not-a-backup").mkdir()  # ignored: not an id
    (tmp_path / "postgresql" / "app" / "20261399T000000Z").mkdir()  # ignored: impossible id
    (tmp_path / "NotAKind").mkdir()  # ignored: not a kind
    (tmp_path / "README").write_text("hello")  # ignored: a file
    return tmp_path


def ids(sets: list[bs.BackupSet]) -> list[tuple[str, str, str]]:
    return [(s.kind, s.source, s.backup_id) for s in sets]


def test_list_sets_newest_first_with_invalid_ones(populated):
    storage = bs.LocalStorage(str(populated))
    sets = bs.list_sets(storage)
    assert ids(sets) == [
        ("postgresql", "app", "20261122T060000Z"),
        ("redis", "cache:6379", "20261122T050000Z"),
        ("postgresql", "app", "20261122T040000Z"),
        ("postgresql", "billing", "20261122T030000Z"),
        ("postgresql", "app", "20261122T020000Z"),
    ]
    assert [s.valid for s in sets] == [False, True, True, True, True]


def test_list_sets_filters_by_kind_and_source(populated):
    storage = bs.LocalStorage(str(populated))
    assert {s.kind for s in bs.list_sets(storage, kind="redis")} == {"redis"}
    assert len(bs.list_sets(storage, kind="postgresql")) == 4
    assert ids(bs.list_sets(storage, kind="postgresql", source="billing")) == [
        ("postgresql", "billing", "20261122T030000Z")
    ]
    assert ids(bs.list_sets(storage, source="cache:6379")) == [("redis", "cache:6379", "20261122T050000Z")]
    assert bs.list_sets(storage, kind="postgresql", source="nope") == []
    assert bs.list_sets(storage, kind="s3") == []


def test_list_sets_of_a_missing_root_is_empty(tmp_path):
    assert bs.list_sets(bs.LocalStorage(str(tmp_path / "missing"))) == []


def test_list_sets_of_a_root_that_is_a_file_fails(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(bs.BackupSetError, match="cannot list"):
        bs.list_sets(bs.LocalStorage(str(tmp_path / "file")))


def test_find_set_latest_skips_invalid_sets(populated):
    storage = bs.LocalStorage(str(populated))
    found = bs.find_set(storage, "postgresql", "app", "latest")
    assert found.valid and found.backup_id == "20261122T040000Z"


def test_find_set_latest_raises_when_no_valid_set(populated):
    storage = bs.LocalStorage(str(populated))
    with pytest.raises(bs.BackupSetError, match="no valid postgresql backup set of 'nope'"):
        bs.find_set(storage, "postgresql", "nope", "latest")


class ReadLog(bs.LocalStorage):
    """A local root that records every file read through it (manifests, for a search)."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    def read_bytes(self, rel: str) -> bytes:
        self.reads.append(rel)
        return super().read_bytes(rel)


def test_find_set_latest_reads_newest_first_and_stops_at_the_first_valid(populated):
    storage = ReadLog(str(populated))
    found = bs.find_set(storage, "postgresql", "app", "latest")
    assert found.valid and found.backup_id == "20261122T040000Z"
    # the corrupt newest set, then the first valid one; the older valid set is never read
    assert storage.reads == [
        "postgresql/app/20261122T060000Z/manifest.json",
        "postgresql/app/20261122T040000Z/manifest.json",
    ]


def test_find_set_latest_names_the_newest_invalid_sets_when_none_is_valid(tmp_path):
    for n in range(4):
        broken = make_set(tmp_path, "postgresql", "app", hours(n))
        os.unlink(Path(broken.path, "data", "toc.dat"))
    bs.LocalSetWriter(str(tmp_path), "postgresql", "app", now=clock(hours(5))).create()  # never sealed
    with pytest.raises(bs.BackupSetError) as raised:
        bs.find_set(bs.LocalStorage(str(tmp_path)), "postgresql", "app", "latest")
    msg = str(raised.value)
    assert msg.startswith(f"no valid postgresql backup set of 'app' under {tmp_path} (invalid: 20261122T070000Z: ")
    assert msg.endswith(")") and msg.count("listed in the manifest is missing") == 2  # three shown of five
    assert "20261122T070000Z: no manifest (incomplete or interrupted backup)" in msg
    assert "20261122T050000Z: file data/toc.dat listed in the manifest is missing" in msg
    assert msg.index("20261122T050000Z") < msg.index("20261122T040000Z")  # newest first
    assert "20261122T030000Z" not in msg and "20261122T020000Z" not in msg


class MemoryStorage(bs.Storage):
    """Objects in a dict, like an S3 prefix: no local path, sizes and times from one listing."""

    def __init__(self, objects: dict[str, bytes], when: dict[str, dt.datetime] | None = None) -> None:
        self.url = "mem://root"
        self.objects = dict(objects)
        self.when = when or {}
        self.reads: list[str] = []

    def list_dirs(self, rel: str) -> list[str]:
        prefix = f"{rel}/" if rel else ""
        return sorted(
            {k[len(prefix) :].split("/")[0] for k in self.objects if k.startswith(prefix) and "/" in k[len(prefix) :]}
        )

    def iter_objects(self, rel: str):
        for key in sorted(k for k in self.objects if k.startswith(f"{rel}/")):
            yield {"Key": key, "Size": len(self.objects[key]), "LastModified": self.when.get(key)}

    def read_bytes(self, rel: str) -> bytes:
        self.reads.append(rel)
        if rel not in self.objects:
            raise FileNotFoundError(rel)
        return self.objects[rel]

    def exists(self, rel: str) -> bool:
        return rel in self.objects or any(k.startswith(f"{rel}/") for k in self.objects)

    def size(self, rel: str) -> int:
        if rel not in self.objects:
            raise FileNotFoundError(rel)
        return len(self.objects[rel])

    def remove_tree(self, rel: str) -> None:
        self.objects.pop(f"{rel}/{bs.MANIFEST}", None)
        for key in [k for k in self.objects if k.startswith(f"{rel}/")]:
            del self.objects[key]


def in_memory(root: Path) -> MemoryStorage:
    return MemoryStorage({p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()})


def test_find_set_latest_is_lazy_on_any_storage(populated):
    storage = in_memory(populated)
    assert bs.find_set(storage, "postgresql", "app", "latest").backup_id == "20261122T040000Z"
    assert storage.reads == [
        "postgresql/app/20261122T060000Z/manifest.json",
        "postgresql/app/20261122T040000Z/manifest.json",
    ]
    with pytest.raises(bs.BackupSetError, match=r"no valid redis backup set of 'nope' under mem://root\Z"):
        bs.find_set(storage, "redis", "nope", "latest")


def test_find_set_by_id(populated):
    storage = bs.LocalStorage(str(populated))
    assert bs.find_set(storage, "postgresql", "app", "20261122T020000Z").valid
    with pytest.raises(bs.BackupSetError, match=r"is not valid: file data/toc\.dat"):
        bs.find_set(storage, "postgresql", "app", "20261122T060000Z")
    with pytest.raises(bs.BackupSetError, match="no postgresql backup set 20261122T010000Z"):
        bs.find_set(storage, "postgresql", "app", "20261122T010000Z")
    with pytest.raises(bs.BackupSetError, match="invalid backup id"):
        bs.find_set(storage, "postgresql", "app", "yesterday")
    with pytest.raises(bs.BackupSetError, match="invalid backup kind"):
        bs.find_set(storage, "../postgresql", "app", "20261122T020000Z")


def test_open_set_path(populated):
    good = populated / "postgresql" / "app" / "20261122T020000Z"
    found = bs.open_set_path(str(good), kind="postgresql")
    assert found.valid and found.source == "app" and found.location == str(good)
    assert bs.open_set_path(str(good)).kind == "postgresql"
    with pytest.raises(bs.BackupSetError, match="is a 'postgresql' set, expected 'redis'"):
        bs.open_set_path(str(good), kind="redis")
    with pytest.raises(bs.BackupSetError, match="does not end in a backup id"):
        bs.open_set_path(str(populated / "postgresql" / "app" / "not-a-backup"))
    with pytest.raises(bs.BackupSetError, match="does not exist"):
        bs.open_set_path(str(populated / "postgresql" / "app" / "20261122T010000Z"))
    with pytest.raises(bs.BackupSetError, match=r"is not valid: file data/toc\.dat"):
        bs.open_set_path(str(populated / "postgresql" / "app" / "20261122T060000Z"))


def test_remove_tree_unseals_the_set_first(tmp_path, monkeypatch):
    writer = make_set(tmp_path)
    storage = bs.LocalStorage(str(tmp_path))
    rel = bs.set_rel("postgresql", "app", writer.backup_id)

    def interrupted(path: str) -> None:
        raise OSError("interrupted")

    monkeypatch.setattr(bs_storage, "remove_tree", interrupted)
    with pytest.raises(OSError):
        storage.remove_tree(rel)
    found = load(tmp_path, writer)
    assert found.incomplete  # a half-removed set never looks like a backup

    monkeypatch.undo()
    storage.remove_tree(rel)
    assert not os.path.exists(writer.path)
    storage.remove_tree(rel)  # already gone: nothing to do


# --------------------------------------------------------------------------------------------
# the storage interface: objects, usage, removal
# --------------------------------------------------------------------------------------------


def set_mtimes(base: Path, when: float) -> None:
    for path in [base, *base.rglob("*")]:
        os.utime(path, (when, when), follow_symlinks=False)


def test_local_objects_and_usage_of_a_set(tmp_path):
    writer = make_set(tmp_path)
    storage = bs.LocalStorage(str(tmp_path))
    rel = bs.set_rel("postgresql", "app", writer.backup_id)
    files = {str(p): p.stat().st_size for p in Path(writer.path).rglob("*") if p.is_file()}
    assert {o["Key"]: o["Size"] for o in storage.iter_objects(rel)} == files
    set_mtimes(Path(writer.path), 1_000_000_000)
    os.utime(Path(writer.path, "data"), (1_000_000_500, 1_000_000_500))  # a directory's write counts too
    size, newest = storage.usage(rel)
    assert size == sum(files.values())
    assert newest == dt.datetime.fromtimestamp(1_000_000_500, UTC)
    assert storage.usage("postgresql/app/20261122T010000Z") == (0, None)


def test_usage_default_sums_the_listing():
    when = {"k/a": hours(1), "k/b": hours(3), "k/c": None}
    storage = MemoryStorage({"k/a": b"12", "k/b": b"345", "k/c": b"", "other/d": b"6789"}, when)
    assert storage.usage("k") == (5, hours(3))
    assert storage.usage("none") == (0, None)


def test_remove_set_removes_the_whole_set(tmp_path):
    kept = make_set(tmp_path, when=hours(0))
    gone = make_set(tmp_path, when=hours(1))
    storage = bs.LocalStorage(str(tmp_path))
    storage.remove_set(bs.set_rel("postgresql", "app", gone.backup_id))
    assert not os.path.exists(gone.path)
    assert ids(bs.list_sets(storage)) == [("postgresql", "app", kept.backup_id)]
    memory = in_memory(tmp_path)  # the default (no local path): remove_tree, manifest first
    memory.remove_set(bs.set_rel("postgresql", "app", kept.backup_id))
    assert memory.objects == {}


def test_scan_tree_is_never_earlier_than_the_backup_id(tmp_path):
    writer = make_set(tmp_path)
    storage = bs.LocalStorage(str(tmp_path))
    [found] = bs.list_sets(storage)
    set_mtimes(Path(writer.path), 1_000_000_000)  # 2001: before the id
    size, last_write = scan_tree(storage, found)
    assert size == sum(p.stat().st_size for p in Path(writer.path).rglob("*") if p.is_file())
    assert last_write == found.when
    later = (found.when + dt.timedelta(hours=5)).timestamp()
    os.utime(Path(writer.path, "extra.txt"), (later, later))
    assert scan_tree(storage, found)[1] == found.when + dt.timedelta(hours=5)


def test_plan_prune_keeps_the_newest_and_leaves_invalid_sets(populated):
    storage = bs.LocalStorage(str(populated))
    plan = plan_prune(storage, "postgresql", None, keep_last=1, keep_days=None, incomplete_h=24, now=hours(10))
    assert ids(plan["kept"]) == [
        ("postgresql", "app", "20261122T040000Z"),
        ("postgresql", "billing", "20261122T030000Z"),
    ]
    assert ids(plan["removed"]) == [("postgresql", "app", "20261122T020000Z")]
    assert ids(plan["left_in_place"]) == [("postgresql", "app", "20261122T060000Z")]
    assert plan["removed_incomplete"] == []
    removed = populated / "postgresql" / "app" / "20261122T020000Z"
    assert plan["sizes"]["postgresql/app/20261122T020000Z"] == sum(
        p.stat().st_size for p in removed.rglob("*") if p.is_file()
    )


# --------------------------------------------------------------------------------------------
# retention
# --------------------------------------------------------------------------------------------

NOW = dt.datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def fake_set(age: dt.timedelta, valid: bool = True, source: str = "app") -> bs.BackupSet:
    found = bs.BackupSet(bs.LocalStorage("/nonexistent"), "postgresql", source, bs.format_backup_id(NOW - age))
    if valid:
        found.manifest = {"files": []}
    else:
        found.error = "no manifest (incomplete or interrupted backup)"
    return found


def days(*values: float, valid: bool = True) -> list[bs.BackupSet]:
    return [fake_set(dt.timedelta(days=v), valid) for v in values]


def age_days(sets: list[bs.BackupSet]) -> list[float]:
    return [round((NOW - s.when).total_seconds() / 86400, 3) for s in sets]


def test_select_prune_keep_last():
    keep, remove = bs.select_prune(days(3, 1, 5, 2, 4), keep_last=2, keep_days=None, now=NOW)
    assert age_days(keep) == [1, 2]
    assert age_days(remove) == [3, 4, 5]


def test_select_prune_keep_days():
    keep, remove = bs.select_prune(days(0.5, 2.9, 3, 3.1, 10), keep_last=None, keep_days=3, now=NOW)
    assert age_days(keep) == [0.5, 2.9]
    assert age_days(remove) == [3, 3.1, 10]


def test_select_prune_both_rules_keep_what_either_keeps():
    # the count rule keeps more than the age rule
    keep, remove = bs.select_prune(days(10, 20, 30), keep_last=2, keep_days=1, now=NOW)
    assert (age_days(keep), age_days(remove)) == ([10, 20], [30])
    # the age rule keeps more than the count rule
    keep, remove = bs.select_prune(days(0.1, 0.2, 0.3, 10), keep_last=1, keep_days=1, now=NOW)
    assert (age_days(keep), age_days(remove)) == ([0.1, 0.2, 0.3], [10])


def test_select_prune_never_removes_the_newest_valid_set():
    keep, remove = bs.select_prune(days(40, 50, 60), keep_last=None, keep_days=1, now=NOW)
    assert (age_days(keep), age_days(remove)) == ([40], [50, 60])
    keep, remove = bs.select_prune(days(40, 50), keep_last=0, keep_days=None, now=NOW)
    assert (age_days(keep), age_days(remove)) == ([40], [50])


def test_select_prune_without_rules_removes_nothing():
    keep, remove = bs.select_prune(days(1, 100, 1000), keep_last=None, keep_days=None, now=NOW)
    assert age_days(keep) == [1, 100, 1000] and remove == []


def test_select_prune_ignores_invalid_sets():
    sets = days(0.5, 0.7, valid=False) + days(5, 6, 7)
    keep, remove = bs.select_prune(sets, keep_last=1, keep_days=None, now=NOW)
    # the invalid newer sets neither count toward keep_last nor get removed here
    assert (age_days(keep), age_days(remove)) == ([5], [6, 7])
    keep, remove = bs.select_prune(days(1, 2, valid=False), keep_last=1, keep_days=1, now=NOW)
    assert keep == [] and remove == []


def test_secure_tree_leaves_symlink_targets_alone(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("not part of the set")
    outside.chmod(0o644)
    base = tmp_path / "set"
    (base / "data").mkdir(parents=True)
    (base / "data" / "f").write_text("x")
    (base / "data" / "link").symlink_to(outside)
    bs.secure_tree(str(base))
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644
    assert stat.S_IMODE((base / "data" / "f").stat().st_mode) == 0o600
    assert stat.S_IMODE((base / "data").stat().st_mode) == 0o700


def test_remove_tree_removes_unreadable_directories_and_not_link_targets(tmp_path):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "precious").write_text("keep me")
    base = tmp_path / "set"
    locked = base / "data" / "locked"
    locked.mkdir(parents=True)
    (locked / "f").write_text("x")
    (base / "data" / "link").symlink_to(keep)
    locked.chmod(0o000)
    (base / "data").chmod(0o500)
    bs.remove_tree(str(base))
    assert not base.exists()
    assert (keep / "precious").read_text() == "keep me"


def test_seal_uses_known_digests_and_hashes_the_rest(tmp_path):
    writer = bs.LocalSetWriter(str(tmp_path), "redis", "h:1").create()
    (Path(writer.path) / "a.bin").write_bytes(b"aaa")
    (Path(writer.path) / "b.bin").write_bytes(b"bbb")
    told = "0" * 64  # a digest the writer vouches for is taken as given, not recomputed
    manifest = writer.seal(known_sha256={"a.bin": told})
    digests = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert digests == {"a.bin": told, "b.bin": hashlib.sha256(b"bbb").hexdigest()}


def test_keep_name_takes_the_first_free_name_and_reports_when_none_is():
    from ansible_collections.runbook.stack.plugins.module_utils._backup_set import keep_name

    def name(more):
        return f"dump.rdb.pre-restore-X{more}"

    assert keep_name(name, lambda n: False, ".", 3) == ("dump.rdb.pre-restore-X", None)
    taken = {"dump.rdb.pre-restore-X", "dump.rdb.pre-restore-X.2"}
    assert keep_name(name, taken.__contains__, ".", 3) == ("dump.rdb.pre-restore-X.3", None)
    assert keep_name(name, lambda n: True, ".", 3) == ("dump.rdb.pre-restore-X", "dump.rdb.pre-restore-X.3")


def test_component_ref_keeps_a_host_and_drops_an_empty_one():
    ref = {"kind": "redis", "source": "127.0.0.1:6379", "backup_id": "20261201T020000Z", "root": "/b"}
    assert bs.check_component_ref(0, {**ref, "host": "cache1"}) == {**ref, "host": "cache1"}
    assert bs.check_component_ref(0, {**ref, "host": None}) == ref
    assert bs.check_component_ref(0, {**ref, "host": ""}) == ref
    assert bs.check_component_ref(0, {**ref, "extra": "x"}) == ref
    with pytest.raises(bs.BackupSetError, match=r"components\[2\]: host must be a string"):
        bs.check_component_ref(2, {**ref, "host": ["cache1"]})
