"""CasStorageDriver on GCSBackend (fake-gcs-server): faults on the wire.

The driver suite every backend runs (casstore.testing.DriverTests) runs on
GCS from tests/test_backend_gcs.py.

Faults come from the real HTTP chaos proxy (testrig/chaos.py) in front of the
real server: 5xx answers, resets before, after and in the middle of answers,
requests never answered, trickled answers, delays.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from casstore import CasStorageDriver
from casstore.backends.gcs import GCSBackend
from casstore.errors import BackendUnavailableError, CasstoreError
from testrig.chaos import FAULTS, ChaosProxy
from tests.support.gcs import GCSPlace

pytestmark = pytest.mark.integration

CONTEXT = StorageDriverStoreContext(
    target=StorageDriverWorkflowInfo(namespace="default", id="faults", run_id=None, type="W")
)
RETRIEVE = StorageDriverRetrieveContext()
SLACK = 1.0
"""Seconds an operation may overrun its deadline: scheduling on a loaded 2-core machine."""


# Faults.


@pytest.fixture
def proxy(gcs_place: GCSPlace) -> Iterator[ChaosProxy]:
    upstream = ("127.0.0.1", gcs_place.server.port)
    with ChaosProxy(upstream, seed=5, trickle_interval=0.2) as chaos:
        yield chaos


def _payload(size: int, seed: int) -> Payload:
    rng = random.Random(seed)
    return Payload(metadata={"encoding": b"binary/plain"}, data=rng.randbytes(size))


def _through(gcs_place: GCSPlace, proxy: ChaosProxy) -> GCSBackend:
    return GCSBackend(
        gcs_place.bucket, gcs_place.prefix, endpoint=proxy.endpoint_url, emulator=True
    )


@pytest.mark.parametrize("fault", FAULTS)
async def test_each_fault_is_survived_within_the_deadline(
    gcs_place: GCSPlace, proxy: ChaosProxy, fault: str
) -> None:
    async with _through(gcs_place, proxy) as backend:
        driver = CasStorageDriver(backend, retrieval_cache_bytes=0)
        proxy.schedule(fault)
        started = time.monotonic()
        [claim] = await driver.store(CONTEXT, [payload := _payload(3000, seed=1)])
        assert time.monotonic() - started < 5.0 + SLACK
        proxy.schedule(fault)
        assert await driver.retrieve(RETRIEVE, [claim]) == [payload]
    assert proxy.injected[fault] == 2


async def test_under_20_percent_faults_no_payload_is_lost_or_wrong(
    gcs_place: GCSPlace, proxy: ChaosProxy
) -> None:
    payloads = [_payload(size, seed) for seed, size in enumerate([10, 3_000, 150_000] * 8)]

    async def timed(work: object) -> tuple[object, float]:
        started = time.monotonic()
        try:
            return await work, time.monotonic() - started  # type: ignore[misc]
        except CasstoreError as exc:
            return exc, time.monotonic() - started

    async with _through(gcs_place, proxy) as backend:
        proxy.configure(fault_rate=0.2, seed=20)
        writer = CasStorageDriver(backend, retrieval_cache_bytes=0)
        stores = await asyncio.gather(*(timed(writer.store(CONTEXT, [p])) for p in payloads))
        claims: list[StorageDriverClaim | None] = []
        for result, took in stores:
            assert took < 5.0 + 0.1 + SLACK, (took, result)
            claims.append(None if isinstance(result, CasstoreError) else result[0])  # type: ignore[index]
        proxy.configure(fault_rate=0.0)
        reader = CasStorageDriver(backend, retrieval_cache_bytes=0)
        for claim, payload in zip(claims, payloads, strict=True):
            if claim is not None:  # every claim handed out reads back its payload
                assert await reader.retrieve(RETRIEVE, [claim]) == [payload]
    failed = [r for r, _ in stores if isinstance(r, BaseException)]
    assert sum(proxy.injected.values()) >= 5
    assert all(isinstance(r, BackendUnavailableError) for r in failed), failed
    assert len(failed) <= len(payloads) // 10, failed
