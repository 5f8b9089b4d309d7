"""botocore errors mapped to casstore's hierarchy, in one place.

See the "Errors" table in docs/backends.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from aiohttp import ClientConnectionError, ClientPayloadError
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ResponseStreamingError,
)

from casstore.backends._where import Where
from casstore.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    ObjectNotFoundError,
)

_PERMISSIONS = {
    "stat": "s3:GetObject (and s3:ListBucket, without which S3 answers 403 for missing objects)",
    "put": "s3:PutObject",
    "get": "s3:GetObject",
    "touch": "s3:GetObject and s3:PutObject (the refresh copies the object onto itself)",
    "delete": "s3:DeleteObject",
    "scan": "s3:ListBucket",
}
NOT_FOUND_CODES = {"NoSuchKey", "NotFound", "404"}
_UNAVAILABLE_CODES = {"SlowDown", "ServiceUnavailable", "RequestTimeout", "InternalError"}
_WRONG_REGION_CODES = {"PermanentRedirect", "AuthorizationHeaderMalformed", "301"}
TRANSIENT = (
    ClientPayloadError,
    ClientConnectionError,
    IncompleteReadError,
    ResponseStreamingError,
    asyncio.IncompleteReadError,
)
"""Transport failures below botocore: a reset connection, a body cut mid-transfer."""


class ConditionalConflict(Exception):
    """A concurrent conditional write of the same key was in progress (409)."""


@contextlib.contextmanager
def translate_errors(operation: str, bucket: str, where: Callable[[], Where]) -> Iterator[None]:
    """Map botocore errors raised inside to casstore's hierarchy.

    Args:
        operation: The backend call (``stat``, ``put``, ...), for the message
            and the permission it needs.
        bucket: The bucket, named when it does not exist.
        where: Returns what the error is about; called only when there is
            an error to describe.
    """
    try:
        yield
    except ClientError as exc:
        _raise_client_error(operation, bucket, where(), exc)
    except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as exc:
        about = where()
        raise BackendPermissionError(
            f"no usable AWS credentials for S3 {operation} ({exc}); they are looked up in "
            "the environment, the shared config and credentials files (profile=) and "
            f"container or instance roles{about.suffix}",
            key=about.key,
            backend=about.backend,
        ) from exc
    except (ConnectionError, HTTPClientError) as exc:
        about = where()
        raise BackendUnavailableError(
            f"S3 {operation} could not reach the server: {exc}{about.suffix}",
            key=about.key,
            backend=about.backend,
        ) from exc
    except TRANSIENT as exc:
        # Worth another try: the driver retries BackendUnavailableError.
        raise BackendUnavailableError(
            f"S3 {operation} was cut off: {type(exc).__name__}: {exc}{where()}"
        ) from exc
    except BotoCoreError as exc:
        about = where()
        raise BackendError(
            f"S3 {operation} failed: {exc}{about.suffix}", key=about.key, backend=about.backend
        ) from exc


def _raise_client_error(operation: str, bucket: str, about: Where, exc: ClientError) -> NoReturn:
    code = error_code(exc)
    where = about.suffix
    attributes = {"key": about.key, "backend": about.backend}
    response: Any = exc.response
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = response.get("Error", {}).get("Message") or ""
    reason = f"{code} (HTTP {status}){': ' + message if message else ''}"
    if code == "NoSuchBucket":
        raise BackendUnavailableError(
            f"S3 bucket {bucket!r} does not exist at this endpoint: {reason}{where}",
            **attributes,
        ) from exc
    if code in NOT_FOUND_CODES or code == "NoSuchUpload":
        raise ObjectNotFoundError(f"object not found in S3: {reason}{where}", **attributes) from exc
    if code == "InvalidObjectState":
        raise BackendError(
            f"S3 object is archived and cannot be read or copied: {reason}; keep casstore "
            f"objects in an instant-access storage class{where}",
            **attributes,
        ) from exc
    if status == 403:
        raise BackendPermissionError(
            f"S3 refused {operation}: {reason}; check the credentials and that they "
            f"allow {_PERMISSIONS.get(operation, 's3:GetObject')} on the bucket{where}",
            **attributes,
        ) from exc
    if code in _WRONG_REGION_CODES or status == 301:
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        actual = headers.get("x-amz-bucket-region") or response.get("Error", {}).get("Region")
        hint = f"; the bucket is in region {actual}, set region={actual}" if actual else ""
        raise BackendError(
            f"S3 {operation} was sent to the wrong region: {reason}{hint}{where}",
            **attributes,
        ) from exc
    if code == "NotImplemented" or status == 501:
        raise BackendError(
            f"the S3 server does not implement {operation}: {reason}; if it lacks "
            f"conditional writes (If-None-Match), set conditional_writes=false{where}",
            **attributes,
        ) from exc
    if code in _UNAVAILABLE_CODES or (isinstance(status, int) and status >= 500):
        raise BackendUnavailableError(
            f"S3 {operation} failed, the server is unavailable or throttling: {reason}{where}",
            **attributes,
        ) from exc
    raise BackendError(f"S3 {operation} failed: {reason}{where}", **attributes) from exc


def error_code(exc: ClientError) -> str:
    """Return the S3 error code of ``exc`` (``NoSuchKey``, ``412``, ...)."""
    response: Any = exc.response
    return str(response.get("Error", {}).get("Code", ""))


def raise_unless_lost_race(exc: ClientError) -> None:
    """Return if ``exc`` says another writer created the object first (412).

    Raises:
        ConditionalConflict: For 409, a concurrent conditional write in flight.
        ClientError: ``exc`` itself, for anything else.
    """
    code = error_code(exc)
    if code == "ConditionalRequestConflict":
        raise ConditionalConflict from exc
    if code != "PreconditionFailed":
        raise exc
