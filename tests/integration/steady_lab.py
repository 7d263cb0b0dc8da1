"""Running a playbook on the lab while other tests may stop and start its services.

tests/integration/test_startup_shutdown.py really stops the lab; a playbook that happens to run
then sees services down that have nothing to do with what it tests. ``run_on_steady_lab`` brings
the lab up (``labctl up``), runs the playbook, and runs it again when its output says a lab service
was down or unreachable, so each test judges a run made on a running lab.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import LABCTL, PlaybookRun, run_module, run_playbook

LAB_COMPONENTS = ("s3", "postgresql", "redis", "app", "proxy")


def disturbance(names: tuple[str, ...]) -> re.Pattern[str]:
    """What a run prints when one of ``names`` was down: health_check's verdict ("proxy (down: ..."),
    preflight's reachability check, a maintenance window's health post-check."""
    alt = "|".join(names)
    return re.compile(
        rf"\b(?:{alt}) \((?:down|error|unreachable):"
        rf"|component (?:{alt}): \S+ does not accept connections"
        rf"|health: \d+ component\(s\) not ok - (?:{alt})\b"
    )


def lab_up() -> None:
    subprocess.run([str(LABCTL), "up"], capture_output=True, timeout=300, check=False)


def lab_seed() -> None:
    proc = subprocess.run([str(LABCTL), "seed"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"lab/labctl seed failed: {proc.stdout}\n{proc.stderr}"


def run_on_steady_lab(playbook: str, *args: str, attempts: int = 4, expected: tuple[str, ...] = ()) -> PlaybookRun:
    """``run_playbook`` on a running lab: retried (after ``labctl up``) when a lab service was down.

    ``expected``: lab components the test itself makes fail (their failure is no disturbance).
    """
    names = tuple(n for n in LAB_COMPONENTS if n not in expected)
    disturbed = disturbance(names) if names else None
    run = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(10)
        lab_up()
        run = run_playbook(playbook, *args)
        if disturbed is None or not disturbed.search(run.out):
            return run
    assert run is not None
    return run


def task_json(run: PlaybookRun, title: str) -> Any:
    """The JSON a debug task printed (``ok: [host] => {...}``), for the last task named ``title``."""
    pos = run.out.rfind(f" : {title}")
    assert pos != -1, f"no task {title!r} in the output:\n{run.out[-4000:]}"
    start = run.out.index("=> {", pos) + 3
    doc, _end = json.JSONDecoder().raw_decode(run.out, start)
    return doc


def fresh_backup(lab: dict[str, Any], root: Path, database: str = "shop") -> dict[str, Any]:
    """A backup set of ``database`` made now under ``root`` (runbook.stack.postgresql_backup)."""
    res = run_module("postgresql_backup", {**lab["pg"], "name": database, "dest": str(root)}, timeout=300)
    assert res["_rc"] == 0 and not res.get("failed"), res
    return res
