"""bench/RESULTS.md: one page from the three benchmarks' results.

Each benchmark writes its raw data (``results.json`` for PostgreSQL, ``results-redis.json``,
``results-s3.json``) and its own section (``RESULTS-postgresql.md``, ``RESULTS-redis.md``,
``RESULTS-s3.md``); ``compose()`` puts a summary table of every ratio on top of the sections. Run it
alone with ``.venv/bin/python bench/report.py [--out DIR]`` to rebuild the page.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from common import BENCH

SECTIONS = (
    "RESULTS-postgresql.md",
    "RESULTS-redis.md",
    "RESULTS-s3.md",
    "RESULTS-drill.md",
    "RESULTS-pitr-postgresql.md",
    "RESULTS-pitr-s3.md",
    "RESULTS-drill-pitr.md",
)


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def summary_rows(out: Path) -> list[tuple[str, float, float | None, str]]:
    """(comparison, measured ratio, target or None, date) for every benchmark found in ``out``."""
    rows: list[tuple[str, float, float | None, str]] = []
    pg = _load(out / "results.json")
    if pg:
        ratios = pg["summary"]["ratios"]
        rows.append(
            ("postgresql_backup vs pg_dump -Fd -j2", ratios["backup"]["ratio"], ratios["backup"]["target"], pg["date"])
        )
        rows.append(
            (
                "postgresql_restore vs pg_restore -j2",
                ratios["restore"]["ratio"],
                ratios["restore"]["target"],
                pg["date"],
            )
        )
    rd = _load(out / "results-redis.json")
    if rd:
        rows.append(
            (
                f"redis_keys delete {rd['doomed']:,} of {rd['doomed'] + rd['kept']:,} keys vs redis-cli --scan | xargs unlink",
                rd["keys"]["summary"]["ratio"],
                0.5,
                rd["when"],
            )
        )
        for name, label in (("snapshot_random", "random values"), ("snapshot_populate", "DEBUG POPULATE values")):
            if (rd.get(name) or {}).get("summary"):
                rows.append(
                    (
                        f"redis_snapshot of {rd['snapshot_keys']:,} keys ({label}) vs BGSAVE + poll + cp",
                        rd[name]["summary"]["ratio"],
                        1.2,
                        rd["when"],
                    )
                )
    s3 = _load(out / "results-s3.json")
    if s3:
        ratios, targets = s3["summary"]["ratios"], s3["targets"]
        rows.append(
            ("s3_snapshot vs rclone sync", ratios["snapshot_vs_rclone"], targets["snapshot_vs_rclone"], s3["date"])
        )
        rows.append(("s3_snapshot vs aws s3 sync", ratios["snapshot_vs_aws"], targets["snapshot_vs_aws"], s3["date"]))
        rows.append(
            (
                "s3_restore mode=missing, nothing to do, vs aws s3 sync with nothing to do",
                ratios["restore_noop_vs_aws_noop"],
                targets["restore_noop_vs_aws_noop"],
                s3["date"],
            )
        )
    drill = _load(out / "results-drill.json")
    if drill:
        for size, entry in drill.get("sizes", {}).items():
            rows.append(
                (
                    f"dr_restore.yml restore phases vs pg_restore + RDB copy and restart + rclone sync ({size} data)",
                    entry["summary"]["ratio"],
                    drill["target"],
                    drill["when"],
                )
            )
    pitr = _load(out / "results-pitr.json") or {}
    for key, entry in sorted((pitr.get("postgresql") or {}).get("sizes", {}).items(), key=lambda kv: int(kv[0])):
        size = f"{int(key) / 1000:g} GB" if int(key) >= 1000 else f"{key} MB"
        rows.append(
            (
                f"postgresql_pitr_restore (pgBackRest from S3, cluster started and promoted) vs pg_restore -j2, {size}",
                entry["summary"]["ratio"],
                None,
                entry["when"],
            )
        )
    s3_pitr = pitr.get("s3")
    if s3_pitr:
        for side, label in (
            ("rclone", "rclone copy from a T-state bucket"),
            ("rclone32", "rclone copy --transfers 32 from a T-state bucket"),
            ("aws_cp", "aws s3 cp --recursive from a T-state bucket"),
        ):
            rows.append(
                (
                    f"s3_restore_to_time of {s3_pitr['objects']:,} objects vs {label}",
                    s3_pitr["summary"]["ratios"][side],
                    None,
                    s3_pitr["when"],
                )
            )
    return rows


def compose(out: Path = BENCH) -> Path:
    rows = summary_rows(out)
    lines = [
        "# Benchmark results",
        "",
        "Each module is timed side by side with the tool an operator would otherwise use, in the same run, "
        "3 alternating rounds, medians; ratio = module time / tool time (below 1 is faster). How each one is "
        "measured: [README.md](README.md) and the docstrings of `bench/run.py`, `bench/redis_bench.py`, "
        "`bench/s3.py`, `bench/drill.py`, `bench/pitr_postgresql.py`, `bench/pitr_s3.py` and `bench/drill_pitr.py`. Timings are never asserted in tests.",
        "",
        "| comparison | ratio | target | verdict | run |",
        "|---|---:|---:|---|---|",
    ]
    for label, ratio, target, when in rows:
        cell = label.replace("|", "\\|")
        if target is None:
            lines.append(f"| {cell} | {ratio:.2f}x | none | figure only | {when} |")
            continue
        verdict = "met" if ratio <= target else "**MISSED**"
        lines.append(f"| {cell} | {ratio:.2f}x | ≤ {target:g}x | {verdict} | {when} |")
    lines.append("")
    for name in SECTIONS:
        path = out / name
        if path.exists():
            lines += [path.read_text().rstrip(), ""]
    target = out / "RESULTS.md"
    target.write_text("\n".join(lines))
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BENCH)
    args = parser.parse_args()
    print(compose(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
