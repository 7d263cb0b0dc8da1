"""Redis point-in-time archive on S3 and the follow process, against throwaway redis-server processes
(own port and directory, AOF with timestamps) and the lab's SeaweedFS S3 (a bucket per test, removed
afterwards).

- redis_aof_archive into s3://bucket/prefix through a BGREWRITEAOF (two generations held, an incr file
  that grew stored as a second part), redis_aof_archive_info from S3, and redis_restore_to_time from
  S3 alone after the server's AOF directory was deleted; a time older than the archive is refused.
- The follow process (python -m ..._redis_aof_follow --config file, secrets in the environment):
  writes made while it runs reach S3, a rewrite between two passes is finished through the held
  descriptors (sealed, its last writes in the archived old incr file), Redis killed and started again
  is survived, Redis killed with its AOF directory deleted right after a pass still loses nothing (the
  held incr file), SIGTERM stops it with exit 0; then a restore of the newest second from S3 gives
  every key.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import PYTHON, module_env
from test_redis_point_in_time import aof_server, keys, next_second
from test_redis_snapshot_restore import (  # noqa: F401  # pylint: disable=unused-import
    PASSWORD,
    Server,
    no_traceback,
    redis_server,
)
from test_s3_modules import _keys
from test_s3_modules import _s3 as lab_client

FOLLOW = "ansible_collections.runbook.stack.plugins.module_utils._redis_aof_follow"


@pytest.fixture
def s3cli(lab):
    return lab_client(lab)


@pytest.fixture
def bucket(s3cli):
    name = f"rbaof-{uuid.uuid4().hex[:8]}"
    s3cli.create_bucket(Bucket=name)
    yield name
    found = _keys(s3cli, name)
    if found:
        s3cli.delete_objects(Bucket=name, Delete={"Objects": [{"Key": k} for k in found], "Quiet": True})
    s3cli.delete_bucket(Bucket=name)


def s3_args(lab: dict[str, Any]) -> dict[str, Any]:
    return {k: lab["s3"][k] for k in ("endpoint_url", "access_key", "secret_key", "region")}


def index_of(s3cli: Any, bucket: str, prefix: str, server: Server) -> dict[str, Any]:
    key = f"{prefix}/redis-aof/127.0.0.1%3A{server.port}/index.json"
    return json.loads(s3cli.get_object(Bucket=bucket, Key=key)["Body"].read())


def archived_bytes(s3cli: Any, bucket: str, prefix: str, server: Server, gen: dict, entry: dict) -> bytes:
    base = f"{prefix}/redis-aof/127.0.0.1%3A{server.port}/{gen['id']}/{entry['name']}.parts"
    out = b""
    for part in entry["parts"]:
        key = f"{base}/{part['offset']:012d}-{part['offset'] + part['size']:012d}"
        out += s3cli.get_object(Bucket=bucket, Key=key)["Body"].read()
    return out


def wipe_data(server: Server) -> None:
    """The disaster: the server killed, its AOF directory and RDB deleted; then started empty."""
    server.stop()
    shutil.rmtree(server.dir / "appendonlydir", ignore_errors=True)
    for rdb in server.dir.glob("*.rdb"):
        rdb.unlink()
    server.start()
    assert keys(server) == {}


def test_s3_archive_rewrite_info_and_restore_after_the_data_is_gone(lab, module, redis_server, s3cli, bucket):  # noqa: F811
    server = aof_server(redis_server)
    dest = f"s3://{bucket}/pitr"
    c = server.client()
    states: dict[int, dict[bytes, bytes]] = {}

    def archive(**extra: Any) -> dict:
        res = module("redis_aof_archive", server.args(dest=dest, **s3_args(lab), **extra))
        assert res["_rc"] == 0, res
        return res

    t0 = next_second()
    c.mset({"a": "0", "b": "0", "gone": "x"})
    states[t0] = keys(server)
    first = archive()
    assert first["changed"] and first["path"] == f"{dest}/redis-aof/127.0.0.1%3A{server.port}", first
    assert [n for n in first["copied"] if n.endswith(".base.rdb")], first["copied"]

    t1 = next_second()
    c.set("a", "1")
    c.delete("gone")
    states[t1] = keys(server)
    rewritten = archive(rewrite=True)
    assert rewritten["changed"] and rewritten["rewritten"] and rewritten["held"]["generations"] == 2, rewritten

    t2 = next_second()
    c.set("a", "2")
    c.set("b", "2")
    states[t2] = keys(server)
    next_second()
    last = archive()
    assert last["changed"] and last["held"]["gaps"] == [] and last["held"]["newest"] >= t2, last

    # the index on S3 names two generations; the old one sealed, its incr file (written at T0, grown
    # at T1) stored as two parts whose bytes hold the writes of both seconds
    index = index_of(s3cli, bucket, "pitr", server)
    old, new = index["generations"]
    assert old["sealed"] and not new["sealed"], index
    (incr,) = old["incr"]
    assert len(incr["parts"]) == 2 and incr["parts"][1]["offset"] == incr["parts"][0]["size"], incr
    data = archived_bytes(s3cli, bucket, "pitr", server, old, incr)
    assert len(data) == incr["size"] and b"gone" in data and f"#TS:{t1}".encode() in data

    # nothing new: no change, nothing uploaded but the index
    listing = {k for k in _keys(s3cli, bucket) if not k.endswith("index.json")}
    again = archive()
    assert not again["changed"] and again["copied"] == [], again
    assert {k for k in _keys(s3cli, bucket) if not k.endswith("index.json")} == listing

    # follow_seconds: passes until the time is up (at least the first and the last), new writes archived
    c.set("followed", "1")
    states_final = keys(server)
    followed = archive(follow_seconds=1, interval=0.2)
    assert followed["changed"] and followed["passes"] >= 2 and followed["copied"], followed

    info = module("redis_aof_archive_info", {"archive_root": dest, "verify": True, **s3_args(lab)})
    assert info["_rc"] == 0 and not info["changed"], info
    (found,) = info["archives"]
    assert found["source"] == f"127.0.0.1:{server.port}" and found["problems"] == [], found
    assert found["held"]["generations"] == 2 and found["generations"][0]["sealed"]
    c.close()

    # the disaster: the AOF is gone from the host; the S3 archive alone brings back each second
    wipe_data(server)

    def restore(target: Any) -> dict:
        return module(
            "redis_restore_to_time",
            server.restore_args(archive_root=dest, target_time=str(target), **s3_args(lab)),
        )

    too_old = restore(found["held"]["oldest"] - 60)
    assert too_old["_rc"] != 0 and "older than the oldest data held" in too_old["msg"], too_old
    assert "nothing was changed" in too_old["msg"] and dest in too_old["msg"]
    no_traceback(too_old)
    assert keys(server) == {}

    for target in (t1, t0):
        done = restore(target)
        assert done["_rc"] == 0 and done["target_time"] == target, done
        assert keys(server) == states[target], (target, keys(server))
    assert done["generation"] == old["id"]
    # no staging directory left beside the data directory
    assert not [p for p in server.dir.iterdir() if ".pitr-" in p.name]

    wipe_data(server)
    done = restore("latest")
    assert done["_rc"] == 0 and done["generation"] == new["id"], done
    assert keys(server) == states_final

    # a part object gone from S3: the listing names it, a restore that needs it is refused
    gone = f"pitr/redis-aof/127.0.0.1%3A{server.port}/{old['id']}/{incr['name']}.parts/{0:012d}-{incr['parts'][0]['size']:012d}"
    s3cli.delete_object(Bucket=bucket, Key=gone)
    info = module("redis_aof_archive_info", {"archive_root": dest, **s3_args(lab)})
    assert info["_rc"] == 0 and [p for p in info["archives"][0]["problems"] if "missing" in p], info
    refused = restore(t0)
    assert refused["_rc"] != 0 and "does not match its index" in refused["msg"], refused["msg"]
    assert "nothing was changed" in refused["msg"] and keys(server) == states_final


def write_config(path: Path, server: Server, archive: str, lab: dict[str, Any], interval: float) -> None:
    """Secrets stay out of the file here: the password and the S3 keys come from the environment."""
    cfg = {
        "archive": archive,
        "interval": interval,
        "redis": {"login_host": "127.0.0.1", "login_port": server.port},
        "s3": {"endpoint_url": lab["s3"]["endpoint_url"], "region": lab["s3"]["region"]},
    }
    path.write_text(json.dumps(cfg))


def follow_env(lab: dict[str, Any]) -> dict[str, str]:
    return module_env(
        {
            "REDISCLI_AUTH": PASSWORD,
            "AWS_ACCESS_KEY_ID": lab["s3"]["access_key"],
            "AWS_SECRET_ACCESS_KEY": lab["s3"]["secret_key"],
        }
    )


def wait_for(what: str, check: Any, log: Path, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen; follow log:\n{log.read_text()}")


def test_follow_process_archives_writes_survives_redis_down_and_stops_on_sigterm(
    lab,
    module,
    redis_server,  # noqa: F811
    s3cli,
    bucket,
    tmp_path,
):
    server = aof_server(redis_server)
    archive = f"s3://{bucket}/follow"
    config = tmp_path / "follow.json"
    write_config(config, server, archive, lab, interval=2)
    log = tmp_path / "follow.log"
    c = server.client()
    c.set("before", "start")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(PYTHON), "-m", FOLLOW, "--config", str(config)],
            env=follow_env(lab),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def index() -> dict | None:
            try:
                return index_of(s3cli, bucket, "follow", server)
            except s3cli.exceptions.NoSuchKey:
                return None

        def archived(key: bytes) -> bool:
            found = index()
            if not found:
                return False
            gen = found["generations"][-1]
            return any(key in archived_bytes(s3cli, bucket, "follow", server, gen, e) for e in gen["incr"])

        # a write while it runs reaches S3 within a few passes
        c.set("while-following", "1")
        wait_for("the write archived", lambda: archived(b"while-following"), log)

        # a rewrite right after a pass: the writes just before it are only in the deleted incr file,
        # which the follower holds open; the next pass archives them and seals the old generation
        before = json.dumps(index(), sort_keys=True)
        wait_for("a pass", lambda: json.dumps(index(), sort_keys=True) != before, log)
        time.sleep(0.5)  # the pass has saved the index; it opens the files it holds right after
        c.set("just-before-rewrite", "1")
        c.bgrewriteaof()
        while int(c.info("persistence")["aof_rewrite_in_progress"]) or int(
            c.info("persistence")["aof_rewrite_scheduled"]
        ):
            time.sleep(0.05)
        two = wait_for("the new generation archived", lambda: (i := index()) and len(i["generations"]) == 2 and i, log)
        old = two["generations"][0]
        assert old["sealed"], two
        data = b"".join(archived_bytes(s3cli, bucket, "follow", server, old, e) for e in old["incr"])
        assert b"just-before-rewrite" in data

        # Redis killed: the process logs it and goes on; Redis back, new writes are archived
        server.stop()
        wait_for("the outage logged", lambda: "unreachable" in log.read_text(), log)
        assert proc.poll() is None, log.read_text()
        server.start()
        c = server.client()
        c.set("after-outage", "1")
        written = int(time.time())
        wait_for("the write after the outage archived", lambda: archived(b"after-outage"), log)
        # and a pass that started after its second: the newest restorable second includes it
        wait_for("its second held", lambda: index()["generations"][-1]["covered_until"] >= written, log)

        # the disaster right after a pass: Redis killed and its AOF directory deleted; the incr file the
        # follower holds open still gives the last write, and the archive holds its whole second
        before = json.dumps(index(), sort_keys=True)
        wait_for("a pass", lambda: json.dumps(index(), sort_keys=True) != before, log)
        time.sleep(0.5)  # the pass has saved the index; it opens the files it holds right after
        c.set("last-words", "1")
        final = keys(server)
        c.close()
        server.stop()
        shutil.rmtree(server.dir / "appendonlydir")
        wait_for("the deleted directory noticed", lambda: "unreadable" in log.read_text(), log)
        assert archived(b"last-words"), log.read_text()
        assert proc.poll() is None, log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    text = log.read_text()
    assert rc == 0, text
    assert "archived" in text and "stopped after" in text and "Traceback" not in text, text
    assert PASSWORD not in text and lab["s3"]["secret_key"] not in text
    assert index()["generations"][0]["sealed"]

    # the proof of the data: a restore of the newest archived second from S3 gives every key
    wipe_data(server)
    done = module(
        "redis_restore_to_time", server.restore_args(archive_root=archive, target_time="latest", **s3_args(lab))
    )
    assert done["_rc"] == 0, done
    assert keys(server) == final


def test_follow_refuses_a_bad_config(tmp_path):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"archive": "s3://b/p", "redis": {"login_port": 1, "passwd": "x"}}))
    proc = subprocess.run(
        [str(PYTHON), "-m", FOLLOW, "--config", str(config)],
        env=module_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "unknown key(s) in redis: passwd" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    os.unlink(config)
    proc = subprocess.run(
        [str(PYTHON), "-m", FOLLOW, "--config", str(config)],
        env=module_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "cannot read" in proc.stderr, proc.stderr


def test_follow_process_into_a_local_archive(module, redis_server, tmp_path):  # noqa: F811
    """The same follower with a local directory as the archive (no S3): a rewrite right after a pass is
    sealed with the writes before it, and the newest second restores every key."""
    server = aof_server(redis_server)
    root = tmp_path / "archive"
    config = tmp_path / "follow.json"
    config.write_text(json.dumps({"archive": str(root), "interval": 1, "redis": {"login_port": server.port}}))
    log = tmp_path / "follow.log"
    index_path = root / "redis-aof" / f"127.0.0.1%3A{server.port}" / "index.json"
    c = server.client()
    c.set("k", "0")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(PYTHON), "-m", FOLLOW, "--config", str(config)],
            env=module_env({"REDISCLI_AUTH": PASSWORD}),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for("the first pass", index_path.exists, log)
        before = index_path.read_text()
        wait_for("a pass", lambda: index_path.read_text() != before, log)
        time.sleep(0.3)  # the pass has saved the index; it opens the files it holds right after
        c.set("just-before-rewrite", "1")
        c.bgrewriteaof()
        two = wait_for(
            "the new generation archived",
            lambda: (i := json.loads(index_path.read_text())) and len(i["generations"]) == 2 and i,
            log,
        )
        old = two["generations"][0]
        assert old["sealed"], two
        data = b"".join((index_path.parent / old["id"] / e["name"]).read_bytes() for e in old["incr"])
        assert b"just-before-rewrite" in data
        c.set("k", "1")
        written = int(time.time())
        wait_for(
            "the last write held",
            lambda: json.loads(index_path.read_text())["generations"][-1]["covered_until"] >= written,
            log,
        )
        final = keys(server)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    assert rc == 0 and "stopped after" in log.read_text(), log.read_text()
    c.close()
    wipe_data(server)
    done = module("redis_restore_to_time", server.restore_args(archive_root=str(root), target_time="latest"))
    assert done["_rc"] == 0, done
    assert keys(server) == final
