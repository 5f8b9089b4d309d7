"""CasStorageDriver on GCSBackend (fake-gcs-server): requests, refresh, races, faults on the wire.

Faults come from the real HTTP chaos proxy (testrig/chaos.py) in front of the
real server: 5xx answers, resets before, after and in the middle of answers,
requests never answered, trickled answers, delays.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import StorageDriverClaim

from casstore import CasStorageDriver
from casstore.backends import CountingBackend
from casstore.backends.gcs import GCSBackend
from casstore.errors import BackendUnavailableError, CasstoreError
from testrig.chaos import FAULTS, ChaosProxy
from tests.gcs_fixtures import GCSPlace
from tests.helpers import big_json, in_workflow, make_converter
from tests.test_s3_faults import CONTEXT, RETRIEVE, SLACK

pytestmark = pytest.mark.integration


async def test_dedup_costs_one_write_then_one_check_and_reads_one_get(
    gcs_place: GCSPlace,
) -> None:
    async with CountingBackend(gcs_place.backend()) as backend:
        value = big_json(100_000)
        for _ in range(3):
            [reference] = await in_workflow(make_converter(CasStorageDriver(backend))).encode(
                [value]
            )
        assert backend.calls == {"stat": 3, "put": 1}
        backend.calls.clear()
        small = big_json(5_000)
        for process in range(2):  # small payloads: the conditional write is the check
            backend.calls.clear()
            await in_workflow(make_converter(CasStorageDriver(backend))).encode([small])
            assert backend.calls == ({"put": 1} if process == 0 else {"put": 1, "stat": 1})
        backend.calls.clear()
        assert await make_converter(CasStorageDriver(backend)).decode([reference]) == [value]
        assert backend.calls == {"get": 1}
    assert len(await gcs_place.raw_keys()) == 2


async def test_refresh_after_rewrites_old_objects(gcs_place: GCSPlace) -> None:
    async with CountingBackend(gcs_place.backend()) as backend:
        driver = CasStorageDriver(backend, refresh_after=timedelta(seconds=2))
        converter = in_workflow(make_converter(driver))
        value = big_json(10_000)
        await converter.encode([value])
        [name] = await gcs_place.raw_keys()
        before = await asyncio.to_thread(gcs_place.raw.metadata, gcs_place.bucket, name)
        await asyncio.sleep(2.2)
        backend.calls.clear()
        [reference] = await converter.encode([value])
        assert backend.calls == {"put": 1, "stat": 1, "touch": 1}
        after = await asyncio.to_thread(gcs_place.raw.metadata, gcs_place.bucket, name)
        assert after["timeCreated"] > before["timeCreated"]
        assert await make_converter(CasStorageDriver(backend)).decode([reference]) == [value]


async def test_two_drivers_racing_to_create_one_object(gcs_place: GCSPlace) -> None:
    async with gcs_place.backend() as backend:
        drivers = [CasStorageDriver(backend) for _ in range(2)]
        value = big_json(10_000)
        results = await asyncio.gather(
            *(in_workflow(make_converter(d)).encode([value]) for d in drivers)
        )
        assert results[0] == results[1]
        assert sum(d.stats.objects_written for d in drivers) == 1


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
