"""The S3 backend: objects in an S3 bucket (AWS, MinIO, Ceph, R2, ...).

This module is the only one in casstore that imports ``aioboto3`` and
``botocore``; it needs the ``s3`` extra (``pip install casstore[s3]``), and
importing it without that extra raises an error saying so (both a
:class:`~casstore.errors.ConfigurationError` and an ``ImportError``).

See docs/backends.md for configuration, URL options, IAM permissions,
lifecycle pairing and the key layout on S3.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar, get_args
from urllib.parse import unquote, urlsplit

from casstore._aio import gather_cancel_on_error
from casstore._keys import check_key
from casstore._url import url_flag, url_options
from casstore.backends._base import Backend, ObjectStat
from casstore.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
    IntegrityError,
    ObjectNotFoundError,
)

try:
    import aioboto3
    from aiobotocore.config import AioConfig
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        CredentialRetrievalError,
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
        ProfileNotFound,
    )
except ImportError as _exc:

    class S3DependencyError(ConfigurationError, ImportError):
        """The S3 backend's optional dependencies are not installed."""

    raise S3DependencyError(
        f"the S3 backend needs aioboto3: pip install casstore[s3] ({_exc})"
    ) from _exc

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import (
        CompletedPartTypeDef,
        CompleteMultipartUploadRequestTypeDef,
        PutObjectRequestTypeDef,
    )

__all__ = ["S3Backend"]

_T = TypeVar("_T")

RetryMode = Literal["standard", "adaptive"]
AddressingStyle = Literal["auto", "path", "virtual"]

_MIB = 1024 * 1024
MIN_PART_SIZE = 5 * _MIB
"""S3's smallest part size (every part but the last)."""
MAX_PARTS = 10_000
"""S3's largest number of parts in one multipart upload."""

DEFAULT_RETRY_MODE: RetryMode = "standard"
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_MAX_POOL_CONNECTIONS = 32
"""The driver's default ``max_concurrency``: one connection per request in flight."""
DEFAULT_MULTIPART_THRESHOLD = 16 * _MIB
DEFAULT_MULTIPART_PART_SIZE = 8 * _MIB
DEFAULT_MULTIPART_CONCURRENCY = 4

# A PUT that races a concurrent conditional write of the same key gets 409;
# AWS asks for a retry, which then resolves to 200 (we won) or 412 (they did).
_CONFLICT_ATTEMPTS = 4
_CONFLICT_BACKOFF = 0.05

_BUCKET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")
_MAX_PREFIX_LENGTH = 256
_SIZE_RE = re.compile(r"(\d+)\s*(|B|KiB|MiB|GiB)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": _MIB, "gib": 1024 * _MIB}

_PERMISSIONS = {
    "stat": "s3:GetObject (and s3:ListBucket, without which S3 answers 403 for missing objects)",
    "put": "s3:PutObject",
    "get": "s3:GetObject",
    "touch": "s3:GetObject and s3:PutObject (the refresh copies the object onto itself)",
    "delete": "s3:DeleteObject",
    "scan": "s3:ListBucket",
}
_NOT_FOUND_CODES = {"NoSuchKey", "NotFound", "404"}
_UNAVAILABLE_CODES = {"SlowDown", "ServiceUnavailable", "RequestTimeout", "InternalError"}
_WRONG_REGION_CODES = {"PermanentRedirect", "AuthorizationHeaderMalformed", "301"}

_URL_OPTIONS = {
    "endpoint_url",
    "region",
    "profile",
    "addressing_style",
    "retry_mode",
    "max_attempts",
    "connect_timeout",
    "read_timeout",
    "max_pool_connections",
    "multipart_threshold",
    "multipart_part_size",
    "multipart_concurrency",
    "conditional_writes",
}


class _ConditionalConflict(Exception):
    """A concurrent conditional write of the same key was in progress (409)."""


class S3Backend(Backend):
    """Stores each object in an S3 bucket, under an optional key prefix.

    The object for key ``k`` lives at ``{prefix}/{k}`` in ``bucket``. An
    existence check is a HEAD, a write a PUT (multipart above
    ``multipart_threshold``) sent with ``If-None-Match: *`` so that the loser
    of a create race learns the object exists instead of overwriting it, and
    a refresh (:meth:`touch`) is a server-side copy of the object onto itself,
    which resets its ``LastModified`` and so its age for lifecycle rules.

    The backend either uses a client you pass in (and never closes it), or
    builds one from the other options and the standard AWS credential chain
    (environment, shared config and credentials files, SSO, container and
    instance roles) on first use, and closes it in :meth:`aclose`. Use one
    backend from one event loop: aiobotocore clients are bound to theirs.

    Args:
        bucket: The bucket name (or an access point ARN).
        prefix: Key prefix under which all objects live, e.g. ``"prod"``;
            leading and trailing slashes are ignored.
        client: An aioboto3 S3 client to use as is. The options that build a
            client (``session`` to ``max_pool_connections``) must then be
            left unset.
        session: The aioboto3 session to build the client from; default: a
            new session for ``profile``.
        region: AWS region; default: the session's (``AWS_REGION``, profile).
        endpoint_url: Endpoint of an S3-compatible server, e.g.
            ``http://127.0.0.1:9000``; default: AWS.
        profile: Named profile from the shared AWS config files.
        addressing_style: ``"path"``, ``"virtual"`` or ``"auto"``; default
            ``"path"`` with an ``endpoint_url`` (what most S3-compatible
            servers expect), botocore's choice otherwise.
        retry_mode: botocore's ``"standard"`` (default: exponential backoff
            with jitter on throttling, 5xx and connection errors) or
            ``"adaptive"`` (standard plus client-side rate limiting).
        max_attempts: Attempts per request, the first included (default 5).
        connect_timeout: Seconds to wait for a connection (default 10).
        read_timeout: Seconds to wait for data on a socket (default 60).
        max_pool_connections: Size of the HTTP connection pool (default 32,
            the driver's default ``max_concurrency``; keep them equal).
        multipart_threshold: Objects at least this many bytes are uploaded
            in parts (default 16 MiB).
        multipart_part_size: Size of each part (default 8 MiB, at least 5 MiB);
            raised as needed to stay within 10,000 parts.
        multipart_concurrency: Parts of one object uploaded at once (default 4).
        conditional_writes: Send ``If-None-Match: *`` so a lost create race
            is reported (default). Set False for servers that reject the
            header; servers that ignore it need False too, or
            :attr:`exact_create` would claim a precision they lack.

    Raises:
        ConfigurationError: For an invalid bucket, prefix or option, or a
            profile that does not exist.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: S3Client | None = None,
        session: aioboto3.Session | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        profile: str | None = None,
        addressing_style: AddressingStyle | None = None,
        retry_mode: RetryMode | None = None,
        max_attempts: int | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        max_pool_connections: int | None = None,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        multipart_part_size: int = DEFAULT_MULTIPART_PART_SIZE,
        multipart_concurrency: int = DEFAULT_MULTIPART_CONCURRENCY,
        conditional_writes: bool = True,
    ) -> None:
        self._bucket = _check_bucket(bucket)
        self._prefix = _check_prefix(prefix)
        self._root = f"{self._prefix}/" if self._prefix else ""
        if multipart_threshold < 1:
            raise ConfigurationError(
                f"multipart_threshold must be at least 1 byte, got {multipart_threshold}"
            )
        if multipart_part_size < MIN_PART_SIZE:
            raise ConfigurationError(
                f"multipart_part_size must be at least 5 MiB ({MIN_PART_SIZE} bytes), "
                f"got {multipart_part_size}"
            )
        if multipart_concurrency < 1:
            raise ConfigurationError(
                f"multipart_concurrency must be at least 1, got {multipart_concurrency}"
            )
        self._multipart_threshold = multipart_threshold
        self._part_size = multipart_part_size
        self._multipart_concurrency = multipart_concurrency
        self.exact_create = conditional_writes

        builder_options = {
            "session": session,
            "region": region,
            "endpoint_url": endpoint_url,
            "profile": profile,
            "addressing_style": addressing_style,
            "retry_mode": retry_mode,
            "max_attempts": max_attempts,
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "max_pool_connections": max_pool_connections,
        }
        self._client: S3Client | None = client
        self._client_context: AbstractAsyncContextManager[S3Client] | None = None
        self._client_task: asyncio.Task[S3Client] | None = None
        self._region = region
        self._endpoint_url = endpoint_url
        if client is not None:
            given = sorted(name for name, value in builder_options.items() if value is not None)
            if given:
                raise ConfigurationError(
                    f"options {', '.join(given)} build a client; they cannot be combined with "
                    f"client=, whose own configuration is used [bucket={bucket}]"
                )
            self._session: aioboto3.Session | None = None
            self._config: AioConfig | None = None
            return
        if session is not None and profile is not None:
            raise ConfigurationError("pass either session= or profile=, not both")
        self._session = session or _new_session(profile)
        self._config = _client_config(
            retry_mode=retry_mode or DEFAULT_RETRY_MODE,
            max_attempts=_or_default(max_attempts, DEFAULT_MAX_ATTEMPTS),
            connect_timeout=_or_default(connect_timeout, DEFAULT_CONNECT_TIMEOUT),
            read_timeout=_or_default(read_timeout, DEFAULT_READ_TIMEOUT),
            max_pool_connections=_or_default(max_pool_connections, DEFAULT_MAX_POOL_CONNECTIONS),
            addressing_style=addressing_style or ("path" if endpoint_url else None),
        )

    @classmethod
    def from_url(cls, url: str) -> S3Backend:
        """Build a backend from ``s3://bucket[/prefix][?option=value&...]``.

        Options are the constructor's keyword arguments that build a client,
        plus the multipart options and ``conditional_writes``; sizes are bytes,
        optionally with a ``KiB``/``MiB``/``GiB`` suffix. Credentials never go
        in the URL: they come from the standard AWS chain (or ``profile=``).

        Raises:
            ConfigurationError: For a malformed URL or option, naming it.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != "s3" or not parts.netloc:
            raise ConfigurationError(f"S3 URLs look like s3://bucket/prefix [url={url}]")
        if "@" in parts.netloc or ":" in parts.netloc:
            raise ConfigurationError(
                "S3 URLs take no credentials or port; credentials come from the AWS "
                f"credential chain and the server from ?endpoint_url= [url={url}]"
            )
        options = url_options(url, parts.query, allowed=_URL_OPTIONS)

        def text(name: str) -> str | None:
            return options.get(name) or None

        def number(name: str, convert: type[int] | type[float] = int) -> Any:
            value = options.get(name)
            if value is None:
                return None
            try:
                return convert(value)
            except ValueError:
                raise ConfigurationError(
                    f"option {name} must be a number, got {value!r} [url={url}]"
                ) from None

        def size(name: str, default: int) -> int:
            value = options.get(name)
            if value is None:
                return default
            match = _SIZE_RE.fullmatch(value.strip())
            if match is None:
                raise ConfigurationError(
                    f"option {name} must be a size in bytes, like 16777216 or 16MiB, "
                    f"got {value!r} [url={url}]"
                )
            return int(match[1]) * _SIZE_UNITS[match[2].lower()]

        def choice(name: str, allowed: tuple[str, ...]) -> Any:
            value = text(name)
            if value is not None and value not in allowed:
                raise ConfigurationError(
                    f"option {name} must be one of {', '.join(allowed)}, got {value!r} [url={url}]"
                )
            return value

        return cls(
            unquote(parts.netloc),
            unquote(parts.path),
            endpoint_url=text("endpoint_url"),
            region=text("region"),
            profile=text("profile"),
            addressing_style=choice("addressing_style", get_args(AddressingStyle)),
            retry_mode=choice("retry_mode", get_args(RetryMode)),
            max_attempts=number("max_attempts"),
            connect_timeout=number("connect_timeout", float),
            read_timeout=number("read_timeout", float),
            max_pool_connections=number("max_pool_connections"),
            multipart_threshold=size("multipart_threshold", DEFAULT_MULTIPART_THRESHOLD),
            multipart_part_size=size("multipart_part_size", DEFAULT_MULTIPART_PART_SIZE),
            multipart_concurrency=_or_default(
                number("multipart_concurrency"), DEFAULT_MULTIPART_CONCURRENCY
            ),
            conditional_writes=url_flag(url, options, "conditional_writes", default=True),
        )

    @property
    def bucket(self) -> str:
        """The bucket objects live in."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The key prefix objects live under (no leading or trailing slash)."""
        return self._prefix

    def s3_key(self, key: str) -> str:
        """Return the S3 object key that holds ``key`` (the key is checked first)."""
        return self._root + check_key(key)

    # Backend interface.

    async def stat(self, key: str) -> ObjectStat | None:
        """HEAD the object: its size and ``LastModified``, or ``None`` on 404."""
        s3_key = self.s3_key(key)
        client = await self._s3()
        with self._translate("stat", s3_key):
            try:
                head = await client.head_object(Bucket=self._bucket, Key=s3_key)
            except ClientError as exc:
                if _error_code(exc) in _NOT_FOUND_CODES:
                    return None
                raise
        return ObjectStat(size=head["ContentLength"], modified=head["LastModified"].astimezone(UTC))

    async def put(self, key: str, data: bytes) -> bool:
        """PUT the object with ``If-None-Match: *`` (multipart above the threshold).

        Returns:
            False if the server answered 412: another writer created it first.
        """
        s3_key = self.s3_key(key)
        client = await self._s3()
        write = self._put_multipart if len(data) >= self._multipart_threshold else self._put_single
        for attempt in range(_CONFLICT_ATTEMPTS):
            try:
                return await write(client, s3_key, data)
            except _ConditionalConflict:
                await asyncio.sleep(_CONFLICT_BACKOFF * 2**attempt)
        raise BackendUnavailableError(
            f"S3 kept reporting a conflicting concurrent write after {_CONFLICT_ATTEMPTS} "
            f"attempts{self._where(s3_key)}"
        )

    async def get(self, key: str, *, max_size: int | None = None) -> bytes:
        """GET the object's bytes; ``NoSuchKey`` is an :class:`ObjectNotFoundError`.

        An object whose ``Content-Length`` is above ``max_size`` is refused
        before its body is read; a body without one is read up to the bound.
        """
        s3_key = self.s3_key(key)
        client = await self._s3()
        with self._translate("get", s3_key):
            response = await client.get_object(Bucket=self._bucket, Key=s3_key)
            async with response["Body"] as body:
                length = response.get("ContentLength")
                if max_size is None or (length is not None and length <= max_size):
                    return await body.read()
                if length is not None:
                    raise _too_large(length, max_size, self._where(s3_key), key)
                chunks: list[bytes] = []
                total = 0
                while chunk := await body.read(min(1 << 20, max_size + 1 - total)):
                    chunks.append(chunk)
                    total += len(chunk)
                    if total > max_size:
                        raise _too_large(total, max_size, self._where(s3_key), key)
                return b"".join(chunks)

    async def touch(self, key: str) -> None:
        """Reset ``LastModified`` by copying the object onto itself, server-side."""
        s3_key = self.s3_key(key)
        client = await self._s3()
        with self._translate("touch", s3_key):
            # A server-side copy onto itself is the one S3 request that resets
            # LastModified (what lifecycle rules count from) without sending the
            # bytes; S3 only allows it when something changes, hence REPLACE.
            await client.copy_object(
                Bucket=self._bucket,
                Key=s3_key,
                CopySource={"Bucket": self._bucket, "Key": s3_key},
                MetadataDirective="REPLACE",
            )

    async def delete(self, key: str) -> None:
        """DELETE the object (S3 reports success for a missing one too)."""
        s3_key = self.s3_key(key)
        client = await self._s3()
        with self._translate("delete", s3_key):
            await client.delete_object(Bucket=self._bucket, Key=s3_key)

    async def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        """List keys under ``prefix`` (ListObjectsV2), without the configured prefix.

        Objects under the configured prefix whose names are not valid keys
        (put there by something else) are skipped.
        """
        client = await self._s3()
        pages = aiter(
            client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=self._root + prefix
            )
        )
        while True:
            with self._translate("scan", self._root + prefix):
                try:
                    page = await anext(pages)
                except StopAsyncIteration:
                    return
            for item in page.get("Contents", ()):
                key = item["Key"][len(self._root) :]
                # Skip foreign objects someone else put under our prefix.
                with contextlib.suppress(ValueError):
                    yield check_key(key), item["Size"]

    def describe(self) -> Mapping[str, str]:
        """Return backend, bucket, prefix (if any), region and endpoint."""
        facts = {"backend": "s3", "bucket": self._bucket}
        if self._prefix:
            facts["prefix"] = self._prefix
        client = self._client
        region = client.meta.region_name if client else self._region
        if region is None and self._session is not None:
            region = self._session.region_name
        endpoint = client.meta.endpoint_url if client else self._endpoint_url
        facts["region"] = region or "default"
        facts["endpoint"] = endpoint or "aws"
        return facts

    async def aclose(self) -> None:
        """Close the client this backend built, if any; a passed-in client stays open."""
        task, self._client_task = self._client_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        context, self._client_context = self._client_context, None
        if context is not None:
            self._client = None
            await context.__aexit__(None, None, None)

    # Internals.

    async def _s3(self) -> S3Client:
        """Return the client, building and entering our own on first use."""
        if self._client is not None:
            return self._client
        task = self._client_task
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._client_task = asyncio.ensure_future(self._open_client())
        # Shielded: building a client costs seconds of CPU on a loaded machine;
        # a caller whose deadline passes stops waiting, the build goes on for
        # the next caller instead of starting over.
        return await asyncio.shield(task)

    async def _open_client(self) -> S3Client:
        assert self._session is not None
        context = self._session.client(
            "s3", region_name=self._region, endpoint_url=self._endpoint_url, config=self._config
        )
        with self._translate("client setup", ""):
            client = await context.__aenter__()
        # botocore asks for "100 Continue" before sending a body; a server that
        # never answers it (rclone racing to create a directory) stalls the
        # request. The body is sent at once instead; deadlines bound the rest.
        client.meta.events.register_last("before-call.s3", _no_expect_continue)
        self._client_context = context
        self._client = client
        return client

    async def _put_single(self, client: S3Client, s3_key: str, data: bytes) -> bool:
        request: PutObjectRequestTypeDef = {"Bucket": self._bucket, "Key": s3_key, "Body": data}
        if self.exact_create:
            request["IfNoneMatch"] = "*"
        with self._translate("put", s3_key):
            try:
                await client.put_object(**request)
            except ClientError as exc:
                _raise_unless_lost_race(exc)
                return False
        return True

    async def _put_multipart(self, client: S3Client, s3_key: str, data: bytes) -> bool:
        with self._translate("put", s3_key):
            upload = await client.create_multipart_upload(Bucket=self._bucket, Key=s3_key)
        upload_id = upload["UploadId"]
        try:
            parts = await self._upload_parts(client, s3_key, upload_id, data)
            request: CompleteMultipartUploadRequestTypeDef = {
                "Bucket": self._bucket,
                "Key": s3_key,
                "UploadId": upload_id,
                "MultipartUpload": {"Parts": parts},
            }
            if self.exact_create:
                request["IfNoneMatch"] = "*"
            with self._translate("put", s3_key):
                try:
                    await client.complete_multipart_upload(**request)
                    return True
                except ClientError as exc:
                    _raise_unless_lost_race(exc)
        except BaseException:
            await self._abort_upload(client, s3_key, upload_id)
            raise
        # Lost the race: the upload was never completed, so free its parts.
        await self._abort_upload(client, s3_key, upload_id)
        return False

    async def _upload_parts(
        self, client: S3Client, s3_key: str, upload_id: str, data: bytes
    ) -> list[CompletedPartTypeDef]:
        part_size = max(self._part_size, -(-len(data) // MAX_PARTS))
        limit = asyncio.Semaphore(self._multipart_concurrency)

        async def upload(number: int, start: int) -> CompletedPartTypeDef:
            async with limit:
                # botocore takes bytes or file objects, not memoryviews: each
                # part in flight costs one part-sized copy.
                body = data[start : start + part_size]
                with self._translate("put", s3_key):
                    part = await client.upload_part(
                        Bucket=self._bucket,
                        Key=s3_key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=body,
                    )
            return {"PartNumber": number, "ETag": part["ETag"]}

        starts = range(0, len(data), part_size)
        return await gather_cancel_on_error(
            [upload(number, start) for number, start in enumerate(starts, 1)]
        )

    async def _abort_upload(self, client: S3Client, s3_key: str, upload_id: str) -> None:
        # Best effort: the original error matters more, and an
        # AbortIncompleteMultipartUpload lifecycle rule cleans up leftovers.
        with contextlib.suppress(Exception):
            await asyncio.shield(
                client.abort_multipart_upload(Bucket=self._bucket, Key=s3_key, UploadId=upload_id)
            )

    def _where(self, s3_key: str) -> str:
        facts = self.describe()
        key = f", key={s3_key}" if s3_key else ""
        return (
            f" [bucket={self._bucket}{key}, region={facts['region']}, endpoint={facts['endpoint']}]"
        )

    @contextlib.contextmanager
    def _translate(self, operation: str, s3_key: str) -> Iterator[None]:
        """Map botocore errors to casstore's hierarchy, naming bucket, key, region, endpoint."""
        try:
            yield
        except ClientError as exc:
            self._raise_client_error(operation, s3_key, exc)
        except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as exc:
            raise BackendPermissionError(
                f"no usable AWS credentials for S3 {operation} ({exc}); they are looked up in "
                "the environment, the shared config and credentials files (profile=) and "
                f"container or instance roles{self._where(s3_key)}"
            ) from exc
        except (ConnectionError, HTTPClientError) as exc:
            raise BackendUnavailableError(
                f"S3 {operation} could not reach the server: {exc}{self._where(s3_key)}"
            ) from exc
        except BotoCoreError as exc:
            raise BackendError(f"S3 {operation} failed: {exc}{self._where(s3_key)}") from exc

    def _raise_client_error(self, operation: str, s3_key: str, exc: ClientError) -> NoReturn:
        code = _error_code(exc)
        response: Any = exc.response
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = response.get("Error", {}).get("Message") or ""
        reason = f"{code} (HTTP {status}){': ' + message if message else ''}"
        where = self._where(s3_key)
        if code == "NoSuchBucket":
            raise BackendUnavailableError(
                f"S3 bucket {self._bucket!r} does not exist at this endpoint: {reason}{where}"
            ) from exc
        if code in _NOT_FOUND_CODES or code == "NoSuchUpload":
            raise ObjectNotFoundError(f"object not found in S3: {reason}{where}") from exc
        if code == "InvalidObjectState":
            raise BackendError(
                f"S3 object is archived and cannot be read or copied: {reason}; keep casstore "
                f"objects in an instant-access storage class{where}"
            ) from exc
        if status == 403:
            raise BackendPermissionError(
                f"S3 refused {operation}: {reason}; check the credentials and that they "
                f"allow {_PERMISSIONS.get(operation, 's3:GetObject')} on the bucket{where}"
            ) from exc
        if code in _WRONG_REGION_CODES or status == 301:
            headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            actual = headers.get("x-amz-bucket-region") or response.get("Error", {}).get("Region")
            hint = f"; the bucket is in region {actual}, set region={actual}" if actual else ""
            raise BackendError(
                f"S3 {operation} was sent to the wrong region: {reason}{hint}{where}"
            ) from exc
        if code == "NotImplemented" or status == 501:
            raise BackendError(
                f"the S3 server does not implement {operation}: {reason}; if it lacks "
                f"conditional writes (If-None-Match), set conditional_writes=false{where}"
            ) from exc
        if code in _UNAVAILABLE_CODES or (isinstance(status, int) and status >= 500):
            raise BackendUnavailableError(
                f"S3 {operation} failed, the server is unavailable or throttling: {reason}{where}"
            ) from exc
        raise BackendError(f"S3 {operation} failed: {reason}{where}") from exc


def _too_large(size: int, max_size: int, where: str, key: str) -> IntegrityError:
    return IntegrityError(
        f"stored object is {size} bytes, above the {max_size} bytes its claim allows{where}",
        key=key,
    )


def _no_expect_continue(params: dict[str, Any], **_: Any) -> None:
    params.get("headers", {}).pop("Expect", None)


def _or_default(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def _error_code(exc: ClientError) -> str:
    response: Any = exc.response
    return str(response.get("Error", {}).get("Code", ""))


def _raise_unless_lost_race(exc: ClientError) -> None:
    """Return if ``exc`` says another writer created the object first (412).

    Raises:
        _ConditionalConflict: For 409, a concurrent conditional write in flight.
        ClientError: ``exc`` itself, for anything else.
    """
    code = _error_code(exc)
    if code == "ConditionalRequestConflict":
        raise _ConditionalConflict from exc
    if code != "PreconditionFailed":
        raise exc


def _check_bucket(bucket: object) -> str:
    if not isinstance(bucket, str) or not (
        bucket.startswith("arn:") or _BUCKET_RE.fullmatch(bucket)
    ):
        raise ConfigurationError(
            f"invalid S3 bucket name {bucket!r}: expected 3-255 letters, digits, '.', '-' or '_' "
            "(or an access point ARN)"
        )
    return bucket


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str):
        raise ConfigurationError(f"S3 prefix must be a string, got {type(prefix).__name__}")
    prefix = prefix.strip("/")
    if not prefix:
        return ""
    try:
        check_key(prefix)
    except ValueError:
        raise ConfigurationError(
            f"invalid S3 prefix {prefix!r}: use '/'-separated segments of letters, digits, "
            "'.', '_', '%' and '-' that do not start with a dot"
        ) from None
    if len(prefix) > _MAX_PREFIX_LENGTH:
        raise ConfigurationError(
            f"S3 prefix is {len(prefix)} characters, above the {_MAX_PREFIX_LENGTH} limit "
            "(keys must stay under S3's 1,024 bytes)"
        )
    return prefix


def _new_session(profile: str | None) -> aioboto3.Session:
    try:
        return aioboto3.Session(profile_name=profile)
    except ProfileNotFound as exc:
        raise ConfigurationError(f"AWS profile {profile!r} not found: {exc}") from exc


def _client_config(
    *,
    retry_mode: RetryMode,
    max_attempts: int,
    connect_timeout: float,
    read_timeout: float,
    max_pool_connections: int,
    addressing_style: AddressingStyle | None,
) -> AioConfig:
    if retry_mode not in get_args(RetryMode):
        raise ConfigurationError(f"retry_mode must be 'standard' or 'adaptive', got {retry_mode!r}")
    for name, value in (
        ("max_attempts", max_attempts),
        ("connect_timeout", connect_timeout),
        ("read_timeout", read_timeout),
        ("max_pool_connections", max_pool_connections),
    ):
        if value <= 0:
            raise ConfigurationError(f"{name} must be greater than zero, got {value}")
    if addressing_style not in (None, *get_args(AddressingStyle)):
        raise ConfigurationError(
            f"addressing_style must be 'auto', 'path' or 'virtual', got {addressing_style!r}"
        )
    return AioConfig(
        retries={"mode": retry_mode, "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
        s3={"addressing_style": addressing_style} if addressing_style else None,
        user_agent_extra="casstore",
    )
