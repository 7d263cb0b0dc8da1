"""Benchmark: redis_keys and redis_snapshot against redis-cli on the same server and data.

Run with ``.venv/bin/python bench/redis_bench.py [--rounds 3] [--quick]``. What is measured:

- **redis_keys**: delete the 500,000 keys matching ``doomed:*`` out of 1,000,000 with
  ``runbook.stack.redis_keys`` (``action: delete``, default ``batch_size``) against the runbook
  one-liner ``redis-cli --scan --pattern 'doomed:*' | xargs redis-cli unlink``. Target: at most 0.5x.
- **redis_snapshot**: ``runbook.stack.redis_snapshot`` (``method: bgsave``: BGSAVE, wait, copy the
  RDB into a sealed backup set with its SHA-256) on 1,000,000 keys against raw ``redis-cli BGSAVE``,
  a poll of ``INFO persistence`` every 50 ms until the save ends, and ``cp`` of the RDB file.
  Target: at most 1.2x.

Both sides run against one private ``redis-server`` started here (free port, no persistence of its
own, no password), loaded with ``DEBUG POPULATE`` (values of ``--value-size`` bytes) before each
timed step, untimed. Rounds alternate which side goes first; medians over the rounds. Results:
``bench/results-redis.json`` and ``bench/RESULTS-redis.md`` (``--quick``: under bench/work/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
from common import BENCH, WORK, clean_env, log, median, run_module, timed_run
from report import compose

TARGETS = {"keys": 0.5, "snapshot": 1.2}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A private redis-server for the benchmark, stopped on exit."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        argv += ["--save", "", "--appendonly", "no", "--enable-debug-command", "local", "--daemonize", "no"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, socket_timeout=600)
        for _attempt in range(100):
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def populate(self, doomed: int, kept: int, value_size: int) -> None:
        self.client.flushall()
        self.client.execute_command("DEBUG", "POPULATE", doomed, "doomed", value_size)
        self.client.execute_command("DEBUG", "POPULATE", kept, "keep", value_size)
        if self.client.dbsize() != doomed + kept:
            raise RuntimeError(f"populate gave {self.client.dbsize()} keys, expected {doomed + kept}")

    def populate_random(self, keys: int, value_size: int, chunk: int = 2000) -> None:
        """``keys`` keys ``rnd:<n>`` with random (incompressible) values, sent in MSET batches."""
        self.client.flushall()
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, keys, chunk):
            blob = os.urandom(value_size * min(chunk, keys - start))
            pipe.mset(
                {
                    f"rnd:{start + i}": blob[i * value_size : (i + 1) * value_size]
                    for i in range(min(chunk, keys - start))
                }
            )
            if len(pipe) >= 20:
                pipe.execute()
        pipe.execute()
        if self.client.dbsize() != keys:
            raise RuntimeError(f"populate gave {self.client.dbsize()} keys, expected {keys}")

    def rdb_path(self) -> Path:
        conf = self.client.config_get("dir")
        name = self.client.config_get("dbfilename")
        return Path(conf["dir"].decode() if isinstance(conf["dir"], bytes) else conf["dir"]) / (
            name["dbfilename"].decode() if isinstance(name["dbfilename"], bytes) else name["dbfilename"]
        )


def keys_round(server: Server, doomed: int, kept: int, value_size: int, module_first: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pattern = "doomed:*"
    raw_cmd = (
        f"set -o pipefail; redis-cli -p {server.port} --scan --pattern '{pattern}'"
        f" | xargs redis-cli -p {server.port} unlink >/dev/null"
    )
    for side in ("module", "raw") if module_first else ("raw", "module"):
        server.populate(doomed, kept, value_size)
        if side == "module":
            wall, result = run_module("redis_keys", {"login_port": server.port, "pattern": pattern, "action": "delete"})
            out["module"] = {"seconds": round(wall, 3), "affected": result.get("affected"), "result": result}
        else:
            wall, _stdout, _stderr = timed_run(["bash", "-c", raw_cmd], clean_env())
            out["raw"] = {"seconds": round(wall, 3)}
        left = server.client.dbsize()
        if left != kept:
            raise RuntimeError(f"{side}: {left} keys left after deleting {pattern}, expected {kept}")
    out["module"].pop("result")
    return out


def snapshot_round(
    server: Server, keys: int, value_size: int, module_first: bool, dest: Path, values: str
) -> dict[str, Any]:
    out: dict[str, Any] = {"values": values}
    if values == "random":
        server.populate_random(keys, value_size)
    else:
        server.populate(keys, 0, value_size)
    rdb = server.rdb_path()
    raw_cmd = (
        f"set -e; redis-cli -p {server.port} BGSAVE >/dev/null; "
        f"while redis-cli -p {server.port} INFO persistence | grep -q '^rdb_bgsave_in_progress:1'; "
        f"do sleep 0.05; done; "
        f"redis-cli -p {server.port} INFO persistence | grep -q '^rdb_last_bgsave_status:ok'; "
        f"cp '{rdb}' '{dest / 'raw.rdb'}'"
    )
    for side in ("module", "raw") if module_first else ("raw", "module"):
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        if side == "module":
            wall, result = run_module("redis_snapshot", {"login_port": server.port, "dest": str(dest)})
            out["module"] = {
                "seconds": round(wall, 3),
                "module_duration_s": result.get("duration_s"),
                "size_bytes": result.get("size_bytes"),
                "dbsize": result.get("dbsize"),
                "steps": result.get("steps"),
            }
            if result.get("dbsize") != keys:
                raise RuntimeError(f"redis_snapshot recorded dbsize {result.get('dbsize')}, expected {keys}")
        else:
            wall, _stdout, _stderr = timed_run(["bash", "-c", raw_cmd], clean_env())
            out["raw"] = {"seconds": round(wall, 3), "size_bytes": (dest / "raw.rdb").stat().st_size}
    shutil.rmtree(dest, ignore_errors=True)
    return out


def ratio(data: list[dict[str, Any]]) -> dict[str, float]:
    mod = median([r["module"]["seconds"] for r in data])
    raw = median([r["raw"]["seconds"] for r in data])
    return {"module_s": mod, "raw_s": raw, "ratio": round(mod / raw, 3)}


SNAPSHOT_DATASETS = {
    "populate": "`DEBUG POPULATE` values (zero-padded, compressible)",
    "random": "random (incompressible) values",
}


def verdict(ratio_value: float, target: float) -> str:
    return "met" if ratio_value <= target else "MISSED"


def render(data: dict[str, Any]) -> str:
    k = data["keys"]
    lines = [
        "## Redis: redis_keys and redis_snapshot vs redis-cli",
        "",
        f"Run {data['when']} on {data['machine']['nproc']} cores, redis-server {data['machine']['redis']}, "
        f"{data['rounds']} alternating rounds, medians; values of {data['value_size']} bytes. Wall clock of "
        "the module process as Ansible runs it on the target, Python start-up and imports included "
        "(Ansible's own start-up, paid once per playbook run, is in the PostgreSQL section). How it is "
        "measured: the docstring of `bench/redis_bench.py`.",
        "",
        "| Operation | Module | Raw tool | Ratio | Target | Verdict |",
        "|---|---|---|---|---|---|",
        f"| redis_keys: delete {data['doomed']:,} of {data['doomed'] + data['kept']:,} keys by pattern "
        f"vs `redis-cli --scan --pattern … \\| xargs redis-cli unlink` | {k['summary']['module_s']:.2f} s "
        f"| {k['summary']['raw_s']:.2f} s | **{k['summary']['ratio']:.2f}x** | ≤ {TARGETS['keys']}x | "
        f"{verdict(k['summary']['ratio'], TARGETS['keys'])} |",
    ]
    for name, label in SNAPSHOT_DATASETS.items():
        snap = data.get(f"snapshot_{name}") or {}
        if not snap.get("summary"):
            continue
        rdb_mb = snap["rounds"][0]["raw"]["size_bytes"] / 2**20
        lines.append(
            f"| redis_snapshot (bgsave) of {data['snapshot_keys']:,} keys, {label}, RDB {rdb_mb:.0f} MiB, "
            f"vs `BGSAVE` + 50 ms `INFO persistence` poll + `cp` | {snap['summary']['module_s']:.2f} s "
            f"| {snap['summary']['raw_s']:.2f} s | **{snap['summary']['ratio']:.2f}x** | ≤ {TARGETS['snapshot']}x "
            f"| {verdict(snap['summary']['ratio'], TARGETS['snapshot'])} |"
        )
    lines += ["", "Per round (seconds, module / raw):", ""]
    for i, r in enumerate(k["rounds"], 1):
        line = f"- round {i}: redis_keys {r['module']['seconds']:.2f} / {r['raw']['seconds']:.2f}"
        for name in SNAPSHOT_DATASETS:
            rounds = (data.get(f"snapshot_{name}") or {}).get("rounds") or []
            if len(rounds) >= i:
                sr = rounds[i - 1]
                line += (
                    f"; redis_snapshot ({name}) {sr['module']['seconds']:.2f} / {sr['raw']['seconds']:.2f}"
                    f" (module's own duration_s {sr['module']['module_duration_s']:.2f})"
                )
        lines.append(line)
    lines += [
        "",
        "The module's own `duration_s` (from its first line of `main()` to its result) is shown per round: "
        "the rest of its wall time is the Python interpreter start-up and the imports of "
        "`ansible.module_utils.basic` and redis-py (about 0.25 s here), paid by every module run.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys in the dataset, default 1,000,000")
    parser.add_argument("--value-size", type=int, default=100, help="bytes per value, default 100")
    parser.add_argument("--quick", action="store_true", help="100,000 keys, 1 round, results under bench/work/")
    parser.add_argument("--out", type=Path, help="directory for the results (default bench/)")
    args = parser.parse_args()
    if args.quick:
        args.keys, args.rounds = 100_000, 1
    out_dir = args.out or (WORK if args.quick else BENCH)
    out_dir.mkdir(parents=True, exist_ok=True)
    doomed = args.keys // 2
    kept = args.keys - doomed
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=True).stdout
    data: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "nproc": __import__("os").cpu_count(),
            "redis": version.split("v=")[1].split()[0],
            "python": platform.python_version(),
        },
        "rounds": args.rounds,
        "value_size": args.value_size,
        "doomed": doomed,
        "kept": kept,
        "snapshot_keys": args.keys,
        "keys": {"rounds": []},
        "snapshot_populate": {"rounds": []},
        "snapshot_random": {"rounds": []},
    }
    have_snapshot = (BENCH.parent / "plugins" / "modules" / "redis_snapshot.py").exists()
    with Server(WORK / "redis-bench") as server:
        for i in range(args.rounds):
            module_first = i % 2 == 0
            log(f"round {i + 1}/{args.rounds}: redis_keys ({'module' if module_first else 'raw'} first)")
            data["keys"]["rounds"].append(keys_round(server, doomed, kept, args.value_size, module_first))
            if have_snapshot:
                for values in ("populate", "random"):
                    log(f"round {i + 1}/{args.rounds}: redis_snapshot ({values} values)")
                    data[f"snapshot_{values}"]["rounds"].append(
                        snapshot_round(server, args.keys, args.value_size, module_first, WORK / "redis-snap", values)
                    )
    data["keys"]["summary"] = ratio(data["keys"]["rounds"])
    for name in ("snapshot_populate", "snapshot_random"):
        if data[name]["rounds"]:
            data[name]["summary"] = ratio(data[name]["rounds"])
    (out_dir / "results-redis.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    text = render(data)
    (out_dir / "RESULTS-redis.md").write_text(text)
    compose(out_dir)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
