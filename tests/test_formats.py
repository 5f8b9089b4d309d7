"""Golden tests: the stored formats (key layout, object, claim) are an API.

If one of these fails, a change broke compatibility with objects and claims
already stored. Do not update the expected bytes: add a new format version.
"""

from __future__ import annotations

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverActivityInfo,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from casstore import CasStorageDriver, KeyRing
from casstore._crypto import Ciphers
from casstore._format.claims import make_claim_data, make_claim_data_v2, parse_claim_data
from casstore._format.compression import encode_object
from casstore._format.encrypted import decode_object, encode_encrypted_object
from casstore._format.header import Codec
from casstore._format.keys import is_object_key, location_for, object_key
from casstore.backends import MemoryBackend, check_key
from casstore.ops import _gc_journal

PAYLOAD = Payload(
    metadata={"encoding": b"json/plain"},
    data=b'{"order":42,"items":["apple","apple","apple","apple","apple","apple","apple",'
    b'"apple","apple","apple","apple","apple","apple","apple"]}',
)
SERIALIZED_SIZE = 161
DIGEST_HEX = "568a0c2e17893a1dcae22a617d4199f8d81adc6f8e593a1969b3535b54a8336f"
GOLDEN_ZSTD_OBJECT = bytes.fromhex(
    "434153010128b52ffd20a1150200a4030a160a08656e636f64696e67120a6a736f6e2f706c61696e"
    "1286017b226f72646572223a34322c226974656d73223a5b226170706c65222c5d7d010048961628"
)
GOLDEN_CLAIM = '[1,"default/order-42","VooMLheJOh3K4iphfUGZ-Nga3G-OWToZabNTW1SoM28",161,1]'


def test_golden_claim_encoding() -> None:
    claim_data = make_claim_data("default/order-42", bytes.fromhex(DIGEST_HEX), 161, Codec.ZSTD)
    assert claim_data == {"c": GOLDEN_CLAIM}
    claim = parse_claim_data(claim_data, max_size=1 << 20)
    assert (claim.location, claim.size, claim.codec) == ("default/order-42", 161, 1)


def test_golden_raw_object_encoding() -> None:
    data = PAYLOAD.SerializeToString(deterministic=True)
    assert encode_object(data, None) == (Codec.RAW, b"CAS\x01\x00" + data)


def test_zstd_object_header_and_golden_object_decodes() -> None:
    data = PAYLOAD.SerializeToString(deterministic=True)
    codec, obj = encode_object(data, 3)
    assert codec is Codec.ZSTD
    assert obj[:5] == b"CAS\x01\x01"
    # The compressed bytes may differ between zstd releases; decoding may not.
    key = "v1/default/order-42/" + DIGEST_HEX
    assert decode_object(GOLDEN_ZSTD_OBJECT, size=SERIALIZED_SIZE, key=key) == data


async def test_golden_claim_and_object_retrieve_the_golden_payload() -> None:
    backend = MemoryBackend()
    await backend.put("v1/default/order-42/" + DIGEST_HEX, GOLDEN_ZSTD_OBJECT)
    driver = CasStorageDriver(backend)
    [payload] = await driver.retrieve(
        StorageDriverRetrieveContext(), [StorageDriverClaim({"c": GOLDEN_CLAIM})]
    )
    assert payload == PAYLOAD


async def test_store_writes_the_golden_key_and_claim() -> None:
    backend = MemoryBackend()
    driver = CasStorageDriver(backend)
    context = StorageDriverStoreContext(
        target=StorageDriverWorkflowInfo(namespace="default", id="order-42", run_id="r", type="T")
    )
    [claim] = await driver.store(context, [PAYLOAD])
    assert claim.claim_data == {"c": GOLDEN_CLAIM}
    assert [key async for key, _ in backend.scan()] == ["v1/default/order-42/" + DIGEST_HEX]


@pytest.mark.parametrize(
    ("kwargs", "location"),
    [
        (
            {"scope": "workflow", "namespace": "default", "workflow_id": "order-42"},
            "default/order-42",
        ),
        ({"scope": "namespace", "namespace": "default", "workflow_id": "order-42"}, "default"),
        ({"scope": "workflow", "namespace": "default", "activity_id": "act-7"}, "default/_aact-7"),
        ({"scope": "workflow", "namespace": "default"}, "default"),
        ({"scope": "workflow", "namespace": None}, "_"),
        ({"scope": "workflow", "namespace": ""}, "_"),
        (
            {"scope": "workflow", "namespace": "prod.eu", "workflow_id": "a/b c"},
            "prod.eu/a%2Fb%20c",
        ),
        ({"scope": "workflow", "namespace": "ns", "workflow_id": ".."}, "ns/%2E."),
        ({"scope": "workflow", "namespace": "ns", "workflow_id": "_private"}, "ns/%5Fprivate"),
        ({"scope": "workflow", "namespace": "ns", "workflow_id": "ünï"}, "ns/%C3%BCn%C3%AF"),
        (
            {"scope": "workflow", "namespace": "ns", "workflow_id": "w" * 201},
            "ns/_h55ed9f04c80b5ef52dee3720f1b7e7a2",
        ),
    ],
)
def test_golden_locations(kwargs: dict[str, str], location: str) -> None:
    assert location_for(**kwargs) == location  # type: ignore[arg-type]
    key = object_key(location, bytes(32))
    assert key == f"v1/{location}/{'00' * 32}"
    assert is_object_key(key)
    assert check_key(key) == key


def test_hashed_segments_differ_by_kind() -> None:
    long_id = "x" * 300
    workflow = location_for(scope="workflow", namespace="ns", workflow_id=long_id)
    activity = location_for(scope="workflow", namespace="ns", activity_id=long_id)
    assert workflow != activity.replace("/_a", "/")


def test_keys_for_any_workflow_id_stay_within_limits() -> None:
    for workflow_id in ("%" * 1000, "/" * 1000, "é" * 1000, "a" * 199, "\0\n\t"):
        location = location_for(scope="workflow", namespace="n" * 300, workflow_id=workflow_id)
        key = object_key(location, bytes(32))
        assert len(key.encode()) <= 1024
        assert all(len(segment) <= 202 for segment in key.split("/"))
        assert is_object_key(key)
        assert check_key(key) == key


def test_activity_target_context_uses_activity_scope() -> None:
    target = StorageDriverActivityInfo(namespace="default", id="act-7")
    assert isinstance(target, StorageDriverActivityInfo)


# Version 2: claim format 2 and object format 2 (encrypted). Same rule: never
# update these expectations; add a new version.

GOLDEN_KEYRING = KeyRing.from_bytes(bytes(range(32)), key_id="k1")
KEYED_DIGEST_HEX = "8909de0988e785f0ba5e275ad2e3af32f52bf90c9bf29e8aceaeaa1a249f666f"
GOLDEN_ENCRYPTED_KEY = "v1/default/order-42/" + KEYED_DIGEST_HEX
GOLDEN_CLAIM_V2 = "2,default/order-42,iQneCYjnhfC6Xida0uOvMvUr-Qyb8p6Kzq6qGiSfZm8,161,k1"
GOLDEN_PLAIN_CLAIM_V2 = "2,default/order-42,VooMLheJOh3K4iphfUGZ-Nga3G-OWToZabNTW1SoM28,161"
GOLDEN_ENCRYPTED_RAW_OBJECT = bytes.fromhex(
    "434153020001026b31485fa219802ea63b1b267c226ba840a369c3a58dd092625b508d434d60825d"
    "dc884785dafa8c4a05a2cfd319743ee3f8b2cae6032577407a5591dc5bfde56422ca08f77b21a020"
    "cac8f7b2503d0d0e73e702609fb0b5e6c7ca41c277f08e24ae9e79dfea32a4049bf45022fee9e3fe"
    "5c5e5318cf36b408048eb572bb2582f0c5b3a31126c57e2ed36f3417105934b7466a728bb256ae4e"
    "e5eccb994f742a6517fbdd33b61c599419cb0dc6450025a56c1c"
)
GOLDEN_ENCRYPTED_ZSTD_OBJECT = bytes.fromhex(
    "434153020101026b31c2ec6f9ccce2b3e2b32c75753816de4751867b1fa86018df5fac8b661ed40d"
    "3e9b4fcf81e6ba9cfa58ec16464f71924a905edca6bac053877b494273ea3116f46b349d8bc60cad"
    "ed561877f55335f1d8c75da6240009e3280b680b"
)


def test_golden_keyed_digest() -> None:
    cipher = Ciphers(GOLDEN_KEYRING).active
    data = PAYLOAD.SerializeToString(deterministic=True)
    assert cipher.digest(data).hex() == KEYED_DIGEST_HEX


def test_golden_claim_v2_encoding() -> None:
    digest = bytes.fromhex(KEYED_DIGEST_HEX)
    claim_data = make_claim_data_v2("default/order-42", digest, 161, "k1")
    assert claim_data == {"c": GOLDEN_CLAIM_V2}
    claim = parse_claim_data(claim_data, max_size=1 << 20)
    assert (claim.version, claim.location, claim.digest, claim.size) == (
        2,
        "default/order-42",
        digest,
        161,
    )
    assert (claim.key_id, claim.codec, claim.key) == ("k1", None, GOLDEN_ENCRYPTED_KEY)


def test_golden_plain_claim_v2_is_read() -> None:
    claim = parse_claim_data({"c": GOLDEN_PLAIN_CLAIM_V2}, max_size=1 << 20)
    assert (claim.version, claim.key_id, claim.size) == (2, None, 161)
    assert claim.key == "v1/default/order-42/" + DIGEST_HEX
    assert make_claim_data_v2("default/order-42", claim.digest, 161, None) == {
        "c": GOLDEN_PLAIN_CLAIM_V2
    }


def test_golden_encrypted_raw_object_encoding() -> None:
    cipher = Ciphers(GOLDEN_KEYRING).active
    data = PAYLOAD.SerializeToString(deterministic=True)
    digest = bytes.fromhex(KEYED_DIGEST_HEX)
    codec, obj = encode_encrypted_object(
        data, None, cipher, digest=digest, key=GOLDEN_ENCRYPTED_KEY
    )
    assert codec is Codec.RAW
    assert obj == GOLDEN_ENCRYPTED_RAW_OBJECT
    assert obj[:9] == b"CAS\x02\x00\x01\x02k1"


def test_encrypted_zstd_object_header_and_golden_object_decodes() -> None:
    cipher = Ciphers(GOLDEN_KEYRING).active
    data = PAYLOAD.SerializeToString(deterministic=True)
    digest = bytes.fromhex(KEYED_DIGEST_HEX)
    codec, obj = encode_encrypted_object(data, 3, cipher, digest=digest, key=GOLDEN_ENCRYPTED_KEY)
    assert codec is Codec.ZSTD
    assert obj[:9] == b"CAS\x02\x01\x01\x02k1"
    for golden in (GOLDEN_ENCRYPTED_ZSTD_OBJECT, GOLDEN_ENCRYPTED_RAW_OBJECT):
        decoded = decode_object(
            golden, size=SERIALIZED_SIZE, key=GOLDEN_ENCRYPTED_KEY, cipher=cipher, digest=digest
        )
        assert decoded == data


@pytest.mark.parametrize("obj", [GOLDEN_ENCRYPTED_ZSTD_OBJECT, GOLDEN_ENCRYPTED_RAW_OBJECT])
async def test_golden_v2_claim_and_object_retrieve_the_golden_payload(obj: bytes) -> None:
    backend = MemoryBackend()
    await backend.put(GOLDEN_ENCRYPTED_KEY, obj)
    driver = CasStorageDriver(backend, keyring=GOLDEN_KEYRING)
    [payload] = await driver.retrieve(
        StorageDriverRetrieveContext(), [StorageDriverClaim({"c": GOLDEN_CLAIM_V2})]
    )
    assert payload == PAYLOAD


async def test_golden_plain_v2_claim_retrieves_the_golden_v1_object() -> None:
    backend = MemoryBackend()
    await backend.put("v1/default/order-42/" + DIGEST_HEX, GOLDEN_ZSTD_OBJECT)
    for keyring in (None, GOLDEN_KEYRING):
        driver = CasStorageDriver(backend, keyring=keyring)
        [payload] = await driver.retrieve(
            StorageDriverRetrieveContext(), [StorageDriverClaim({"c": GOLDEN_PLAIN_CLAIM_V2})]
        )
        assert payload == PAYLOAD


async def test_store_with_a_keyring_writes_the_golden_key_and_v2_claim() -> None:
    backend = MemoryBackend()
    driver = CasStorageDriver(backend, keyring=GOLDEN_KEYRING)
    context = StorageDriverStoreContext(
        target=StorageDriverWorkflowInfo(namespace="default", id="order-42", run_id="r", type="T")
    )
    [claim] = await driver.store(context, [PAYLOAD])
    assert claim.claim_data == {"c": GOLDEN_CLAIM_V2}
    assert [key async for key, _ in backend.scan()] == [GOLDEN_ENCRYPTED_KEY]
    assert (await backend.get(GOLDEN_ENCRYPTED_KEY))[:9] == b"CAS\x02\x01\x01\x02k1"


# gc's move journal: a crashed run's journal is read by the next run, maybe a
# newer casstore, so its key and record are a stored format too.
GOLDEN_TRASH_KEY = "_casstore/trash/v1/default/order-42/" + DIGEST_HEX
GOLDEN_JOURNAL_KEY = "_casstore/gc/team%2Fa.moving/1764806400000-0011223344556677"
GOLDEN_JOURNAL = (
    b'{"version": 1, "host": "worker-1", "pid": 4242, "started": 1764806400.0, '
    b'"trash_keys": ["_casstore/trash/v1/default/order-42/' + DIGEST_HEX.encode() + b'"]}'
)


async def test_golden_gc_move_journal_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("casstore.ops._gc_journal.time.time", lambda: 1764806400.0)
    monkeypatch.setattr("casstore.ops._gc_journal.socket.gethostname", lambda: "worker-1")
    monkeypatch.setattr("casstore.ops._gc_journal.os.getpid", lambda: 4242)
    monkeypatch.setattr(
        "casstore.ops._gc_journal.secrets.token_hex", lambda n: "0011223344556677"[: 2 * n]
    )
    backend = MemoryBackend()
    async with _gc_journal.journaled(backend, "team/a", [GOLDEN_TRASH_KEY]):
        assert [key async for key, _ in backend.scan()] == [GOLDEN_JOURNAL_KEY]
        assert await backend.get(GOLDEN_JOURNAL_KEY) == GOLDEN_JOURNAL
    assert [key async for key, _ in backend.scan()] == []


async def test_golden_gc_move_journal_is_read() -> None:
    backend = MemoryBackend()
    await backend.put(GOLDEN_JOURNAL_KEY, GOLDEN_JOURNAL)
    leftovers = await _gc_journal.read_leftovers(backend, "team/a")
    assert leftovers.journals == [GOLDEN_JOURNAL_KEY]
    assert leftovers.trash_keys == {GOLDEN_TRASH_KEY}
    assert (await _gc_journal.read_leftovers(backend, "team-a")).journals == []


async def test_gc_move_journal_of_another_version_is_refused() -> None:
    backend = MemoryBackend()
    await backend.put(GOLDEN_JOURNAL_KEY, GOLDEN_JOURNAL.replace(b'"version": 1', b'"version": 2'))
    with pytest.raises(_gc_journal.JournalError, match=r"version 2, this casstore reads 1"):
        await _gc_journal.read_leftovers(backend, "team/a")
