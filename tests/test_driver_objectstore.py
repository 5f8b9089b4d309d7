"""CasStorageDriver on ObjectStoreBackend, on moto, rclone and Azurite.

The same checks tests/test_driver_s3.py makes on the aioboto3 backend:
request counts, races, refresh, failures, confinement. Every backend call of
ObjectStoreBackend is exactly one HTTP request (no multipart, no retries on
these healthy servers), so counting calls with CountingBackend counts requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import StorageDriverClaim, StorageDriverRetrieveContext

from casstore import CasStorageDriver
from casstore.backends import Backend, CountingBackend
from casstore.errors import (
    BackendPermissionError,
    BackendUnavailableError,
    ClaimError,
    ObjectNotFoundError,
)
from tests.helpers import big_json, in_workflow, make_converter
from tests.objectstore_fixtures import ObjStorePlace, objstore_place


@contextlib.asynccontextmanager
async def counted(place: ObjStorePlace, **options: Any) -> AsyncIterator[CountingBackend]:
    async with CountingBackend(place.backend(**options)) as backend:
        yield backend


async def test_dedup_of_a_large_payload_costs_one_check_and_one_write_then_nothing(
    objstore: ObjStorePlace,
) -> None:
    async with counted(objstore) as backend:
        converter = in_workflow(make_converter(CasStorageDriver(backend)))
        value = big_json(100_000)  # above the write-first size: checked before upload
        for _ in range(3):
            [reference] = await converter.encode([value])
        assert backend.calls == {"stat": 1, "put": 1}

        backend.calls.clear()  # a new worker process: empty caches, same store
        fresh = in_workflow(make_converter(CasStorageDriver(backend)))
        assert await fresh.encode([value]) == [reference]
        assert backend.calls == {"stat": 1}

        backend.calls.clear()  # a reader that stored nothing itself
        reader = make_converter(CasStorageDriver(backend))
        for _ in range(3):
            assert await reader.decode([reference]) == [value]
        assert backend.calls == {"get": 1}


async def test_small_payload_is_written_with_one_request(objstore: ObjStorePlace) -> None:
    async with counted(objstore) as backend:
        value = big_json(10_000)
        for process in range(2):  # two worker processes storing the same payload
            backend.calls.clear()
            await in_workflow(make_converter(CasStorageDriver(backend))).encode([value])
            if objstore.conditional_writes:
                # The conditional PUT is the existence check: 412 or 409 the second
                # time, then one HEAD for the object's age (refresh_after, on by default).
                assert backend.calls == ({"put": 1} if process == 0 else {"put": 1, "stat": 1})
            else:
                assert backend.calls == ({"stat": 1, "put": 1} if process == 0 else {"stat": 1})
    assert len(await objstore.raw_keys()) == 1


async def test_fan_out_of_one_payload_costs_one_write(objstore: ObjStorePlace) -> None:
    async with counted(objstore) as backend:
        driver = CasStorageDriver(backend, scope="namespace")
        value = big_json(100_000)
        references = await asyncio.gather(
            *(in_workflow(make_converter(driver), f"child-{i}").encode([value]) for i in range(50))
        )
        assert backend.calls == {"stat": 1, "put": 1}
        assert driver.stats.dedup_inflight_hits + driver.stats.dedup_cache_hits == 49
        assert len({ref.SerializeToString() for [ref] in references}) == 1
    assert len(await objstore.raw_keys()) == 1


class _PutsMeetFirst(CountingBackend):
    """Holds each put until both drivers have reached theirs: a real race on the service."""

    def __init__(self, inner: Backend, barrier: asyncio.Barrier) -> None:
        super().__init__(inner)
        self.barrier = barrier

    async def _before(self, kind: str, key: str) -> None:
        await super()._before(kind, key)
        if kind == "put":
            await self.barrier.wait()


async def test_two_drivers_racing_to_create_one_object(objstore: ObjStorePlace) -> None:
    barrier = asyncio.Barrier(2)
    async with contextlib.AsyncExitStack() as stack:
        backends = [
            await stack.enter_async_context(_PutsMeetFirst(objstore.backend(), barrier))
            for _ in range(2)
        ]
        drivers = [CasStorageDriver(backend) for backend in backends]
        value = big_json(20_000)
        async with asyncio.timeout(30):
            results = await asyncio.gather(
                *(in_workflow(make_converter(driver)).encode([value]) for driver in drivers)
            )
        written = sorted(driver.stats.objects_written for driver in drivers)
        calls = backends[0].calls + backends[1].calls
        if objstore.conditional_writes:
            # Small: the conditional PUT checks; the loser then reads the age.
            assert calls == {"put": 2, "stat": 1}
            # The loser's 412 (moto) or 409 (Azurite) is a dedup hit, not an error.
            assert written == [0, 1]
            assert sorted(driver.stats.dedup_backend_hits for driver in drivers) == [0, 1]
        else:
            assert calls == {"stat": 2, "put": 2}
            assert written == [1, 1]  # rclone let the second PUT overwrite
        assert results[0] == results[1]
        for driver in drivers:
            reader = CasStorageDriver(driver.backend)
            assert await make_converter(reader).decode(results[0]) == [value]
    assert len(await objstore.raw_keys()) == 1


async def test_refresh_after_refreshes_old_objects(objstore: ObjStorePlace) -> None:
    async with counted(objstore) as backend:
        # Long enough that a loaded machine's second store still falls inside it.
        driver = CasStorageDriver(backend, refresh_after=timedelta(seconds=3))
        converter = in_workflow(make_converter(driver))
        value = big_json(10_000)
        await converter.encode([value])
        backend.calls.clear()
        await converter.encode([value])
        assert backend.calls == {}  # fresh: the cache vouches for it
        [name] = await objstore.raw_keys()
        written = await objstore.last_modified(name)

        await asyncio.sleep(3.2)  # past refresh_after; the services keep 1 s timestamps
        backend.calls.clear()
        await converter.encode([value])
        # Too old for the cache to vouch for: found (by the refused conditional
        # write, or by the check first), found old, refreshed.
        found = {"put": 1} if objstore.conditional_writes else {}
        assert backend.calls == {**found, "stat": 1, "touch": 1}
        assert driver.stats.objects_refreshed == 1
        assert await objstore.last_modified(name) > written
        assert await make_converter(CasStorageDriver(backend)).decode(
            await converter.encode([value])
        ) == [value]


async def test_refresh_after_leaves_fresh_objects_alone(objstore: ObjStorePlace) -> None:
    value = big_json(10_000)
    async with counted(objstore) as backend:
        await in_workflow(make_converter(CasStorageDriver(backend))).encode([value])
        [name] = await objstore.raw_keys()
        written = await objstore.last_modified(name)

        backend.calls.clear()
        driver = CasStorageDriver(backend, refresh_after=timedelta(days=7))
        await in_workflow(make_converter(driver)).encode([value])
        found = {"put": 1} if objstore.conditional_writes else {}
        assert backend.calls == {**found, "stat": 1}
        assert driver.stats.objects_refreshed == 0
        assert await objstore.last_modified(name) == written


async def test_object_deleted_behind_the_drivers_back(objstore: ObjStorePlace) -> None:
    async with counted(objstore) as backend:
        driver = CasStorageDriver(backend, retrieval_cache_bytes=0)
        converter = in_workflow(make_converter(driver))
        value = big_json(10_000)
        [reference] = await converter.encode([value])
        [name] = await objstore.raw_keys()
        await objstore.raw_delete(name[len(objstore.prefix) + 1 :])

        with pytest.raises(ObjectNotFoundError) as info:
            await converter.decode([reference])
        assert f"={objstore.container}, key={name}" in str(info.value)

        # The failed read taught the driver the object is gone: storing the
        # payload again writes it again instead of trusting the cache.
        backend.calls.clear()
        assert await converter.encode([value]) == [reference]
        assert backend.calls["put"] == 1
        assert len(await objstore.raw_keys()) == 1
        assert await converter.decode([reference]) == [value]


@pytest.mark.parametrize("target", ["rclone", "azurite"])
async def test_wrong_credentials_name_the_store_and_permissions(
    request: pytest.FixtureRequest, target: str
) -> None:
    server = request.getfixturevalue("azurite" if target == "azurite" else "rclone_s3")
    wrong: dict[str, Any] = (
        {"account_key": "d3Jvbmcga2V5"} if target == "azurite" else {"access_key_id": "AKIAWRONG"}
    )
    async with objstore_place(target, server) as place, place.backend(**wrong) as backend:
        converter = in_workflow(make_converter(CasStorageDriver(backend)))
        with pytest.raises(BackendPermissionError, match="credentials") as info:
            await converter.encode([big_json(1_000)])
        assert f"={place.container}" in str(info.value)
        # A driver's first request is its read of the lifecycle manifest.
        assert "_casstore/lifecycle.json" in str(info.value)
        expected = "s3:GetObject" if target == "rclone" else "Storage Blob Data"
        assert expected in str(info.value)


async def test_missing_bucket_or_container_names_it(objstore: ObjStorePlace) -> None:
    missing = "casstore-missing-" + objstore.container[-12:]
    async with objstore.backend(container=missing) as backend:
        converter = in_workflow(make_converter(CasStorageDriver(backend)))
        with pytest.raises(BackendUnavailableError, match="does not exist") as info:
            await converter.encode([big_json(1_000)])
        assert f"={missing}" in str(info.value)


async def test_12_mib_payload_round_trips_in_one_request(objstore: ObjStorePlace) -> None:
    payload = Payload(metadata={"encoding": b"binary/plain"}, data=os.urandom(12 * 1024 * 1024))
    async with counted(objstore) as backend:
        writer = CasStorageDriver(backend)
        [reference] = await in_workflow(make_converter(writer)).encode([payload])
        assert backend.calls == {"stat": 1, "put": 1}  # one conditional PUT, no multipart
        reader = CasStorageDriver(backend)
        assert await make_converter(reader).decode([reference]) == [payload]
        assert reader.stats.bytes_read > 12 * 1024 * 1024


async def test_hostile_claims_are_rejected_before_any_request(objstore: ObjStorePlace) -> None:
    async with counted(objstore) as backend:
        driver = CasStorageDriver(backend)
        digest = "A" * 43
        hostile = [
            {"bucket": "other", "key": "v0/ns/default/d/sha256/" + "0" * 64},
            {"c": json.dumps([1, "../../other-container", digest, 10, 0])},
            {"c": json.dumps([1, "default/../../../etc", digest, 10, 0])},
            {"c": json.dumps([1, "az://other-container/x", digest, 10, 0])},
            {"c": json.dumps([1, "default/wf/" + "a" * 64, digest, 10, 0])},
            {"c": json.dumps([1, "default/wf", digest, 10, 0]), "container": "other"},
        ]
        for claim_data in hostile:
            with pytest.raises(ClaimError):
                await driver.retrieve(
                    StorageDriverRetrieveContext(), [StorageDriverClaim(claim_data=claim_data)]
                )
        assert backend.calls == {}


async def test_claims_can_only_reach_this_container_and_prefix(objstore: ObjStorePlace) -> None:
    # A well-formed claim carries a location, never a bucket or container:
    # whatever names it holds, the key is derived under this backend's prefix.
    secret = "v1/other-container/secrets/" + "ab" * 32
    await objstore.raw_put_name(secret, b"not yours")
    async with objstore.backend() as inner, CountingBackend(inner) as backend:
        driver = CasStorageDriver(backend)
        claim = {"c": json.dumps([1, "other-container/secrets", "A" * 43, 10, 0])}
        with pytest.raises(ObjectNotFoundError) as info:
            await driver.retrieve(
                StorageDriverRetrieveContext(), [StorageDriverClaim(claim_data=claim)]
            )
        # The object, then its trash copy (docs/operations.md): both under this prefix.
        assert backend.calls == {"get": 2}
    assert f"key={objstore.prefix}/v1/other-container/secrets/" in str(info.value)
