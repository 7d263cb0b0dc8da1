"""_common.files: crash-safe writes and copies (atomic_write, atomic_copy)."""

from __future__ import annotations

import os
import time

import pytest

from ansible_collections.runbook.stack.plugins.module_utils._common.files import atomic_copy, atomic_write, flock_within


def test_atomic_write_replaces_with_the_mode_asked_and_leaves_no_temp(tmp_path):
    target = tmp_path / "flag"
    target.write_bytes(b"old")
    os.chmod(target, 0o644)
    atomic_write(str(target), b"new")
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o600
    atomic_write(str(target), b"newer", 0o640)
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flag"]


def test_atomic_copy_streams_the_file_with_the_reference_mode(tmp_path):
    src = tmp_path / "src.rdb"
    src.write_bytes(os.urandom(5 * 1024 * 1024 + 17))  # more than one 4 MiB chunk
    ref = tmp_path / "ref"
    ref.write_bytes(b"")
    os.chmod(ref, 0o640)
    dest = tmp_path / "data" / "dump.rdb"
    dest.parent.mkdir()
    dest.write_bytes(b"previous")
    atomic_copy(str(src), str(dest), os.stat(ref), tag="restore")
    assert dest.read_bytes() == src.read_bytes()
    assert dest.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in dest.parent.iterdir()) == ["dump.rdb"]


def test_atomic_copy_that_fails_keeps_the_old_file_and_no_temp(tmp_path):
    dest = tmp_path / "dump.rdb"
    dest.write_bytes(b"previous")
    with pytest.raises(FileNotFoundError):
        atomic_copy(str(tmp_path / "missing"), str(dest), tag="restore")
    assert dest.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["dump.rdb"]


def test_flock_within_waits_for_a_holder_then_gives_up(tmp_path):
    path = tmp_path / "lock"
    path.touch()
    holder, waiter = os.open(path, os.O_RDONLY), os.open(path, os.O_RDONLY)
    try:
        assert flock_within(holder, 0)
        t0 = time.monotonic()
        assert flock_within(waiter, 0.2, poll=0.02) is False
        assert time.monotonic() - t0 >= 0.2
        os.close(holder)
        holder = -1
        assert flock_within(waiter, 0)
    finally:
        for fd in (holder, waiter):
            if fd >= 0:
                os.close(fd)
