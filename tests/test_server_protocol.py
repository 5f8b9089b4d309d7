"""The codec server's HTTP protocol, in process (httpx over ASGI): routes, headers, refusals."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from temporalio.api.common.v1 import Payload
from temporalio.contrib.aws.s3driver import S3StorageDriver
from temporalio.contrib.aws.s3driver.aioboto3 import new_aioboto3_client
from temporalio.converter import (
    DataConverter,
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
)

from casstore import CasStorageDriver, KeyRing
from casstore._format.claims import parse_claim_data
from casstore.backends import MemoryBackend
from casstore.server import bearer_token_authorizer, create_app
from tests.support.codec import ENCODING as ENCRYPTED
from tests.support.codec import EncryptionCodec
from tests.support.s3 import S3Target, s3_place
from tests.support.sdk import OpenCloseBackend, codec_converter
from tests.support.server_http import (
    JSON,
    ORDER,
    body,
    payloads_of,
    post,
    still_serving,
    stored,
    values_of,
)


def is_reference(payload: Payload) -> bool:
    return payload.metadata.get("messageType") == b"temporal.api.sdk.v1.ExternalStorageReference"


def key_of(reference: Payload) -> str:
    """The object key a casstore reference points at."""
    return parse_claim_data(json.loads(reference.data)["claimData"], max_size=1 << 30).key


ClientFactory = Callable[..., httpx.AsyncClient]


@pytest.fixture
def driver() -> CasStorageDriver:
    return CasStorageDriver(MemoryBackend())


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    clients: list[httpx.AsyncClient] = []

    def make(store: Any, **options: Any) -> httpx.AsyncClient:
        app = create_app(store, **options)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://codec.test"
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def client(make_client: ClientFactory, driver: CasStorageDriver) -> httpx.AsyncClient:
    return make_client(driver, cors_origins=["http://localhost:8233"])


# Routes and the three operations.


async def test_decode_resolves_references_as_the_cli_asks(
    client: httpx.AsyncClient, driver: CasStorageDriver
) -> None:
    history = await stored(driver, ORDER, "second argument")
    assert all(is_reference(p) for p in history)
    assert values_of(await post(client, "/decode", body(history))) == [ORDER, "second argument"]


@pytest.mark.parametrize("operation", ["decode", "download"])
async def test_routes_under_a_namespace_prefix(
    client: httpx.AsyncClient, driver: CasStorageDriver, operation: str
) -> None:
    history = await stored(driver, ORDER)
    response = await post(client, f"/default/{operation}", body(history), namespace=None)
    assert values_of(response) == [ORDER]


@pytest.mark.parametrize("flag", ["true", "TRUE", "True"])
async def test_preserve_storage_refs_keeps_references(
    client: httpx.AsyncClient, driver: CasStorageDriver, flag: str
) -> None:
    history = await stored(driver, ORDER)
    response = await post(client, f"/decode?preserveStorageRefs={flag}", body(history))
    assert payloads_of(response) == history


async def test_preserve_storage_refs_false_resolves(
    client: httpx.AsyncClient, driver: CasStorageDriver
) -> None:
    history = await stored(driver, ORDER)
    response = await post(client, "/decode?preserveStorageRefs=false", body(history))
    assert values_of(response) == [ORDER]


async def test_inline_max_bytes_resolves_small_payloads_even_when_preserving(
    make_client: ClientFactory, driver: CasStorageDriver
) -> None:
    client = make_client(driver, inline_max_bytes=100)
    small, large = await stored(driver, "small", {"rows": list(range(200))})
    response = await post(client, "/decode?preserveStorageRefs=true", body([small, large]))
    decoded = payloads_of(response)
    assert DataConverter.default.payload_converter.from_payloads(decoded[:1]) == ["small"]
    assert decoded[1] == large


async def test_decode_passes_inline_payloads_through(
    client: httpx.AsyncClient, driver: CasStorageDriver
) -> None:
    inline = DataConverter.default.payload_converter.to_payloads(["inline"])
    reference = await stored(driver, ORDER)
    response = await post(client, "/decode", body(inline + reference))
    assert values_of(response) == ["inline", ORDER]


async def test_download_returns_each_stored_payload(
    client: httpx.AsyncClient, driver: CasStorageDriver
) -> None:
    history = await stored(driver, ORDER, [1, 2, 3])
    response = await post(client, "/download?preserveStorageRefs=true", body(history))
    assert values_of(response) == [ORDER, [1, 2, 3]]


async def test_download_refuses_a_payload_that_is_not_a_reference(
    client: httpx.AsyncClient, driver: CasStorageDriver
) -> None:
    inline = DataConverter.default.payload_converter.to_payloads(["inline"])
    response = await post(client, "/download", body((await stored(driver, ORDER)) + inline))
    assert response.status_code == 400
    assert "payloads[1] is not a storage reference" in response.json()["message"]


async def test_encode_stores_and_decode_reads_back(
    make_client: ClientFactory, driver: CasStorageDriver
) -> None:
    client = make_client(driver, payload_size_threshold=0)
    plain = DataConverter.default.payload_converter.to_payloads([ORDER])
    encoded = payloads_of(await post(client, "/team-a/encode", body(plain), namespace=None))
    assert is_reference(encoded[0])
    claim = json.loads(json.loads(encoded[0].data)["claimData"]["c"])
    assert claim[1] == "team-a"  # stored in the request's namespace
    assert values_of(await post(client, "/team-a/decode", body(encoded), namespace=None)) == [ORDER]
    refused = await post(client, "/team-b/decode", body(encoded), namespace=None)
    assert refused.status_code == 403


async def test_encode_keeps_payloads_below_the_threshold_inline(
    client: httpx.AsyncClient,
) -> None:
    plain = DataConverter.default.payload_converter.to_payloads(["tiny"])
    assert payloads_of(await post(client, "/encode", body(plain))) == plain


async def test_reads_the_legacy_reference_encoding(
    client: httpx.AsyncClient, driver: CasStorageDriver
) -> None:
    [reference] = await stored(driver, ORDER)
    data = json.loads(reference.data)
    legacy = Payload(
        metadata={"encoding": b"json/external-storage-reference"},
        data=json.dumps(
            {"driver_name": data["driverName"], "driver_claim": {"claim_data": data["claimData"]}}
        ).encode(),
    )
    assert values_of(await post(client, "/decode", body([legacy]))) == [ORDER]
    assert values_of(await post(client, "/download", body([legacy]))) == [ORDER]


async def test_accepts_what_the_go_cli_sends(
    client: httpx.AsyncClient, driver: CasStorageDriver
) -> None:
    # Go's encoding/json on the proto struct: snake_case names, int64 as numbers.
    [reference] = await stored(driver, ORDER)
    sent = {
        "payloads": [
            {
                "metadata": {
                    k: base64.b64encode(v).decode() for k, v in reference.metadata.items()
                },
                "data": base64.urlsafe_b64encode(reference.data).decode().rstrip("="),
                "external_payloads": [{"size_bytes": reference.external_payloads[0].size_bytes}],
            }
        ]
    }
    assert values_of(await post(client, "/decode", json.dumps(sent))) == [ORDER]


# A payload codec in the chain (the workers encrypt before storing).


async def test_codec_decodes_after_resolving(make_client: ClientFactory) -> None:
    driver = CasStorageDriver(MemoryBackend())
    history = await stored(driver, ORDER, codec=EncryptionCodec())
    client = make_client(driver, codec=EncryptionCodec(), payload_size_threshold=0)
    assert values_of(await post(client, "/decode", body(history))) == [ORDER]
    assert values_of(await post(client, "/download", body(history))) == [ORDER]
    # Without the codec the server can only hand back the ciphertext.
    bare = make_client(driver)
    [encrypted] = payloads_of(await post(bare, "/decode", body(history)))
    assert encrypted.metadata["encoding"] == ENCRYPTED
    # /encode is the inverse: codec, then store; the workers' converter reads it.
    plain = DataConverter.default.payload_converter.to_payloads([ORDER])
    encoded = payloads_of(await post(client, "/encode", body(plain)))
    assert is_reference(encoded[0])
    worker = codec_converter(driver, codec=EncryptionCodec())
    assert await worker.decode(encoded) == [ORDER]


async def test_codec_encoded_references_are_decoded_first(
    make_client: ClientFactory, driver: CasStorageDriver
) -> None:
    # SDK 1.35 reads references that went through the codec, marked by metadata.
    [reference] = await stored(driver, ORDER)
    [sealed] = await EncryptionCodec().encode([reference])
    sealed.metadata["__temporal_external_storage_reference"] = b"true"
    sealed.external_payloads.extend(reference.external_payloads)
    client = make_client(driver, codec=EncryptionCodec())
    assert values_of(await post(client, "/decode", body([sealed]))) == [ORDER]
    kept = payloads_of(await post(client, "/decode?preserveStorageRefs=true", body([sealed])))
    assert kept == [reference]
    without_codec = make_client(driver)
    response = await post(without_codec, "/decode", body([sealed]))
    assert response.status_code == 422
    assert "no payload codec" in response.json()["message"]


# Methods and paths.


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_other_methods_get_405(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/decode")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST, OPTIONS"
    assert "use POST" in response.json()["message"]


@pytest.mark.parametrize("path", ["/", "/frobnicate", "/default/frobnicate", "/a/b/decode"])
async def test_unknown_paths_get_404(client: httpx.AsyncClient, path: str) -> None:
    response = await post(client, path, '{"payloads": []}')
    assert response.status_code == 404
    assert "expected /encode, /decode or /download" in response.json()["message"]


# Bad input: 400 with a message saying what was wrong, and the server keeps serving.


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "request body is empty"),
        (b"  \n", "request body is empty"),
        (b"{", "request body is not valid JSON"),
        (b"\xff\xfe", "request body is not valid JSON"),
        (b"[]", "request body is a JSON array, not an object"),
        (b'{"payloads": {}}', '"payloads" must be a JSON array, got object'),
        (b'{"payload": []}', "unknown field(s) 'payload'"),
        (b'{"payloads": [1]}', "payloads[0] must be a JSON object (a Payload), got number"),
        (b'{"payloads": [{"data": "!!"}]}', "payloads[0].data is not valid base64"),
        (b'{"payloads": [{"data": 5}]}', "payloads[0].data must be a base64 string, got number"),
        (
            b'{"payloads": [{"metadata": {"encoding": "a$"}}]}',
            "payloads[0].metadata['encoding'] is not valid base64",
        ),
        (b'{"payloads": [{"metadata": []}]}', "payloads[0].metadata must be a JSON object"),
        (b'{"payloads": [{"bogus": 1}]}', "payloads[0] has unknown field(s) 'bogus'"),
        (
            b'{"payloads": [{"externalPayloads": [{"sizeBytes": "x"}]}]}',
            "payloads[0].externalPayloads[0].sizeBytes is not an integer",
        ),
        (
            b'{"payloads": [{"data": "", "externalPayloads": {}}]}',
            "payloads[0].externalPayloads must be a JSON array",
        ),
    ],
)
async def test_bad_bodies_get_400_saying_what_was_wrong(
    client: httpx.AsyncClient, driver: CasStorageDriver, content: bytes, message: str
) -> None:
    response = await post(client, "/decode", content)
    assert response.status_code == 400, response.text
    assert message in response.json()["message"]
    await still_serving(client, driver)


async def test_a_broken_reference_gets_400(
    client: httpx.AsyncClient, driver: CasStorageDriver
) -> None:
    [reference] = await stored(driver, ORDER)
    broken = Payload()
    broken.CopyFrom(reference)
    broken.data = b"not json"
    response = await post(client, "/decode", body([reference, broken]))
    assert response.status_code == 400
    assert "payloads[1] is a storage reference whose data is not a valid" in response.text
    await still_serving(client, driver)


async def test_a_malformed_claim_gets_400(
    client: httpx.AsyncClient, driver: CasStorageDriver
) -> None:
    [reference] = await stored(driver, ORDER)
    forged = Payload()
    forged.CopyFrom(reference)
    forged.data = json.dumps({"driverName": "casstore", "claimData": {"c": "[1,"}}).encode()
    response = await post(client, "/decode", body([forged]))
    assert response.status_code == 400
    assert "claim is not valid JSON" in response.json()["message"]


async def test_an_unknown_driver_gets_400_naming_it(
    client: httpx.AsyncClient, driver: CasStorageDriver
) -> None:
    [reference] = await stored(driver, ORDER)
    other = Payload()
    other.CopyFrom(reference)
    other.data = reference.data.replace(b'"casstore"', b'"aws.s3driver"')
    response = await post(client, "/decode", body([other]))
    assert response.status_code == 400
    assert "references driver 'aws.s3driver', which this server does not have" in response.text


async def test_a_body_that_is_not_json_content_gets_415(client: httpx.AsyncClient) -> None:
    response = await post(client, "/decode", '{"payloads": []}', **{"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert "Content-Type must be application/json" in response.json()["message"]


async def test_bodies_above_the_limit_get_413(
    make_client: ClientFactory, driver: CasStorageDriver
) -> None:
    client = make_client(driver, max_body_bytes=1000)
    response = await post(client, "/decode", b" " * 1001)
    assert response.status_code == 413
    assert "above this server's limit of 1000 bytes" in response.json()["message"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(20):
            yield b" " * 100

    streamed = await client.post(
        "/decode", content=chunks(), headers={**JSON, "X-Namespace": "default"}
    )
    assert streamed.status_code == 413
    await still_serving(client, driver)


async def test_responses_above_the_limit_get_413(
    make_client: ClientFactory, driver: CasStorageDriver
) -> None:
    client = make_client(driver, max_response_bytes=10_000)
    history = await stored(driver, {"rows": list(range(5000))})
    response = await post(client, "/decode", body(history))
    assert response.status_code == 413
    assert "above this server's max_response_bytes 10000" in response.json()["message"]


# Missing and corrupt objects: an error naming the key, never a wrong payload.


async def test_a_missing_object_gets_404_naming_the_key(
    make_client: ClientFactory, driver: CasStorageDriver
) -> None:
    history = await stored(driver, ORDER)
    reader = CasStorageDriver(MemoryBackend())  # the object is not in this store
    client = make_client(reader)
    response = await post(client, "/download", body(history))
    assert response.status_code == 404
    error = response.json()
    assert error["key"].startswith("v1/default/order-42/")
    assert error["key"] in error["message"]


async def test_a_corrupt_object_gets_502_naming_the_key(make_client: ClientFactory) -> None:
    backend = MemoryBackend()
    history = await stored(CasStorageDriver(backend), ORDER)
    key = key_of(history[0])
    obj = await backend.get(key)
    await backend.delete(key)
    await backend.put(key, obj[:-1] + bytes([obj[-1] ^ 1]))
    reader = CasStorageDriver(backend)  # cold cache, as a codec server process is
    client = make_client(reader)
    response = await post(client, "/decode", body(history))
    assert response.status_code == 502
    assert response.json()["key"] == key
    assert "does not match its claim" in response.json()["message"]
    await still_serving(client, reader)


async def test_a_thousand_references_to_one_object_read_it_once(
    make_client: ClientFactory,
) -> None:
    backend = MemoryBackend()
    history = await stored(CasStorageDriver(backend), {"rows": list(range(3000))})
    reader = CasStorageDriver(backend)
    client = make_client(reader)
    response = await post(client, "/decode", body(history * 1000))
    assert values_of(response) == [{"rows": list(range(3000))}] * 1000
    assert reader.stats.objects_read == 1


# Namespaces: from the path or X-Namespace; another namespace's references are refused.


async def test_another_namespaces_reference_is_refused_naming_both(
    client: httpx.AsyncClient, driver: CasStorageDriver
) -> None:
    theirs = await stored(driver, ORDER, namespace="team-a")
    for path, namespace in (("/decode", "team-b"), ("/team-b/decode", None)):
        response = await post(client, path, body(theirs), namespace=namespace)
        assert response.status_code == 403
        message = response.json()["message"]
        assert "belongs to namespace 'team-a', not to namespace 'team-b'" in message
    response = await post(client, "/download", body(theirs), namespace="team-b")
    assert response.status_code == 403
    assert values_of(await post(client, "/decode", body(theirs), namespace="team-a")) == [ORDER]


async def test_references_stored_without_a_namespace_are_readable_everywhere(
    client: httpx.AsyncClient, driver: CasStorageDriver
) -> None:
    plain = dataclasses.replace(
        DataConverter.default,
        external_storage=ExternalStorage(drivers=[driver], payload_size_threshold=0),
    )
    history = await plain.encode([ORDER])  # no target: location "_"
    assert values_of(await post(client, "/decode", body(history), namespace="any")) == [ORDER]


async def test_path_and_header_must_agree(client: httpx.AsyncClient) -> None:
    response = await post(client, "/team-a/decode", '{"payloads": []}', namespace="team-b")
    assert response.status_code == 400
    assert "path names namespace 'team-a' but X-Namespace says 'team-b'" in response.text


async def test_a_request_without_namespace_is_refused_unless_a_default_is_set(
    make_client: ClientFactory, client: httpx.AsyncClient, driver: CasStorageDriver
) -> None:
    history = await stored(driver, ORDER)
    response = await post(client, "/decode", body(history), namespace=None)
    assert response.status_code == 400
    assert "no namespace: send the X-Namespace header" in response.json()["message"]
    defaulted = make_client(driver, namespace="default")
    assert values_of(await post(defaulted, "/decode", body(history), namespace=None)) == [ORDER]


# CORS.


async def test_preflight_from_an_allowed_origin(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/default/decode?preserveStorageRefs=true",
        headers={
            "Origin": "http://localhost:8233",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace,authorization,"
            "authorization-extras",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "http://localhost:8233"
    assert response.headers["access-control-allow-credentials"] == "true"
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert allowed == {"content-type", "x-namespace", "authorization", "authorization-extras"}
    assert "POST" in response.headers["access-control-allow-methods"]


async def test_preflight_from_a_refused_origin(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/decode",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    assert "origin 'http://evil.example' is not allowed" in response.json()["message"]


async def test_preflight_for_a_header_not_allowed(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/decode",
        headers={
            "Origin": "http://localhost:8233",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-something",
        },
    )
    assert response.status_code == 403
    assert "x-something not allowed" in response.json()["message"]


async def test_requests_carry_cors_headers_for_allowed_origins_only(
    client: httpx.AsyncClient, driver: CasStorageDriver
) -> None:
    history = body(await stored(driver, ORDER))
    allowed = await post(client, "/decode", history, Origin="http://localhost:8233")
    assert values_of(allowed) == [ORDER]
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:8233"
    error = await post(client, "/decode", "{", Origin="http://localhost:8233")
    assert error.status_code == 400  # errors are readable by the UI too
    assert error.headers["access-control-allow-origin"] == "http://localhost:8233"
    refused = await post(client, "/decode", history, Origin="http://evil.example")
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers


async def test_any_origin_never_allows_credentials(
    make_client: ClientFactory, driver: CasStorageDriver
) -> None:
    client = make_client(driver, cors_origins=["*"])
    response = await client.options(
        "/decode",
        headers={"Origin": "http://anywhere.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


async def test_mounted_under_a_prefix_in_another_asgi_app(driver: CasStorageDriver) -> None:
    host = Starlette(routes=[Mount("/codec", app=create_app(driver))])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=host), base_url="http://host.test"
    ) as client:
        history = body(await stored(driver, ORDER))
        assert values_of(await post(client, "/codec/decode", history)) == [ORDER]
        assert values_of(await post(client, "/codec/default/download", history, None)) == [ORDER]
        assert (await post(client, "/decode", history)).status_code == 404


async def test_startup_opens_the_backend_and_shutdown_closes_only_what_the_app_opened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Opened at startup, the S3 client is built before the first request's deadline.
    theirs = OpenCloseBackend()
    app = create_app(theirs)
    async with app.router.lifespan_context(app):
        assert theirs.opened == 1
    assert theirs.closed == 0  # the caller's backend stays open

    ours = OpenCloseBackend()
    monkeypatch.setattr("casstore.server._app.open_backend", lambda url: ours)
    app = create_app("s3://bucket/prefix")
    async with app.router.lifespan_context(app):
        assert ours.opened == 1
        assert ours.closed == 0
    assert ours.closed == 1


def test_bad_cors_origins_are_refused(driver: CasStorageDriver) -> None:
    from casstore.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="scheme://host"):
        create_app(driver, cors_origins=["localhost:8233/ui"])


# Auth.


async def test_bearer_token(make_client: ClientFactory, driver: CasStorageDriver) -> None:
    client = make_client(
        driver,
        authorize=bearer_token_authorizer("s3cret"),
        cors_origins=["http://localhost:8233"],
    )
    history = body(await stored(driver, ORDER))
    missing = await post(client, "/decode", history)
    assert missing.status_code == 401
    assert "authorization required for namespace 'default'" in missing.json()["message"]
    wrong = await post(client, "/decode", history, Authorization="Bearer guess")
    assert wrong.status_code == 403
    right = await post(client, "/decode", history, Authorization="Bearer s3cret")
    assert values_of(right) == [ORDER]
    preflight = await client.options(  # browsers send no credentials on preflight
        "/decode",
        headers={"Origin": "http://localhost:8233", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204


async def test_authorization_callback_decides_per_namespace(
    make_client: ClientFactory, driver: CasStorageDriver
) -> None:
    seen: list[tuple[str | None, str]] = []

    async def authorize(headers: Mapping[str, str], namespace: str) -> bool:
        seen.append((headers.get("authorization-extras"), namespace))
        return namespace == "team-a"

    client = make_client(driver, authorize=authorize)
    theirs = body(await stored(driver, ORDER, namespace="team-a"))
    extras = {"Authorization": "Bearer t", "Authorization-Extras": "id-token"}
    allowed = await post(client, "/decode", theirs, namespace="team-a", **extras)
    assert values_of(allowed) == [ORDER]
    refused = await post(client, "/team-b/decode", theirs, namespace=None, **extras)
    assert refused.status_code == 403
    assert "not authorized for namespace 'team-b'" in refused.json()["message"]
    assert seen == [("id-token", "team-a"), ("id-token", "team-b")]


# Configuration.


def test_clashing_driver_names_are_refused(driver: CasStorageDriver) -> None:
    from casstore.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="driver names must be unique"):
        create_app(driver, extra_drivers=[CasStorageDriver(MemoryBackend())])


# The SDK's S3 driver as an extra driver (histories written before moving to casstore).


async def test_sdk_s3_driver_references_through_an_extra_driver(
    make_client: ClientFactory, driver: CasStorageDriver, s3_target: S3Target
) -> None:
    async with s3_place(s3_target) as place:
        s3_driver = S3StorageDriver(client=new_aioboto3_client(place.raw), bucket=place.bucket)
        old = await stored(s3_driver, ORDER)
        new = await stored(driver, "after the move")
        client = make_client(driver, extra_drivers=[s3_driver])
        assert json.loads(old[0].data)["driverName"] == "aws.s3driver"
        assert values_of(await post(client, "/decode", body(old + new))) == [
            ORDER,
            "after the move",
        ]
        assert values_of(await post(client, "/download", body(old))) == [ORDER]

        theirs = await stored(s3_driver, ORDER, namespace="team-a")
        refused = await post(client, "/decode", body(theirs), namespace="team-b")
        assert refused.status_code == 403
        assert "belongs to namespace 'team-a', not to namespace 'team-b'" in refused.text

        key = json.loads(old[0].data)["claimData"]["key"]
        await place.raw.delete_object(Bucket=place.bucket, Key=key)
        missing = await post(client, "/download", body(old))
        assert missing.status_code == 404
        assert missing.json()["key"] == key
        assert values_of(await post(client, "/decode", body(new))) == ["after the move"]


async def test_other_drivers_need_a_claim_namespace_callback(
    make_client: ClientFactory, driver: CasStorageDriver
) -> None:
    other = CasStorageDriver(MemoryBackend(), name="legacy")
    history = await stored(other, ORDER, namespace="team-a")
    # A casstore driver reads its own claims' namespace; a foreign type needs telling.
    client = make_client(driver, extra_drivers=[other])
    assert values_of(await post(client, "/decode", body(history), namespace="team-a")) == [ORDER]

    class Foreign(StorageDriver):
        def name(self) -> str:
            return "foreign"

        async def store(self, context: Any, payloads: Any) -> Any:
            return [
                StorageDriverClaim(claim_data={"ns": "team-a", "i": str(i)})
                for i, _ in enumerate(payloads)
            ]

        async def retrieve(self, context: Any, claims: Any) -> Any:
            return DataConverter.default.payload_converter.to_payloads([ORDER] * len(claims))

    foreign = Foreign()
    history = await stored(foreign, ORDER)
    unknown = make_client(driver, extra_drivers=[foreign])
    response = await post(unknown, "/decode", body(history), namespace="team-a")
    assert response.status_code == 403
    assert "cannot tell which namespace a reference of driver 'foreign'" in response.text
    told = make_client(
        driver, extra_drivers=[foreign], claim_namespace=lambda name, claim: claim["ns"]
    )
    assert values_of(await post(told, "/decode", body(history), namespace="team-a")) == [ORDER]
    assert (await post(told, "/decode", body(history), namespace="team-b")).status_code == 403


# casstore's own encryption (a keyring instead of a codec).


async def test_encrypted_objects_need_the_workers_keyring(make_client: ClientFactory) -> None:
    backend = MemoryBackend()
    keyring = KeyRing.from_bytes(bytes(range(32)), key_id="k2026a")
    history = await stored(CasStorageDriver(backend, keyring=keyring), ORDER)
    with_key = make_client(CasStorageDriver(backend, keyring=keyring))
    assert values_of(await post(with_key, "/decode", body(history))) == [ORDER]
    assert values_of(await post(with_key, "/download", body(history))) == [ORDER]
    without = make_client(CasStorageDriver(backend))
    response = await post(without, "/download", body(history))
    assert response.status_code == 500
    message = response.json()["message"]
    assert "k2026a" in message
    assert "start the server with the workers' keyring (--keyring)" in message
    assert response.json()["key"] == key_of(history[0])


async def test_decode_and_download_read_chunked_payloads_of_a_conversation(
    make_client: ClientFactory,
) -> None:
    # A conversation's turns written by a worker: later turns are chunked
    # objects reading most of their bytes from earlier ones. The server, with
    # its own driver (cold caches), reads the newest one from its key alone.
    backend = MemoryBackend()
    turns = [{"messages": [f"message {i} " * 2_000 for i in range(n)]} for n in range(2, 6)]
    worker = CasStorageDriver(backend)
    history = [(await stored(worker, turn))[0] for turn in turns]
    newest = await backend.get(key_of(history[-1]))
    assert newest[:4] == b"CAS\x03"  # chunked
    assert newest[6:8] != b"\x00\x00"  # with references
    client = make_client(CasStorageDriver(backend))
    assert values_of(await post(client, "/decode", body(history[-1:]))) == turns[-1:]
    response = await post(client, "/download?preserveStorageRefs=true", body(history[-1:]))
    assert values_of(response) == turns[-1:]
