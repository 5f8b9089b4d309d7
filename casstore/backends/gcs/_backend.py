"""GCSBackend: each object in a Google Cloud Storage bucket, under an optional key prefix."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
from aiohttp import ClientResponseError
from gcloud.aio.storage import Storage

from casstore.backends._base import Backend, ObjectStat, describe_backend
from casstore.backends._keys import check_key
from casstore.backends.gcs._errors import (
    LostRace,
    Missing,
    Where,
    translate_credentials,
    translate_errors,
)
from casstore.backends.gcs._options import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_TIMEOUT,
    check_bucket,
    check_positive,
    check_prefix,
    url_arguments,
)
from casstore.errors import ConfigurationError, IntegrityError, ObjectNotFoundError

_T = TypeVar("_T")
_CHUNK = 1024 * 1024
# The object resource sent with every upload. Its presence makes
# gcloud-aio-storage use a multipart upload, which carries ifGenerationMatch
# on every server (fake-gcs-server ignores it on media and resumable uploads).
_UPLOAD_METADATA = {"contentType": "application/octet-stream"}


class GCSBackend(Backend):
    """Stores each object in a GCS bucket, under an optional key prefix.

    The object for key ``k`` lives at ``{prefix}/{k}`` in ``bucket``, on
    GCS's JSON API through ``gcloud-aio-storage``. A write is an upload with
    ``ifGenerationMatch=0`` (a 412 answer means another writer created it
    first), an existence check reads the object's metadata, a read streams the
    object and stops at ``max_size``, a ranged read sends ``Range``, a refresh
    (:meth:`touch`) rewrites the object onto itself server-side, which gives
    it a new generation and so a new creation time, what lifecycle ``age``
    counts from; a listing pages through ``objects.list``; a move is a rewrite
    then a delete.

    Credentials come from Application Default Credentials
    (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's ADC file, the metadata
    server) or ``service_file``; with ``STORAGE_EMULATOR_HOST`` set (or
    ``emulator=True``) requests go unauthenticated to that server.

    The backend builds its own client (one aiohttp connection pool, closed by
    :meth:`aclose`) or uses a ``gcloud.aio.storage.Storage`` you pass in, which
    it never closes. Use one backend from one event loop.

    Args:
        bucket: The bucket name.
        prefix: Key prefix under which all objects live.
        client: A ``Storage`` to use as is; ``endpoint`` to
            ``max_connections`` must then be left unset.
        endpoint: API root, e.g. ``http://127.0.0.1:4443`` (default:
            ``STORAGE_EMULATOR_HOST``, else Google's).
        emulator: Send no credentials (default: True exactly when the
            endpoint comes from ``STORAGE_EMULATOR_HOST``).
        service_file: Path of a service-account (or other credentials) JSON file.
        timeout: Seconds one request may take in total (default 60).
        max_connections: Size of the connection pool (default 32).
        conditional_writes: Send ``ifGenerationMatch=0`` so that a lost create
            race is reported (default).

    Raises:
        ConfigurationError: For an invalid bucket, prefix or option.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Storage | None = None,
        endpoint: str | None = None,
        emulator: bool | None = None,
        service_file: str | None = None,
        timeout: float | None = None,
        max_connections: int | None = None,
        conditional_writes: bool = True,
    ) -> None:
        self._bucket = check_bucket(bucket)
        self._prefix = check_prefix(prefix)
        self._root = f"{self._prefix}/" if self._prefix else ""
        self.conditional_writes = conditional_writes
        given: dict[str, object] = {
            "endpoint": endpoint,
            "emulator": emulator,
            "service_file": service_file,
            "max_connections": max_connections,
        }
        if client is not None and any(value is not None for value in given.values()):
            names = ", ".join(name for name, value in given.items() if value is not None)
            raise ConfigurationError(
                f"GCSBackend(client=...) uses the client as configured; leave {names} unset"
            )
        self._timeout = check_positive("timeout", timeout, DEFAULT_TIMEOUT)
        self._seconds = max(1, round(self._timeout))  # gcloud-aio takes whole seconds
        self._max_connections = int(
            check_positive("max_connections", max_connections, DEFAULT_MAX_CONNECTIONS)
        )
        from_env = os.environ.get("STORAGE_EMULATOR_HOST")
        if endpoint is None and from_env:
            endpoint = from_env if from_env.startswith("http") else f"http://{from_env}"
            emulator = True if emulator is None else emulator
        self._endpoint = (endpoint or "").rstrip("/") or None
        self._emulator = bool(emulator)
        self._service_file = service_file
        self._client = client
        self._own = client is None
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_url(cls, url: str, **options: object) -> GCSBackend:
        """Build a backend from ``gs://bucket[/prefix][?option=value&...]``.

        Options: ``endpoint``, ``emulator``, ``service_file``, ``timeout``,
        ``max_connections``, ``conditional_writes``, in the query or as keyword
        arguments (which override the query; see :func:`casstore.open_backend`).
        Credentials never go in the URL.

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

    def object_name(self, key: str) -> str:
        """Return the GCS object name that holds ``key`` (the key is checked first)."""
        return self._root + check_key(key)

    # Backend interface.

    async def stat(self, key: str) -> ObjectStat | None:
        """Read the object's metadata: size and creation time, or None on 404."""
        name = self.object_name(key)
        try:
            meta = await self._call(
                "stat",
                name,
                lambda s: s.download_metadata(self._bucket, name, timeout=self._seconds),
            )
        except Missing:
            return None
        return _stat_of(meta)

    async def put(self, key: str, data: bytes) -> bool:
        """Upload with ``ifGenerationMatch=0``: False if the object existed (412)."""
        name = self.object_name(key)
        parameters = {"ifGenerationMatch": "0"} if self.conditional_writes else {}
        try:
            await self._call(
                "put",
                name,
                lambda s: s.upload(
                    self._bucket,
                    name,
                    data,
                    content_type="application/octet-stream",
                    metadata=dict(_UPLOAD_METADATA),
                    parameters=dict(parameters),
                    force_resumable_upload=False,
                    timeout=self._seconds,
                ),
                bucket_on_404=True,
            )
        except LostRace:
            return False
        return True

    async def get(self, key: str, *, max_size: int | None = None) -> bytes:
        """Stream the object, refusing it when its length is above ``max_size``."""
        name = self.object_name(key)

        async def read(storage: Storage) -> bytes:
            stream = await storage.download_stream(self._bucket, name, timeout=self._seconds)
            async with stream:
                length = stream.content_length
                if max_size is not None and length > max_size:
                    raise self._too_large(key, name, length, max_size)
                chunks: list[bytes] = []
                total = 0
                while chunk := await stream.read(_CHUNK):
                    total += len(chunk)
                    if max_size is not None and total > max_size:
                        raise self._too_large(key, name, total, max_size)
                    chunks.append(chunk)
            return b"".join(chunks)

        try:
            return await self._call("get", name, read)
        except Missing:
            raise self._not_found(key, name) from None

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (``Range``; fewer at the end, none past it).

        Raises:
            ObjectNotFoundError: If there is no object at ``key``.
        """
        name = self.object_name(key)
        if offset < 0 or length < 0:
            raise ValueError(
                f"invalid range: offset {offset}, length {length} (neither may be negative)"
            )
        if length == 0:
            if await self.stat(key) is None:
                raise self._not_found(key, name)
            return b""
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        try:
            return await self._call(
                "get_range",
                name,
                lambda s: s.download(self._bucket, name, headers=headers, timeout=self._seconds),
            )
        except Missing:
            raise self._not_found(key, name) from None
        except _RangeNotSatisfiable:
            return b""

    async def touch(self, key: str) -> None:
        """Rewrite the object onto itself: a new generation, so a new creation time."""
        name = self.object_name(key)
        try:
            await self._call(
                "touch",
                name,
                lambda s: s.copy(self._bucket, name, self._bucket, timeout=self._seconds),
            )
        except Missing:
            raise self._not_found(key, name) from None

    async def delete(self, key: str) -> None:
        """Delete the object (a missing one is not an error)."""
        name = self.object_name(key)
        with contextlib.suppress(Missing):
            await self._call(
                "delete", name, lambda s: s.delete(self._bucket, name, timeout=self._seconds)
            )

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Delete objects, 32 requests at a time (GCS has no multi-object delete)."""
        for key in keys:
            check_key(key)
        await _bounded([self.delete(key) for key in keys])

    async def move(self, src: str, dst: str) -> bool:
        """Rewrite ``src`` to ``dst`` server-side (a fresh creation time), then delete ``src``."""
        source, target = self.object_name(src), self.object_name(dst)
        try:
            await self._call(
                "move",
                source,
                lambda s: s.copy(
                    self._bucket, source, self._bucket, new_name=target, timeout=self._seconds
                ),
            )
        except Missing:
            return False
        await self.delete(src)
        return True

    async def move_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """:meth:`move` each pair, 32 at a time."""
        for src, dst in pairs:
            check_key(src)
            check_key(dst)
        return await _bounded([self.move(src, dst) for src, dst in pairs])

    async def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        """List keys under ``prefix`` (``objects.list``, paginated), without our prefix."""
        async for key, stat in self._list(prefix):
            yield key, stat.size

    async def scan_stat(self, prefix: str = "") -> AsyncIterator[tuple[str, ObjectStat]]:
        """List keys with sizes and creation times: the listing has them."""
        async for item in self._list(prefix):
            yield item

    def describe(self) -> Mapping[str, str]:
        """Return backend, bucket, prefix (if any) and endpoint."""
        facts = {"backend": "gcs", "bucket": self._bucket}
        if self._prefix:
            facts["prefix"] = self._prefix
        facts["endpoint"] = self._endpoint or ("client" if not self._own else "google")
        return facts

    async def open(self) -> None:
        """Build the client and get a first access token before any request's deadline."""
        await self._storage("open", "")

    async def aclose(self) -> None:
        """Close the client and pool this backend built; a passed-in client stays open."""
        client, session = self._client, self._session
        if self._own and client is not None:
            self._client = self._session = None
            await client.close()
            if session is not None:
                await session.close()

    # Internals.

    async def _storage(self, operation: str, name: str) -> Storage:
        if self._client is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections)
            )
            self._client = Storage(
                service_file=self._service_file,
                session=self._session,  # type: ignore[arg-type]  # aiohttp's, as documented
                api_root=self._endpoint,
                api_is_dev=self._emulator if self._endpoint else None,
            )
        client = self._client
        if not getattr(client, "_api_is_dev", False):
            # Token.get() is cached; fetching it here separates a credentials
            # failure from the request's own errors.
            with translate_credentials(operation, lambda: self._about(name, of_object=True)):
                await client.token.get()
        return client

    async def _call(
        self,
        operation: str,
        name: str,
        request: Callable[[Storage], Awaitable[_T]],
        *,
        bucket_on_404: bool = False,
    ) -> _T:
        """Run one request, translating its errors; 404 and 412 become Missing and LostRace."""
        storage = await self._storage(operation, name)
        with translate_errors(
            operation,
            self._bucket,
            lambda: self._about(name, of_object=True),
            of_object=not bucket_on_404,
        ):
            try:
                return await request(storage)
            except ClientResponseError as exc:
                if exc.status == 412 and operation == "put":
                    raise LostRace from exc
                if exc.status == 416 and operation == "get_range":
                    raise _RangeNotSatisfiable from exc
                if (
                    exc.status == 404
                    and not bucket_on_404
                    and "bucket does not exist" not in str(exc.message).lower()
                ):
                    raise Missing from exc
                raise

    async def _list(self, prefix: str) -> AsyncIterator[tuple[str, ObjectStat]]:
        params = {"prefix": self._root + prefix, "maxResults": "1000"}
        while True:
            page = await self._call(
                "scan",
                self._root + prefix,
                lambda s: s.list_objects(self._bucket, params=dict(params), timeout=self._seconds),
                bucket_on_404=True,
            )
            for item in page.get("items", ()):
                key = str(item.get("name", ""))[len(self._root) :]
                # Skip foreign objects someone else put under our prefix.
                with contextlib.suppress(ValueError):
                    yield check_key(key), _stat_of(item)
            token = page.get("nextPageToken")
            if not token:
                return
            params["pageToken"] = token

    def _about(self, name: str, *, of_object: bool) -> Where:
        key = name[len(self._root) :] if of_object and name else None
        return Where(self._where(name), key, describe_backend(self))

    def _where(self, name: str) -> str:
        key = f", key={name}" if name else ""
        return f" [bucket={self._bucket}{key}, endpoint={self.describe()['endpoint']}]"

    def _not_found(self, key: str, name: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(
            f"object not found in GCS{self._where(name)}", key=key, backend=describe_backend(self)
        )

    def _too_large(self, key: str, name: str, size: int, bound: int) -> IntegrityError:
        return IntegrityError(
            f"object is {size} bytes, above the {bound}-byte bound for it{self._where(name)}",
            key=key,
            backend=describe_backend(self),
        )


class _RangeNotSatisfiable(Exception):
    """416: the range starts at or past the object's end."""


def _stat_of(meta: Mapping[str, Any]) -> ObjectStat:
    created = str(meta.get("timeCreated") or meta.get("updated"))
    modified = datetime.fromisoformat(created.replace("Z", "+00:00")).astimezone(UTC)
    return ObjectStat(size=int(meta.get("size", 0)), modified=modified)


async def _bounded(calls: Sequence[Awaitable[_T]]) -> list[_T]:
    """Await ``calls`` with at most DEFAULT_CONCURRENCY in flight, in order."""
    gate = asyncio.Semaphore(DEFAULT_CONCURRENCY)

    async def one(call: Awaitable[_T]) -> _T:
        async with gate:
            return await call

    return list(await asyncio.gather(*(one(call) for call in calls)))
