# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Modes of what the backup-set writers create (_backup_set.make_private_dirs, private_umask)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.runbook.stack.plugins.module_utils import _backup_set as bs


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def common_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_make_private_dirs_creates_every_missing_level_0700_and_leaves_existing_ones(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    target = mine / "root" / "postgresql" / "app"
    created = bs.make_private_dirs(str(target))
    assert created == [str(mine / "root"), str(mine / "root" / "postgresql"), str(target)]
    assert [mode(Path(p)) for p in created] == [0o700] * 3
    assert mode(mine) == 0o755, "an existing directory keeps its mode"
    assert bs.make_private_dirs(str(target)) == [], "nothing to create the second time"


def test_make_private_dirs_ignores_a_narrow_umask(tmp_path):
    os.umask(0o277)
    bs.make_private_dirs(str(tmp_path / "a" / "b"))
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o700


def test_make_private_dirs_names_a_file_in_the_way(tmp_path):
    (tmp_path / "root").write_text("not a directory")
    with pytest.raises(NotADirectoryError, match="root exists and is not a directory"):
        bs.make_private_dirs(str(tmp_path / "root" / "postgresql"))


def test_writer_creates_root_kind_and_source_0700(tmp_path):
    writer = bs.LocalSetWriter(str(tmp_path / "fresh"), "redis", "127.0.0.1:6379").create()
    for path in (tmp_path / "fresh", tmp_path / "fresh" / "redis", Path(writer.path).parent, Path(writer.path)):
        assert mode(path) == 0o700, path


def test_private_umask_makes_new_files_0600_and_restores_the_umask(tmp_path):
    with bs.private_umask():
        (tmp_path / "f").write_bytes(b"x")
        os.mkdir(tmp_path / "d")
    assert mode(tmp_path / "f") == 0o600 and mode(tmp_path / "d") == 0o700
    current = os.umask(0o022)
    assert current == 0o022
