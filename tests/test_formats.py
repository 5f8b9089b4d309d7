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

from casstore import CasStorageDriver
from casstore._claim import make_claim_data, parse_claim_data
from casstore._codec import Codec, decode_object, encode_object
from casstore._keys import check_key, is_object_key, location_for, object_key
from casstore.backends import MemoryBackend

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
