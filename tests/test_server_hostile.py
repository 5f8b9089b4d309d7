"""The codec server against hostile or malformed requests: each gets a 4xx saying what was wrong.

In process (httpx over ASGI), as tests/test_server_protocol.py, whose helpers
this module shares: deep JSON, the Authorization scheme's case, references
``/encode`` would write into history, malformed SDK S3 claims, and the log line
every refused request leaves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.contrib.aws.s3driver import S3StorageDriver
from temporalio.contrib.aws.s3driver.aioboto3 import new_aioboto3_client
from temporalio.converter import StorageDriver, StorageDriverClaim

from casstore import CasStorageDriver
from casstore.backends import MemoryBackend
from casstore.server import bearer_token_authorizer, create_app
from tests.support.s3 import S3Target, s3_place
from tests.support.server_http import (
    ORDER,
    body,
    payloads_of,
    post,
    still_serving,
    stored,
    values_of,
)

DEPTH = 100_000


@pytest.fixture
def driver() -> CasStorageDriver:
    return CasStorageDriver(MemoryBackend())


@pytest.fixture
async def client(driver: CasStorageDriver) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(driver, payload_size_threshold=0)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec.test") as client:
        yield client


def deep(depth: int = DEPTH) -> bytes:
    return b"[" * depth + b"]" * depth


def with_data(reference: Payload, data: bytes, *, legacy: bool = False) -> Payload:
    forged = Payload()
    forged.CopyFrom(reference)
    forged.data = data
    if legacy:
        forged.metadata.clear()
        forged.metadata["encoding"] = b"json/external-storage-reference"
    return forged


# Deep JSON: 400, never a RecursionError.


@pytest.mark.parametrize("route", ["/decode", "/download", "/encode"])
async def test_a_deeply_nested_body_gets_400(
    client: httpx.AsyncClient, driver: CasStorageDriver, route: str
) -> None:
    for content in (deep(), b'{"payloads": [' + deep() + b"]}"):
        response = await post(client, route, content)
        assert response.status_code == 400, response.text
        assert "request body is JSON nested too deeply" in response.json()["message"]
    await still_serving(client, driver)


@pytest.mark.parametrize("legacy", [False, True], ids=["json-protobuf", "legacy"])
@pytest.mark.parametrize("route", ["/decode", "/download", "/encode"])
async def test_a_deeply_nested_reference_gets_400_naming_it(
    client: httpx.AsyncClient, driver: CasStorageDriver, route: str, legacy: bool
) -> None:
    [good, reference] = await stored(driver, "fine", ORDER)
    nested = b'{"driverName": "casstore", "claimData": ' + deep() + b"}"
    response = await post(client, route, body([good, with_data(reference, nested, legacy=legacy)]))
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert "payloads[1] is a" in message
    assert "nested too deeply" in message or "maximum recursion depth" in message
    await still_serving(client, driver)


# The Authorization scheme is case-insensitive (RFC 7235).


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
async def test_bearer_scheme_in_any_case(driver: CasStorageDriver, scheme: str) -> None:
    app = create_app(driver, authorize=bearer_token_authorizer("s3cret"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://codec.test"
    ) as client:
        history = await stored(driver, ORDER)
        allowed = await post(client, "/decode", body(history), Authorization=f"{scheme} s3cret")
        assert values_of(allowed) == [ORDER]
        spaced = await post(client, "/decode", body(history), Authorization=f"{scheme}  s3cret")
        assert values_of(spaced) == [ORDER]
        for wrong in (f"{scheme} s3cre", f"{scheme}s3cret", "Basic s3cret", "s3cret"):
            refused = await post(client, "/decode", body(history), Authorization=wrong)
            assert refused.status_code == 403, wrong


# /encode writes into history: a payload typed as a reference must be a readable one.


@pytest.mark.parametrize(
    ("data", "legacy", "message"),
    [
        (b"not json", False, "payloads[1] is a storage reference whose data is not a valid"),
        (
            b'{"driverName": "casstore", "claimData": {}, "extra": 1}',
            False,
            "payloads[1] is a storage reference that workers could not read",
        ),
        (b'{"claimData": {}}', False, "payloads[1] is a storage reference without a driverName"),
        (b"not json", True, "payloads[1] is a legacy storage reference whose data is not JSON"),
        (
            b'{"driver_name": "casstore", "driver_claim": {"claim_data": {}}, "x": 1}',
            True,
            "payloads[1] is a legacy storage reference with unknown field(s) 'x'",
        ),
        (
            b'{"driver_name": "casstore", "driver_claim": {"claim_data": {}, "y": 2}}',
            True,
            "unknown field(s) 'driver_claim.y'",
        ),
    ],
)
async def test_encode_refuses_a_payload_typed_as_a_broken_reference(
    client: httpx.AsyncClient, driver: CasStorageDriver, data: bytes, legacy: bool, message: str
) -> None:
    [good, reference] = await stored(driver, "fine", ORDER)
    forged = with_data(reference, data, legacy=legacy)
    response = await post(client, "/encode", body([good, forged]))
    assert response.status_code == 400, response.text
    assert message in response.json()["message"]
    await still_serving(client, driver)


async def test_encode_still_takes_a_valid_reference(
    client: httpx.AsyncClient, driver: CasStorageDriver
) -> None:
    [reference] = await stored(driver, ORDER)
    response = await post(client, "/encode", body([reference]))
    assert response.status_code == 200, response.text
    # Passed through as it is: storing it again (threshold 0) would hand workers a
    # reference to a reference, which they resolve once and then cannot read.
    assert payloads_of(response) == [reference]


# A malformed SDK S3 claim is the caller's error (400), not a driver failure (502).


@pytest.mark.integration
async def test_a_malformed_sdk_s3_claim_gets_400(moto_s3: S3Target) -> None:
    async with s3_place(moto_s3) as place:
        s3_driver = S3StorageDriver(client=new_aioboto3_client(place.raw), bucket=place.bucket)
        [reference] = await stored(s3_driver, ORDER)
        claim = json.loads(reference.data)["claimData"]
        app = create_app(CasStorageDriver(MemoryBackend()), extra_drivers=[s3_driver])
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://codec.test"
        ) as client:
            broken = {
                "no bucket": ({k: v for k, v in claim.items() if k != "bucket"}, "no 'bucket'"),
                "bad bucket": ({**claim, "bucket": "no spaces allowed"}, "not a bucket name"),
                "no hash": (
                    {k: v for k, v in claim.items() if k != "hash_value"},
                    "no 'hash_value'",
                ),
                "md5": ({**claim, "hash_algorithm": "md5"}, "expected 'sha256'"),
                "short hash": ({**claim, "hash_value": "abc"}, "64 lower-case hex digits"),
                "long key": ({**claim, "key": "v0/d/" + "k" * 1100}, "longer than 1024 bytes"),
            }
            for name, (claim_data, message) in broken.items():
                data = json.dumps({"driverName": "aws.s3driver", "claimData": claim_data})
                forged = with_data(reference, data.encode())
                for route in ("/decode", "/download"):
                    response = await post(client, route, body([forged]))
                    assert response.status_code == 400, (name, response.text)
                    assert "payloads[0]: malformed aws.s3driver claim" in response.text
                    assert message in response.json()["message"], name
            assert values_of(await post(client, "/decode", body([reference]))) == [ORDER]


async def test_a_foreign_driver_missing_a_claim_field_gets_400(driver: CasStorageDriver) -> None:
    class Indexing(CasStorageDriver):
        """A driver that reads its claim by indexing, as the SDK's drivers do."""

        async def retrieve(self, context: object, claims: object) -> list[Payload]:
            for claim in claims:  # type: ignore[attr-defined]
                claim.claim_data["bucket"]
            raise AssertionError("unreachable")

    other = Indexing(MemoryBackend(), name="indexing")
    [reference] = await stored(other, ORDER)
    app = create_app(driver, extra_drivers=[other])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://codec.test"
    ) as client:
        response = await post(client, "/decode", body([reference]))
    assert response.status_code == 400, response.text
    assert "the claim lacks field 'bucket' that driver 'indexing' needs" in response.text


# Every refused request leaves a line in the log.


async def test_refused_requests_are_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="casstore.server")
    cases = [
        ("POST", "/frobnicate", 404),
        ("POST", "/a/b/decode", 404),
        ("GET", "/decode", 405),
        ("DELETE", "/default/encode", 405),
        ("POST", "/decode", 400),
    ]
    for method, path, status in cases:
        caplog.clear()
        headers = {"Content-Type": "application/json", "X-Namespace": "default"}
        response = await client.request(method, path, content=b"{", headers=headers)
        assert response.status_code == status
        lines = [r.getMessage() for r in caplog.records if r.name == "casstore.server"]
        assert lines == [f"{method} {path} -> {status}: {response.json()['message']}"], lines
        assert all(r.levelno == logging.INFO for r in caplog.records)


async def test_a_claim_the_claim_namespace_callback_cannot_read_gets_400(
    driver: CasStorageDriver,
) -> None:
    class Foreign(StorageDriver):
        def name(self) -> str:
            return "foreign"

        async def store(self, context: Any, payloads: Any) -> Any:
            return [StorageDriverClaim(claim_data={"id": str(i)}) for i, _ in enumerate(payloads)]

        async def retrieve(self, context: Any, claims: Any) -> Any:
            raise AssertionError("a claim that cannot be read is never retrieved")

    foreign = Foreign()
    [reference] = await stored(foreign, ORDER)
    app = create_app(
        driver, extra_drivers=[foreign], claim_namespace=lambda name, claim: claim["ns"]
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://codec.test"
    ) as client:
        response = await post(client, "/decode", body([reference]))
    assert response.status_code == 400, response.text
    assert (
        "the claim of driver 'foreign' cannot be read (claim_namespace raised KeyError"
        in (response.json()["message"])
    )
