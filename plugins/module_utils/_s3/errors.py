# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 faults as operator messages: :class:`S3Error`, :func:`translate` and the :func:`s3_call` decorator (private).

Every foreseeable fault is raised as S3Error with a message that names the endpoint, bucket or key
and the cause, and never contains the secret key or session token. This module also guards the
boto3 import once for the package (``HAS_BOTO3``, ``BOTO3_IMPORT_ERROR``).
"""

from __future__ import annotations

import functools
import inspect
import string
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ansible_collections.runbook.stack.plugins.module_utils._common.text import one_line

try:
    import boto3  # noqa: F401  # pylint: disable=unused-import  # HAS_BOTO3 is about boto3 as a whole
    import botocore.exceptions

    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported by the module via missing_required_lib
    botocore = None
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = traceback.format_exc()

if TYPE_CHECKING:  # pragma: no cover
    from ansible_collections.runbook.stack.plugins.module_utils._s3.connection import S3Conn


class S3Error(Exception):
    """A foreseeable S3 fault, already phrased for the operator."""


# S3 error codes and what they mean to an operator.
_CODE_TEXT = {
    "NoSuchBucket": "bucket {bucket} does not exist",
    "NoSuchKey": "object {key} does not exist in bucket {bucket}",
    "SignatureDoesNotMatch": "access denied: the access key or secret key is wrong",
    "InvalidAccessKeyId": "access denied: the access key is unknown to the server",
    "InvalidClientTokenId": "access denied: the access key is unknown to the server",
    "ExpiredToken": "access denied: the session token has expired",
    "InvalidToken": "access denied: the session token is invalid",
    "AccessDenied": "access denied to {what}",
    "AllAccessDisabled": "access denied to {what}",
    "PermanentRedirect": "bucket {bucket} is in another region or needs another endpoint",
    "AuthorizationHeaderMalformed": "the request was signed for the wrong region (region option)",
}
_HTTP_TEXT = {"404": "bucket {bucket} does not exist", "403": "access denied to {what}"}
_CREDENTIAL_CODES = frozenset(
    {"SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidClientTokenId", "ExpiredToken", "InvalidToken"}
)
_TRANSIENT_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "500", "502", "503"})


def error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ClientError (``NoSuchBucket``, ``403``, ...), else None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = (response.get("Error") or {}).get("Code")
    if code:
        return str(code)
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return str(status) if status else None


def is_credential_error(exc: BaseException) -> bool:
    return error_code(exc) in _CREDENTIAL_CODES


def translate(
    exc: BaseException, info: S3Conn, verb: str, bucket: str | None = None, key: str | None = None
) -> S3Error:
    """One S3Error for any botocore fault: 'cannot <verb> (<endpoint>, bucket 'b', key 'k'): <cause>'."""
    secrets = info.secrets
    bucket_text = repr(bucket) if bucket is not None else "(none)"
    key_text = repr(key) if key is not None else "(none)"
    what = f"key {key_text} in bucket {bucket_text}" if key is not None else f"bucket {bucket_text}"
    if bucket is None:
        what = info.where
    cause: str
    code = error_code(exc)
    if code:
        template = _CODE_TEXT.get(code or "") or _HTTP_TEXT.get(code or "")
        if code == "404" and key is not None:  # HEAD requests carry no error body: 404 on a key is the key
            template = _CODE_TEXT["NoSuchKey"]
        if template:
            cause = f"{template.format(bucket=bucket_text, key=key_text, what=what)} ({code})"
        else:
            message = ((getattr(exc, "response", None) or {}).get("Error") or {}).get("Message") or str(exc)
            cause = f"{message} ({code})" if code else str(message)
    elif HAS_BOTO3 and isinstance(exc, botocore.exceptions.NoCredentialsError):
        cause = "no credentials: set access_key and secret_key (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
    elif HAS_BOTO3 and isinstance(
        exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError)
    ):
        cause = f"endpoint {info.where} is unreachable: {exc}"
    elif HAS_BOTO3 and isinstance(exc, botocore.exceptions.ReadTimeoutError):
        cause = f"endpoint {info.where} did not answer within {info.read_timeout} s"
    elif HAS_BOTO3 and isinstance(exc, botocore.exceptions.SSLError):
        cause = f"TLS verification of {info.where} failed (validate_certs, ca_bundle): {exc}"
    elif HAS_BOTO3 and isinstance(exc, botocore.exceptions.ParamValidationError):
        cause = f"invalid request parameters: {exc}"
    elif HAS_BOTO3 and isinstance(exc, botocore.exceptions.InvalidRegionError):
        cause = f"invalid region {info.region!r}"
    elif isinstance(exc, ValueError) and "endpoint" in str(exc).lower():
        cause = f"endpoint_url {info.endpoint_url!r} is not valid: {exc}"
    else:
        cause = f"{type(exc).__name__}: {exc}"
    target = f"at {info.where}"
    if bucket is not None:
        target += f", bucket {bucket_text}"
    if key is not None:
        target += f", key {key_text}"
    return S3Error(one_line(f"cannot {verb} ({target}): {cause}", *secrets))


def is_unreachable(exc: BaseException) -> bool:
    """True for faults that mean the endpoint cannot be reached (as opposed to a refusal by the server)."""
    if not HAS_BOTO3:
        return False
    return isinstance(
        exc,
        (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError,
            botocore.exceptions.SSLError,
            botocore.exceptions.ConnectionClosedError,
        ),
    )


def is_transient(exc: BaseException) -> bool:
    """A fault worth one more try of the same request (the server is busy or dropped the connection)."""
    if error_code(exc) in _TRANSIENT_CODES:
        return True
    return HAS_BOTO3 and isinstance(
        exc,
        (
            botocore.exceptions.ConnectionClosedError,
            botocore.exceptions.ReadTimeoutError,
            botocore.exceptions.IncompleteReadError,
            botocore.exceptions.ResponseStreamingError,
        ),
    )


# ---------------------------------------------------------------------------------------------
# @s3_call: translate() around one S3 call (amazon.aws errors.py common_error_handler)
# ---------------------------------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])
_DEFAULT: Any = object()  # "find it by the usual parameter name" (see s3_call)


def _roots(template: str) -> set[str]:
    """The argument names a str.format template refers to: 'f' for '{f.path}', 'prefix' for '{prefix!r}'."""
    names = set()
    for _text, field_name, _spec, _conversion in string.Formatter().parse(template):
        if field_name is None:
            continue
        root = field_name.split(".", 1)[0].split("[", 1)[0]
        if not root or root.isdigit():
            raise TypeError(f"s3_call template {template!r}: use argument names, not positions")
        names.add(root)
    return names


def _attribute(arguments: dict[str, Any], path: str) -> Any:
    """The value of a dotted path ('info', 'self.info', 'dest.info') among bound arguments."""
    root, *attrs = path.split(".")
    value = arguments[root]
    for attr in attrs:
        value = getattr(value, attr)
    return value


def s3_call(
    what: str, *, bucket: str | None = _DEFAULT, key: str | None = _DEFAULT, info: str = _DEFAULT
) -> Callable[[F], F]:
    """Decorator: the wrapped S3 call raises S3Error only; any other exception becomes
    ``translate(exc, info, what, bucket, key)`` (raised ``from None``: no botocore chain reaches the user).

    ``what`` (the verb of the message), ``bucket`` and ``key`` are ``str.format`` templates over the
    call's bound arguments, formatted only when a fault is translated::

        @s3_call("list prefix {prefix!r}")                          # self.info, self.bucket
        def has_objects(self, prefix): ...

        @s3_call("start the upload of {f.path}", key="{f.key}")
        def _create(self, f): ...

    Defaults: ``bucket`` is the ``bucket`` argument, else ``self.bucket`` when self has one, else no
    bucket (``None`` says so explicitly); ``key`` is the ``key`` argument, else none; ``info`` (a dotted
    path to the S3Conn, e.g. ``"dest.info"``) is the ``info`` argument, else ``self.info``. An S3Error
    raised inside passes unchanged; KeyboardInterrupt and SystemExit are not caught. A generator
    function is wrapped around its iteration, where a listing fails.
    """

    def decorate(func: F) -> F:
        signature = inspect.signature(func)
        params = signature.parameters
        info_path = (
            info if info is not _DEFAULT else ("self.info" if "self" in params and "info" not in params else "info")
        )
        used = _roots(what) | {info_path.split(".")[0]}
        for template in (bucket, key):
            if isinstance(template, str):
                used |= _roots(template)
        unknown = sorted(used - set(params))
        if unknown:
            raise TypeError(f"s3_call on {func.__qualname__}: no argument named {', '.join(unknown)}")

        def named(values: dict[str, Any], template: str | None, name: str) -> str | None:
            if template is None:
                return None
            if isinstance(template, str):
                return template.format(**values)
            if name in params:  # the default: the argument of that name, else the attribute of self
                found = values[name]
            else:
                found = getattr(values.get("self"), name, None) if name == "bucket" else None
            return None if found is None else str(found)

        def fault(exc: Exception, args: tuple[Any, ...], kwargs: dict[str, Any]) -> S3Error:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = bound.arguments
            return translate(
                exc,
                _attribute(values, info_path),
                what.format(**values),
                bucket=named(values, bucket, "bucket"),
                key=named(values, key, "key"),
            )

        if inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def generator(*args: Any, **kwargs: Any) -> Any:
                try:
                    yield from func(*args, **kwargs)
                except S3Error:
                    raise
                except Exception as exc:  # pylint: disable=broad-except  # translated
                    raise fault(exc, args, kwargs) from None

            return generator  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except S3Error:
                raise
            except Exception as exc:  # pylint: disable=broad-except  # translated
                raise fault(exc, args, kwargs) from None

        return wrapper  # type: ignore[return-value]

    return decorate
