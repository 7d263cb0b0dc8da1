# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The oldest client libraries requirements.txt allows really run the modules.

A scratch venv gets exactly the floors that requirements.txt states for boto3, botocore and redis
(``name>=X`` installed as ``name==X`` from PyPI) and runs S3 modules (health, snapshot, restore,
retention, upload and download of a set) and redis_health_info against the lab with that
interpreter. The venv is cached under the git-ignored ``.cache/floor-venv/<key>``, keyed by the
floors and the Python version, so a rerun only runs the modules.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import PYTHON, ROOT, run_module
from packaging.version import Version
from test_backup_upload_download import make_set
from test_s3_modules import conn
from test_s3_snapshot_restore import buckets, cli, ok, state  # noqa: F401  # pylint: disable=unused-import  # fixtures used by name

REQUIREMENTS = ROOT / "requirements.txt"
FLOORED = ("boto3", "botocore", "redis")  # pure-Python wheels for every supported Python
_FLOOR = re.compile(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)\s*(?:[,;#].*)?$")


def floors() -> dict[str, str]:
    """{package: lowest version} of every ``name>=version`` line of requirements.txt."""
    out: dict[str, str] = {}
    for line in REQUIREMENTS.read_text().splitlines():
        m = _FLOOR.match(line.strip())
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def _python_version() -> str:
    return subprocess.run(
        [str(PYTHON), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def floor_python() -> Path:
    """The interpreter of a venv with exactly the floors of FLOORED (built once, then cached)."""
    found = floors()
    missing = [name for name in FLOORED if name not in found]
    assert not missing, f"requirements.txt states no '>=' floor for {missing}"
    pins = [f"{name}=={found[name]}" for name in FLOORED]
    key = hashlib.sha256(json.dumps([pins, _python_version()]).encode()).hexdigest()[:16]
    base = ROOT / ".cache" / "floor-venv"
    venv = base / key
    if not (venv / ".complete").exists():
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{key}.partial-", dir=base))
        try:
            subprocess.run([str(PYTHON), "-m", "venv", str(tmp)], check=True, capture_output=True, timeout=120)
            pip = subprocess.run(
                [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert pip.returncode == 0, f"pip install {' '.join(pins)} failed:\n{pip.stdout}\n{pip.stderr}"
            (tmp / ".complete").write_text("\n".join(pins) + "\n")
            shutil.rmtree(venv, ignore_errors=True)
            os.rename(tmp, venv)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    python = venv / "bin" / "python"
    probe = "import json, boto3, botocore, redis; print(json.dumps([boto3.__version__, botocore.__version__, redis.__version__]))"
    got = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    installed = [Version(v) for v in json.loads(got.stdout)]
    assert installed == [Version(found[name]) for name in FLOORED], got.stdout
    return python


def at_floor(name: str, args: dict[str, Any], python: Path, **kw: Any) -> dict[str, Any]:
    result = run_module(name, args, python=python, **kw)
    assert "Traceback" not in result["_stdout"] + result["_stderr"], result["_stderr"][-3000:]
    return ok(result)


def test_floors_cover_every_client_library():
    found = floors()
    for name in (*FLOORED, "psycopg2-binary"):
        assert name in found, f"requirements.txt: no '>=' floor for {name}"


def test_s3_modules_run_with_the_oldest_boto3_and_botocore(lab, floor_python, cli, buckets, tmp_path):  # noqa: F811
    src, bak = buckets(), buckets()
    cli.put_object(Bucket=src, Key="a/one.txt", Body=b"one")
    cli.put_object(Bucket=src, Key="a/two.bin", Body=os.urandom(6 * 1024 * 1024))
    original = state(cli, src)

    health = at_floor("s3_health_info", conn(lab, bucket=src), floor_python)
    assert health["changed"] is False

    mp = dict(multipart_threshold=5 * 1024 * 1024, part_size=5 * 1024 * 1024)
    snap = at_floor("s3_snapshot", conn(lab, bucket=src, backup_bucket=bak, **mp), floor_python)
    assert snap["objects"] == 2 and snap["multipart_objects"] == 1
    cli.put_object(Bucket=src, Key="a/late.txt", Body=b"late")
    restored = at_floor(
        "s3_restore", conn(lab, bucket=src, backup_bucket=bak, mode="mirror", allow_delete=True, **mp), floor_python
    )
    assert restored["deleted"] == 1 and restored["kept"] == 1 and restored["verified"] == 2
    assert {k: v for k, v in state(cli, src).items() if not k.startswith("pre-restore-")} == original
    aged = at_floor("s3_retention", conn(lab, bucket=src, older_than_days=0), floor_python, check_mode=True)
    assert aged["would_delete"] == 2

    # a local set up and down again: PutObject with Content-MD5, multipart uploads, ranged GETs
    writer = make_set(tmp_path / "src", {"data/small": b"s" * 100, "data/big.bin": os.urandom(6 * 1024 * 1024)})
    transfer = {"multipart_threshold": "5MB", "part_size": "5MB"}
    dest = f"s3://{bak}/offsite"
    up = at_floor("backup_upload", conn(lab, path=writer.path, dest=dest, **transfer), floor_python)
    assert up["files"] == 2 and up["multipart_files"] == 1
    down_args = conn(lab, src=dest, kind="postgresql", source="app", dest_root=str(tmp_path / "dst"), **transfer)
    down = at_floor("backup_download", down_args, floor_python)
    assert Path(down["location"], "data/big.bin").read_bytes() == Path(writer.path, "data/big.bin").read_bytes()


def test_redis_module_runs_with_the_oldest_redis(lab, floor_python):
    r = lab["redis"]
    health = at_floor(
        "redis_health_info",
        dict(login_host=r["login_host"], login_port=r["login_port"], login_password=r["login_password"]),
        floor_python,
    )
    assert health["changed"] is False and health["dbsize"] >= 0
