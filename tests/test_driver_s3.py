"""CasStorageDriver on real S3 servers: what only S3 shows (requests, credentials, parts).

The driver suite every backend runs (casstore.testing.DriverTests: dedup,
races, refresh, vanished objects, hostile claims) runs on S3 from
tests/test_backend_s3.py.
"""

from __future__ import annotations

import json
import os
import secrets

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import StorageDriverClaim, StorageDriverRetrieveContext

from casstore import CasStorageDriver
from casstore.errors import (
    BackendPermissionError,
    BackendUnavailableError,
    ObjectNotFoundError,
)
from tests.support.s3 import RequestLog, S3Place, S3Target, s3_place
from tests.support.sdk import big_json, in_workflow, make_converter


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
