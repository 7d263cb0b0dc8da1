"""redis_aof_archive, redis_aof_archive_info and redis_restore_to_time against throwaway redis-server
processes (own port, own directory, AOF with timestamps; killed by the fixture at the end).

Writes happen in distinct whole seconds (the test waits for the next second between them), so the
state at each of those seconds is known exactly and a restore to one of them can be compared key by key.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

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


@pytest.fixture
def timeline(module, redis_server, tmp_path):  # noqa: F811
    """A server with writes at T0, T1, T2 (distinct seconds), archived between them, with a rewrite
    (archived before it) between T1 and T2. Returns (server, archive root, {T: key set at T})."""
    server = aof_server(redis_server)
    root = tmp_path / "archive"
    c = server.client()
    states: dict[int, dict[bytes, bytes]] = {}

    t0 = next_second()
    c.mset({"a": "0", "b": "0", "gone": "x"})
    states[t0] = keys(server)
    arch = module("redis_aof_archive", server.args(dest=str(root)))
    assert arch["_rc"] == 0 and arch["changed"], arch

    t1 = next_second()
    c.set("a", "1")
    c.delete("gone")
    c.incr("counter")
    states[t1] = keys(server)
    arch = module("redis_aof_archive", server.args(dest=str(root), rewrite=True))
    assert arch["_rc"] == 0 and arch["changed"] and arch["rewritten"], arch

    t2 = next_second()
    c.set("a", "2")
    c.set("b", "2")
    c.incr("counter")
    states[t2] = keys(server)
    next_second()  # the archive holds whole seconds before the run
    arch = module("redis_aof_archive", server.args(dest=str(root)))
    assert arch["_rc"] == 0 and arch["changed"], arch
    c.close()
    assert len({json.dumps(sorted(s.items()), default=repr) for s in states.values()}) == 3
    return server, root, states, arch


def test_archive_layout_range_and_idempotence(module, timeline):
    server, root, states, arch = timeline
    t0, t1, t2 = sorted(states)
    held = arch["held"]
    assert held["oldest"] <= t0 and held["newest"] >= t2 and held["gaps"] == [] and held["generations"] == 2
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
