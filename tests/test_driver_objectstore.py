"""CasStorageDriver on ObjectStoreBackend: what only the object stores show (credentials, names).

The driver suite every backend runs (casstore.testing.DriverTests: dedup,
races, refresh, vanished objects, a 12 MiB payload in one request, hostile
claims) runs on moto, rclone and Azurite from tests/test_backend_objectstore.py.
"""

from __future__ import annotations

import json

import pytest
from temporalio.converter import StorageDriverClaim, StorageDriverRetrieveContext

from casstore import CasStorageDriver
from casstore.backends import CountingBackend
from casstore.errors import (
    BackendPermissionError,
    BackendUnavailableError,
    ObjectNotFoundError,
)
from tests.support.objectstore import (
    WRONG_CREDENTIALS,
    ObjStorePlace,
    objstore_place,
    target_server,
)
from tests.support.sdk import big_json, in_workflow, make_converter

# Every test here needs a server; some pick theirs at run time.
pytestmark = pytest.mark.integration


@pytest.mark.parametrize("target", ["rclone", "azurite"])
async def test_wrong_credentials_name_the_store_and_permissions(
    request: pytest.FixtureRequest, target: str
) -> None:
    server, wrong = target_server(request, target), WRONG_CREDENTIALS[target]
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
