"""The fault runs the GCS and Redis driver tests share: one fault, then 20% of requests.

Each test module brings its own proxy (HTTP chaos for GCS, TCP chaos for
Redis) and says how to schedule and configure it; what a user checks is the
same: a store and a retrieve survive one fault within the deadline, and under
a fault rate nothing handed out is lost or wrong.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from casstore import CasStorageDriver
from casstore.backends import Backend
from casstore.errors import BackendUnavailableError, CasstoreError

CONTEXT = StorageDriverStoreContext(
    target=StorageDriverWorkflowInfo(namespace="default", id="faults", run_id=None, type="W")
)
RETRIEVE = StorageDriverRetrieveContext()
SLACK = 1.0
"""Seconds an operation may overrun its deadline: scheduling on a loaded 2-core machine."""
DEADLINE = 5.0
"""The driver's default per-payload deadline, in seconds."""


def payload(size: int, seed: int) -> Payload:
    """Random bytes (incompressible), the same for the same seed."""
    rng = random.Random(seed)
    return Payload(metadata={"encoding": b"binary/plain"}, data=rng.randbytes(size))


async def timed(work: Awaitable[Any]) -> tuple[Any, float]:
    """The result (or the casstore error) of ``work`` and the seconds it took."""
    started = time.monotonic()
    try:
        return await work, time.monotonic() - started
    except CasstoreError as exc:
        return exc, time.monotonic() - started


async def survive_one_fault(backend: Backend, schedule: Callable[[], None]) -> None:
    """Store then retrieve one payload, each with one fault scheduled, within the deadline."""
    driver = CasStorageDriver(backend, retrieval_cache_bytes=0)
    schedule()
    stored = payload(3000, seed=1)
    [claim], took = await timed(driver.store(CONTEXT, [stored]))
    assert took < DEADLINE + SLACK, took
    schedule()
    assert await driver.retrieve(RETRIEVE, [claim]) == [stored]


async def nothing_lost_under_faults(
    backend: Backend, start: Callable[[], None], stop: Callable[[], None]
) -> None:
    """Store 1 then 24 payloads while ``start`` faults run, then read back every claim handed out.

    A store may fail, but only in time and as :class:`BackendUnavailableError`,
    and for at most a tenth of the 24. The first store also follows the
    store's lifecycle manifest, whose wait counts against its deadline; it is
    made alone, as a worker's first one is, so that a slow manifest under
    faults fails at most that one call instead of all 24 at once.
    """
    first = payload(2_000, seed=99)
    payloads = [payload(size, seed) for seed, size in enumerate([10, 3_000, 150_000] * 8)]
    start()
    writer = CasStorageDriver(backend, retrieval_cache_bytes=0)
    stores = [await timed(writer.store(CONTEXT, [first]))]
    stores += await asyncio.gather(*(timed(writer.store(CONTEXT, [p])) for p in payloads))
    claims: list[StorageDriverClaim | None] = []
    for result, took in stores:
        assert took < DEADLINE + 0.1 + SLACK, (took, result)
        claims.append(None if isinstance(result, CasstoreError) else result[0])
    stop()
    reader = CasStorageDriver(backend, retrieval_cache_bytes=0)
    for claim, stored in zip(claims, [first, *payloads], strict=True):
        if claim is not None:  # every claim handed out reads back its payload
            assert await reader.retrieve(RETRIEVE, [claim]) == [stored]
    failed = [r for r, _ in stores if isinstance(r, CasstoreError)]
    assert all(isinstance(r, BackendUnavailableError) for r in failed), failed
    assert len([r for r, _ in stores[1:] if isinstance(r, CasstoreError)]) <= len(payloads) // 10, (
        failed
    )
