"""S3Backend: each object in an S3 bucket, under an optional key prefix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC
from typing import TYPE_CHECKING, Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from casstore.backends._base import Backend, ObjectStat, check_range, describe_backend
from casstore.backends._keys import check_key
from casstore.backends._where import Where
from casstore.backends.s3._bulk import copy_objects, delete_objects
from casstore.backends.s3._client import ClientSource
from casstore.backends.s3._errors import (
    NOT_FOUND_CODES,
    ConditionalConflict,
    error_code,
    translate_errors,
)
from casstore.backends.s3._options import (
    DEFAULT_MULTIPART_CONCURRENCY,
    DEFAULT_MULTIPART_PART_SIZE,
    DEFAULT_MULTIPART_THRESHOLD,
    AddressingStyle,
    RetryMode,
    check_bucket,
    check_multipart,
    check_prefix,
    url_arguments,
)
from casstore.backends.s3._reads import get_object, get_object_range, list_objects
from casstore.backends.s3._upload import CLEANUP_TIMEOUT, UploadTarget, put_multipart, put_single
from casstore.errors import BackendUnavailableError

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import ObjectTypeDef

# A PUT that races a concurrent conditional write of the same key gets 409;
# AWS asks for a retry, which then resolves to 200 (we won) or 412 (they did).
_CONFLICT_ATTEMPTS = 4
_CONFLICT_BACKOFF = 0.05


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
        max_attempts: botocore's attempts per request, the first included
            (default 1: the driver retries, within its deadlines; raise it
            when using the backend without a driver).
        connect_timeout: Seconds to wait for a connection (default 10).
        read_timeout: Seconds to wait for data on a socket (default 60).
        max_pool_connections: Size of the HTTP connection pool (default 32,
            the driver's default ``max_concurrency``; keep them equal).
        multipart_threshold: Objects at least this many bytes are uploaded
            in parts (default 16 MiB).
        multipart_part_size: Size of each part (default 8 MiB, at least 5 MiB);
            raised as needed to stay within 10,000 parts.
        multipart_concurrency: Parts of one object uploaded at once (default 4).
        conditional_writes: Send ``If-None-Match: *`` so that a lost create
            race is reported (default); this is also the backend's
            :attr:`~casstore.backends.Backend.conditional_writes` capability.
            Set False for servers that reject the header, and for servers
            that ignore it, which cannot report a lost race.

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
        self._bucket = check_bucket(bucket)
        self._prefix = check_prefix(prefix)
        self._root = f"{self._prefix}/" if self._prefix else ""
        check_multipart(multipart_threshold, multipart_part_size, multipart_concurrency)
        self._multipart_threshold = multipart_threshold
        self._part_size = multipart_part_size
        self._multipart_concurrency = multipart_concurrency
        self.conditional_writes = conditional_writes
        self._cleanups: set[asyncio.Future[None]] = set()
        self._live_uploads: set[str] = set()
        self._clients = ClientSource(
            bucket,
            client,
            lambda: self._translate("client setup", "", of_object=False),
            session=session,
            region=region,
            endpoint_url=endpoint_url,
            profile=profile,
            addressing_style=addressing_style,
            retry_mode=retry_mode,
            max_attempts=max_attempts,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_pool_connections,
        )

    @classmethod
    def from_url(cls, url: str, **options: object) -> S3Backend:
        """Build a backend from ``s3://bucket[/prefix][?option=value&...]``.

        Options are the constructor's keyword arguments that build a client,
        plus the multipart options and ``conditional_writes``, in the query or
        as keyword arguments (which override the query; see
        :func:`casstore.open_backend`); sizes are bytes, optionally with a
        ``KiB``/``MiB``/``GiB`` suffix. Credentials never go in the URL: they
        come from the standard AWS chain (or ``profile=``).

        Raises:
            ConfigurationError: For a malformed URL or option, naming it.
        """
        bucket, prefix, arguments = url_arguments(url, options)
        return cls(bucket, prefix, **arguments)

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
                if error_code(exc) in NOT_FOUND_CODES:
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
        target = UploadTarget(
            client,
            self._bucket,
            s3_key,
            conditional=self.conditional_writes,
            errors=lambda: self._translate("put", s3_key),
            background=self._in_background,
            live=self._live_uploads,
        )
        for attempt in range(_CONFLICT_ATTEMPTS):
            try:
                if len(data) < self._multipart_threshold:
                    return await put_single(target, data)
                return await put_multipart(
                    target, data, self._part_size, self._multipart_concurrency
                )
            except ConditionalConflict:
                await asyncio.sleep(_CONFLICT_BACKOFF * 2**attempt)
        raise BackendUnavailableError(
            f"S3 kept reporting a conflicting concurrent write after {_CONFLICT_ATTEMPTS} "
            f"attempts{self._where(s3_key)}",
            key=key,
            backend=describe_backend(self),
        )

    async def get(self, key: str, *, max_size: int | None = None) -> bytes:
        """GET the object's bytes; ``NoSuchKey`` is an :class:`ObjectNotFoundError`.

        An object whose ``Content-Length`` is above ``max_size`` is refused
        before its body is read; a body without one is read up to the bound.
        """
        s3_key = self.s3_key(key)
        client = await self._s3()
        with self._translate("get", s3_key):
            return await get_object(
                client, self._bucket, s3_key, key, max_size, self._where(s3_key)
            )

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        """GET ``length`` bytes from ``offset`` with a ``Range`` header (fewer at the end)."""
        check_range(offset, length)
        s3_key = self.s3_key(key)
        if length == 0:
            await self.get_range(key, offset, 1)  # still reports a missing object
            return b""
        client = await self._s3()
        with self._translate("get", s3_key):
            return await get_object_range(
                client, self._bucket, s3_key, key, offset, length, self._where(s3_key)
            )

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
        async for key, item in self._list(prefix):
            yield key, item["Size"]

    async def scan_stat(self, prefix: str = "") -> AsyncIterator[tuple[str, ObjectStat]]:
        """List keys with sizes and ages: the listing has them, no request per object."""
        async for key, item in self._list(prefix):
            yield key, ObjectStat(size=item["Size"], modified=item["LastModified"].astimezone(UTC))

    async def delete_many(self, keys: Sequence[str]) -> None:
        """DeleteObjects, 1,000 keys a request (missing keys are not errors)."""
        s3_keys = [self.s3_key(key) for key in keys]
        if s3_keys:
            await delete_objects(await self._s3(), self._bucket, s3_keys, self._translate)

    async def move_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """CopyObject each pair (a fresh LastModified), then DeleteObjects the sources."""
        s3_pairs = [(self.s3_key(src), self.s3_key(dst)) for src, dst in pairs]
        moved = await copy_objects(await self._s3(), self._bucket, s3_pairs, self._translate)
        await self.delete_many([src for (src, _), done in zip(pairs, moved, strict=True) if done])
        return moved

    async def move(self, src: str, dst: str) -> bool:
        """Copy server-side, then delete the source."""
        [moved] = await self.move_many([(src, dst)])
        return moved

    async def _list(self, prefix: str) -> AsyncIterator[tuple[str, ObjectTypeDef]]:
        client = await self._s3()

        def errors() -> AbstractContextManager[None]:
            return self._translate("scan", self._root + prefix, of_object=False)

        async for entry in list_objects(client, self._bucket, self._root, prefix, errors):
            yield entry

    def describe(self) -> Mapping[str, str]:
        """Return backend, bucket, prefix (if any), region and endpoint."""
        facts = {"backend": "s3", "bucket": self._bucket}
        if self._prefix:
            facts["prefix"] = self._prefix
        facts["region"] = self._clients.region or "default"
        facts["endpoint"] = self._clients.endpoint or "aws"
        return facts

    async def open(self) -> None:
        """Build and enter our client now, so no request's deadline pays for it.

        Building an S3 client costs a few hundred milliseconds of CPU (seconds
        on a loaded machine); without ``open`` the first request builds it.
        """
        await self._clients.get()

    async def aclose(self) -> None:
        """Close the client this backend built, if any; a passed-in client stays open.

        Cleanups still running (aborting failed multipart uploads) get a few
        seconds to finish first.
        """
        if self._cleanups:
            await asyncio.wait(set(self._cleanups), timeout=CLEANUP_TIMEOUT)
        await self._clients.aclose()

    # Internals.

    async def _s3(self) -> S3Client:
        """Return the client (our own is built on first use)."""
        return await self._clients.get()

    @property
    def _client(self) -> S3Client | None:
        """The client in use (None before our own is built, after it is closed)."""
        return self._clients.client

    @property
    def _config(self) -> AioConfig | None:
        """The botocore configuration of the client we build (None: client= given)."""
        return self._clients.config

    def _in_background(self, cleanup: Coroutine[Any, Any, None]) -> None:
        """Run a best-effort cleanup without holding up the caller's deadline."""
        task = asyncio.ensure_future(cleanup)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def _where(self, s3_key: str) -> str:
        facts = self.describe()
        key = f", key={s3_key}" if s3_key else ""
        return (
            f" [bucket={self._bucket}{key}, region={facts['region']}, endpoint={facts['endpoint']}]"
        )

    def _translate(
        self, operation: str, s3_key: str, *, of_object: bool = True
    ) -> AbstractContextManager[None]:
        """Map botocore errors to casstore's, naming bucket, key, region, endpoint.

        ``of_object``: ``s3_key`` is an object's (not a listing prefix), so
        errors carry its casstore key as their ``key``.
        """

        def about() -> Where:
            key = s3_key[len(self._root) :] if of_object and s3_key else None
            return Where(self._where(s3_key), key, describe_backend(self))

        return translate_errors(operation, self._bucket, about)
