"""tests/code_cache/sitecustomize.py: the test-run cache of code compiled from zipped sources."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import zipfile

HOOK_DIR = pathlib.Path(__file__).resolve().parents[1] / "code_cache"

PROGRAM = """
import sys, traceback
sys.path.insert(0, sys.argv[1])
import pkg.mod as m
print(m.VALUE)
try:
    m.boom()
except RuntimeError:
    print(traceback.extract_tb(sys.exc_info()[2])[-1].filename)
"""


def _payload(path: pathlib.Path, value: str) -> pathlib.Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pkg/__init__.py", "")
        z.writestr("pkg/mod.py", f"VALUE = {value!r}\n\ndef boom():\n    raise RuntimeError('x')\n")
    return path


def _run(payload: pathlib.Path, cache: pathlib.Path | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RUNBOOK_ZIPIMPORT_CACHE", "PYTHONPATH")}
    env["PYTHONPATH"] = str(HOOK_DIR)
    if cache is not None:
        env["RUNBOOK_ZIPIMPORT_CACHE"] = str(cache)
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(payload)], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def test_second_run_from_another_zip_uses_the_cached_code_under_its_own_file_name(tmp_path):
    cache = tmp_path / "cache"
    first = _payload(tmp_path / "AnsiballZ_one.zip", "one")
    assert _run(first, cache) == ["one", f"{first}/pkg/mod.py"]
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 2, entries  # pkg/__init__.py and pkg/mod.py

    # the same sources in another archive (as every AnsiballZ run has): served from the cache, the
    # traceback names the current archive, not the one that filled the cache
    second = _payload(tmp_path / "AnsiballZ_two.zip", "one")
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert _run(second, cache) == ["one", f"{second}/pkg/mod.py"]
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps, "an entry was rewritten"


def test_an_edited_source_is_compiled_again_never_served_stale(tmp_path):
    cache = tmp_path / "cache"
    assert _run(_payload(tmp_path / "a.zip", "old"), cache)[0] == "old"
    assert _run(_payload(tmp_path / "b.zip", "new"), cache)[0] == "new"
    assert len(list(cache.iterdir())) == 3  # one __init__, two versions of mod.py


def test_a_damaged_entry_is_compiled_again(tmp_path):
    cache = tmp_path / "cache"
    _run(_payload(tmp_path / "a.zip", "v"), cache)
    for entry in cache.iterdir():
        entry.write_bytes(b"\x00garbage")
    assert _run(_payload(tmp_path / "b.zip", "v"), cache)[0] == "v"


def test_without_the_variable_nothing_is_cached(tmp_path):
    cache = tmp_path / "cache"
    assert _run(_payload(tmp_path / "a.zip", "v"), None)[0] == "v"
    assert not cache.exists()
