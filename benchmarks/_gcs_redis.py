"""The GCS and Redis drivers: casstore on each, and the SDK's GCS driver as the GCS baseline.

They run on fake-gcs-server and redis-server, started by ``_cli.servers``
when a chosen driver needs them. Requests are counted by backend call for
casstore (one call is one request on these servers) and by client call for
the SDK's driver (its client makes one request per call).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from benchmarks._s3 import Traffic
from casstore import CasStorageDriver
from casstore.backends import Backend, CountingBackend

SDK_GCS = "sdk-gcs"
CASSTORE_GCS = "casstore-gcs"
CASSTORE_REDIS = "casstore-redis"
GCS_DRIVERS = (SDK_GCS, CASSTORE_GCS)
REDIS_DRIVERS = (CASSTORE_REDIS,)
DESCRIPTIONS = {
    SDK_GCS: "temporalio.contrib.gcp.gcsdriver.GCSStorageDriver on fake-gcs-server",
    CASSTORE_GCS: "casstore CasStorageDriver on fake-gcs-server (GCSBackend)",
    CASSTORE_REDIS: "casstore CasStorageDriver on redis-server (RedisBackend)",
}


class Unavailable(RuntimeError):
    """The driver's server or module is missing."""


@dataclass(frozen=True)
class Servers:
    """Where the GCS and Redis servers of a run are (None: not started)."""

    gcs: str | None = None
    """fake-gcs-server's API root."""
    redis: tuple[str, int] | None = None


@dataclass
class Built:
    """What ``open_rig`` needs to make a :class:`benchmarks._drivers.Rig`."""

    driver: Any
    traffic: Any
    make: Any
    at_rest: Any
    details: Any


@asynccontextmanager
async def build(kind: str, servers: Servers) -> AsyncIterator[Built]:
    """Build driver ``kind`` on a fresh bucket or key prefix; remove it afterwards."""
    if kind in GCS_DRIVERS:
        async with _gcs(kind, servers) as built:
            yield built
        return
    async with _redis(servers) as built:
        yield built


@asynccontextmanager
async def _gcs(kind: str, servers: Servers) -> AsyncIterator[Built]:
    if servers.gcs is None:
        raise Unavailable("no GCS server (fake-gcs-server did not start)")
    try:
        import aiohttp
        from gcloud.aio.storage import Storage

        from casstore.backends.gcs import GCSBackend
    except ImportError as exc:
        raise Unavailable(f"gcloud-aio-storage is not installed: {exc}") from exc
    bucket = f"bench-{secrets.token_hex(6)}"
    async with aiohttp.ClientSession() as session:
        await (await session.post(f"{servers.gcs}/storage/v1/b", json={"name": bucket})).read()
        storage = Storage(api_root=servers.gcs, session=session)  # type: ignore[arg-type]
        backend: Backend = GCSBackend(bucket, client=storage)

        async def at_rest() -> tuple[int, int]:
            sizes: list[int] = []
            params = {"maxResults": "1000"}
            while True:
                page = await storage.list_objects(bucket, params=dict(params))
                sizes += [int(item["size"]) for item in page.get("items", ())]
                if not page.get("nextPageToken"):
                    return len(sizes), sum(sizes)
                params["pageToken"] = page["nextPageToken"]

        if kind == SDK_GCS:
            from temporalio.contrib.gcp.gcsdriver import GCSStorageDriver
            from temporalio.contrib.gcp.gcsdriver.gcloud_aio import new_gcloud_aio_client

            traffic = Traffic()
            client = _counting_client(new_gcloud_aio_client(storage), traffic)

            def make_sdk() -> Any:
                return GCSStorageDriver(client, bucket=bucket)

            yield Built(make_sdk(), traffic, make_sdk, at_rest, lambda: {})
            return
        async with _casstore(backend, at_rest) as built:
            yield built


@asynccontextmanager
async def _redis(servers: Servers) -> AsyncIterator[Built]:
    if servers.redis is None:
        raise Unavailable("no Redis server (redis-server is not installed)")
    try:
        from casstore.backends.redis import RedisBackend
    except ImportError as exc:
        raise Unavailable(f"redis-py is not installed: {exc}") from exc
    host, port = servers.redis
    backend = RedisBackend(host, port, prefix=f"bench-{secrets.token_hex(6)}")
    async with backend:

        async def at_rest() -> tuple[int, int]:
            sizes = [size async for _, size in backend.scan("v1/")]
            return len(sizes), sum(sizes)

        try:
            async with _casstore(backend, at_rest) as built:
                yield built
        finally:
            await backend.delete_many([key async for key, _ in backend.scan()])


@asynccontextmanager
async def _casstore(backend: Backend, at_rest: Any) -> AsyncIterator[Built]:
    from benchmarks._drivers import BackendTraffic

    metered = CountingBackend(backend)
    driver = CasStorageDriver(metered)
    yield Built(
        driver,
        BackendTraffic(metered),
        lambda: CasStorageDriver(metered),
        at_rest,
        lambda: {"driver_stats": driver.stats.as_dict()},
    )


def _counting_client(inner: Any, traffic: Traffic) -> Any:
    """The SDK driver's client, counting each call (one HTTP request each) and its bytes."""
    from temporalio.contrib.gcp.gcsdriver import GCSStorageDriverClient

    class Counting(_Counting, GCSStorageDriverClient):
        pass

    return Counting(inner, traffic)


class _Counting:
    def __init__(self, inner: Any, traffic: Traffic) -> None:
        self._inner = inner
        self._traffic = traffic

    async def object_exists(self, *, bucket: str, object_name: str) -> bool:
        self._traffic.requests["object_exists"] += 1
        found: bool = await self._inner.object_exists(bucket=bucket, object_name=object_name)
        return found

    async def put_object(self, *, bucket: str, object_name: str, data: bytes) -> None:
        self._traffic.requests["put_object"] += 1
        self._traffic.bytes_sent += len(data)
        await self._inner.put_object(bucket=bucket, object_name=object_name, data=data)

    async def get_object(self, *, bucket: str, object_name: str) -> bytes:
        self._traffic.requests["get_object"] += 1
        data: bytes = await self._inner.get_object(bucket=bucket, object_name=object_name)
        self._traffic.bytes_received += len(data)
        return data
