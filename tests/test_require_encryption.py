"""require_encryption: a reader that refuses every plain claim and object.

A reader with a keyring accepts plain objects too (right while moving a store
to encryption); a store that must stay encrypted turns that off, so whoever can
write to the bucket (or to Event History) cannot feed it plaintext.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from casstore import CasStorageDriver, KeyRing
from casstore._format.claims import make_claim_data_v2, parse_claim_data
from casstore._format.compression import encode_object
from casstore.backends import MemoryBackend
from casstore.errors import ConfigurationError, IntegrityError
from casstore.plugin import CasStorePlugin
from casstore.server import create_app
from casstore.server._references import make_reference
from tests.support.cli import assert_one_line_error, cli

RING = KeyRing.from_bytes(bytes(range(32)), key_id="k1")
CONTEXT = StorageDriverStoreContext(
    target=StorageDriverWorkflowInfo(namespace="default", id="order-42")
)
PAYLOAD = Payload(metadata={"encoding": b"binary/plain"}, data=b"card 4242 4242 4242 4242")


async def _retrieve(driver: CasStorageDriver, claim: StorageDriverClaim) -> Payload:
    [payload] = await driver.retrieve(StorageDriverRetrieveContext(), [claim])
    return payload


async def test_a_plain_claim_is_refused_naming_the_key_and_why() -> None:
    backend = MemoryBackend()
    [plain] = await CasStorageDriver(backend).store(CONTEXT, [PAYLOAD])
    [sealed] = await CasStorageDriver(backend, keyring=RING).store(CONTEXT, [PAYLOAD])
    strict = CasStorageDriver(backend, keyring=RING, require_encryption=True)
    key = parse_claim_data(plain.claim_data, max_size=1 << 20).key
    with pytest.raises(IntegrityError, match="requires encryption") as refused:
        await _retrieve(strict, plain)
    assert refused.value.key == key
    assert f"[key={key}]" in str(refused.value)
    assert strict.stats.objects_read == 0  # refused before anything was read
    assert await _retrieve(strict, sealed) == PAYLOAD
    # Off by default: the same keyring reads the plain claim (a store moving to encryption).
    assert await _retrieve(CasStorageDriver(backend, keyring=RING), plain) == PAYLOAD


async def test_a_plain_object_planted_under_an_encrypted_claim_is_refused() -> None:
    backend = MemoryBackend()
    [sealed] = await CasStorageDriver(backend, keyring=RING).store(CONTEXT, [PAYLOAD])
    claim = parse_claim_data(sealed.claim_data, max_size=1 << 20)
    await backend.delete(claim.key)
    forged = Payload(metadata={"encoding": b"binary/plain"}, data=b"card 1111 1111 1111 1111")
    data = forged.SerializeToString(deterministic=True)
    _, obj = encode_object(data, None)
    assert await backend.put(claim.key, obj)
    strict = CasStorageDriver(backend, keyring=RING, require_encryption=True)
    claim_data = make_claim_data_v2(claim.location, claim.digest, len(data), "k1")
    with pytest.raises(IntegrityError, match="stored object says not encrypted"):
        await _retrieve(strict, StorageDriverClaim(claim_data=claim_data))


def test_require_encryption_without_a_keyring_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="require_encryption=True needs a keyring"):
        CasStorageDriver(MemoryBackend(), require_encryption=True)


async def test_the_plugin_passes_require_encryption_on() -> None:
    backend = MemoryBackend()
    [plain] = await CasStorageDriver(backend).store(CONTEXT, [PAYLOAD])
    plugin = CasStorePlugin(backend, keyring=RING, require_encryption=True)
    with pytest.raises(IntegrityError, match="requires encryption"):
        await _retrieve(plugin.driver, plain)


async def test_the_codec_server_refuses_a_plain_reference() -> None:
    backend = MemoryBackend()
    [plain] = await CasStorageDriver(backend).store(CONTEXT, [PAYLOAD])
    app = create_app(backend, keyring=RING, require_encryption=True)
    reference = make_reference("casstore", plain.claim_data, PAYLOAD.ByteSize())
    from google.protobuf import json_format
    from temporalio.api.common.v1 import Payloads

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://codec.test"
    ) as client:
        response = await client.post(
            "/default/download",
            content=json_format.MessageToJson(Payloads(payloads=[reference])),
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 502, response.text
    assert "requires encryption" in response.json()["message"]
    assert b"4242" not in response.content


async def test_serve_require_encryption_needs_a_keyring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await cli(capsys, "serve", "--store", str(tmp_path), "--require-encryption")
    assert_one_line_error(result, "--require-encryption needs --keyring")
