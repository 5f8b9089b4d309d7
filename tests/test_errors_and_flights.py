"""Structured errors, batch labelling, single-flight and request-slot guarantees."""

from __future__ import annotations

import asyncio
import gc
import importlib.metadata
import pickle
import warnings

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

import casstore
from casstore import CasStorageDriver
from casstore._cache import SingleFlight
from casstore._format.claims import Claim, make_claim_data, parse_claim_data
from casstore._format.header import Codec
from casstore.backends import MemoryBackend
from casstore.errors import (
    BackendError,
    CasstoreError,
    IntegrityError,
    ObjectNotFoundError,
)
from tests.support.wait import wait_until

CONTEXT = StorageDriverStoreContext(target=StorageDriverWorkflowInfo(namespace="ns", id="wf"))


def test_errors_carry_key_and_backend_as_attributes() -> None:
    error = ObjectNotFoundError("no object [key=k]", key="k", backend="MemoryBackend()")
    assert (error.key, error.backend, error.position, error.batch_size) == (
        "k",
        "MemoryBackend()",
        None,
        None,
    )
    assert str(error) == "no object [key=k]"
    assert isinstance(error, FileNotFoundError)
    plain = CasstoreError("plain")
    assert (plain.key, plain.backend) == (None, None)


def test_batch_position_is_added_in_place_keeping_subclass_and_attributes() -> None:
    class NeedsMore(IntegrityError):
        def __init__(self, message: str, extra: int) -> None:
            super().__init__(message, key="k")
            self.extra = extra

    error = NeedsMore("bad bytes [key=k]", 7)
    labelled = error.in_batch(2, 5, "retrieve")
    assert type(labelled) is NeedsMore
    assert str(labelled) == "retrieve of payload 3 of 5 failed: bad bytes [key=k]"
    assert (labelled.position, labelled.batch_size, labelled.key, labelled.extra) == (2, 5, "k", 7)
    # The original is untouched: other callers may hold the same exception.
    assert (str(error), error.position) == ("bad bytes [key=k]", None)


async def test_batches_sharing_one_failed_read_each_get_their_own_label() -> None:
    backend = MemoryBackend()
    writer = CasStorageDriver(backend)
    [claim] = await writer.store(CONTEXT, [Payload(data=b"shared")])
    await backend.delete(parse_claim_data(claim.claim_data, max_size=1 << 20).key)
    reader = CasStorageDriver(backend)
    good = await writer.store(CONTEXT, [Payload(data=b"other")])
    results = await asyncio.gather(
        reader.retrieve(StorageDriverRetrieveContext(), [*good, claim]),
        reader.retrieve(StorageDriverRetrieveContext(), [claim, *good, *good]),
        return_exceptions=True,
    )
    messages = [str(r) for r in results]
    assert messages[0].startswith("retrieve of payload 2 of 2 failed: object not found")
    assert messages[1].startswith("retrieve of payload 1 of 3 failed: object not found")
    assert all(m.count("failed:") == 1 for m in messages), messages


def test_structured_errors_survive_pickling() -> None:
    error = BackendError("down [key=k]", key="k", backend="S3Backend(bucket=b)").in_batch(
        0, 2, "store"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.key, copy.backend, copy.position) == (str(error), "k", error.backend, 0)


async def test_a_batch_failure_reports_the_failing_payloads_own_error() -> None:
    backend = MemoryBackend()
    driver = CasStorageDriver(backend)
    claims = await driver.store(CONTEXT, [Payload(data=b"one"), Payload(data=b"two")])
    await backend.delete(parse_claim_data(claims[1].claim_data, max_size=1 << 20).key)
    fresh = CasStorageDriver(backend)
    with pytest.raises(ObjectNotFoundError) as info:
        await fresh.retrieve(StorageDriverRetrieveContext(), claims)
    assert str(info.value).startswith("retrieve of payload 2 of 2 failed: ")
    assert info.value.position == 1
    assert info.value.key == parse_claim_data(claims[1].claim_data, max_size=1 << 20).key


def test_claims_parse_once_into_the_types_callers_use() -> None:
    digest = bytes(range(32))
    claim = parse_claim_data(make_claim_data("ns/wf", digest, 10, Codec.ZSTD), max_size=100)
    assert claim == Claim(location="ns/wf", digest=digest, size=10, codec=Codec.ZSTD, version=1)
    assert claim.codec is Codec.ZSTD
    assert claim.key == "v1/ns/wf/" + digest.hex()


async def test_single_flight_caller_that_gives_up_never_fails_the_others() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    release = asyncio.Event()
    runs = 0

    async def operation() -> str:
        nonlocal runs
        runs += 1
        await release.wait()
        return "done"

    entered = [asyncio.Event(), asyncio.Event()]

    async def call(i: int) -> tuple[str, bool]:
        entered[i].set()  # run() reaches its wait without yielding first
        return await flights.run("k", operation)

    leader = asyncio.ensure_future(call(0))
    joiner = asyncio.ensure_future(call(1))
    for event in entered:
        await event.wait()
    leader.cancel()  # the caller that started the work gives up
    await asyncio.wait([leader])
    release.set()
    assert await joiner == ("done", True)
    assert leader.cancelled()
    assert runs == 1
    assert len(flights) == 0


async def test_single_flight_shares_a_failure_and_forgets_it() -> None:
    flights: SingleFlight[str, str] = SingleFlight()

    second = asyncio.Event()

    async def failing() -> str:
        await second.wait()  # fail only once both callers share the run
        raise BackendError("down")

    async def second_caller() -> tuple[str, bool]:
        second.set()  # run() joins without yielding first
        return await flights.run("k", failing)

    results = await asyncio.gather(
        flights.run("k", failing), second_caller(), return_exceptions=True
    )
    assert all(isinstance(r, BackendError) for r in results)
    assert len(flights) == 0

    async def working() -> str:
        return "ok"

    assert await flights.run("k", working) == ("ok", False)


async def test_request_cancelled_while_waiting_for_a_slot_leaves_no_unawaited_coroutine() -> None:
    release = asyncio.Event()
    holding = asyncio.Event()

    class Blocking(MemoryBackend):
        async def put(self, key: str, data: bytes) -> bool:
            holding.set()
            await release.wait()
            return await super().put(key, data)

    def waiting_for_the_slot() -> bool:
        semaphore = driver._run._semaphore  # the one slot, which the holder has
        return semaphore is not None and bool(semaphore._waiters)

    driver = CasStorageDriver(Blocking(), max_concurrency=1)
    holder = asyncio.ensure_future(driver.store(CONTEXT, [Payload(data=b"first")]))
    await holding.wait()
    waiter = asyncio.ensure_future(driver.store(CONTEXT, [Payload(data=b"second")]))
    await wait_until(waiting_for_the_slot, 10, what="the second store waits for the slot")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
    release.set()
    await holder


def test_version_is_written_in_one_place() -> None:
    assert importlib.metadata.version("casstore") == casstore.__version__


async def test_retrieve_checks_claim_then_reads_once_per_key() -> None:
    backend = MemoryBackend()
    driver = CasStorageDriver(backend)
    [claim] = await driver.store(CONTEXT, [Payload(data=b"x" * 100)])
    reader = CasStorageDriver(backend)
    payloads = await reader.retrieve(StorageDriverRetrieveContext(), [claim] * 10)
    assert {p.data for p in payloads} == {b"x" * 100}
    assert reader.stats.objects_read == 1
    with pytest.raises(CasstoreError):
        await reader.retrieve(StorageDriverRetrieveContext(), [StorageDriverClaim({"c": "[9]"})])
