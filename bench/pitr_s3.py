"""Benchmark: s3_restore_to_time of 5,000 objects against a plain copy of the same objects.

Run with ``.venv/bin/python bench/pitr_s3.py [--rounds 3] [--quick]`` (the lab's S3 must be up).

- Data: 5,000 objects of 8 KiB (``--quick``: 500, 1 round, figures under bench/work/), deterministic
  random bytes per key (poorly compressible). A T-state bucket (not versioned) holds them as they
  were at T; it is the peers' source.
- Each round and each side gets a prefix of its own in one versioned bucket, prepared untimed the
  same way: the 5,000 objects written (T = the second of the newest write), then, from T + 1 s,
  4,000 of them overwritten with other bytes and another size and 1,000 deleted (delete markers):
  every key has changed since T.
- Module: ``runbook.stack.s3_restore_to_time`` (``target_time`` T, ``prefix`` the side's prefix,
  defaults: 32 copies in flight), run as Ansible runs it on the target. It lists the versions under
  the prefix, picks each key's state at T and copies those versions back server-side (5,000 copies,
  no delete), then lists again and verifies.
- Peers: what an operator without version history would run, given a copy of the bucket as it was
  at T: ``rclone copy`` from the T-state bucket into the prefix (server-side copies on one remote;
  it lists both sides and copies what differs, here all 5,000), with its defaults
  (``--transfers 4 --checkers 8``, the same peer as bench/s3.py) and with ``--transfers 32 --checkers
  32`` (as many copies in flight as the module); and ``aws s3 cp --recursive`` (copies everything
  without comparing, 10 requests in flight). rclone is the closest honest peer: server-side copies
  that bring back only what differs, as the module does, and it needs no history, only a copy at T,
  which the module does not need (that copy is the storage the peers would have to keep).
- After each timed step the prefix is checked (untimed): every key with the T-state size and ETag.
  Order rotated each round; medians. Prefixes, their versions and the buckets are removed afterwards.

Writes bench/results-pitr.json (key ``s3``) and bench/RESULTS-pitr-s3.md, merged into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import BENCH, WORK, lab_env, log, median, run_module, timed_run
from report import compose
from s3 import TOOLS, Lab, ensure_tools

RESULTS = "results-pitr.json"
SECTION = "RESULTS-pitr-s3.md"
SIZE = 8192
NEW_SIZE = SIZE + 512
DELETED_EVERY = 5  # every 5th key deleted after T, the others overwritten
SIDES = ("s3_restore_to_time", "rclone", "rclone32", "aws_cp")
PEER_FLAGS = {"rclone": [], "rclone32": ["--transfers", "32", "--checkers", "32"]}


def body(key: str, size: int, generation: int) -> bytes:
    return random.Random(f"{key}/{generation}").randbytes(size)


def keys(count: int) -> list[str]:
    return [f"obj/{i:05d}.bin" for i in range(count)]


class Bench:
    def __init__(self, lab: Lab, count: int) -> None:
        self.lab = lab
        self.cli = lab.cli
        self.count = count
        self.keys = keys(count)
        tag = os.getpid()
        self.source = f"rbbench-pitr-s3-t-{tag}"
        self.bucket = f"rbbench-pitr-s3-v-{tag}"
        self.state_at_t: dict[str, tuple[int, str]] = {}

    def parallel(self, fn: Any, items: list[Any]) -> None:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(fn, items))

    def setup(self) -> None:
        self.cli.create_bucket(Bucket=self.source)
        self.cli.create_bucket(Bucket=self.bucket)
        self.cli.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        self.parallel(lambda k: self.cli.put_object(Bucket=self.source, Key=k, Body=body(k, SIZE, 1)), self.keys)
        self.state_at_t = self.current(self.source, "")
        if len(self.state_at_t) != self.count:
            raise RuntimeError(f"T-state bucket holds {len(self.state_at_t)} objects, expected {self.count}")

    def current(self, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
        out = {}
        for page in self.cli.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out.update((o["Key"][len(prefix) :], (o["Size"], o["ETag"])) for o in page.get("Contents", []))
        return out

    def prepare(self, prefixes: list[str]) -> str:
        """Write the T state under every prefix, then change every key after T; return T (ISO, Z)."""
        items = [p + k for p in prefixes for k in self.keys]
        self.parallel(
            lambda pk: self.cli.put_object(Bucket=self.bucket, Key=pk, Body=body(pk.split("/", 1)[1], SIZE, 1)), items
        )
        newest = max(
            v["LastModified"]
            for p in prefixes
            for page in self.cli.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=p)
            for v in page.get("Versions", [])
        )
        t = newest.replace(microsecond=0)
        while dt.datetime.now(dt.timezone.utc) < t + dt.timedelta(seconds=1.2):
            time.sleep(0.1)

        def change(pk: str) -> None:
            index = int(pk.rsplit("/", 1)[1].split(".")[0])
            if index % DELETED_EVERY == 0:
                self.cli.delete_object(Bucket=self.bucket, Key=pk)
            else:
                self.cli.put_object(Bucket=self.bucket, Key=pk, Body=body(pk.split("/", 1)[1], NEW_SIZE, 2))

        self.parallel(change, items)
        for p in prefixes:
            now = self.current(self.bucket, p)
            if len(now) != self.count - self.count // DELETED_EVERY or any(
                v == self.state_at_t[k] for k, v in now.items()
            ):
                raise RuntimeError(f"prefix {p}: not every key changed after T")
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")

    def check(self, prefix: str, side: str) -> None:
        got = self.current(self.bucket, prefix)
        if got != self.state_at_t:
            wrong = sorted(k for k in set(got) | set(self.state_at_t) if got.get(k) != self.state_at_t.get(k))
            raise RuntimeError(f"{side}: {len(wrong)} keys not in their T state, e.g. {wrong[:5]}")

    def run_side(self, side: str, prefix: str, target_time: str) -> dict[str, Any]:
        lab = self.lab
        load1 = round(os.getloadavg()[0], 2)
        if side == "s3_restore_to_time":
            wall, res = run_module(
                "s3_restore_to_time",
                lab.conn() | dict(bucket=self.bucket, prefix=prefix, target_time=target_time),
            )
            if res["copied"] != self.count or res["deleted"] != 0:
                raise RuntimeError(f"s3_restore_to_time copied {res['copied']}, deleted {res['deleted']}")
            out = {
                "wall_s": round(wall, 3),
                "module_s": res["duration_s"],
                "copied": res["copied"],
                "versions": res["versions"],
                "delete_markers": res["delete_markers"],
                "verified": res["verified"],
            }
        elif side in PEER_FLAGS:
            argv = [
                str(TOOLS / "bin" / "rclone"),
                "copy",
                *PEER_FLAGS[side],
                f"lab:{self.source}",
                f"lab:{self.bucket}/{prefix}",
            ]
            wall, _out, _err = timed_run(argv, lab.rclone_env())
            out = {"wall_s": round(wall, 3), "argv": ["rclone", *argv[1:]]}
        else:
            argv = [
                str(TOOLS / "bin" / "aws"), "s3", "cp", "--recursive", "--only-show-errors",
                "--endpoint-url", lab.endpoint, f"s3://{self.source}/", f"s3://{self.bucket}/{prefix}",
            ]  # fmt: skip
            wall, _out, _err = timed_run(argv, lab.aws_env())
            out = {"wall_s": round(wall, 3), "argv": ["aws", *argv[1:]]}
        self.check(prefix, side)
        return out | {"load1": load1}

    def drop_prefix(self, prefix: str) -> None:
        entries = []
        for page in self.cli.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
            entries += [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", [])]
            entries += [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("DeleteMarkers", [])]
        for i in range(0, len(entries), 1000):
            self.cli.delete_objects(Bucket=self.bucket, Delete={"Objects": entries[i : i + 1000], "Quiet": True})

    def teardown(self) -> None:
        for bucket, versioned in ((self.bucket, True), (self.source, False)):
            try:
                if versioned:
                    self.drop_prefix("")
                else:
                    self.lab.remove_prefix(bucket, "")
                self.cli.delete_bucket(Bucket=bucket)
            except Exception as exc:  # pylint: disable=broad-except  # report, go on cleaning
                if "NoSuchBucket" not in str(exc):
                    log(f"could not remove bucket {bucket}: {exc}")

    def round(self, index: int) -> dict[str, Any]:
        order = list(SIDES[index % len(SIDES) :] + SIDES[: index % len(SIDES)])
        prefixes = {side: f"r{index + 1}-{side}/" for side in order}
        target_time = self.prepare(list(prefixes.values()))
        entry: dict[str, Any] = {"round": index + 1, "order": order, "target_time": target_time}
        for side in order:
            entry[side] = self.run_side(side, prefixes[side], target_time)
            log(f"round {index + 1}: {side:20s} {entry[side]['wall_s']:7.2f} s")
        for prefix in prefixes.values():
            self.drop_prefix(prefix)
        return entry


def render(data: dict[str, Any]) -> str:
    s = data["summary"]
    n = data["objects"]
    lines = [
        "## S3 point in time: s3_restore_to_time vs a plain copy from a T-state bucket",
        "",
        f"Measured {data['when']} on {data['cpus']} cores, lab SeaweedFS on loopback, {data['tools']['rclone']}, "
        f"{data['tools']['aws'].split()[0]}. {n:,} objects of {SIZE // 1024} KiB; each side restores a prefix of its "
        f"own in one versioned bucket where, after T, {n - n // DELETED_EVERY:,} keys were overwritten (other bytes, "
        f"{NEW_SIZE:,} bytes) and {n // DELETED_EVERY:,} deleted, so every key changed. {data['rounds']} round(s), order "
        "rotated, medians; every side's result is checked (all keys back with their T size and ETag). How it is "
        "measured: the docstring of `bench/pitr_s3.py`.",
        "",
        "| side | median wall s | rounds | module / side |",
        "|---|---:|---|---:|",
    ]
    labels = {
        "s3_restore_to_time": "`runbook.stack.s3_restore_to_time` (module process; defaults: 32 copies in flight; "
        "lists versions, copies the T versions back, verifies)",
        "rclone": "`rclone copy` from the T-state bucket (defaults: --transfers 4 --checkers 8)",
        "rclone32": "`rclone copy --transfers 32 --checkers 32` from the T-state bucket",
        "aws_cp": "`aws s3 cp --recursive` from the T-state bucket (copies all, no comparison)",
    }
    for side in SIDES:
        runs = ", ".join(f"{v:.2f}" for v in s["runs"][side])
        ratio = "" if side == SIDES[0] else f"{s['ratios'][side]:.3f}x"
        lines.append(f"| {labels[side]} | {s['median_s'][side]:.2f} | {runs} | {ratio} |")
    lines += [
        "",
        f"Inside the module (median): its own `duration_s` {s['module_s']:.2f} s; it listed "
        f"{s['versions']:,} versions and {s['delete_markers']:,} delete markers and made {n:,} server-side copies. "
        "The rest of its wall time is Python and module start-up.",
        "",
        "Caveats: the peers copy from another bucket, the module within the bucket (an older version of the same "
        "key); whether SeaweedFS treats the two differently was not isolated. The machine is shared (other "
        "sessions' work ran alongside), which shows in the spread between rounds.",
        "",
        "The peers need a copy of the whole prefix as it was at T kept somewhere (a snapshot taken at T); the "
        "module needs only the bucket's version history and restores to any second it holds. No target is set "
        "for this ratio.",
        "",
        f"Command: `.venv/bin/python bench/pitr_s3.py --rounds {data['rounds']}`.",
        "",
    ]
    return "\n".join(lines)


def write(out: Path, data: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS
    allres = json.loads(path.read_text()) if path.exists() else {}
    allres["s3"] = data
    path.write_text(json.dumps(allres, indent=2) + "\n")
    (out / SECTION).write_text(render(data))
    compose(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="500 objects, 1 round, figures under bench/work/")
    parser.add_argument("--render", action="store_true", help="only rewrite the section from results-pitr.json")
    parser.add_argument("--out", type=Path, help="directory for the results (default bench/, bench/work/ with --quick)")
    args = parser.parse_args()
    out = args.out or (WORK if args.quick else BENCH)
    if args.render:
        write(out, json.loads((out / RESULTS).read_text())["s3"])
        return 0
    count, rounds = (500, 1) if args.quick else (args.objects, args.rounds)
    if count < DELETED_EVERY or rounds < 1:
        parser.error("--objects must be >= 5 and --rounds >= 1")
    lab = Lab(lab_env())
    lab.cli.list_buckets()  # fails clearly when the lab's S3 is down
    tools = ensure_tools()
    bench = Bench(lab, count)
    try:
        bench.setup()
        detail = [bench.round(i) for i in range(rounds)]
    finally:
        bench.teardown()
    runs = {side: [r[side]["wall_s"] for r in detail] for side in SIDES}
    med = {side: median(v) for side, v in runs.items()}
    data = {
        "when": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "rounds": rounds,
        "objects": count,
        "object_size": SIZE,
        "tools": tools,
        "rounds_detail": detail,
        "summary": {
            "runs": runs,
            "median_s": med,
            "ratios": {side: round(med["s3_restore_to_time"] / med[side], 3) for side in SIDES[1:]},
            "module_s": median([r["s3_restore_to_time"]["module_s"] for r in detail]),
            "versions": detail[0]["s3_restore_to_time"]["versions"],
            "delete_markers": detail[0]["s3_restore_to_time"]["delete_markers"],
        },
    }
    write(out, data)
    print(render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
