#!/usr/bin/python
# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_health_info
short_description: Report the health of an S3 endpoint and bucket
version_added: 0.1.0
description:
  - Checks that an S3 server (MinIO, SeaweedFS, Ceph RGW, AWS S3, ...) answers, asks MinIO's
    C(/minio/health/live) when the server is MinIO, and, with O(bucket), that the bucket exists and
    can be listed.
  - With O(write_probe=true) it puts a small random object under O(probe_prefix), reads it back,
    compares it and deletes it, and reports the latency of each step.
  - With O(count_prefix) it counts the objects and bytes under a prefix, reading at most
    O(count_limit) objects.
  - An unreachable endpoint or a missing bucket is reported (RV(reachable=false), RV(bucket_exists=false))
    rather than failing, unless O(fail_on_unhealthy=true). Wrong credentials are a configuration
    fault and always fail.
extends_documentation_fragment:
  - runbook.stack.s3
  - runbook.stack._attributes
  - runbook.stack._attributes.info_module
  - runbook.stack._attributes.actiongroup_s3
attributes:
  check_mode:
    details:
      - The write probe writes an object, so check mode skips it and says so in RV(probe).
        Everything else runs as in a normal run.
  idempotent:
    details: The write probe removes its object again; C(changed) is always false.
options:
  bucket:
    description:
      - Bucket to check. Without it only the endpoint is checked (with C(ListBuckets)).
      - Required by O(write_probe) and O(count_prefix).
    type: str
  write_probe:
    description:
      - Put, get, compare and delete a random object under O(probe_prefix) in O(bucket).
      - Skipped in check mode.
    type: bool
    default: false
  probe_prefix:
    description:
      - Prefix of the write probe's object.
    type: str
    default: .runbook-health/
  count_prefix:
    description:
      - Count the objects and their total size under this prefix of O(bucket); V("") counts the whole bucket.
    type: str
  count_limit:
    description:
      - Read at most this many objects when counting; RV(truncated=true) says there are more.
    type: int
    default: 10000
  fail_on_unhealthy:
    description:
      - Fail when the endpoint is unreachable, the bucket is missing or not listable, or the write
        probe does not succeed, instead of returning RV(healthy=false).
    type: bool
    default: false
seealso:
  - module: runbook.stack.s3_retention
author:
  - runbook.stack maintainers (@runbook-stack)
"""

EXAMPLES = r"""
- name: Wait until the object store answers
  runbook.stack.s3_health_info:
    endpoint_url: https://minio.internal.example.com:9000
    access_key: backup-writer
    secret_key: "{{ vault_s3_secret_key }}"
  register: s3_health
  until: s3_health.reachable
  retries: 20
  delay: 3

- name: Check the backup bucket end to end (put, get, delete) before a backup
  runbook.stack.s3_health_info:
    endpoint_url: https://minio.internal.example.com:9000
    bucket: pg-backups
    write_probe: true
    fail_on_unhealthy: true

- name: Size of last night's uploads (at most 50000 objects read)
  runbook.stack.s3_health_info:
    bucket: pg-backups
    count_prefix: nightly/2026-11-22/
    count_limit: 50000
  register: s3_usage
"""

RETURN = r"""
healthy:
  description:
    - Whether everything that was checked is fine; the endpoint answered, the bucket (if any)
      exists and is listable, and the write probe (if it ran) matched.
  type: bool
  returned: always
  sample: true
reachable:
  description: Whether the S3 endpoint answered.
  type: bool
  returned: always
  sample: true
error:
  description: Why the endpoint or bucket is not healthy (secret removed).
  type: str
  returned: when RV(healthy) is false
  sample: >-
    cannot list objects (at http://10.0.0.7:9000, bucket 'pg-backups'): bucket 'pg-backups' does not exist (NoSuchBucket)
endpoint:
  description: The endpoint checked (O(endpoint_url), or AWS S3 of O(region)).
  type: str
  returned: always
  sample: http://10.0.0.7:9000
minio_health:
  description:
    - Answer of MinIO's C(/minio/health/live); null when the server is not MinIO or the module
      uses AWS S3.
  type: bool
  returned: always
  sample: true
latency_ms:
  description: Milliseconds per request made, by request name.
  type: dict
  returned: always
  sample: {"minio_health": 1.2, "list_objects": 3.4}
bucket_exists:
  description: Whether O(bucket) exists; null when the endpoint is unreachable or access is denied.
  type: bool
  returned: when O(bucket) is set
  sample: true
listable:
  description: Whether the objects of O(bucket) can be listed.
  type: bool
  returned: when O(bucket) is set
  sample: true
probe:
  description: Result of the write probe.
  type: dict
  returned: when O(write_probe=true)
  contains:
    skipped:
      description: Whether the probe was skipped (check mode, or the bucket is missing or unreachable).
      type: bool
      sample: false
    reason:
      description: Why the probe was skipped or failed.
      type: str
      returned: when the probe was skipped or failed
      sample: check mode - the write probe writes an object, so it was skipped
    key:
      description: Key of the probe object.
      type: str
      returned: when the probe ran
      sample: .runbook-health/6f1c2a9e4b7d4e0a.probe
    put_ms:
      description: Milliseconds of the C(PutObject).
      type: float
      returned: when the probe ran
      sample: 4.1
    get_ms:
      description: Milliseconds of the C(GetObject).
      type: float
      returned: when the probe ran
      sample: 2.3
    delete_ms:
      description: Milliseconds of the C(DeleteObject).
      type: float
      returned: when the probe ran
      sample: 2.0
    matched:
      description: Whether the object read back equals the one written.
      type: bool
      returned: when the probe ran
      sample: true
count:
  description: Objects under O(count_prefix) (at most O(count_limit)).
  type: int
  returned: when O(count_prefix) is set and the bucket is listable
  sample: 1234
size_bytes:
  description: Total size of the counted objects.
  type: int
  returned: when O(count_prefix) is set and the bucket is listable
  sample: 987654321
truncated:
  description: Whether more than O(count_limit) objects exist under O(count_prefix).
  type: bool
  returned: when O(count_prefix) is set and the bucket is listable
  sample: false
duration_s:
  description: Seconds the module spent.
  type: float
  returned: always
  sample: 0.052
"""

import secrets
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.urls import open_url

from ansible_collections.runbook.stack.plugins.module_utils._s3 import (
    BOTO3_IMPORT_ERROR,
    HAS_BOTO3,
    S3Conn,
    S3Error,
    client,
    conn_info,
    error_code,
    is_credential_error,
    is_unreachable,
    s3_argument_spec,
    translate,
)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def minio_health(info: S3Conn) -> tuple[bool | None, float | None]:
    """(live?, latency) from MinIO's liveness endpoint; (None, ...) when the server is not MinIO."""
    if not info.endpoint_url:
        return None, None
    started = time.monotonic()
    try:
        resp = open_url(
            f"{info.endpoint_url}/minio/health/live",
            method="GET",
            timeout=info.connect_timeout,
            validate_certs=info.validate_certs,
            ca_path=info.ca_bundle,
            follow_redirects="none",
        )
        status, server = resp.getcode(), resp.headers.get("Server", "")
    except Exception as exc:  # pylint: disable=broad-except  # HTTPError carries the answer, others mean no answer
        status = getattr(exc, "code", None)
        headers = getattr(exc, "headers", None)
        server = headers.get("Server", "") if headers is not None else ""
    latency = _ms(started)
    if status is None or "minio" not in str(server).lower():
        return None, latency
    return status == 200, latency


def check_bucket(cli: Any, info: S3Conn, bucket: str, latency: dict[str, float]) -> dict[str, Any]:
    """reachable / bucket_exists / listable / error for one bucket; credential faults raise S3Error."""
    started = time.monotonic()
    try:
        cli.list_objects_v2(Bucket=bucket, MaxKeys=1)
        latency["list_objects"] = _ms(started)
        return dict(reachable=True, bucket_exists=True, listable=True)
    except Exception as exc:  # pylint: disable=broad-except  # translated below
        latency["list_objects"] = _ms(started)
        err = translate(exc, info, "list objects", bucket=bucket)
        if is_unreachable(exc):
            return dict(reachable=False, bucket_exists=None, listable=False, error=str(err))
        if is_credential_error(exc) or error_code(exc) is None:
            raise err from None
        code = error_code(exc)
    if code in ("NoSuchBucket", "404"):
        return dict(reachable=True, bucket_exists=False, listable=False, error=str(err))
    exists: bool | None = None
    started = time.monotonic()
    try:
        cli.head_bucket(Bucket=bucket)
        exists = True
    except Exception as exc:  # pylint: disable=broad-except  # only the answer matters here
        if error_code(exc) in ("404", "NoSuchBucket"):
            exists = False
    latency["head_bucket"] = _ms(started)
    return dict(reachable=True, bucket_exists=exists, listable=False, error=str(err))


def check_endpoint(cli: Any, info: S3Conn, latency: dict[str, float]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        cli.list_buckets()
    except Exception as exc:  # pylint: disable=broad-except  # translated below
        latency["list_buckets"] = _ms(started)
        err = translate(exc, info, "list buckets")
        if is_unreachable(exc):
            return dict(reachable=False, error=str(err))
        if is_credential_error(exc) or error_code(exc) is None:
            raise err from None
        # the server answered (e.g. AccessDenied for ListBuckets): it is reachable
        return dict(reachable=True)
    latency["list_buckets"] = _ms(started)
    return dict(reachable=True)


def write_probe(cli: Any, info: S3Conn, bucket: str, prefix: str) -> dict[str, Any]:
    key = f"{prefix}{secrets.token_hex(8)}.probe"
    body = secrets.token_bytes(64)
    result: dict[str, Any] = dict(skipped=False, key=key, matched=False)
    step = "put object"
    put_done = False
    try:
        started = time.monotonic()
        cli.put_object(Bucket=bucket, Key=key, Body=body)
        put_done = True
        result["put_ms"] = _ms(started)
        step = "get object"
        started = time.monotonic()
        data = cli.get_object(Bucket=bucket, Key=key)["Body"].read()
        result["get_ms"] = _ms(started)
        result["matched"] = data == body
        if not result["matched"]:
            result["reason"] = f"object {key!r} read back differs from what was written"
    except Exception as exc:  # pylint: disable=broad-except  # translated below
        err = translate(exc, info, step, bucket=bucket, key=key)
        if is_credential_error(exc):
            raise err from None
        result["reason"] = str(err)
    if put_done:
        started = time.monotonic()
        try:
            cli.delete_object(Bucket=bucket, Key=key)
            result["delete_ms"] = _ms(started)
        except Exception as exc:  # pylint: disable=broad-except  # translated below
            result["matched"] = False
            result["reason"] = str(translate(exc, info, "delete the probe object", bucket=bucket, key=key))
    return result


def count_objects(cli: Any, info: S3Conn, bucket: str, prefix: str, limit: int) -> dict[str, Any]:
    """count / size_bytes / truncated of at most ``limit`` objects under ``prefix``."""
    count = size = 0
    truncated = False
    kwargs: dict[str, Any] = dict(Bucket=bucket, Prefix=prefix)
    try:
        while True:
            page = cli.list_objects_v2(MaxKeys=min(1000, limit - count + 1), **kwargs)
            for item in page.get("Contents", []):
                if count >= limit:
                    truncated = True
                    break
                count += 1
                size += int(item.get("Size", 0))
            if truncated or not page.get("IsTruncated"):
                break
            if count >= limit:
                truncated = True
                break
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
    except Exception as exc:  # pylint: disable=broad-except  # translated below
        raise translate(exc, info, f"count objects under prefix {prefix!r}", bucket=bucket) from None
    return dict(count=count, size_bytes=size, truncated=truncated)


def check_options(params: dict[str, Any]) -> None:
    if params["count_limit"] < 1:
        raise S3Error(f"count_limit must be 1 or more, got {params['count_limit']}")
    if not params["bucket"]:
        for name in ("write_probe", "count_prefix"):
            if params[name] not in (None, False):
                raise S3Error(f"{name} needs the bucket option")


def main() -> None:
    argument_spec = s3_argument_spec() | dict(
        bucket=dict(type="str"),
        write_probe=dict(type="bool", default=False),
        probe_prefix=dict(type="str", default=".runbook-health/"),
        count_prefix=dict(type="str"),
        count_limit=dict(type="int", default=10000),
        fail_on_unhealthy=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=BOTO3_IMPORT_ERROR)

    started = time.monotonic()
    params = module.params
    bucket = params["bucket"]
    try:
        check_options(params)
        info = conn_info(params)
        cli = client(info)
        latency: dict[str, float] = {}
        live, live_ms = minio_health(info)
        if live_ms is not None:
            latency["minio_health"] = live_ms
        result: dict[str, Any] = dict(endpoint=info.where, minio_health=live, latency_ms=latency)
        if bucket:
            result.update(check_bucket(cli, info, bucket, latency))
        else:
            result.update(check_endpoint(cli, info, latency))
        healthy = result["reachable"] and (not bucket or bool(result.get("listable")))
        if params["write_probe"]:
            if module.check_mode:
                result["probe"] = dict(
                    skipped=True, reason="check mode - the write probe writes an object, so it was skipped"
                )
            elif not result.get("bucket_exists"):
                result["probe"] = dict(skipped=True, reason=f"bucket {bucket!r} is not reachable or does not exist")
            else:
                result["probe"] = write_probe(cli, info, bucket, params["probe_prefix"])
                if not result["probe"]["matched"]:
                    healthy = False
                    result.setdefault("error", result["probe"].get("reason"))
        if params["count_prefix"] is not None and result.get("listable"):
            result.update(count_objects(cli, info, bucket, params["count_prefix"], params["count_limit"]))
    except S3Error as exc:
        module.fail_json(msg=str(exc), duration_s=round(time.monotonic() - started, 3))
    result["healthy"] = bool(healthy)
    result["duration_s"] = round(time.monotonic() - started, 3)
    if not healthy and params["fail_on_unhealthy"]:
        module.fail_json(msg=result.get("error") or f"S3 at {info.where} is not healthy", **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
