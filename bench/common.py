"""Helpers shared by the benchmarks (bench/run.py, bench/redis_bench.py, bench/s3.py).

Every benchmark runs a module the way Ansible runs it on the target and times it against a raw
tool in the same run; these helpers keep that the same everywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
WORK = BENCH / "work"
PYTHON = ROOT / ".venv" / "bin" / "python"
ANSIBLE = ROOT / ".venv" / "bin" / "ansible"
COLLECTIONS_PATH = ROOT / ".cache" / "collections"
_AMBIENT_PREFIXES = ("PG", "REDIS", "AWS_")


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def lab_env() -> dict[str, str]:
    """Connection facts as ``lab/labctl env`` prints them (labctl is the one place defining them)."""
    out = subprocess.run(
        [str(ROOT / "lab" / "labctl"), "env"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    env = {}
    for line in out.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, _sep, value = words[1].partition("=")
            env[key] = value
    return env


def clean_env() -> dict[str, str]:
    """Our environment minus PG*/REDIS*/AWS_* variables, so every side connects only as told."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_AMBIENT_PREFIXES)}
    env.setdefault("LANG", "C.UTF-8")
    return env


def timed_run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, str, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(argv)} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
        )
    return elapsed, proc.stdout, proc.stderr


def run_module(name: str, args: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Run runbook.stack.<name> as Ansible runs it on the target (see tests/integration/conftest.py);
    return the process wall-clock seconds and the module's JSON result."""
    with tempfile.TemporaryDirectory(prefix="runbook-bench-") as tmp:
        module_tmp = Path(tmp) / "tmp"
        module_tmp.mkdir()
        payload = {
            "ANSIBLE_MODULE_ARGS": {
                **args,
                "_ansible_check_mode": False,
                "_ansible_diff": False,
                "_ansible_no_log": False,
                "_ansible_debug": False,
                "_ansible_verbosity": 0,
                "_ansible_module_name": f"runbook.stack.{name}",
                "_ansible_keep_remote_files": False,
                "_ansible_tmpdir": str(module_tmp),
                "_ansible_remote_tmp": str(module_tmp),
                "_ansible_shell_executable": "/bin/sh",
                "_ansible_ignore_unknown_opts": False,
            }
        }
        args_file = Path(tmp) / "args.json"
        args_file.write_text(json.dumps(payload))  # the directory is 0700: the password stays private
        env = clean_env()
        env["PYTHONPATH"] = str(COLLECTIONS_PATH)
        argv = [str(PYTHON), "-m", f"ansible_collections.runbook.stack.plugins.modules.{name}", str(args_file)]
        elapsed, stdout, _stderr = timed_run(argv, env, cwd=Path(tmp))
    result = json.loads(stdout.strip().splitlines()[-1])
    if result.get("failed"):
        raise RuntimeError(f"module {name} failed: {result.get('msg')}")
    return elapsed, result


def ansible_startup(runs: int = 3) -> list[float]:
    env = clean_env()
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    argv = [
        str(ANSIBLE),
        "localhost",
        "-i",
        "localhost,",
        "-c",
        "local",
        "-m",
        "ansible.builtin.ping",
        "-e",
        f"ansible_python_interpreter={PYTHON}",
    ]
    times = []
    for _round in range(runs):
        elapsed, stdout, _stderr = timed_run(argv, env, cwd=ROOT)
        if "SUCCESS" not in stdout:
            raise RuntimeError(f"ansible ping did not succeed:\n{stdout}")
        times.append(round(elapsed, 3))
    return times


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)
