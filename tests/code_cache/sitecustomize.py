"""A compiled-code cache for the modules Ansible runs during the test suite (test runs only).

Each module run is an AnsiballZ zip that Python imports with ``zipimport``, which holds no bytecode:
``ansible.module_utils.basic`` and every other module_utils file are compiled again for every task,
about 0.2 s of CPU per module run here, thousands of times per suite. When
``RUNBOOK_ZIPIMPORT_CACHE`` names a directory, this hook (on ``PYTHONPATH`` during the test stages,
see scripts/run-tests) keeps the compiled code of each zipped source there, keyed by the interpreter,
the path inside the zip and a SHA-256 of the source: an edited file gets a new entry, never a stale
one. The code is given the file name of the current zip, so tracebacks name the running payload.

Nothing else changes: the same source runs; only its compilation is skipped. Benchmarks and users'
runs never load this file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import marshal
import os
import sys
import types
import zipimport

_CACHE_DIR = os.environ.get("RUNBOOK_ZIPIMPORT_CACHE")


def _inner_path(pathname: str) -> str:
    """The path of a zipped source inside its archive: ``/tmp/x/AnsiballZ_ping.py/ansible/module_utils/basic.py`` ->
    ``ansible/module_utils/basic.py`` (the archive's own path changes with every run)."""
    archive = getattr(zipimport, "_zip_directory_cache", {})
    for root in archive:
        if pathname.startswith(root + os.sep):
            return pathname[len(root) + 1 :]
    return pathname


def _retarget(code: types.CodeType, filename: str) -> types.CodeType:
    consts = tuple(_retarget(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def _install(cache_dir: str) -> None:
    compile_source = zipimport._compile_source  # the one place zipimport compiles (Python 3.8+)
    tag = f"{sys.implementation.cache_tag}-{importlib.util.MAGIC_NUMBER.hex()}"

    def cached_compile_source(pathname: str, source: bytes):
        digest = hashlib.sha256(_inner_path(pathname).encode() + b"\0" + source).hexdigest()
        entry = os.path.join(cache_dir, f"{tag}-{digest}")
        try:
            with open(entry, "rb") as f:
                return _retarget(marshal.loads(f.read()), pathname)
        except (OSError, EOFError, ValueError, TypeError):
            pass
        code = compile_source(pathname, source)
        try:
            os.makedirs(cache_dir, exist_ok=True)
            tmp = f"{entry}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(marshal.dumps(code))
            os.replace(tmp, entry)  # readers see a whole entry or none
        except OSError:
            pass  # a read-only or full disk costs speed, never a run
        return code

    zipimport._compile_source = cached_compile_source


if _CACHE_DIR and hasattr(zipimport, "_compile_source"):
    _install(_CACHE_DIR)
