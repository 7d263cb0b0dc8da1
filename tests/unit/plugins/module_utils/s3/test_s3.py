# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the S3 helpers (plugins/module_utils/_s3/: connection, errors, retention); no network."""

from __future__ import annotations

import datetime as dt

import botocore.exceptions
import pytest

from ansible_collections.runbook.stack.plugins.module_utils._s3 import connection, errors, retention

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SECRET = "s3cr3t-VALUE-never-shown"


def conn(**kw) -> connection.S3Conn:
    params = dict(endpoint_url="http://127.0.0.1:9000", access_key="AK", secret_key=SECRET) | kw
    return connection.conn_info(params)


def obj(key: str, days_old: float, size: int = 10) -> dict:
    return {"Key": key, "LastModified": NOW - dt.timedelta(days=days_old), "Size": size}


def client_error(code: str, message: str = "msg", status: int = 400) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "ListObjectsV2"
    )


# --- argument spec -----------------------------------------------------------------------------


def test_argument_spec_secrets_are_no_log_and_env_fallbacks():
    spec = connection.s3_argument_spec()
    assert spec["secret_key"]["no_log"] is True
    assert spec["session_token"]["no_log"] is True
    assert spec["endpoint_url"]["fallback"][1] == ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
    assert spec["access_key"]["fallback"][1] == ["AWS_ACCESS_KEY_ID"]
    assert spec["access_key"]["aliases"] == ["aws_access_key_id"]
    assert spec["secret_key"]["fallback"][1] == ["AWS_SECRET_ACCESS_KEY"]
    assert spec["region"]["fallback"][1] == ["AWS_REGION", "AWS_DEFAULT_REGION"]
    assert spec["region"]["default"] == "us-east-1"
    assert spec["ca_bundle"]["fallback"][1] == ["AWS_CA_BUNDLE"]
    assert spec["addressing_style"]["default"] == "path"


# --- endpoint validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["not a url", "ftp://host:21", "127.0.0.1:9000", "http://", "http:///path", "http://host:notaport"]
)
def test_invalid_endpoint_url_names_the_option(url):
    with pytest.raises(errors.S3Error, match=r"^endpoint_url .* is not a valid URL"):
        connection.validate_endpoint_url(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:58333/", "http://127.0.0.1:58333"),
        ("https://s3.example.com", "https://s3.example.com"),
        (None, None),
        ("", None),
    ],
)
def test_valid_endpoint_url(url, expected):
    assert connection.validate_endpoint_url(url) == expected


def test_conn_info_needs_both_keys_and_positive_timeouts():
    with pytest.raises(errors.S3Error, match="access_key and secret_key"):
        connection.conn_info({"access_key": "AK"})
    with pytest.raises(errors.S3Error, match="connect_timeout"):
        connection.conn_info({"connect_timeout": 0})
    assert SECRET not in repr(conn())


def test_client_is_bounded():
    cli = connection.client(conn(connect_timeout=2, read_timeout=3))
    cfg = cli.meta.config
    assert cfg.connect_timeout == 2
    assert cfg.read_timeout == 3
    assert cfg.retries["total_max_attempts"] == 3  # max_attempts=2 retries after the first try
    assert cfg.s3["addressing_style"] == "path"
    assert cli.meta.endpoint_url == "http://127.0.0.1:9000"


# --- error translation -------------------------------------------------------------------------


def test_missing_bucket():
    msg = str(errors.translate(client_error("NoSuchBucket", status=404), conn(), "list objects", bucket="x"))
    assert "bucket 'x' does not exist (NoSuchBucket)" in msg
    assert "http://127.0.0.1:9000" in msg
    assert msg.startswith("cannot list objects")


def test_head_bucket_404_without_code_text():
    exc = client_error("404", message="Not Found", status=404)
    assert "bucket 'b' does not exist (404)" in str(errors.translate(exc, conn(), "check bucket", bucket="b"))
    on_key = str(errors.translate(exc, conn(), "head object", bucket="b", key="k"))
    assert "object 'k' does not exist in bucket 'b' (404)" in on_key


def test_wrong_secret_is_named_and_never_shown():
    exc = client_error("SignatureDoesNotMatch", message=f"signature computed with {SECRET}", status=403)
    msg = str(errors.translate(exc, conn(), "list buckets"))
    assert "access denied: the access key or secret key is wrong (SignatureDoesNotMatch)" in msg
    assert SECRET not in msg
    assert errors.is_credential_error(exc)
    assert not errors.is_credential_error(client_error("NoSuchBucket"))


def test_unknown_code_keeps_server_message_scrubbed():
    exc = client_error("SlowDown", message=f"please slow down {SECRET}", status=503)
    msg = str(errors.translate(exc, conn(), "put object", bucket="b", key="k ü"))
    assert "please slow down ******** (SlowDown)" in msg
    assert "key 'k ü'" in msg


def test_connection_errors():
    exc = botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1/b")
    msg = str(errors.translate(exc, conn(endpoint_url="http://127.0.0.1:1"), "list objects", bucket="b"))
    assert "endpoint http://127.0.0.1:1 is unreachable" in msg
    assert errors.is_unreachable(exc)
    assert not errors.is_unreachable(client_error("AccessDenied"))


def test_no_credentials_and_param_validation():
    msg = str(errors.translate(botocore.exceptions.NoCredentialsError(), conn(), "list buckets"))
    assert "no credentials" in msg
    pexc = botocore.exceptions.ParamValidationError(report='Invalid bucket name "a b"')
    assert "invalid request parameters" in str(errors.translate(pexc, conn(), "list objects", bucket="a b"))


# --- retention selection -----------------------------------------------------------------------


def test_age_selection():
    objs = [obj("new", 1), obj("edge", 7), obj("old", 8), obj("older", 30)]
    delete, keep = retention.select_for_retention(objs, NOW, 7)
    # "edge" is exactly 7 days old: not strictly older than the cutoff
    assert [o["Key"] for o in delete] == ["older", "old"]
    assert [o["Key"] for o in keep] == ["edge", "new"]


def test_fractional_days():
    delete, _keep = retention.select_for_retention([obj("a", 0.4), obj("b", 0.6)], NOW, 0.5)
    assert [o["Key"] for o in delete] == ["b"]


def test_min_keep_protects_newest_even_when_old():
    objs = [obj(f"k{i}", 100 + i) for i in range(5)]  # k0 newest, all older than 30 days
    delete, keep = retention.select_for_retention(objs, NOW, 30, min_keep=2)
    assert sorted(o["Key"] for o in keep) == ["k0", "k1"]
    assert sorted(o["Key"] for o in delete) == ["k2", "k3", "k4"]


def test_min_keep_larger_than_count_deletes_nothing():
    delete, keep = retention.select_for_retention([obj("a", 50), obj("b", 60)], NOW, 1, min_keep=5)
    assert delete == []
    assert len(keep) == 2


def test_min_keep_counts_young_objects_too():
    objs = [obj("young", 1), obj("old1", 40), obj("old2", 50)]
    delete, _keep = retention.select_for_retention(objs, NOW, 30, min_keep=2)
    assert [o["Key"] for o in delete] == ["old2"]


def test_negative_values_rejected():
    with pytest.raises(errors.S3Error, match="older_than_days"):
        retention.select_for_retention([], NOW, -1)
    with pytest.raises(errors.S3Error, match="min_keep"):
        retention.select_for_retention([], NOW, 1, min_keep=-1)


def test_batches():
    assert retention.batches(list(range(2500)), 1000) == [
        list(range(1000)),
        list(range(1000, 2000)),
        list(range(2000, 2500)),
    ]
    assert retention.batches([], 10) == []
    with pytest.raises(errors.S3Error, match="batch_size"):
        retention.batches([1], 1001)
