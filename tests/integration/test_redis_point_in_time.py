"""redis_aof_archive, redis_aof_archive_info and redis_restore_to_time against throwaway redis-server
processes (own port, own directory, AOF with timestamps; killed by the fixture at the end).

Writes happen in distinct whole seconds (the test waits for the next second between them), so the
state at each of those seconds is known exactly and a restore to one of them can be compared key by key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from test_redis_snapshot_restore import (  # noqa: F401  # pylint: disable=unused-import
    PASSWORD,
    Server,
    no_traceback,
    redis_server,
)


def aof_server(redis_server, timestamps: bool = True) -> Server:  # noqa: F811
    server = redis_server(aof=True)
    if timestamps:  # also in the config file, so that a restart (the restore) keeps it
        with server.conf.open("a") as fh:
            fh.write("aof-timestamp-enabled yes\nauto-aof-rewrite-percentage 0\n")
        server.client().config_set("aof-timestamp-enabled", "yes")
        server.client().config_set("auto-aof-rewrite-percentage", "0")
    return server


def next_second() -> int:
    """Sleep into the next whole second; return it."""
    now = time.time()
    time.sleep(int(now) + 1 - now + 0.02)
    return int(time.time())


def keys(server: Server) -> dict[bytes, bytes]:
    c = server.client()
    found = {k: c.get(k) for k in c.scan_iter(count=1000)}
    c.close()
    return found


def archive_files(root: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mode) of every file and directory under the archive root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.stat()
            out[str(path.relative_to(root))] = (st.st_size, stat.S_IMODE(st.st_mode))
    return out


def write_timeline(module, server, root: Path, **archive_extra: Any):
    """Writes at T0, T1, T2 (distinct seconds) on an AOF ``server``, archived into ``root`` between
    them (``archive_extra``: more redis_aof_archive options), with a rewrite (archived before it)
    between T1 and T2. Returns ({T: keys at T}, the last archive run)."""

    def archive(**extra: Any) -> dict:
        arch = module("redis_aof_archive", server.args(dest=str(root), **archive_extra, **extra))
        assert arch["_rc"] == 0 and arch["changed"], arch
        return arch

    c = server.client()
    states: dict[int, dict[bytes, bytes]] = {}
    t0 = next_second()
    c.mset({"a": "0", "b": "0", "gone": "x"})
    states[t0] = keys(server)
    archive()

    t1 = next_second()
    c.set("a", "1")
    c.delete("gone")
    c.incr("counter")
    states[t1] = keys(server)
    assert archive(rewrite=True)["rewritten"]

    t2 = next_second()
    c.set("a", "2")
    c.set("b", "2")
    c.incr("counter")
    states[t2] = keys(server)
    next_second()  # the archive holds whole seconds before the run
    arch = archive()
    c.close()
    assert len({json.dumps(sorted(s.items()), default=repr) for s in states.values()}) == 3
    return states, arch


@pytest.fixture
def timeline(module, redis_server, tmp_path):  # noqa: F811
    """A server with writes at T0, T1, T2 (:func:`write_timeline`). Returns (server, archive root,
    {T: key set at T}, the last archive run)."""
    server = aof_server(redis_server)
    root = tmp_path / "archive"
    states, arch = write_timeline(module, server, root)
    return server, root, states, arch


def test_archive_layout_range_and_idempotence(module, timeline):
    server, root, states, arch = timeline
    t0, t1, t2 = sorted(states)
    held = arch["held"]
    assert held["oldest"] <= t0 and held["newest"] >= t2 and held["gaps"] == [] and held["generations"] == 2
    assert held["last_write"] == t2
    directory = Path(arch["path"])
    index = json.loads((directory / "index.json").read_text())
    first, second = index["generations"]
    assert first["sealed"] and not second["sealed"]
    assert first["base"]["seq"] + 1 == second["base"]["seq"]
    # the first generation's incr holds T0 and T1 (its last part copied after the rewrite began)
    assert first["incr"][0]["first_ts"] == t0 and first["incr"][-1]["last_ts"] == t1
    assert second["incr"][-1]["last_ts"] == t2
    for gen in index["generations"]:
        for entry in [gen["base"], *gen["incr"]]:
            path = directory / gen["id"] / entry["name"]
            assert path.stat().st_size == entry["size"]
        assert (directory / gen["id"] / gen["manifest"]).exists()
    modes = archive_files(root)
    assert {mode for rel, (_s, mode) in modes.items() if Path(root, rel).is_dir()} == {0o700}, modes
    assert {mode for rel, (_s, mode) in modes.items() if Path(root, rel).is_file()} == {0o600}

    # nothing written since: check mode and a real run report no change, the archive is untouched
    plan = module("redis_aof_archive", server.args(dest=str(root)), check_mode=True)
    assert plan["_rc"] == 0 and not plan["changed"] and plan["copied"] == [], plan
    again = module("redis_aof_archive", server.args(dest=str(root)))
    assert again["_rc"] == 0 and not again["changed"] and again["copied"] == [], again
    after = archive_files(root)
    assert {k: v for k, v in after.items() if not k.endswith("index.json")} == {
        k: v for k, v in modes.items() if not k.endswith("index.json")
    }

    # a new write: check mode predicts the grown incr file and copies nothing
    server.client().set("late", "1")
    plan = module("redis_aof_archive", server.args(dest=str(root)), check_mode=True)
    assert plan["_rc"] == 0 and plan["changed"] and plan["copied"] == [f"{second['id']}/{second['incr'][-1]['name']}"]
    assert archive_files(root) == after


def aof_listing(server: Server) -> dict[str, int]:
    """name -> size of everything in the data directory and the AOF directory (what a restore changes)."""
    out = {p.name: p.stat().st_size for p in server.dir.iterdir() if p.is_file() and p.name != "redis.log"}
    out.update({f"appendonlydir/{p.name}": p.stat().st_size for p in (server.dir / "appendonlydir").iterdir()})
    out.update({p.name: -1 for p in server.dir.iterdir() if p.is_dir()})
    return out


def test_restore_to_time(module, timeline):
    server, root, states, arch = timeline
    t0, t1, t2 = sorted(states)
    now = keys(server)
    assert now == states[t2]
    before = aof_listing(server)

    def restore(target: Any, **kwargs: Any) -> dict:
        args = server.restore_args(archive_root=str(root), target_time=str(target))
        return module("redis_restore_to_time", args, **kwargs)

    # check mode: assembles and checks a copy elsewhere, predicts, changes nothing. T0 lies in the
    # first generation, whose incr file (T0 and T1) is cut after T0
    plan = restore(t0, check_mode=True)
    assert plan["_rc"] == 0 and plan["changed"], plan
    first = json.loads(Path(arch["path"], "index.json").read_text())["generations"][0]
    assert plan["target_time"] == t0 and plan["generation"] == first["id"], plan
    assert plan["files"][0].endswith(".base.rdb") and plan["files"][1].endswith(".incr.aof"), plan["files"]
    assert any("--truncate-to-timestamp" in c for c in plan["commands"]), plan["commands"]
    assert keys(server) == now and aof_listing(server) == before

    # a time before the oldest base, and one after the newest archived second: refused, nothing changed
    old = restore(arch["held"]["oldest"] - 1)
    assert old["_rc"] != 0 and old.get("failed")
    assert "older than the oldest data held" in old["msg"] and "nothing was changed" in old["msg"], old["msg"]
    assert arch["held"]["oldest_utc"] in old["msg"]
    no_traceback(old)
    new = restore(arch["held"]["newest"] + 3600)
    assert new["_rc"] != 0 and "newer than the newest write held" in new["msg"], new["msg"]
    bad = restore("yesterday-ish")
    assert bad["_rc"] != 0 and "neither unix seconds nor an ISO 8601 time" in bad["msg"], bad["msg"]
    assert keys(server) == now and aof_listing(server) == before

    # T1: the writes of T1, not those of T2 (the rewrite ran in second T1 or T2)
    done = restore(t1)
    assert done["_rc"] == 0 and done["changed"] and done["rewritten"], done
    assert keys(server) == states[t1], (keys(server), states[t1])
    assert done["dbsize"] == len(states[t1])
    kept = Path(done["previous_aof"])
    assert kept.parent == server.dir and kept.name.startswith("appendonlydir.pre-restore-")
    assert sorted(p.name for p in kept.iterdir()) == sorted(
        n.split("/", 1)[1] for n in before if n.startswith("appendonlydir/")
    )
    assert not [p for p in server.dir.iterdir() if ".pitr-" in p.name]

    # ISO 8601 time of T0: only the writes of T0
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))
    done = restore(iso)
    assert done["_rc"] == 0 and done["target_time"] == t0, done
    assert keys(server) == states[t0]

    # latest: the second generation (after the rewrite) up to the newest archived second
    done = restore("latest")
    assert done["_rc"] == 0 and done["target_time"] == arch["held"]["newest"], done
    assert keys(server) == states[t2]

    # the restore started a new generation (BGREWRITEAOF): archiving goes on beside the old ones
    ids = [g["id"] for g in json.loads(Path(arch["path"], "index.json").read_text())["generations"]]
    server.client().set("after", "restore")
    again = module("redis_aof_archive", server.args(dest=str(root)))
    assert again["_rc"] == 0 and again["changed"] and again["generation"] not in ids, again
    after = [g["id"] for g in json.loads(Path(arch["path"], "index.json").read_text())["generations"]]
    assert after[: len(ids)] == ids and len(after) == len(ids) + 1


def test_archive_info(module, timeline):
    server, root, states, arch = timeline
    info = module("redis_aof_archive_info", {"archive_root": str(root), "verify": True})
    assert info["_rc"] == 0 and not info["changed"], info
    (found,) = info["archives"]
    assert found["source"] == f"127.0.0.1:{server.port}" and found["held"] == arch["held"]
    assert found["problems"] == [] and len(found["generations"]) == 2 and found["generations"][0]["sealed"]

    # a damaged archived file (same size): verify names it, and a restore that needs it is refused
    gen = found["generations"][0]
    path = Path(found["path"], gen["id"], gen["incr"][0]["name"])
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    info = module("redis_aof_archive_info", {"archive_root": str(root), "verify": True})
    assert [p for p in info["archives"][0]["problems"] if str(path) in p], info["archives"][0]["problems"]
    before = keys(server)
    res = module(
        "redis_restore_to_time",
        server.restore_args(archive_root=str(root), target_time=str(sorted(states)[0])),
    )
    assert res["_rc"] != 0 and "does not match its index" in res["msg"] and str(path) in res["msg"], res["msg"]
    assert keys(server) == before


def test_archive_needs_timestamps(module, redis_server, tmp_path):  # noqa: F811
    server = aof_server(redis_server, timestamps=False)
    root = tmp_path / "archive"
    res = module("redis_aof_archive", server.args(dest=str(root)))
    assert res["_rc"] != 0 and "aof-timestamp-enabled is no" in res["msg"] and "configure=true" in res["msg"], res
    assert not root.exists()
    plan = module("redis_aof_archive", server.args(dest=str(root), configure=True), check_mode=True)
    assert plan["_rc"] == 0 and plan["changed"] and plan["configured"] == ["aof-timestamp-enabled"], plan
    assert server.client().config_get("aof-timestamp-enabled") == {"aof-timestamp-enabled": "no"}
    assert not root.exists()
    done = module("redis_aof_archive", server.args(dest=str(root), configure=True))
    assert done["_rc"] == 0 and done["changed"] and done["configured"] == ["aof-timestamp-enabled"], done
    assert server.client().config_get("aof-timestamp-enabled") == {"aof-timestamp-enabled": "yes"}
    again = module("redis_aof_archive", server.args(dest=str(root), configure=True))
    assert again["_rc"] == 0 and again["configured"] == [], again

    # a server without AOF at all: configure turns it on, waits for the first base, archives it
    plain = redis_server(aof=False)
    plain.client().set("k", "v")
    res = module("redis_aof_archive", plain.args(dest=str(root)))
    assert res["_rc"] != 0 and "appendonly is no" in res["msg"], res
    done = module("redis_aof_archive", plain.args(dest=str(root), configure=True))
    assert done["_rc"] == 0 and done["configured"] == ["appendonly", "aof-timestamp-enabled"], done
    assert [c for c in done["copied"] if c.endswith(".base.rdb")], done["copied"]
    assert plain.client().config_get("appendonly") == {"appendonly": "yes"}


def test_gap_left_by_a_rewrite_is_refused(module, redis_server, tmp_path):  # noqa: F811
    """A rewrite the module did not run drops the writes since the last archive run: a time in that
    window is refused, the times around it can still be restored."""
    server = aof_server(redis_server)
    root = tmp_path / "archive"
    c = server.client()
    t0 = next_second()
    c.set("k", "0")
    at_t0 = keys(server)
    next_second()
    assert module("redis_aof_archive", server.args(dest=str(root)))["_rc"] == 0
    lost = next_second()
    c.set("k", "lost")
    next_second()
    c.bgrewriteaof()
    while int(c.info("persistence")["aof_rewrite_in_progress"]) or int(c.info("persistence")["aof_rewrite_scheduled"]):
        time.sleep(0.05)
    next_second()
    arch = module("redis_aof_archive", server.args(dest=str(root)))
    assert arch["_rc"] == 0, arch
    (gap,) = arch["held"]["gaps"]
    assert gap["from"] <= lost <= gap["to"], (gap, lost)
    before = (keys(server), sorted(p.name for p in (server.dir / "appendonlydir").iterdir()))
    res = module("redis_restore_to_time", server.restore_args(archive_root=str(root), target_time=str(lost)))
    assert res["_rc"] != 0 and "were not archived" in res["msg"] and "nothing was changed" in res["msg"], res["msg"]
    assert (keys(server), sorted(p.name for p in (server.dir / "appendonlydir").iterdir())) == before
    done = module("redis_restore_to_time", server.restore_args(archive_root=str(root), target_time=str(t0)))
    assert done["_rc"] == 0 and keys(server) == at_t0, done
    c.close()


def test_failed_start_puts_the_previous_aof_back(module, timeline):
    """The server does not come back with the restored AOF (start command fails): the live AOF
    directory is put back as it was, nothing of it is lost, and the message says so."""
    server, root, states, _arch = timeline
    before = keys(server)
    aof_dir = server.dir / "appendonlydir"
    listing = sorted((p.name, p.read_bytes()) for p in aof_dir.iterdir())
    args = server.restore_args(archive_root=str(root), target_time=str(min(states)), start_command=["false"])
    res = module("redis_restore_to_time", args)
    assert res["_rc"] != 0 and res.get("failed"), res
    assert "the start command false failed" in res["msg"] and "previous AOF is back in place" in res["msg"], res["msg"]
    no_traceback(res)
    assert sorted((p.name, p.read_bytes()) for p in aof_dir.iterdir()) == listing
    assert not [p for p in server.dir.iterdir() if ".pitr-" in p.name or ".pre-restore-" in p.name]
    server.start()
    assert keys(server) == before


def resp(*args: str) -> bytes:
    out = f"*{len(args)}\r\n".encode()
    for arg in args:
        out += f"${len(arg.encode())}\r\n{arg}\r\n".encode()
    return out


def test_restore_through_several_incr_files_and_an_aof_base(module, redis_server, tmp_path):  # noqa: F811
    """A generation with an AOF (not RDB) base and two incr files (as a failed rewrite leaves them):
    a target in the first incr file drops the second one (redis-check-aof only cuts the last file)."""
    server = aof_server(redis_server)
    root = tmp_path / "archive"
    gen_dir = root / "redis-aof" / "synthetic" / "20260101T000000Z-seq1-00000000"
    gen_dir.mkdir(parents=True)
    files = {
        "a.aof.1.base.aof": b"#TS:90\r\n" + resp("SELECT", "0") + resp("SET", "base", "1"),
        "a.aof.1.incr.aof": b"#TS:100\r\n"
        + resp("SELECT", "0")
        + resp("SET", "x", "1")
        + b"#TS:101\r\n"
        + resp("SET", "y", "1"),
        "a.aof.2.incr.aof": b"#TS:102\r\n"
        + resp("SELECT", "0")
        + resp("SET", "z", "1")
        + b"#TS:103\r\n"
        + resp("SET", "w", "1"),
    }
    for name, data in files.items():
        (gen_dir / name).write_bytes(data)

    def entry(name: str, seq: int, first: int | None, last: int | None) -> dict:
        data = files[name]
        return {
            "name": name,
            "seq": seq,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "first_ts": first,
            "last_ts": last,
        }

    base = entry("a.aof.1.base.aof", 1, None, None) | {"time": 90}
    index = {
        "format": "runbook.stack/redis-aof-archive",
        "version": 1,
        "source": "synthetic",
        "generations": [
            {
                "id": gen_dir.name,
                "base": base,
                "incr": [entry("a.aof.1.incr.aof", 1, 100, 101), entry("a.aof.2.incr.aof", 2, 102, 103)],
                "covered_until": 110,
                "sealed": False,
            }
        ],
    }
    (gen_dir.parent / "index.json").write_text(json.dumps(index))

    def restore(target: int, **kwargs: Any) -> dict:
        args = server.restore_args(archive_root=str(root), source="synthetic", target_time=str(target))
        return module("redis_restore_to_time", args, **kwargs)

    plan = restore(100, check_mode=True)
    assert plan["_rc"] == 0 and plan["files"] == ["appendonly.aof.1.base.aof", "appendonly.aof.1.incr.aof"], plan
    for target, want in (
        (100, {"base", "x"}),
        (102, {"base", "x", "y", "z"}),
        (95, {"base"}),
        (110, {"base", "x", "y", "z", "w"}),
    ):
        done = restore(target)
        assert done["_rc"] == 0, done
        assert set(keys(server)) == {k.encode() for k in want}, (target, keys(server))


def test_restore_into_a_killed_server_whose_aof_was_deleted(module, timeline):
    """The disaster case: Redis killed with SIGKILL and its AOF directory deleted. Without data_dir the
    module cannot know where the server keeps its data and refuses; with it, the archive is put there
    and the server started with the state at T1."""
    server, root, states, _arch = timeline
    t1 = sorted(states)[1]
    os.kill(int(server.pidfile.read_text()), 9)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and subprocess_ping(server.port):
        time.sleep(0.1)
    shutil.rmtree(server.dir / "appendonlydir")
    listing = sorted(p.name for p in server.dir.iterdir())

    args = server.restore_args(archive_root=str(root), target_time=str(t1))
    refused = module("redis_restore_to_time", args)
    assert refused["_rc"] != 0 and "is down and data_dir is not set" in refused["msg"], refused
    assert "nothing was changed" in refused["msg"]
    no_traceback(refused)
    assert sorted(p.name for p in server.dir.iterdir()) == listing

    done = module("redis_restore_to_time", {**args, "data_dir": str(server.dir)})
    assert done["_rc"] == 0 and done["changed"], done
    assert "is down: restoring into" in json.dumps(done.get("warnings", [])), done
    assert done["previous_aof"] is None
    assert keys(server) == states[t1]
    assert (server.dir / "appendonlydir").is_dir()


def subprocess_ping(port: int) -> bool:
    import socket  # pylint: disable=import-outside-toplevel

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
