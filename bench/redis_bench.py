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


def snapshot_round(server: Server, keys: int, value_size: int, module_first: bool, dest: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
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


def render(data: dict[str, Any]) -> str:
    k, s = data["keys"], data["snapshot"]
    lines = [
        "## Redis: redis_keys and redis_snapshot vs redis-cli",
        "",
        f"Run {data['when']} on {data['machine']['nproc']} cores, redis-server {data['machine']['redis']}, "
        f"{data['rounds']} alternating rounds, medians; values of {data['value_size']} bytes "
        "(`DEBUG POPULATE`). Wall clock of the module process as Ansible runs it on the target "
        "(Ansible start-up, paid once per playbook run, is reported in the PostgreSQL section).",
        "",
        "| Operation | Module | Raw tool | Ratio | Target | Verdict |",
        "|---|---|---|---|---|---|",
        f"| redis_keys: delete {data['doomed']:,} of {data['doomed'] + data['kept']:,} keys by pattern "
        f"vs `redis-cli --scan --pattern … \\| xargs redis-cli unlink` | {k['summary']['module_s']:.2f} s "
        f"| {k['summary']['raw_s']:.2f} s | **{k['summary']['ratio']:.2f}x** | ≤ {TARGETS['keys']}x | "
        f"{'met' if k['summary']['ratio'] <= TARGETS['keys'] else 'MISSED'} |",
    ]
    if s.get("summary"):
        lines.append(
            f"| redis_snapshot (bgsave) of {data['snapshot_keys']:,} keys vs `BGSAVE` + poll + `cp` "
            f"| {s['summary']['module_s']:.2f} s | {s['summary']['raw_s']:.2f} s | **{s['summary']['ratio']:.2f}x** "
            f"| ≤ {TARGETS['snapshot']}x | {'met' if s['summary']['ratio'] <= TARGETS['snapshot'] else 'MISSED'} |"
        )
    lines += ["", "Per round (seconds, module / raw):", ""]
    for i, r in enumerate(k["rounds"], 1):
        line = f"- round {i}: redis_keys {r['module']['seconds']:.2f} / {r['raw']['seconds']:.2f}"
        if s.get("rounds"):
            sr = s["rounds"][i - 1]
            line += f"; redis_snapshot {sr['module']['seconds']:.2f} / {sr['raw']['seconds']:.2f}"
            if sr["module"].get("steps"):
                line += f" (module steps: {json.dumps(sr['module']['steps'], sort_keys=True)})"
        lines.append(line)
    lines.append("")
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
        "snapshot": {"rounds": []},
    }
    have_snapshot = (BENCH.parent / "plugins" / "modules" / "redis_snapshot.py").exists()
    with Server(WORK / "redis-bench") as server:
        for i in range(args.rounds):
            module_first = i % 2 == 0
            log(f"round {i + 1}/{args.rounds}: redis_keys ({'module' if module_first else 'raw'} first)")
            data["keys"]["rounds"].append(keys_round(server, doomed, kept, args.value_size, module_first))
            if have_snapshot:
                log(f"round {i + 1}/{args.rounds}: redis_snapshot")
                data["snapshot"]["rounds"].append(
                    snapshot_round(server, args.keys, args.value_size, module_first, WORK / "redis-snap")
                )
    data["keys"]["summary"] = ratio(data["keys"]["rounds"])
    if data["snapshot"]["rounds"]:
        data["snapshot"]["summary"] = ratio(data["snapshot"]["rounds"])
    (out_dir / "results-redis.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    text = render(data)
    (out_dir / "RESULTS-redis.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
