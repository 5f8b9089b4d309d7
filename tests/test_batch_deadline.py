"""A healthy backend never fails a batch for its size; a stalled one fails it in bounded time.

A payload's deadline counts the time its own requests run, not the time it
waits behind the rest of its batch for a request slot (``max_concurrency``);
that wait ends only when the backend answers nothing for a whole deadline.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from casstore import CasStorageDriver
from casstore._format.manifest import MANIFEST_KEY
from casstore.backends import Backend, LocalBackend, MemoryBackend
from casstore.backends._wrappers import LatencyBackend
from casstore.backends.s3 import S3Backend
from casstore.errors import BackendUnavailableError
from testrig.chaos import ChaosProxy
from tests.support.s3 import S3Target, s3_place
from tests.support.sdk import in_workflow, make_converter

CONTEXT = StorageDriverStoreContext(
    target=StorageDriverWorkflowInfo(namespace="default", id="batch", run_id=None, type="W")
)
BATCH = 10_000
S3_BATCH = int(os.environ.get("CASSTORE_S3_BATCH", "2000"))
"""Payloads of the S3 batch: 2,000 in ``make test`` (about 20 s against moto, and
already far past what the default 5 s deadline allowed when it counted the wait
for a request slot); ``make batch-soak`` runs 10,000."""
TIMEOUT = 1.0
"""Per-payload deadline in these tests: far below what a 10,000-payload batch takes."""
SLACK = 1.0
"""Seconds a failure may come after its bound: scheduling on a loaded 2-core machine."""


def _payloads(count: int) -> list[Payload]:
    """Distinct 100-byte payloads (serialized), so every one is its own object."""
    return [
        Payload(metadata={"encoding": b"binary/plain"}, data=f"{i:08d}".encode() * 9)
        for i in range(count)
    ]


async def _round_trip(driver: CasStorageDriver, payloads: list[Payload]) -> None:
    claims = await driver.store(CONTEXT, payloads)
    assert len(claims) == len(payloads)
    reader = CasStorageDriver(driver.backend, retrieval_cache_bytes=0, timeout=TIMEOUT)
    assert await reader.retrieve(StorageDriverRetrieveContext(), claims) == payloads


async def test_ten_thousand_payloads_in_one_store_succeed_on_local_disk(tmp_path: Path) -> None:
    driver = CasStorageDriver(LocalBackend(tmp_path), timeout=TIMEOUT, attempt_timeout=TIMEOUT)
    payloads = _payloads(BATCH)
    started = time.monotonic()
    await _round_trip(driver, payloads)
    # Only meaningful if the batch took longer than one payload's deadline.
    assert time.monotonic() - started > TIMEOUT
    assert driver.stats.objects_written == BATCH


async def test_the_sdk_converter_encodes_ten_thousand_values_at_once(tmp_path: Path) -> None:
    driver = CasStorageDriver(LocalBackend(tmp_path), timeout=TIMEOUT, attempt_timeout=TIMEOUT)
    converter = in_workflow(make_converter(driver))
    values = [f"value {i:06d} " * 6 for i in range(BATCH)]
    references = await converter.encode(values)
    assert len(references) == BATCH
    assert driver.stats.objects_written == BATCH
    assert await converter.decode(references[:100]) == values[:100]


async def test_a_big_batch_succeeds_on_s3_at_20_ms_per_request(moto_s3: S3Target) -> None:
    upstream = urlsplit(moto_s3.endpoint_url or "")
    assert upstream.port is not None
    with ChaosProxy(
        ("127.0.0.1", upstream.port), fault_rate=1.0, faults=["latency"], latency=0.02
    ) as proxy:
        async with (
            s3_place(moto_s3) as place,
            S3Backend(
                place.bucket,
                place.prefix,
                session=place.session(),
                endpoint_url=proxy.endpoint_url,
                conditional_writes=moto_s3.conditional_writes,
            ) as backend,
        ):
            # The default deadline (5 s): the batch takes far longer.
            driver = CasStorageDriver(backend)
            claims = await driver.store(CONTEXT, _payloads(S3_BATCH))
            assert len(claims) == S3_BATCH
            assert driver.stats.objects_written == S3_BATCH
        assert proxy.injected["latency"] >= S3_BATCH


class HangingBackend(LatencyBackend):
    """A backend whose server accepts requests for objects and never answers.

    The lifecycle manifest, which every call waits for on a driver's first
    store, is answered: the payloads' requests are what these tests stall.
    """

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner, latency=3600)

    async def _before(self, kind: str, key: str) -> None:
        if key != MANIFEST_KEY:
            await super()._before(kind, key)


@pytest.mark.parametrize("count", [10, BATCH])
async def test_a_stalled_backend_fails_a_batch_within_a_bound_independent_of_its_size(
    count: int,
) -> None:
    driver = CasStorageDriver(HangingBackend(MemoryBackend()), timeout=0.5, attempt_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="deadline"):
        await driver.store(CONTEXT, _payloads(count))
    assert time.monotonic() - started < 0.5 + SLACK


async def test_calls_queued_behind_a_stalled_backend_all_fail_within_two_deadlines() -> None:
    # 200 separate calls and two request slots: the calls that never get a slot
    # are failed by the stall detector, not left waiting their turn.
    driver = CasStorageDriver(
        HangingBackend(MemoryBackend()), timeout=0.5, attempt_timeout=0.2, max_concurrency=2
    )
    started = time.monotonic()
    results = await asyncio.gather(
        *(driver.store(CONTEXT, [p]) for p in _payloads(200)), return_exceptions=True
    )
    took = time.monotonic() - started
    assert all(isinstance(r, BackendUnavailableError) for r in results)
    assert took < 2 * 0.5 + SLACK
    stalled = [r for r in results if "looks stalled" in str(r)]
    assert stalled, results[:3]
    assert "free request slot (max_concurrency)" in str(stalled[0])
    assert "key=v1/default/batch/" in str(stalled[0])
