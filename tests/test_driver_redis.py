"""CasStorageDriver on RedisBackend: refresh under a TTL, faults on the wire.

The driver suite every backend runs (casstore.testing.DriverTests) runs on
Redis from tests/test_backend_redis.py.

Faults come from a real TCP proxy (testrig/tcpchaos.py) in front of the real
redis-server: connections reset before and after the server acted, requests
swallowed, delays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest

from casstore import CasStorageDriver
from casstore.backends import CountingBackend
from casstore.backends.redis import RedisBackend
from testrig.tcpchaos import TCP_FAULTS, TcpChaosProxy
from tests.support.faults import nothing_lost_under_faults, survive_one_fault
from tests.support.redis import RedisPlace
from tests.support.sdk import big_json, in_workflow, make_converter

pytestmark = pytest.mark.integration


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


def _through(redis_place: RedisPlace, proxy: TcpChaosProxy) -> RedisBackend:
    return RedisBackend("127.0.0.1", proxy.port, prefix=redis_place.prefix, socket_timeout=1)


@pytest.mark.parametrize("fault", TCP_FAULTS)
async def test_each_fault_is_survived_within_the_deadline(
    redis_place: RedisPlace, proxy: TcpChaosProxy, fault: str
) -> None:
    async with _through(redis_place, proxy) as backend:
        await survive_one_fault(backend, lambda: proxy.schedule(fault))
    assert proxy.injected[fault] == 2


async def test_under_20_percent_faults_no_payload_is_lost_or_wrong(
    redis_place: RedisPlace, proxy: TcpChaosProxy
) -> None:
    async with _through(redis_place, proxy) as backend:
        # Connections are made before the faults start, like a worker's.
        await backend.stat("v1/default/warm/" + "00" * 32)
        await nothing_lost_under_faults(
            backend,
            start=lambda: proxy.configure(fault_rate=0.2),
            stop=lambda: proxy.configure(fault_rate=0.0),
        )
    assert sum(proxy.injected.values()) >= 5
