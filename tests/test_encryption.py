"""Encryption at rest through the driver: dedup kept, nothing readable, tampering caught."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import blake3
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    PayloadCodec,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
)

from casstore import CasStorageDriver, KeyRing
from casstore.backends import Backend, CountingBackend, LocalBackend, MemoryBackend
from casstore.errors import ClaimError, IntegrityError, MissingKeyError
from casstore.plugin import CasStorePlugin
from tests.support.sdk import big_json, in_workflow, make_converter, reference_of
from tests.support.threads import RecordingExecutor

K1 = bytes(range(32))
K2 = bytes(range(100, 132))
RING = KeyRing.from_bytes(K1, key_id="k1")
MARKER = "patient-7f3a-diagnosis"


def secret_value(size: int = 20_000) -> dict[str, object]:
    return {"note": MARKER, **big_json(size)}


async def keys_in(backend: Backend) -> list[str]:
    return sorted([key async for key, _ in backend.scan()])


def claim_of(reference: Payload) -> str:
    return reference_of(reference).claim_data["c"]


async def test_a_thousand_stores_of_one_payload_write_one_object() -> None:
    backend = MemoryBackend()
    driver = CasStorageDriver(backend, keyring=RING)
    converter = in_workflow(make_converter(driver))
    value = secret_value(5_000)
    references = await asyncio.gather(*(converter.encode([value]) for _ in range(1000)))
    assert len(await keys_in(backend)) == 1
    assert driver.stats.objects_written == 1
    assert {claim_of(r) for [r] in references} == {claim_of(references[0][0])}
    fresh = make_converter(CasStorageDriver(backend, keyring=RING))
    assert await fresh.decode(references[-1], [dict]) == [value]


@pytest.mark.parametrize("level", [None, 3], ids=["raw", "zstd"])
async def test_no_plaintext_and_no_plain_blake3_in_the_bucket_or_the_reference(
    tmp_path: Path, level: int | None
) -> None:
    backend = LocalBackend(tmp_path / "bucket")
    converter = in_workflow(
        make_converter(CasStorageDriver(backend, keyring=RING, compression_level=level))
    )
    values = [secret_value(), MARKER, {"status": "ok"}]
    references = await converter.encode(values)
    assert await converter.decode(references) == values
    plain_payloads = DataConverter.default.payload_converter.to_payloads(values)
    serialized = [p.SerializeToString(deterministic=True) for p in plain_payloads]
    digests = [blake3.blake3(data).digest() for data in serialized]
    forbidden = [MARKER.encode(), b'"status"', b"customer-"]
    for digest in digests:
        forbidden += [digest.hex().encode(), base64.urlsafe_b64encode(digest).rstrip(b"=")]
        forbidden += [digest[:16].hex().encode(), digest]
    stored = [
        (path.relative_to(tmp_path).as_posix().encode(), path.read_bytes())
        for path in (tmp_path / "bucket").rglob("*")
        if path.is_file()
    ]
    assert len(stored) == 3
    reference_bytes = [r.SerializeToString() for r in references]
    for needle in forbidden:
        for name, content in stored:
            assert needle not in name, (needle, name)
            assert needle not in content, (needle, name)
        for reference in reference_bytes:
            assert needle not in reference


@pytest.mark.parametrize("where", ["header-key-id", "first-ciphertext-byte", "middle", "tag"])
async def test_flipped_byte_of_an_encrypted_object_is_an_integrity_error(where: str) -> None:
    backend = MemoryBackend()
    converter = in_workflow(make_converter(CasStorageDriver(backend, keyring=RING)))
    [reference] = await converter.encode([secret_value()])
    [key] = await keys_in(backend)
    obj = bytearray(await backend.get(key))
    position = {"header-key-id": 7, "first-ciphertext-byte": 9, "middle": len(obj) // 2}.get(
        where, -1
    )
    obj[position] ^= 0x01
    await backend.delete(key)
    await backend.put(key, bytes(obj))
    fresh = make_converter(CasStorageDriver(backend, keyring=RING))
    with pytest.raises(IntegrityError, match=r"\[key=v1/default/order-42/") as info:
        await fresh.decode([reference])
    assert info.value.key == key


async def test_two_objects_with_swapped_contents_fail_authentication() -> None:
    backend = MemoryBackend()
    converter = in_workflow(make_converter(CasStorageDriver(backend, keyring=RING)))
    references = await converter.encode([secret_value(), {"other": "value"}])
    key_a, key_b = await keys_in(backend)
    obj_a, obj_b = await backend.get(key_a), await backend.get(key_b)
    for key, obj in ((key_a, obj_b), (key_b, obj_a)):
        await backend.delete(key)
        await backend.put(key, obj)
    fresh = CasStorageDriver(backend, keyring=RING)
    for reference in references:
        # The larger object, swapped in under the smaller claim, is refused by
        # size before it is read (bounded reads); the other fails authentication.
        with pytest.raises(IntegrityError, match=r"failed authentication|its claim allows"):
            await make_converter(fresh).decode([reference])


async def test_a_wrong_key_of_the_same_id_is_an_integrity_error() -> None:
    backend = MemoryBackend()
    [reference] = await in_workflow(make_converter(CasStorageDriver(backend, keyring=RING))).encode(
        [secret_value()]
    )
    impostor = make_converter(
        CasStorageDriver(backend, keyring=KeyRing.from_bytes(K2, key_id="k1"))
    )
    with pytest.raises(IntegrityError, match="sealed with a different key named 'k1'"):
        await impostor.decode([reference])


async def test_a_missing_key_is_a_clear_error_before_any_request() -> None:
    backend = CountingBackend(MemoryBackend())
    [reference] = await in_workflow(make_converter(CasStorageDriver(backend, keyring=RING))).encode(
        [secret_value()]
    )
    backend.calls.clear()
    other_ring = make_converter(
        CasStorageDriver(backend, keyring=KeyRing.from_bytes(K2, key_id="k2"))
    )
    with pytest.raises(MissingKeyError, match=r"key 'k1', which this keyring does not hold") as i:
        await other_ring.decode([reference])
    assert i.value.key_id == "k1"
    no_ring = make_converter(CasStorageDriver(backend))
    with pytest.raises(MissingKeyError, match="encrypted with key 'k1' but this driver has no "):
        await no_ring.decode([reference])
    assert backend.calls == {}


async def test_rotation_writes_new_objects_and_old_claims_keep_reading() -> None:
    backend = MemoryBackend()
    value = secret_value()
    [old] = await in_workflow(make_converter(CasStorageDriver(backend, keyring=RING))).encode(
        [value]
    )
    rotated = KeyRing({"k2": K2, "k1": K1})  # k2 active, k1 kept for reading
    [new] = await in_workflow(make_converter(CasStorageDriver(backend, keyring=rotated))).encode(
        [value]
    )
    # Dedup restarts under the new key: the same value is a second object.
    assert len(await keys_in(backend)) == 2
    assert claim_of(old).endswith(",k1")
    assert claim_of(new).endswith(",k2")
    reader = make_converter(CasStorageDriver(backend, keyring=rotated))
    assert await reader.decode([old, new], [dict, dict]) == [value, value]
    retired = make_converter(CasStorageDriver(backend, keyring=KeyRing.from_bytes(K2, key_id="k2")))
    assert await retired.decode([new], [dict]) == [value]
    with pytest.raises(MissingKeyError, match="'k1'"):
        await retired.decode([old])


async def test_mixed_plain_and_encrypted_stores_in_one_bucket() -> None:
    backend = MemoryBackend()
    value = secret_value()
    plain_refs = await in_workflow(make_converter(CasStorageDriver(backend))).encode([value, "a"])
    encrypted_driver = CasStorageDriver(backend, keyring=RING)
    encrypted_refs = await in_workflow(make_converter(encrypted_driver)).encode([value, "a"])
    assert [claim_of(r)[:2] for r in plain_refs] == ["[1", "[1"]
    assert [claim_of(r)[:2] for r in encrypted_refs] == ["2,", "2,"]
    assert len(await keys_in(backend)) == 4  # plain and encrypted never share an object
    everything = [*plain_refs, *encrypted_refs]
    reader = make_converter(CasStorageDriver(backend, keyring=RING))
    assert await reader.decode(everything) == [value, "a", value, "a"]
    plain_reader = make_converter(CasStorageDriver(backend))
    assert await plain_reader.decode(plain_refs) == [value, "a"]


async def test_a_plain_claim_cannot_be_pointed_at_an_encrypted_object() -> None:
    backend = MemoryBackend()
    [reference] = await in_workflow(make_converter(CasStorageDriver(backend, keyring=RING))).encode(
        [secret_value()]
    )
    location, digest, size, _ = claim_of(reference).split(",")[1:]
    downgraded = json.dumps([1, location, digest, int(size), 1], separators=(",", ":"))
    driver = CasStorageDriver(backend, keyring=RING)
    with pytest.raises(IntegrityError, match="encrypted with key 'k1' but its claim is not"):
        await driver.retrieve(
            StorageDriverRetrieveContext(), [StorageDriverClaim({"c": downgraded})]
        )


class RandomNonceCodec(PayloadCodec):
    """The samples' encryption codec: AES-GCM with a fresh random nonce per payload."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            nonce = os.urandom(12)
            sealed = nonce + self._aead.encrypt(nonce, payload.SerializeToString(), None)
            out.append(Payload(metadata={"encoding": b"binary/encrypted"}, data=sealed))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            data = payload.data
            inner = Payload()
            inner.ParseFromString(self._aead.decrypt(data[:12], data[12:], None))
            out.append(inner)
        return out


async def test_a_random_nonce_codec_defeats_dedup_and_casstore_encryption_keeps_it() -> None:
    stores = 100
    value = secret_value(100_000)
    results: dict[str, tuple[int, int]] = {}
    for name, keyring, codec in (
        ("random-nonce codec", None, RandomNonceCodec(K1)),
        ("casstore keyring", RING, None),
    ):
        backend = MemoryBackend()
        driver = CasStorageDriver(backend, keyring=keyring)
        converter: DataConverter = make_converter(driver)
        if codec is not None:
            converter = DataConverter(
                payload_codec=codec, external_storage=converter.external_storage
            )
        converter = in_workflow(converter)
        references = [(await converter.encode([value]))[0] for _ in range(stores)]
        assert await converter.decode(references[-1:], [dict]) == [value]
        results[name] = (len(await keys_in(backend)), driver.stats.bytes_written)
    objects, written = results["random-nonce codec"]
    assert objects == stores  # every copy stored: dedup lost
    assert results["casstore keyring"][0] == 1
    # Encrypted bytes do not compress either: each copy costs the full size.
    assert written > stores * 100_000
    assert results["casstore keyring"][1] * 20 < written


async def test_the_plugin_passes_the_keyring_on() -> None:
    async with CasStorePlugin("memory://i11-plugin", keyring=RING) as plugin:
        converter = in_workflow(make_converter(plugin.driver))
        [reference] = await converter.encode([secret_value()])
        assert claim_of(reference).endswith(",k1")


async def test_encrypting_and_decrypting_large_payloads_runs_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    threads = RecordingExecutor.install().threads
    backend = MemoryBackend()
    driver = CasStorageDriver(backend, keyring=RING, chunking=False)
    converter = in_workflow(make_converter(driver))
    [small] = await converter.encode(["small"])
    await converter.decode([small])
    assert threads == []
    [large] = await converter.encode([big_json(2_000_000)])
    assert len(threads) == 2  # keyed hash, then compress and encrypt
    await make_converter(CasStorageDriver(backend, keyring=RING)).decode([large])
    assert len(threads) == 4  # then decrypt, decompress and verify; then parse
    assert loop_thread not in threads


_D = "A" * 43


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (f"3,default/wf,{_D},10", "unsupported format version 3"),
        (f"2,default/wf,{_D}", "has 3 fields, expected 4 or 5"),
        (f"2,default/wf,{_D},10,k1,extra", "has 6 fields"),
        (f"2,default/wf,{_D},010", "not a canonical decimal"),
        (f"2,default/wf,{_D},-1", "not a canonical decimal"),
        (f"2,default/wf,{_D}, 10", "not a canonical decimal"),
        (f"2,default/wf,{_D},{2**40}", "above max_payload_size"),
        (f"2,../etc,{_D},10", "not a valid casstore location"),
        (f"2,default/wf,{'A' * 42}B,10", "not a canonical"),
        (f"2,default/wf,{_D},10,k/1", "malformed key id"),
        (f"2,default/wf,{_D},10,", "malformed key id"),
        ("2,", "has 2 fields"),
    ],
)
async def test_hostile_v2_claims_are_claim_errors_before_any_request(
    raw: str, message: str
) -> None:
    backend = CountingBackend(MemoryBackend())
    driver = CasStorageDriver(backend, keyring=RING)
    with pytest.raises(ClaimError, match=message):
        await driver.retrieve(StorageDriverRetrieveContext(), [StorageDriverClaim({"c": raw})])
    assert backend.calls == {}


@pytest.mark.parametrize("value", ["ok", {"rows": list(range(5_000))}], ids=["tiny", "large"])
async def test_an_encrypted_reference_is_no_larger_than_a_plain_v1_one(value: object) -> None:
    # Key ids are stored in every claim; up to 11 characters keep the encrypted
    # reference within the plain one (a v2 claim has no quotes to escape).
    workflow_id = "6cdfe788-696a-4785-9350-9ee70a2fb047"
    ring = KeyRing.from_bytes(K1, key_id="x" * 11)
    [plain] = await in_workflow(
        make_converter(CasStorageDriver(MemoryBackend())), workflow_id
    ).encode([value])
    [encrypted] = await in_workflow(
        make_converter(CasStorageDriver(MemoryBackend(), keyring=ring)), workflow_id
    ).encode([value])
    assert claim_of(plain).startswith("[1,")
    assert claim_of(encrypted).startswith("2,")
    assert encrypted.ByteSize() <= plain.ByteSize(), (encrypted.ByteSize(), plain.ByteSize())


async def test_gc_marks_the_objects_encrypted_claims_point_at() -> None:
    # gc deletes what no reference marks: a v2 claim must mark its encrypted object.
    from casstore.ops._gc_mark import Marked, _collect

    backend = MemoryBackend()
    references = await in_workflow(make_converter(CasStorageDriver(backend, keyring=RING))).encode(
        [secret_value(), "small"]
    )
    marked = Marked(started_at=0.0)
    _collect(marked, references, "test")
    stored = await keys_in(backend)
    assert len(marked.keys) == len(set(stored))
    assert all(key in marked.keys for key in stored)
    assert marked.references == 2
