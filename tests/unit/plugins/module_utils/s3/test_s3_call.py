# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the @s3_call decorator (plugins/module_utils/_s3/errors.py); no network."""

from __future__ import annotations

import botocore.exceptions
import pytest

from ansible_collections.runbook.stack.plugins.module_utils._s3 import connection, errors
from ansible_collections.runbook.stack.plugins.module_utils._s3.errors import S3Error, s3_call

SECRET = "s3cr3t-VALUE-never-shown"
INFO = connection.conn_info({"endpoint_url": "http://127.0.0.1:9000", "access_key": "AK", "secret_key": SECRET})


def client_error(code: str, message: str = "msg", status: int = 400) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "ListObjectsV2"
    )


class Thing:
    """What the decorated methods of S3Storage and SetTransfer look like: self.info and self.bucket."""

    def __init__(self, exc: BaseException | None, bucket: str | None = "bkt") -> None:
        self.info = INFO
        if bucket is not None:
            self.bucket = bucket
        self.exc = exc

    @s3_call("list prefix {prefix!r}")
    def listing(self, prefix: str, limit: int = 5) -> list[str]:
        if self.exc is not None:
            raise self.exc
        return [prefix] * limit

    @s3_call("list objects under prefix {prefix!r}")
    def pages(self, prefix: str):
        yield f"{prefix}a"
        if self.exc is not None:
            raise self.exc
        yield f"{prefix}b"


def test_the_message_is_translate_of_the_formatted_verb_with_self_info_and_bucket():
    with pytest.raises(S3Error) as caught:
        Thing(client_error("NoSuchBucket", status=404)).listing("p/")
    direct = errors.translate(client_error("NoSuchBucket", status=404), INFO, "list prefix 'p/'", bucket="bkt")
    assert str(caught.value) == str(direct)
    assert str(caught.value).startswith("cannot list prefix 'p/' (at http://127.0.0.1:9000, bucket 'bkt'): ")
    assert "bucket 'bkt' does not exist (NoSuchBucket)" in str(caught.value)


def test_no_chain_reaches_the_user_and_the_secret_is_scrubbed():
    with pytest.raises(S3Error) as caught:
        Thing(client_error("SlowDown", message=f"slow down {SECRET}", status=503)).listing(prefix="p/")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert SECRET not in str(caught.value) and "slow down ******** (SlowDown)" in str(caught.value)


def test_the_result_and_the_arguments_pass_unchanged():
    assert Thing(None).listing("k", limit=2) == ["k", "k"]
    assert Thing(None).listing.__name__ == "listing"  # functools.wraps


def test_an_s3error_passes_as_it_is_and_base_exceptions_are_not_caught():
    own = S3Error("cannot do it: because")
    with pytest.raises(S3Error) as caught:
        Thing(own).listing("p/")
    assert caught.value is own
    with pytest.raises(KeyboardInterrupt):
        Thing(KeyboardInterrupt()).listing("p/")


def test_any_other_exception_is_translated():
    with pytest.raises(
        S3Error, match=r"^cannot list prefix 'x' \(at http://127.0.0.1:9000, bucket 'bkt'\): KeyError: 'Contents'$"
    ):
        Thing(KeyError("Contents")).listing("x")
    unreachable = botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9000")
    with pytest.raises(S3Error, match=r"endpoint http://127\.0\.0\.1:9000 is unreachable"):
        Thing(unreachable).listing("x")


def test_without_a_bucket_on_self_the_message_names_the_endpoint():
    with pytest.raises(S3Error, match=r"^cannot list prefix 'x' \(at http://127.0.0.1:9000\): access denied to http"):
        Thing(client_error("AccessDenied", status=403), bucket=None).listing("x")


def test_a_generator_is_translated_where_its_iteration_fails():
    pages = Thing(client_error("NoSuchBucket", status=404)).pages("p/")
    assert next(pages) == "p/a"  # nothing is called before the first item is asked for
    with pytest.raises(S3Error, match=r"^cannot list objects under prefix 'p/' \(at .*, bucket 'bkt'\)"):
        next(pages)
    assert list(Thing(None).pages("q/")) == ["q/a", "q/b"]


def test_plain_functions_take_info_bucket_and_key_from_their_arguments():
    @s3_call("read {what}")
    def read(cli, info, bucket, key, what="the object"):
        raise client_error("404", status=404)

    with pytest.raises(S3Error) as caught:
        read(None, INFO, "b", "k/1")
    assert str(caught.value) == (
        "cannot read the object (at http://127.0.0.1:9000, bucket 'b', key 'k/1'): "
        "object 'k/1' does not exist in bucket 'b' (404)"
    )


def test_explicit_templates_and_info_path():
    class Dest:
        info = INFO
        bucket = "backups"

    class File:
        path = "data/1.bin"
        key = "root/set/data/1.bin"

    @s3_call("write {f.path}", info="dest.info", bucket="{dest.bucket}", key="{f.key}")
    def put(dest, f):
        raise client_error("AccessDenied", status=403)

    with pytest.raises(S3Error) as caught:
        put(Dest(), File())
    assert str(caught.value).startswith(
        "cannot write data/1.bin (at http://127.0.0.1:9000, bucket 'backups', key 'root/set/data/1.bin'): access denied"
    )

    @s3_call("create an S3 client", bucket=None)
    def make(info, bucket):
        raise ValueError("Invalid endpoint: x")

    with pytest.raises(S3Error, match=r"^cannot create an S3 client \(at http://127.0.0.1:9000\): endpoint_url"):
        make(INFO, "ignored")


def test_a_template_naming_no_argument_fails_at_decoration():
    with pytest.raises(TypeError, match="no argument named prefx"):

        @s3_call("list prefix {prefx!r}")
        def listing(info, prefix):
            return prefix

    with pytest.raises(TypeError, match="no argument named info"):

        @s3_call("list")
        def no_info(cli, bucket):
            return bucket

    with pytest.raises(TypeError, match="argument names, not positions"):

        @s3_call("list {0}")
        def positional(info, prefix):
            return prefix


def test_client_is_decorated():
    """client() (connection.py) translates through @s3_call: an endpoint botocore refuses is named."""
    bad = connection.S3Conn(
        endpoint_url="http://exa mple", access_key="AK", secret_key=SECRET, session_token=None, region="us-east-1"
    )
    with pytest.raises(S3Error, match=r"^cannot create an S3 client \(at http://exa mple\): "):
        connection.client(bad)
