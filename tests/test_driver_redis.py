"""CasStorageDriver on RedisBackend: refresh under a TTL, faults on the wire.

The driver suite every backend runs (casstore.testing.DriverTests) runs on
Redis from tests/test_backend_redis.py.

Faults come from a real TCP proxy (testrig/tcpchaos.py) in front of the real
redis-server: connections reset before and after the server acted, requests
swallowed, delays.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from casstore import CasStorageDriver
from casstore.backends import CountingBackend
from casstore.backends.redis import RedisBackend
from casstore.errors import BackendUnavailableError, CasstoreError
from testrig.tcpchaos import TCP_FAULTS, TcpChaosProxy
from tests.support.redis import RedisPlace
from tests.support.sdk import big_json, in_workflow, make_converter

pytestmark = pytest.mark.integration

CONTEXT = StorageDriverStoreContext(
    target=StorageDriverWorkflowInfo(namespace="default", id="faults", run_id=None, type="W")
)
RETRIEVE = StorageDriverRetrieveContext()
SLACK = 1.0
"""Seconds an operation may overrun its deadline: scheduling on a loaded 2-core machine."""


async def test_refresh_after_resets_the_ttl_before_a_claim_is_handed_out(
    redis_place: RedisPlace,
) -> None:
    # TTL 6 s and the default refresh_after (1 day), capped at half the TTL:
    # every claim points to an object at least 3 s from expiry.
    async with CountingBackend(redis_place.backend(ttl=timedelta(seconds=6))) as backend:
        driver = CasStorageDriver(backend)
        converter = in_workflow(make_converter(driver))
        value = big_json(10_000)
        await converter.encode([value])
        [name] = [k for k in await redis_place.raw_keys() if "#modified/" not in k]
        await asyncio.sleep(3.3)
        left = await redis_place.raw.pttl(name)
        assert left < 2800
        backend.calls.clear()
        [reference] = await converter.encode([value])
        assert backend.calls["touch"] == 1
        assert driver.stats.objects_refreshed == 1
        assert await redis_place.raw.pttl(name) > 5000
        assert await make_converter(CasStorageDriver(backend)).decode([reference]) == [value]


# Faults.


@pytest.fixture
def proxy(redis_place: RedisPlace) -> Iterator[TcpChaosProxy]:
    with TcpChaosProxy(redis_place.server.address, seed=7, latency=0.3) as chaos:
        yield chaos


def _payload(size: int, seed: int) -> Payload:
    rng = random.Random(seed)
    return Payload(metadata={"encoding": b"binary/plain"}, data=rng.randbytes(size))


@pytest.mark.parametrize("fault", TCP_FAULTS)
async def test_each_fault_is_survived_within_the_deadline(
    redis_place: RedisPlace, proxy: TcpChaosProxy, fault: str
) -> None:
    backend = RedisBackend("127.0.0.1", proxy.port, prefix=redis_place.prefix, socket_timeout=1)
    async with backend:
        driver = CasStorageDriver(backend, retrieval_cache_bytes=0)
        proxy.schedule(fault)
        started = time.monotonic()
        [claim] = await driver.store(CONTEXT, [payload := _payload(3000, seed=1)])
        assert time.monotonic() - started < 5.0 + SLACK
        proxy.schedule(fault)
        assert await driver.retrieve(RETRIEVE, [claim]) == [payload]
    assert proxy.injected[fault] == 2


async def test_under_20_percent_faults_no_payload_is_lost_or_wrong(
    redis_place: RedisPlace, proxy: TcpChaosProxy
) -> None:
    payloads = [_payload(size, seed) for seed, size in enumerate([10, 3_000, 150_000] * 8)]

    async def timed(work: object) -> tuple[object, float]:
        started = time.monotonic()
        try:
            return await work, time.monotonic() - started  # type: ignore[misc]
        except CasstoreError as exc:
            return exc, time.monotonic() - started

    backend = RedisBackend("127.0.0.1", proxy.port, prefix=redis_place.prefix, socket_timeout=1)
    async with backend:
        # Connections are made before the faults start, like a worker's.
        await backend.stat("v1/default/warm/" + "00" * 32)
        proxy.configure(fault_rate=0.2)
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
