"""CasStorageDriver on real S3 servers: request counts, races, refresh, failures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import StorageDriverClaim, StorageDriverRetrieveContext

from casstore import CasStorageDriver
from casstore.errors import (
    BackendPermissionError,
    BackendUnavailableError,
    ClaimError,
    ObjectNotFoundError,
)
from tests.helpers import big_json, in_workflow, make_converter
from tests.s3_fixtures import RequestLog, S3Place, S3Target, s3_place


async def last_modified(s3: S3Place, key: str) -> datetime:
    head = await s3.raw.head_object(Bucket=s3.bucket, Key=key)
    return head["LastModified"]


async def test_dedup_of_a_large_payload_costs_one_head_and_one_put_then_nothing(
    s3: S3Place,
) -> None:
    log = RequestLog()
    async with s3.backend(log=log) as backend:
        converter = in_workflow(make_converter(CasStorageDriver(backend)))
        value = big_json(100_000)  # above WRITE_FIRST_MAX_SIZE: checked before upload
        for _ in range(3):
            [reference] = await converter.encode([value])
        assert log.counts == {"HeadObject": 1, "PutObject": 1}

        log.calls.clear()  # a new worker process: empty caches, same bucket
        fresh = in_workflow(make_converter(CasStorageDriver(backend)))
        assert await fresh.encode([value]) == [reference]
        assert log.counts == {"HeadObject": 1}

        log.calls.clear()  # a reader that stored nothing itself
        reader = make_converter(CasStorageDriver(backend))
        for _ in range(3):
            assert await reader.decode([reference]) == [value]
        assert log.counts == {"GetObject": 1}


async def test_small_payload_is_written_with_one_request(s3: S3Place) -> None:
    log = RequestLog()
    async with s3.backend(log=log) as backend:
        value = big_json(10_000)
        for process in range(2):  # two worker processes storing the same payload
            log.calls.clear()
            await in_workflow(make_converter(CasStorageDriver(backend))).encode([value])
            if s3.target.conditional_writes:
                # The conditional PUT is the existence check: 412 the second time,
                # then one HEAD for the object's age (refresh_after, on by default).
                assert log.counts == (
                    {"PutObject": 1} if process == 0 else {"PutObject": 1, "HeadObject": 1}
                )
            else:
                assert log.counts == (
                    {"HeadObject": 1, "PutObject": 1} if process == 0 else {"HeadObject": 1}
                )
    assert len(await s3.raw_keys()) == 1


async def test_fan_out_of_one_payload_costs_one_put(s3: S3Place) -> None:
    log = RequestLog()
    async with s3.backend(log=log) as backend:
        driver = CasStorageDriver(backend, scope="namespace")
        value = big_json(100_000)
        # 50 children started at once with the same input, as a fan-out does.
        references = await asyncio.gather(
            *(in_workflow(make_converter(driver), f"child-{i}").encode([value]) for i in range(50))
        )
        assert log.counts == {"HeadObject": 1, "PutObject": 1}
        assert driver.stats.dedup_inflight_hits + driver.stats.dedup_cache_hits == 49
        assert len({ref.SerializeToString() for [ref] in references}) == 1
    assert len(await s3.raw_keys()) == 1


async def test_two_drivers_racing_to_create_one_object(s3: S3Place) -> None:
    # Both drivers find the object missing, then both PUT: the barrier holds
    # each PutObject until the other driver has reached its own.
    barrier = asyncio.Barrier(2)

    async def after_both_headed(**_: Any) -> None:
        await barrier.wait()

    log = RequestLog()
    async with contextlib.AsyncExitStack() as stack:
        drivers = []
        for _ in range(2):
            session = s3.session(log=log)
            session.events.register("before-call.s3.PutObject", after_both_headed)
            backend = await stack.enter_async_context(s3.backend(session=session))
            # The barrier holds a PUT until the other driver (maybe still
            # building its client on a loaded machine) gets there: no retries.
            drivers.append(CasStorageDriver(backend, timeout=30, attempt_timeout=30))
        value = big_json(20_000)
        async with asyncio.timeout(30):
            results = await asyncio.gather(
                *(in_workflow(make_converter(driver)).encode([value]) for driver in drivers)
            )
        if s3.target.conditional_writes:
            # Small: the conditional PUT checks; the loser then reads the age.
            assert log.counts == {"PutObject": 2, "HeadObject": 1}
        else:
            assert log.counts == {"HeadObject": 2, "PutObject": 2}
        written = [driver.stats.objects_written for driver in drivers]
        if s3.target.conditional_writes:
            # The loser's 412 is a dedup hit, not an error.
            assert sorted(written) == [0, 1]
            assert sorted(driver.stats.dedup_backend_hits for driver in drivers) == [0, 1]
        else:
            assert written == [1, 1]  # the server let the second PUT overwrite
        assert results[0] == results[1]
        for driver in drivers:
            reader = CasStorageDriver(driver.backend)
            assert await make_converter(reader).decode(results[0]) == [value]
    assert len(await s3.raw_keys()) == 1


async def test_refresh_after_refreshes_old_objects_and_bounds_the_cache(s3: S3Place) -> None:
    log = RequestLog()
    async with s3.backend(log=log) as backend:
        # Long enough that a loaded machine's second store still falls inside it.
        driver = CasStorageDriver(backend, refresh_after=timedelta(seconds=3))
        converter = in_workflow(make_converter(driver))
        value = big_json(10_000)
        await converter.encode([value])
        log.calls.clear()
        await converter.encode([value])
        assert log.counts == {}  # fresh: the cache vouches for it
        [key] = await s3.raw_keys()
        written = await last_modified(s3, key)

        await asyncio.sleep(3.2)  # past refresh_after; S3 keeps one-second timestamps
        log.calls.clear()
        await converter.encode([value])
        # Too old for the cache to vouch for: found (by the refused conditional
        # write, or by the check first), found old, refreshed.
        found = {"PutObject": 1} if s3.target.conditional_writes else {}
        assert log.counts == {**found, "HeadObject": 1, "CopyObject": 1}
        assert driver.stats.objects_refreshed == 1
        assert await last_modified(s3, key) > written
        assert await make_converter(CasStorageDriver(backend)).decode(
            await converter.encode([value])
        ) == [value]


async def test_refresh_after_leaves_fresh_objects_alone(s3: S3Place) -> None:
    log = RequestLog()
    value = big_json(10_000)
    async with s3.backend(log=log) as backend:
        await in_workflow(make_converter(CasStorageDriver(backend))).encode([value])
        [key] = await s3.raw_keys()
        written = await last_modified(s3, key)

        log.calls.clear()
        driver = CasStorageDriver(backend, refresh_after=timedelta(days=7))
        await in_workflow(make_converter(driver)).encode([value])
        found = {"PutObject": 1} if s3.target.conditional_writes else {}
        assert log.counts == {**found, "HeadObject": 1}
        assert driver.stats.objects_refreshed == 0
        assert await last_modified(s3, key) == written


async def test_object_deleted_behind_the_drivers_back(s3: S3Place) -> None:
    log = RequestLog()
    async with s3.backend(log=log) as backend:
        driver = CasStorageDriver(backend, retrieval_cache_bytes=0)
        converter = in_workflow(make_converter(driver))
        value = big_json(10_000)
        [reference] = await converter.encode([value])
        [key] = await s3.raw_keys()
        await s3.raw.delete_object(Bucket=s3.bucket, Key=key)

        with pytest.raises(ObjectNotFoundError) as info:
            await converter.decode([reference])
        assert f"bucket={s3.bucket}" in str(info.value)
        assert f"key={key}" in str(info.value)

        # The failed read taught the driver the object is gone: storing the
        # payload again writes it again instead of trusting the cache.
        log.calls.clear()
        assert await converter.encode([value]) == [reference]
        assert log.counts["PutObject"] == 1
        assert len(await s3.raw_keys()) == 1
        assert await converter.decode([reference]) == [value]


async def test_wrong_credentials_name_bucket_and_permissions(rclone_s3: S3Target) -> None:
    async with s3_place(rclone_s3) as s3, s3.backend(access_key="AKIAWRONG") as backend:
        converter = in_workflow(make_converter(CasStorageDriver(backend)))
        with pytest.raises(BackendPermissionError, match="credentials") as info:
            await converter.encode([big_json(1_000)])
        assert f"bucket={s3.bucket}" in str(info.value)
        # A driver's first request is its read of the lifecycle manifest.
        assert "_casstore/lifecycle.json" in str(info.value)
        assert "s3:GetObject" in str(info.value)


async def test_missing_bucket_names_it(s3: S3Place) -> None:
    missing = f"casstore-missing-{secrets.token_hex(8)}"
    async with s3.backend(bucket=missing) as backend:
        converter = in_workflow(make_converter(CasStorageDriver(backend)))
        with pytest.raises(BackendUnavailableError, match="does not exist") as info:
            await converter.encode([big_json(1_000)])
        assert f"bucket={missing}" in str(info.value)


async def test_20_mib_payload_round_trips_in_parts(s3: S3Place) -> None:
    log = RequestLog()
    payload = Payload(metadata={"encoding": b"binary/plain"}, data=os.urandom(20 * 1024 * 1024))
    async with s3.backend(log=log) as backend:
        writer = CasStorageDriver(backend)
        [reference] = await in_workflow(make_converter(writer)).encode([payload])
        assert log.counts == {
            "HeadObject": 1,
            "CreateMultipartUpload": 1,
            "UploadPart": 3,  # 8 + 8 + 4 MiB: random bytes stay raw
            "CompleteMultipartUpload": 1,
        }
        reader = CasStorageDriver(backend)
        assert await make_converter(reader).decode([reference]) == [payload]
        assert reader.stats.bytes_read > 20 * 1024 * 1024


def sdk_style_claim(bucket: str) -> dict[str, str]:
    return {
        "bucket": bucket,
        "key": "v0/ns/default/d/sha256/" + "0" * 64,
        "hash_algorithm": "sha256",
        "hash_value": "0" * 64,
    }


async def test_hostile_claims_are_rejected_before_any_request(s3: S3Place) -> None:
    log = RequestLog()
    async with s3.backend(log=log) as backend:
        driver = CasStorageDriver(backend)
        digest = "A" * 43
        hostile = [
            sdk_style_claim("other-bucket"),  # the SDK's S3 driver names bucket and key
            {"c": json.dumps([1, "../../other-bucket", digest, 10, 0])},
            {"c": json.dumps([1, "default/../../../etc", digest, 10, 0])},
            {"c": json.dumps([1, "s3://other-bucket/x", digest, 10, 0])},
            {"c": json.dumps([1, "default/wf/" + "a" * 64, digest, 10, 0])},
            {"c": json.dumps([1, "default/wf", digest, 10, 0]), "bucket": "other-bucket"},
        ]
        for claim_data in hostile:
            with pytest.raises(ClaimError):
                await driver.retrieve(
                    StorageDriverRetrieveContext(), [StorageDriverClaim(claim_data=claim_data)]
                )
        assert log.calls == []


async def test_claims_can_only_reach_this_bucket_and_prefix(s3: S3Place) -> None:
    # A well-formed claim carries a location, never a bucket: whatever names it
    # holds, the object key is derived under this backend's bucket and prefix.
    log = RequestLog()
    async with s3.backend(log=log) as backend:
        driver = CasStorageDriver(backend)
        claim = {"c": json.dumps([1, "other-bucket/secrets", "A" * 43, 10, 0])}
        with pytest.raises(ObjectNotFoundError):
            await driver.retrieve(
                StorageDriverRetrieveContext(), [StorageDriverClaim(claim_data=claim)]
            )
    # The object, then its trash copy (docs/operations.md): both in this bucket and prefix.
    [(operation, bucket, key), (trash_operation, trash_bucket, trash)] = log.calls
    assert (operation, bucket) == ("GetObject", s3.bucket)
    assert key.startswith(f"{s3.prefix}/v1/other-bucket/secrets/")
    assert (trash_operation, trash_bucket) == ("GetObject", s3.bucket)
    assert trash == f"{s3.prefix}/_casstore/trash/{key.removeprefix(s3.prefix + '/')}"
