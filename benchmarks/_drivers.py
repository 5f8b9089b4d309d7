"""The drivers compared, each built fresh (cold caches) for one repetition."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from benchmarks import _gcs_redis
from benchmarks._s3 import (
    S3Endpoint,
    Traffic,
    add_latency,
    bucket_name,
    count_requests,
    delete_bucket,
)
from benchmarks._s3 import objects_at_rest as s3_objects_at_rest
from benchmarks.doc_local import DocLocalDiskDriver
from casstore import CasStorageDriver, KeyRing
from casstore.backends import CountingBackend, LocalBackend
from casstore.backends._wrappers import LatencyBackend

BASELINE = "sdk-s3"
DRIVERS: dict[str, str] = {
    "sdk-s3": "temporalio.contrib.aws.s3driver.S3StorageDriver on the S3 server",
    "casstore-s3": "casstore CasStorageDriver on the S3 server (S3Backend)",
    "casstore-s3-enc": "casstore CasStorageDriver with a keyring (keyed BLAKE3, "
    "AES-256-GCM-SIV) on the S3 server (S3Backend)",
    "casstore-obstore": "casstore CasStorageDriver on the S3 server through obstore "
    "(ObjectStoreBackend)",
    "casstore-local": "casstore CasStorageDriver on local disk (LocalBackend)",
    "doc-local": "documentation-style local-disk driver (uuid file per payload)",
    **_gcs_redis.DESCRIPTIONS,
    "floor": "not a storage driver: keeps payload objects in a dict, so its figures are "
    "what the SDK's External Storage path costs by itself",
}
HTTP = "HTTP requests"
ENCRYPTED = "casstore-s3-enc"
OBSTORE = "casstore-obstore"
S3_DRIVERS = ("sdk-s3", "casstore-s3", ENCRYPTED, OBSTORE)
"""The drivers that need the S3 server."""
BENCH_KEYRING = KeyRing.from_bytes(bytes(range(32)), key_id="bench")
"""A fixed key: benchmarks measure cost, not secrecy."""
FILE_OPS = "file ops"


class DriverUnavailableError(RuntimeError):
    """A driver cannot run here (missing server or module); the message says why."""


class TrafficMeter(Protocol):
    """Anything that reports the traffic counted so far."""

    def snapshot(self) -> Traffic:
        """Return the counts so far, as an independent copy."""


@dataclass
class Rig:
    """One driver instance with the meters the benchmark reads."""

    kind: str
    driver: StorageDriver
    traffic: TrafficMeter
    unit: str
    at_rest: Callable[[], Awaitable[tuple[int, int]]]
    details: Callable[[], dict[str, Any]] = field(default=lambda: {})
    another: Callable[[], StorageDriver] | None = None
    """Builds another instance of the driver on the same storage, with cold caches
    and the same meters: what another worker process would have. None: ``driver``."""

    def another_driver(self) -> StorageDriver:
        """A driver as another worker process has it (see :attr:`another`)."""
        return self.another() if self.another else self.driver


@dataclass(frozen=True)
class Environment:
    """What the drivers may use: an S3 endpoint (if any) and a scratch directory."""

    s3: S3Endpoint | None
    scratch: Path
    s3_latency_s: float = 0.0
    """Simulated round-trip time added to every S3 request (0: loopback as it is)."""
    prepare_bucket: Callable[[str], None] | None = None
    """Makes what a fresh bucket needs before a run writes into it (see ``_cli.servers``)."""
    more: _gcs_redis.Servers = field(default_factory=_gcs_redis.Servers)
    """The GCS and Redis servers (for the drivers on them)."""


@asynccontextmanager
async def open_rig(kind: str, env: Environment, tag: str) -> AsyncIterator[Rig]:
    """Build driver ``kind`` on a fresh bucket or directory; remove it afterwards.

    Raises:
        DriverUnavailableError: The driver needs something this run lacks.
        ValueError: ``kind`` is not a known driver.
    """
    if kind in ("sdk-s3", "casstore-s3", ENCRYPTED):
        async with _s3_rig(kind, env, tag) as rig:
            yield rig
        return
    if kind == OBSTORE:
        async with _obstore_rig(env, tag) as rig:
            yield rig
        return
    if kind in (*_gcs_redis.GCS_DRIVERS, *_gcs_redis.REDIS_DRIVERS):
        try:
            async with _gcs_redis.build(kind, env.more) as built:
                yield Rig(
                    kind,
                    built.driver,
                    built.traffic,
                    HTTP if kind in _gcs_redis.GCS_DRIVERS else "Redis commands",
                    built.at_rest,
                    built.details,
                    another=built.make,
                )
        except _gcs_redis.Unavailable as exc:
            raise DriverUnavailableError(str(exc)) from exc
        return
    if kind not in DRIVERS:
        raise ValueError(f"unknown driver {kind!r}; expected one of {', '.join(DRIVERS)}")
    if kind == "floor":
        floor = FloorDriver()

        async def nothing_at_rest() -> tuple[int, int]:
            return 0, 0

        yield Rig(kind, floor, floor.traffic, FILE_OPS, nothing_at_rest)
        return
    directory = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=env.scratch))
    try:
        if kind == "doc-local":
            doc = DocLocalDiskDriver(directory)
            yield Rig(
                kind,
                doc,
                doc.traffic,
                FILE_OPS,
                lambda: _dir_at_rest(directory),
                another=lambda: DocLocalDiskDriver(directory, doc.traffic),
            )
        else:
            counted = CountingBackend(LocalBackend(directory))
            cas = CasStorageDriver(counted)
            yield Rig(
                kind,
                cas,
                BackendTraffic(counted),
                FILE_OPS,
                lambda: _dir_at_rest(directory),
                lambda: {"driver_stats": cas.stats.as_dict()},
                another=lambda: CasStorageDriver(counted),
            )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@asynccontextmanager
async def _s3_rig(kind: str, env: Environment, tag: str) -> AsyncIterator[Rig]:
    if env.s3 is None:
        raise DriverUnavailableError("no S3 endpoint (start one or pass --s3-endpoint)")
    try:
        import aioboto3
    except ImportError as exc:
        raise DriverUnavailableError(f"aioboto3 is not installed: {exc}") from exc

    async with aioboto3.Session().client("s3", **env.s3.client_kwargs()) as client:
        bucket = bucket_name(tag)
        await client.create_bucket(Bucket=bucket)
        if env.prepare_bucket:
            env.prepare_bucket(bucket)
        try:
            traffic = Traffic()
            count_requests(client, traffic)  # after create_bucket: only driver traffic counts
            if env.s3_latency_s:
                add_latency(client, env.s3_latency_s)
            make: Callable[[], StorageDriver]
            if kind == "sdk-s3":
                from temporalio.contrib.aws.s3driver import S3StorageDriver
                from temporalio.contrib.aws.s3driver.aioboto3 import new_aioboto3_client

                def make() -> StorageDriver:
                    return S3StorageDriver(new_aioboto3_client(client), bucket=bucket)
            else:
                from casstore.backends.s3 import S3Backend

                keyring = BENCH_KEYRING if kind == ENCRYPTED else None

                def make() -> StorageDriver:
                    return CasStorageDriver(
                        S3Backend(bucket=bucket, client=client), keyring=keyring
                    )

            driver = make()

            def details() -> dict[str, Any]:
                if isinstance(driver, CasStorageDriver):
                    return {"driver_stats": driver.stats.as_dict()}
                return {}

            # Another "worker process" shares the client (and so the meters) but
            # none of the driver's caches.
            yield Rig(
                kind,
                driver,
                traffic,
                HTTP,
                lambda: s3_objects_at_rest(client, bucket),
                details,
                another=make,
            )
        finally:
            await delete_bucket(client, bucket)


@asynccontextmanager
async def _obstore_rig(env: Environment, tag: str) -> AsyncIterator[Rig]:
    """Build casstore on ObjectStoreBackend: obstore for the driver, aioboto3 only around it.

    Requests are counted by backend call (``stat``, ``put``, ``get``), not by
    S3 operation name as for the aioboto3 drivers: the same requests.
    """
    if env.s3 is None:
        raise DriverUnavailableError("no S3 endpoint (start one or pass --s3-endpoint)")
    try:
        import aioboto3

        from casstore.backends.objectstore import ObjectStoreBackend
    except ImportError as exc:
        raise DriverUnavailableError(f"obstore or aioboto3 is not installed: {exc}") from exc

    async with aioboto3.Session().client("s3", **env.s3.client_kwargs()) as client:
        bucket = bucket_name(tag)
        await client.create_bucket(Bucket=bucket)
        if env.prepare_bucket:
            env.prepare_bucket(bucket)
        try:
            backend = ObjectStoreBackend.s3(
                bucket,
                endpoint=env.s3.endpoint_url,
                region=env.s3.region,
                access_key_id=env.s3.access_key,
                secret_access_key=env.s3.secret_key,
            )
            # One backend call is one HTTP request (no multipart; no retries on
            # loopback), so counting calls counts requests; the simulated latency
            # is slept before each, as add_latency does for the aioboto3 drivers.
            inner = LatencyBackend(backend, env.s3_latency_s) if env.s3_latency_s else backend
            metered = CountingBackend(inner)
            driver = CasStorageDriver(metered)
            yield Rig(
                OBSTORE,
                driver,
                BackendTraffic(metered),
                HTTP,
                lambda: s3_objects_at_rest(client, bucket),
                lambda: {"driver_stats": driver.stats.as_dict()},
                another=lambda: CasStorageDriver(metered),
            )
        finally:
            await delete_bucket(client, bucket)


class FloorDriver(StorageDriver):
    """Keeps an in-memory copy of each payload and hands it back: no I/O, no hash.

    Whatever time a scenario takes with this driver is spent by the SDK's
    External Storage path and the scenario itself: a floor no driver goes under.
    """

    def __init__(self) -> None:
        self.traffic = Traffic()
        self._payloads: list[Payload] = []

    def name(self) -> str:
        return "floor"

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        claims = []
        for payload in payloads:
            claims.append(StorageDriverClaim(claim_data={"i": str(len(self._payloads))}))
            # A copy: the SDK overwrites the payloads it stored with their references.
            kept = Payload()
            kept.CopyFrom(payload)
            self._payloads.append(kept)
        return claims

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        return [self._payloads[int(c.claim_data["i"])] for c in claims]


@dataclass(frozen=True)
class BackendTraffic:
    """A :class:`~casstore.backends.CountingBackend`'s counters, read as :class:`Traffic`."""

    backend: CountingBackend

    def snapshot(self) -> Traffic:
        return Traffic(
            Counter(self.backend.calls), self.backend.bytes_written, self.backend.bytes_read
        )


async def _dir_at_rest(directory: Path) -> tuple[int, int]:
    return await asyncio.to_thread(_walk, directory)


def _walk(directory: Path) -> tuple[int, int]:
    files = [p for p in directory.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return len(files), sum(p.stat().st_size for p in files)
