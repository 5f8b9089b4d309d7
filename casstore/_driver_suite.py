"""The driver-over-backend suite: what :class:`CasStorageDriver` promises on any backend.

:class:`DriverTests` runs the driver on the backend a test module supplies
(the same ``backend`` fixture :class:`~casstore.testing.BackendTests` takes)
and counts the backend calls it makes: one check and one write per distinct
payload however many workflows store it, nothing for a payload it knows, one
read per retrieval, refreshes of old objects only, rewrites after an object
vanished, and hostile claims refused before any call. The backend's own
methods observe the store (the conformance suite vouches for them).

Re-exported by :mod:`casstore.testing`; requires pytest and pytest-asyncio.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Callable
from datetime import timedelta

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverSelectContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from casstore._driver import CasStorageDriver
from casstore.backends._base import Backend
from casstore.backends._wrappers import CountingBackend
from casstore.errors import ClaimError, ObjectNotFoundError

__all__ = ["DriverTests", "big_json", "in_workflow", "make_converter"]


def make_converter(
    *drivers: StorageDriver,
    threshold: int = 0,
    selector: Callable[[StorageDriverSelectContext, Payload], StorageDriver | None] | None = None,
) -> DataConverter:
    """A default DataConverter with external storage, as a client or worker has it."""
    return dataclasses.replace(
        DataConverter.default,
        external_storage=ExternalStorage(
            drivers=list(drivers), driver_selector=selector, payload_size_threshold=threshold
        ),
    )


def in_workflow(
    converter: DataConverter,
    workflow_id: str = "order-42",
    *,
    namespace: str = "default",
    run_id: str | None = None,
    workflow_type: str | None = "Parent",
) -> DataConverter:
    """The converter as the SDK binds it while storing for a workflow target."""
    # _with_store_context is how the SDK binds targets; there is no public hook.
    return converter._with_store_context(
        StorageDriverStoreContext(
            target=StorageDriverWorkflowInfo(
                namespace=namespace, id=workflow_id, run_id=run_id, type=workflow_type
            )
        )
    )


def big_json(size: int, seed: int = 0) -> dict[str, list[dict[str, object]]]:
    """A JSON-like value of roughly ``size`` bytes that compresses like real data."""
    rows: list[dict[str, object]] = []
    i = 0
    while len(rows) * 48 < size:
        rows.append(
            {"id": seed * 1_000_000 + i, "name": f"customer-{i % 977}", "active": i % 3 == 0}
        )
        i += 1
    return {"rows": rows}


class _PutsMeetFirst(CountingBackend):
    """Holds each put until both drivers have reached theirs: a real race on the store."""

    def __init__(self, inner: Backend, barrier: asyncio.Barrier) -> None:
        super().__init__(inner)
        self.barrier = barrier

    async def _before(self, kind: str, key: str) -> None:
        await super()._before(kind, key)
        if kind == "put":
            await self.barrier.wait()


async def _keys(backend: Backend) -> list[str]:
    return [key async for key, _ in backend.scan("v1/")]


class DriverTests:
    """The driver suite a backend's test module inherits, next to ``BackendTests``.

    Subclasses define a ``backend`` fixture (async, function scope, an open,
    empty store). Class attributes tune it to the store:
    """

    refresh_after = timedelta(seconds=3)
    """Age at which the driver refreshes an object in the refresh test: above
    the store's timestamp resolution (S3 and Azure keep whole seconds), and
    long enough that a loaded machine's second store still falls inside it."""

    large_payload_size = 12 * 1024 * 1024
    """Size of the random payload the large round trip stores."""

    def names_in_errors(self, backend: Backend, key: str) -> list[str]:
        """What a not-found error for ``key`` must name (override to add bucket, prefix)."""
        return [key]

    # The tests.

    async def test_dedup_of_a_large_payload_costs_one_check_and_one_write_then_nothing(
        self, backend: Backend
    ) -> None:
        counted = CountingBackend(backend)
        converter = in_workflow(make_converter(CasStorageDriver(counted)))
        value = big_json(100_000)  # above the write-first size: checked before upload
        for _ in range(3):
            [reference] = await converter.encode([value])
        assert counted.calls == {"stat": 1, "put": 1}

        counted.calls.clear()  # a new worker process: empty caches, same store
        fresh = in_workflow(make_converter(CasStorageDriver(counted)))
        assert await fresh.encode([value]) == [reference]
        assert counted.calls == {"stat": 1}

        counted.calls.clear()  # a reader that stored nothing itself
        reader = make_converter(CasStorageDriver(counted))
        for _ in range(3):
            assert await reader.decode([reference]) == [value]
        assert counted.calls == {"get": 1}

    async def test_small_payload_is_written_with_one_request(self, backend: Backend) -> None:
        counted = CountingBackend(backend)
        value = big_json(10_000)
        for process in range(2):  # two worker processes storing the same payload
            counted.calls.clear()
            await in_workflow(make_converter(CasStorageDriver(counted))).encode([value])
            if backend.conditional_writes:
                # The conditional write is the existence check: refused the second
                # time, then one check for the object's age (refresh_after, on by default).
                assert counted.calls == ({"put": 1} if process == 0 else {"put": 1, "stat": 1})
            else:
                assert counted.calls == ({"stat": 1, "put": 1} if process == 0 else {"stat": 1})
        assert len(await _keys(backend)) == 1

    async def test_fan_out_of_one_payload_costs_one_write(self, backend: Backend) -> None:
        counted = CountingBackend(backend)
        driver = CasStorageDriver(counted, scope="namespace")
        value = big_json(100_000)
        # 50 children started at once with the same input, as a fan-out does.
        references = await asyncio.gather(
            *(in_workflow(make_converter(driver), f"child-{i}").encode([value]) for i in range(50))
        )
        assert counted.calls == {"stat": 1, "put": 1}
        assert driver.stats.dedup_inflight_hits + driver.stats.dedup_cache_hits == 49
        assert len({ref.SerializeToString() for [ref] in references}) == 1
        assert len(await _keys(backend)) == 1

    async def test_two_drivers_racing_to_create_one_object(self, backend: Backend) -> None:
        # Both drivers find the object missing, then both write: the barrier holds
        # each put until the other driver has reached its own.
        barrier = asyncio.Barrier(2)
        racers = [_PutsMeetFirst(backend, barrier) for _ in range(2)]
        # The barrier holds a put until the other driver gets there: no retries.
        drivers = [CasStorageDriver(racer, timeout=30, attempt_timeout=30) for racer in racers]
        value = big_json(20_000)
        async with asyncio.timeout(30):
            results = await asyncio.gather(
                *(in_workflow(make_converter(driver)).encode([value]) for driver in drivers)
            )
        written = sorted(driver.stats.objects_written for driver in drivers)
        calls = racers[0].calls + racers[1].calls
        if backend.conditional_writes:
            # Small: the conditional write checks; the loser then reads the age.
            assert calls == {"put": 2, "stat": 1}
            # The loser's refused write is a dedup hit, not an error.
            assert written == [0, 1]
            assert sorted(driver.stats.dedup_backend_hits for driver in drivers) == [0, 1]
        else:
            assert calls == {"stat": 2, "put": 2}
            assert written == [1, 1]  # the store let the second write overwrite
        assert results[0] == results[1]
        for driver in drivers:
            reader = CasStorageDriver(driver.backend)
            assert await make_converter(reader).decode(results[0]) == [value]
        assert len(await _keys(backend)) == 1

    async def test_refresh_after_refreshes_old_objects(self, backend: Backend) -> None:
        counted = CountingBackend(backend)
        driver = CasStorageDriver(counted, refresh_after=self.refresh_after)
        converter = in_workflow(make_converter(driver))
        value = big_json(10_000)
        await converter.encode([value])
        counted.calls.clear()
        await converter.encode([value])
        assert counted.calls == {}  # fresh: the cache vouches for it
        [key] = await _keys(backend)
        written = await backend.stat(key)
        assert written is not None

        # Time passing, not ordering: the object must grow older than refresh_after.
        await asyncio.sleep(self.refresh_after.total_seconds() + 0.2)
        counted.calls.clear()
        await converter.encode([value])
        # Too old for the cache to vouch for: found (by the refused conditional
        # write, or by the check first), found old, refreshed.
        found = {"put": 1} if backend.conditional_writes else {}
        assert counted.calls == {**found, "stat": 1, "touch": 1}
        assert driver.stats.objects_refreshed == 1
        refreshed = await backend.stat(key)
        assert refreshed is not None
        assert refreshed.modified > written.modified
        assert await make_converter(CasStorageDriver(backend)).decode(
            await converter.encode([value])
        ) == [value]

    async def test_refresh_after_leaves_fresh_objects_alone(self, backend: Backend) -> None:
        counted = CountingBackend(backend)
        value = big_json(10_000)
        await in_workflow(make_converter(CasStorageDriver(counted))).encode([value])
        [key] = await _keys(backend)
        written = await backend.stat(key)

        counted.calls.clear()
        driver = CasStorageDriver(counted, refresh_after=timedelta(days=7))
        await in_workflow(make_converter(driver)).encode([value])
        found = {"put": 1} if backend.conditional_writes else {}
        assert counted.calls == {**found, "stat": 1}
        assert driver.stats.objects_refreshed == 0
        assert await backend.stat(key) == written

    async def test_object_deleted_behind_the_drivers_back(self, backend: Backend) -> None:
        counted = CountingBackend(backend)
        driver = CasStorageDriver(counted, retrieval_cache_bytes=0)
        converter = in_workflow(make_converter(driver))
        value = big_json(10_000)
        [reference] = await converter.encode([value])
        [key] = await _keys(backend)
        await backend.delete(key)

        with pytest.raises(ObjectNotFoundError) as info:
            await converter.decode([reference])
        for name in self.names_in_errors(backend, key):
            assert name in str(info.value)

        # The failed read taught the driver the object is gone: storing the
        # payload again writes it again instead of trusting the cache.
        counted.calls.clear()
        assert await converter.encode([value]) == [reference]
        assert counted.calls["put"] == 1
        assert len(await _keys(backend)) == 1
        assert await converter.decode([reference]) == [value]

    async def test_large_random_payload_round_trips(self, backend: Backend) -> None:
        size = self.large_payload_size
        payload = Payload(metadata={"encoding": b"binary/plain"}, data=os.urandom(size))
        counted = CountingBackend(backend)
        writer = CasStorageDriver(counted)
        [reference] = await in_workflow(make_converter(writer)).encode([payload])
        assert counted.calls == {"stat": 1, "put": 1}
        reader = CasStorageDriver(counted)
        assert await make_converter(reader).decode([reference]) == [payload]
        assert reader.stats.bytes_read > size

    async def test_hostile_claims_are_rejected_before_any_request(self, backend: Backend) -> None:
        counted = CountingBackend(backend)
        driver = CasStorageDriver(counted)
        digest = "A" * 43
        hostile = [
            # The SDK's S3 driver names bucket and key.
            {"bucket": "other-bucket", "key": "v0/ns/default/d/sha256/" + "0" * 64},
            {"c": json.dumps([1, "../../other-bucket", digest, 10, 0])},
            {"c": json.dumps([1, "default/../../../etc", digest, 10, 0])},
            {"c": json.dumps([1, "s3://other-bucket/x", digest, 10, 0])},
            {"c": json.dumps([1, "az://other-container/x", digest, 10, 0])},
            {"c": json.dumps([1, "default/wf/" + "a" * 64, digest, 10, 0])},
            {"c": json.dumps([1, "default/wf", digest, 10, 0]), "bucket": "other-bucket"},
            {"c": json.dumps([1, "default/wf", digest, 10, 0]), "container": "other"},
        ]
        for claim_data in hostile:
            with pytest.raises(ClaimError):
                await driver.retrieve(
                    StorageDriverRetrieveContext(), [StorageDriverClaim(claim_data=claim_data)]
                )
        assert counted.calls == {}

    async def test_claims_can_only_reach_keys_under_this_store(self, backend: Backend) -> None:
        # A well-formed claim carries a location, never a bucket or container:
        # whatever names it holds, the key is derived inside this store.
        counted = CountingBackend(backend)
        driver = CasStorageDriver(counted)
        claim = {"c": json.dumps([1, "other-container/secrets", "A" * 43, 10, 0])}
        with pytest.raises(ObjectNotFoundError) as info:
            await driver.retrieve(
                StorageDriverRetrieveContext(), [StorageDriverClaim(claim_data=claim)]
            )
        # The object, then its trash copy (docs/operations.md).
        assert counted.calls == {"get": 2}
        assert "v1/other-container/secrets/" in str(info.value)
