# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Modes of everything the backup modules write (issue 10, point 6): 0700 for every directory the
collection creates (the set and the root, kind and source levels above it), 0600 for every file,
also when a backup is killed with SIGKILL before it could seal or remove its set. Directories the
user made keep their mode. The modules run with the common umask 0022, under which the old code
left 0755 directories above the sets and 0644 files from a killed pg_dump.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PYTHON, module_env, pg_query, run_module
from test_s3_modules import _keys
from test_s3_modules import _s3 as lab_client

DB = "rb_it_modes"


@pytest.fixture
def common_umask() -> Iterator[None]:
    """The modules (child processes) run with umask 0022, as under most login shells and AWX."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def user_dir(tmp_path: Path, common_umask: None) -> Path:
    """A directory the user made, 0755: the collection must not change its mode."""
    path = tmp_path / "mine"
    path.mkdir()
    path.chmod(0o755)
    return path


@pytest.fixture
def modes_db(lab: dict[str, Any]) -> Iterator[str]:
    pg_query(lab, f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    pg_query(lab, f'CREATE DATABASE "{DB}"')
    yield DB
    pg_query(lab, f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')


@pytest.fixture
def bucket(lab: dict[str, Any]) -> Iterator[str]:
    cli = lab_client(lab)
    name = f"rbmodes-{uuid.uuid4().hex[:8]}"
    cli.create_bucket(Bucket=name)
    yield name
    keys = _keys(cli, name)
    if keys:
        cli.delete_objects(Bucket=name, Delete={"Objects": [{"Key": k} for k in sorted(keys)], "Quiet": True})
    cli.delete_bucket(Bucket=name)


def modes_below(top: Path) -> dict[str, str]:
    """{path relative to top: octal mode} of top and everything below it (links not followed)."""
    out = {".": oct(stat.S_IMODE(top.lstat().st_mode))}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            out[str(path.relative_to(top))] = oct(stat.S_IMODE(path.lstat().st_mode))
    return out


def assert_private(top: Path) -> None:
    """Every directory at and below top is 0700, every file 0600."""
    wrong = {
        rel: mode
        for rel, mode in modes_below(top).items()
        if mode != (oct(0o700) if (top / rel).is_dir() else oct(0o600))
    }
    assert not wrong, f"not 0700 (directories) / 0600 (files) under {top}: {wrong}"


def redis_source(lab: dict[str, Any]) -> str:
    """redis_snapshot's default source name."""
    return f"{lab['redis']['login_host']}:{lab['redis']['login_port']}"


def ok(res: dict[str, Any]) -> dict[str, Any]:
    assert res["_rc"] == 0 and not res.get("failed"), res
    return res


def test_backup_into_a_fresh_root_is_private_at_every_level(lab, user_dir, bucket):
    root = user_dir / "backups" / "nightly"  # two levels the collection has to create
    pg = ok(run_module("postgresql_backup", {**lab["pg"], "name": "postgres", "dest": str(root), "jobs": 1}))
    redis = ok(run_module("redis_snapshot", {**lab["redis"], "dest": str(root)}))
    components = [
        {"kind": "postgresql", "source": "postgres", "backup_id": pg["backup"]["id"], "root": str(root)},
        {"kind": "redis", "source": redis_source(lab), "backup_id": redis["backup_id"], "root": str(root)},
    ]
    ok(run_module("dr_set", {**lab["s3"], "dest": str(root), "name": "modes", "components": components}))

    assert (root / "postgresql" / "postgres" / pg["backup"]["id"] / "manifest.json").is_file()
    assert (root / "dr" / "modes").is_dir() and (root / "redis").is_dir()
    assert_private(user_dir / "backups")
    assert oct(stat.S_IMODE(user_dir.stat().st_mode)) == oct(0o755), "a directory the user made keeps its mode"

    # a set downloaded into another fresh root: the same modes
    s3root = f"s3://{bucket}/copies"
    ok(
        run_module(
            "backup_upload",
            {
                **lab["s3"],
                "src_root": str(root),
                "kind": "postgresql",
                "source": "postgres",
                "backup_id": pg["backup"]["id"],
                "dest": s3root,
            },
        )
    )
    other = user_dir / "restore-area" / "root"
    ok(
        run_module(
            "backup_download",
            {**lab["s3"], "src": s3root, "kind": "postgresql", "source": "postgres", "dest_root": str(other)},
        )
    )
    assert (other / "postgresql" / "postgres" / pg["backup"]["id"] / "manifest.json").is_file()
    assert_private(user_dir / "restore-area")
    assert oct(stat.S_IMODE(user_dir.stat().st_mode)) == oct(0o755)


def test_existing_root_keeps_its_mode(lab, user_dir):
    root = user_dir / "root"
    root.mkdir()
    root.chmod(0o750)
    res = ok(run_module("redis_snapshot", {**lab["redis"], "dest": str(root)}))
    assert oct(stat.S_IMODE(root.stat().st_mode)) == oct(0o750), "an existing root is not chmod'ed"
    assert_private(root / "redis")
    assert Path(res["path"]).is_dir()


def test_pg_dump_killed_mid_way_leaves_only_private_files(lab, user_dir, modes_db, tmp_path):
    # one table, big enough that pg_dump at compression 9 on one job writes it for seconds
    pg_query(
        lab,
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) AS v "
        "FROM generate_series(1, 400000) g",
        dbname=modes_db,
    )
    root = user_dir / "backups"
    args_file = tmp_path / "args.json"
    args_file.write_text(
        json.dumps(
            {"ANSIBLE_MODULE_ARGS": {**lab["pg"], "name": modes_db, "dest": str(root), "jobs": 1, "compress": 9}}
        )
    )
    argv = [str(PYTHON), "-m", "ansible_collections.runbook.stack.plugins.modules.postgresql_backup", str(args_file)]
    proc = subprocess.Popen(argv, env=module_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # wait until pg_dump has written part of the table's data file, then kill the module
        deadline = time.time() + 60
        written = []
        while time.time() < deadline and proc.poll() is None:
            written = [p for p in root.glob(f"postgresql/{modes_db}/*/data/*.dat*") if p.stat().st_size > 0]
            if written:
                break
            time.sleep(0.02)
        assert written, f"pg_dump never started writing (module rc={proc.poll()})"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # pg_dump dies with the module (SIGTERM from the kernel); wait until it has gone
    deadline = time.time() + 20
    while time.time() < deadline:
        busy = pg_query(
            lab, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = 'pg_dump'", args=[DB]
        )
        if busy and busy[0][0] == 0:
            break
        time.sleep(0.2)
    set_dirs = list(root.glob(f"postgresql/{modes_db}/*"))
    assert len(set_dirs) == 1 and not (set_dirs[0] / "manifest.json").exists(), "the kill must land mid-dump"
    assert list(set_dirs[0].glob("data/*.dat*")), "the partial data file is what this test is about"
    assert_private(root)
