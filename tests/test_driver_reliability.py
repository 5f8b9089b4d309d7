"""Driver reliability without a network: deadlines, retries, bounded reads, freed buffers."""

import asyncio
import gc
import os
import re
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from casstore import CasStorageDriver
from casstore._format.claims import parse_claim_data
from casstore._format.manifest import MANIFEST_KEY
from casstore.backends import Backend, CountingBackend, LocalBackend, MemoryBackend
from casstore.backends._wrappers import FailingBackend, LatencyBackend
from casstore.errors import (
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
    IntegrityError,
)

CONTEXT = StorageDriverStoreContext(
    target=StorageDriverWorkflowInfo(namespace="default", id="rel", run_id=None, type="W")
)
RETRIEVE = StorageDriverRetrieveContext()


class HangingBackend(LatencyBackend):
    """A backend whose server accepts requests for objects and never answers.

    The lifecycle manifest (read on a driver's first store) is answered, so
    that the payload's own deadline is what these tests see.
    """

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner, latency=3600)

    async def _before(self, kind: str, key: str) -> None:
        if key != MANIFEST_KEY:
            await super()._before(kind, key)


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _store(driver: CasStorageDriver, data: bytes) -> StorageDriverClaim:
    [claim] = await driver.store(CONTEXT, [Payload(data=data)])
    return claim


async def test_a_backend_that_never_answers_fails_within_the_deadline() -> None:
    driver = CasStorageDriver(HangingBackend(MemoryBackend()), timeout=0.6, attempt_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        await _store(driver, b"small payload")
    took = time.monotonic() - started
    assert took < 0.6 + 0.3
    message = str(info.value)
    assert re.search(
        r"gave up after [23] attempt\(s\) in 0\.6\ds, past its 0\.60s deadline", message
    )
    assert "attempt 1: no answer within 0.20s; attempt 2: no answer within 0.20s" in message
    assert "key=v1/default/rel/" in message
    assert "backend=memory" in message


async def test_a_manifest_read_that_never_answers_fails_the_store_within_the_deadline() -> None:
    hanging = LatencyBackend(MemoryBackend(), latency=3600)
    driver = CasStorageDriver(hanging, timeout=0.6, attempt_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match=r"0\.60s deadline \[key=_casstore/lifec"):
        await _store(driver, b"small payload")
    assert time.monotonic() - started < 0.6 + 0.3


async def test_waiting_for_the_manifest_counts_against_the_first_stores_deadline() -> None:
    # Each request takes 0.4 s of a 0.6 s deadline: the manifest read, then the
    # payload's write. A call that finished at 0.8 s would take about two deadlines.
    slow = LatencyBackend(MemoryBackend(), latency=0.4)
    driver = CasStorageDriver(slow, timeout=0.6, attempt_timeout=0.6)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as caught:
        await _store(driver, b"small payload")
    assert time.monotonic() - started < 0.6 + 0.15
    message = str(caught.value)
    assert "0.60s deadline (0.4" in message
    assert "of it waiting for the store's lifecycle manifest)" in message
    assert "key=v1/default/rel/" in message


async def test_recording_the_manifest_takes_one_deadline_for_all_its_requests() -> None:
    # Read (not found), then create: 0.35 s each, one 0.6 s deadline for both.
    slow = LatencyBackend(MemoryBackend(), latency=0.35)
    driver = CasStorageDriver(slow, timeout=0.6, attempt_timeout=0.6, lifecycle_manifest=True)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match=r"backend put .* \[key=_casstore/lifec"):
        await _store(driver, b"small payload")
    assert time.monotonic() - started < 0.6 + 0.15


async def test_the_deadline_grows_with_the_payload_size() -> None:
    driver = CasStorageDriver(
        HangingBackend(MemoryBackend()), timeout=0.2, attempt_timeout=0.1, min_throughput=1e6
    )
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match=r"0\.70s deadline"):
        await _store(driver, os.urandom(500_000))
    assert 0.7 <= time.monotonic() - started < 1.2


async def test_transient_failures_are_retried_within_the_deadline() -> None:
    inner = CountingBackend(MemoryBackend())
    backend = FailingBackend(
        inner, fail_on={"put", "get"}, error=BackendUnavailableError("503 SlowDown"), times=4
    )
    driver = CasStorageDriver(backend, retrieval_cache_bytes=0)
    claim = await _store(driver, b"payload")
    [payload] = await driver.retrieve(RETRIEVE, [claim])
    assert payload.data == b"payload"
    assert backend.remaining == 0  # all four injected failures were absorbed


async def test_permanent_failures_are_not_retried() -> None:
    inner = CountingBackend(MemoryBackend())
    backend = FailingBackend(inner, fail_on={"put"}, error=BackendPermissionError("403"), times=1)
    driver = CasStorageDriver(backend)
    with pytest.raises(BackendPermissionError):
        await _store(driver, b"payload")
    assert backend.remaining == 0
    assert inner.calls["put"] == 0


@pytest.mark.parametrize("option", ["timeout", "attempt_timeout", "min_throughput"])
def test_timeouts_must_be_positive(option: str) -> None:
    with pytest.raises(ConfigurationError, match=option):
        CasStorageDriver(MemoryBackend(), **{option: 0})  # type: ignore[arg-type]


async def test_a_bad_claim_racing_a_good_one_fails_alone() -> None:
    backend = LatencyBackend(MemoryBackend(), latency=0.05)
    writer = CasStorageDriver(backend)
    good = await _store(writer, b"x" * 1000)
    size = parse_claim_data(good.claim_data, max_size=1 << 20).size
    claim_text = good.claim_data["c"]
    bad = StorageDriverClaim(claim_data={"c": claim_text.replace(f",{size},", f",{size + 1},")})
    assert bad.claim_data != good.claim_data
    reader = CasStorageDriver(backend, retrieval_cache_bytes=0)
    results = await asyncio.gather(
        reader.retrieve(RETRIEVE, [bad]),
        reader.retrieve(RETRIEVE, [good]),
        reader.retrieve(RETRIEVE, [bad]),
        return_exceptions=True,
    )
    assert isinstance(results[0], IntegrityError)
    assert isinstance(results[2], IntegrityError)
    assert not isinstance(results[1], BaseException)
    assert results[1][0].data == b"x" * 1000


async def test_failed_reads_free_their_buffers_without_garbage_collection(
    no_gc: None,
) -> None:
    backend = MemoryBackend()
    data = os.urandom(4 * 1024 * 1024)
    claim = await _store(CasStorageDriver(backend, compression_level=None, chunking=False), data)
    [key] = list(backend._objects)
    obj, modified = backend._objects[key]
    backend._objects[key] = (obj[:-1] + bytes([obj[-1] ^ 1]), modified)
    del obj, data
    reader = CasStorageDriver(backend, retrieval_cache_bytes=0)
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            results = await asyncio.gather(
                *(reader.retrieve(RETRIEVE, [claim]) for _ in range(5)), return_exceptions=True
            )
            assert all(isinstance(r, IntegrityError) for r in results)
            del results
        retained = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    # Without the fix each failed read kept its 4 MiB buffers until a gc run.
    assert retained < 1024 * 1024, f"{retained / 2**20:.1f} MiB kept alive by failed reads"


async def test_an_oversized_local_object_is_refused_before_it_is_read(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    claim = await _store(CasStorageDriver(backend), b"thirty bytes of payload data..")
    [key] = [k async for k, _ in backend.scan()]
    with backend.path_for(key).open("r+b") as file:
        file.truncate(2 * 1024**3)  # sparse: no disk used
    reader = CasStorageDriver(backend)
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError, match="2147483648 bytes") as info:
            await reader.retrieve(RETRIEVE, [claim])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.key == key
    assert peak < 1024 * 1024
