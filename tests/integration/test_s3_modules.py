# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration tests of s3_health_info and s3_retention against the lab's S3 server (SeaweedFS)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import boto3
import botocore.config
import pytest

WEIRD_KEYS = ["data/with space.txt", "data/ünïcödé-日本.bin"]


def _s3(lab: dict[str, Any]) -> Any:
    s3 = lab["s3"]
    return boto3.client(
        "s3",
        endpoint_url=s3["endpoint_url"],
        aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"],
        region_name=s3["region"],
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )


def _keys(cli: Any, bucket: str, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for page in cli.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.update(o["Key"] for o in page.get("Contents", []))
    return keys


def _put(cli: Any, bucket: str, keys: list[str], body: bytes = b"x" * 10) -> None:
    for key in keys:
        cli.put_object(Bucket=bucket, Key=key, Body=body)


@pytest.fixture(scope="module")
def s3_client(lab):
    return _s3(lab)


@pytest.fixture
def bucket(lab, s3_client):
    """A fresh bucket for one test, removed with its objects afterwards."""
    name = f"rbit-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=name)
    yield name
    keys = _keys(s3_client, name)
    if keys:
        s3_client.delete_objects(Bucket=name, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
    s3_client.delete_bucket(Bucket=name)


def conn(lab: dict[str, Any], **kw: Any) -> dict[str, Any]:
    s3 = lab["s3"]
    return dict(endpoint_url=s3["endpoint_url"], access_key=s3["access_key"], secret_key=s3["secret_key"]) | kw


def no_traceback(result: dict[str, Any]) -> None:
    assert "Traceback" not in result["_stdout"] + result["_stderr"]


# --- s3_health_info ----------------------------------------------------------------------------


def test_health_endpoint_only(lab, module):
    r = module("s3_health_info", conn(lab))
    assert r["_rc"] == 0, r
    assert r["reachable"] is True and r["healthy"] is True
    assert r["changed"] is False
    assert r["minio_health"] is None  # SeaweedFS is not MinIO
    assert r["latency_ms"]["list_buckets"] >= 0
    assert "bucket_exists" not in r


def test_health_env_fallbacks(lab, module):
    s3 = lab["s3"]
    env = dict(
        AWS_ENDPOINT_URL=s3["endpoint_url"],
        AWS_ACCESS_KEY_ID=s3["access_key"],
        AWS_SECRET_ACCESS_KEY=s3["secret_key"],
        AWS_DEFAULT_REGION=s3["region"],
    )
    r = module("s3_health_info", {}, env=env)
    assert r["_rc"] == 0, r
    assert r["reachable"] is True and r["endpoint"] == s3["endpoint_url"]


def test_health_bucket_write_probe_and_count(lab, module, s3_client, bucket):
    _put(s3_client, bucket, [f"count/{i:02d}" for i in range(5)] + WEIRD_KEYS, body=b"0123456789")
    r = module(
        "s3_health_info",
        conn(lab, bucket=bucket, write_probe=True, probe_prefix=".hc/", count_prefix="count/", count_limit=100),
    )
    assert r["_rc"] == 0, r
    assert r["healthy"] is True
    assert r["bucket_exists"] is True and r["listable"] is True
    probe = r["probe"]
    assert probe["skipped"] is False and probe["matched"] is True
    assert probe["key"].startswith(".hc/")
    assert all(probe[k] >= 0 for k in ("put_ms", "get_ms", "delete_ms"))
    assert _keys(s3_client, bucket, ".hc/") == set()  # probe object removed
    assert (r["count"], r["size_bytes"], r["truncated"]) == (5, 50, False)
    whole = module("s3_health_info", conn(lab, bucket=bucket, count_prefix=""))
    assert (whole["count"], whole["size_bytes"]) == (7, 70)


def test_health_count_truncated(lab, module, s3_client, bucket):
    _put(s3_client, bucket, [f"c/{i}" for i in range(5)])
    r = module("s3_health_info", conn(lab, bucket=bucket, count_prefix="c/", count_limit=3))
    assert r["_rc"] == 0, r
    assert (r["count"], r["truncated"]) == (3, True)
    exact = module("s3_health_info", conn(lab, bucket=bucket, count_prefix="c/", count_limit=5))
    assert (exact["count"], exact["truncated"]) == (5, False)


def test_health_check_mode_skips_write_probe(lab, module, s3_client, bucket):
    r = module("s3_health_info", conn(lab, bucket=bucket, write_probe=True), check_mode=True)
    assert r["_rc"] == 0, r
    assert r["probe"]["skipped"] is True and "check mode" in r["probe"]["reason"]
    assert "put_ms" not in r["probe"]
    assert r["healthy"] is True


def test_health_missing_bucket(lab, module):
    args = conn(lab, bucket=f"rbit-missing-{uuid.uuid4().hex[:8]}")
    r = module("s3_health_info", args)
    assert r["_rc"] == 0, r
    assert r["reachable"] is True
    assert r["bucket_exists"] is False and r["healthy"] is False
    assert "does not exist (NoSuchBucket)" in r["error"]
    failed = module("s3_health_info", args | dict(fail_on_unhealthy=True))
    assert failed["_rc"] != 0 and failed["failed"]
    assert "does not exist" in failed["msg"]
    no_traceback(failed)


def test_health_closed_port_is_bounded(lab, module):
    started = time.monotonic()
    r = module("s3_health_info", conn(lab, endpoint_url="http://127.0.0.1:1", bucket="b", connect_timeout=2))
    assert time.monotonic() - started < 30
    assert r["_rc"] == 0, r
    assert r["reachable"] is False and r["healthy"] is False
    assert "unreachable" in r["error"] and "127.0.0.1:1" in r["error"]
    no_traceback(r)
    failed = module("s3_health_info", conn(lab, endpoint_url="http://127.0.0.1:1", fail_on_unhealthy=True))
    assert failed["_rc"] != 0 and "unreachable" in failed["msg"]


def test_health_wrong_secret_fails_without_showing_it(lab, module):
    secret = f"wrong-{uuid.uuid4().hex}"
    r = module("s3_health_info", conn(lab, secret_key=secret, bucket="anything"))
    assert r["_rc"] != 0 and r["failed"]
    assert "access denied" in r["msg"]
    assert secret not in r["_stdout"] + r["_stderr"]
    no_traceback(r)


def test_health_invalid_endpoint(lab, module):
    r = module("s3_health_info", conn(lab, endpoint_url="not a url"))
    assert r["_rc"] != 0 and "endpoint_url" in r["msg"] and "not a valid URL" in r["msg"]
    no_traceback(r)


# --- s3_retention ------------------------------------------------------------------------------


def test_retention_check_real_rerun(lab, module, s3_client, bucket):
    old = [f"backups/old-{i}" for i in range(4)] + [f"backups/{k}" for k in WEIRD_KEYS]
    newest = ["backups/new-a", "backups/new-b"]
    other = ["elsewhere/keep-me"]
    _put(s3_client, bucket, old + other)
    time.sleep(1.2)  # LastModified has one-second resolution: make the newest ones distinctly newer
    _put(s3_client, bucket, newest)
    time.sleep(1.2)  # everything is now strictly older than "now"
    before = _keys(s3_client, bucket)
    args = conn(lab, bucket=bucket, prefix="backups/", older_than_days=0, min_keep=2, batch_size=2, sample_size=3)

    check = module("s3_retention", args, check_mode=True)
    assert check["_rc"] == 0, check
    assert check["changed"] is True
    assert (check["matched"], check["would_delete"], check["deleted"], check["kept"]) == (8, 6, 0, 2)
    assert check["bytes"] == 60
    assert len(check["sample"]) == 3 and set(check["sample"]) <= set(old)
    assert _keys(s3_client, bucket) == before  # check mode deleted nothing

    real = module("s3_retention", args)
    assert real["_rc"] == 0, real
    assert real["changed"] is True
    assert (real["deleted"], real["kept"], real["bytes"]) == (6, 2, 60)
    assert _keys(s3_client, bucket) == set(newest + other)

    again = module("s3_retention", args)
    assert again["_rc"] == 0, again
    assert again["changed"] is False and again["deleted"] == 0 and again["would_delete"] == 0
    assert _keys(s3_client, bucket) == set(newest + other)


def test_retention_keeps_young_objects(lab, module, s3_client, bucket):
    _put(s3_client, bucket, ["p/a", "p/b"])
    r = module("s3_retention", conn(lab, bucket=bucket, prefix="p/", older_than_days=1))
    assert r["_rc"] == 0, r
    assert r["changed"] is False and r["matched"] == 2 and r["deleted"] == 0
    assert _keys(s3_client, bucket) == {"p/a", "p/b"}


def test_retention_missing_bucket(lab, module):
    name = f"rbit-missing-{uuid.uuid4().hex[:8]}"
    r = module("s3_retention", conn(lab, bucket=name, older_than_days=1))
    assert r["_rc"] != 0 and r["failed"]
    assert f"bucket '{name}' does not exist (NoSuchBucket)" in r["msg"]
    no_traceback(r)


def test_retention_negative_days(lab, module, s3_client, bucket):
    _put(s3_client, bucket, ["k"])
    r = module("s3_retention", conn(lab, bucket=bucket, older_than_days=-1))
    assert r["_rc"] != 0 and "older_than_days must be 0 or more" in r["msg"]
    assert _keys(s3_client, bucket) == {"k"}
    no_traceback(r)


def test_retention_bad_batch_size(lab, module, bucket):
    r = module("s3_retention", conn(lab, bucket=bucket, older_than_days=1, batch_size=1001))
    assert r["_rc"] != 0 and "batch_size" in r["msg"]


def test_retention_wrong_secret(lab, module, bucket):
    secret = f"wrong-{uuid.uuid4().hex}"
    r = module("s3_retention", conn(lab, bucket=bucket, older_than_days=0, secret_key=secret))
    assert r["_rc"] != 0
    assert "access denied: the access key or secret key is wrong" in r["msg"]
    assert secret not in r["_stdout"] + r["_stderr"]
    no_traceback(r)


def test_retention_closed_port_and_invalid_url(lab, module):
    started = time.monotonic()
    r = module(
        "s3_retention", conn(lab, endpoint_url="http://127.0.0.1:1", bucket="b", older_than_days=1, connect_timeout=2)
    )
    assert time.monotonic() - started < 30
    assert r["_rc"] != 0 and "unreachable" in r["msg"] and "bucket 'b'" in r["msg"]
    no_traceback(r)
    bad = module("s3_retention", conn(lab, endpoint_url="not a url", bucket="b", older_than_days=1))
    assert bad["_rc"] != 0 and "endpoint_url 'not a url' is not a valid URL" in bad["msg"]
    no_traceback(bad)


def test_retention_unknown_addressing_style(lab, module):
    r = module("s3_retention", conn(lab, bucket="b", older_than_days=1, addressing_style="sideways"))
    assert r["_rc"] != 0 and "addressing_style" in r["msg"]
    no_traceback(r)
