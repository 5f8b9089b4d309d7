"""Golden tests of object format 3 (chunked): its bytes are an API.

If one of these fails, a change broke compatibility with chunked objects
already stored. Do not update the expected bytes: add a new format version.
The chunk boundaries here are given, not found by the chunker (whose
parameters are a writer's choice), and frames are raw, so every byte is fixed.
"""

from __future__ import annotations

import base64
import itertools

from temporalio.api.common.v1 import Payload
from temporalio.converter import StorageDriverClaim, StorageDriverRetrieveContext

from casstore import CasStorageDriver, KeyRing
from casstore._chunk_write import build_chunked
from casstore._chunker import Cut, split_payload
from casstore._crypto import Ciphers
from casstore._format.chunked import Location
from casstore._format.chunked_read import decode_manifest
from casstore._format.digest import content_digest as plain_digest
from casstore._format.encrypted import ObjectCipher
from casstore._format.keys import object_key
from casstore.backends import MemoryBackend

LOCATION = "default/agent-1"
TURN_1 = b'{"turn":1,"messages":["' + b"hello agent " * 8 + b'"'
TOOL = b',"' + b"tool result " * 6 + b'"]}'
EARLIER = Payload(metadata={"encoding": b"json/plain"}, data=TURN_1)
NEWER = Payload(metadata={"encoding": b"json/plain"}, data=TURN_1 + TOOL)
RING = KeyRing({"k1": bytes(range(32))}, active="k1")

GOLDEN_EARLIER = bytes.fromhex(
    "43415303000000000000005c000000920000001a0a160a08656e636f64696e67120a6a736f6e2f706c61696e"
    "127800000000000000017b59f9946d6632e0bac1161d9ca0961a0dd7e5eac91826501991b4ac595476110000"
    "00780000000000680000007900000000007b227475726e223a312c226d65737361676573223a5b2268656c6c"
    "6f206167656e742068656c6c6f206167656e742068656c6c6f206167656e742068656c6c6f206167656e7420"
    "68656c6c6f206167656e742068656c6c6f206167656e742068656c6c6f206167656e742068656c6c6f206167"
    "656e742022"
)
GOLDEN_NEWER = bytes.fromhex(
    "43415303000000016e90b67c4d6795e65d5bff1c3d998ce53de58bb25086daf4f27b57bfbf5fb1ae0000008f"
    "000000e00000001b0a160a08656e636f64696e67120a6a736f6e2f706c61696e12c50100000000000000027b"
    "59f9946d6632e0bac1161d9ca0961a0dd7e5eac91826501991b4ac59547611000000780001000000680000007900"
    "000000879541bdcaa8fce30f829662403b7e18a7ab9515622e686d316effbcf4eae2410000004d000000000"
    "0bb0000004e00000000002c22746f6f6c20726573756c7420746f6f6c20726573756c7420746f6f6c20726573"
    "756c7420746f6f6c20726573756c7420746f6f6c20726573756c7420746f6f6c20726573756c7420225d7d"
)
GOLDEN_EARLIER_SEALED = bytes.fromhex(
    "4341530301026b310000aaba785ceb79377d4e34441951238f293403425983814a3eb61db02c1ca78067615e"
    "c2268ac029a1a57fdb47b74e8a6ef0e31e09b3078bc0576fe4e95759416d8c3098719407249f86c807079356"
    "8355326938c6a32be01f76ccb933a5eb14bdb877c1d1a3374a21ab46d55e38d7e94f32c728e26331abb3dcbe"
    "289b3bcfcd8f6370923248218744d307f8c983783277edc783435f409e865b119f77b4cd86c7ec18d22e0ab6"
    "bbe215184e926ede00d2ece81c3158129b400574b9c97bf441d483c673f8af364115db161623e3c5b6f0a21c"
    "670d0fbcc106ea4eb41d315bf875b6b6656c562759f411be8b07b4110287050694cf54d6b1c06b3169b5bed9"
    "9ed66b795f6c05cb690931"
)
GOLDEN_NEWER_SEALED = bytes.fromhex(
    "4341530301026b310001f24c53dffc4f86e9d7967cd2acd68817a71c90aff68eaa02e2afcd54800db220ca34"
    "f4a9382e5e1fda033c6c499d7132b83185a2d857b01950a134c11741ec8a71239742d2f55cb65e409f54526b"
    "b95c5b56cc9d6a0b820636827150022cd58027693d440e3e2362a9651d5f2d84ebc611f0c4ae551accdff75f"
    "1f0b32e0cb23e4f457f98932e25c4577c6332177d1b653edbeacd6a9528e56874cbf02ac94da0226637c39d5"
    "009c1750dd1d90c51db148d6ad046013721667a77afde10f2379c8125b11f9a4486541f460bb90021a8817df"
    "f0ed1b964badea0bdf9b68b0d2b275631dca256d3c9128db27334c8a3711cd26556f2482fc46754f2781b2ef"
    "e934bfd848d68b666b9683bebfd5c9f023b4de2a4a41fc6adae6f93e69387cd6cf07f3cbd9530e5c7198cb2e"
    "2a80caa393a2f1"
)


def build(
    payload: Payload,
    cut_at: list[int],
    known: dict[bytes, Location] | None = None,
    cipher: ObjectCipher | None = None,
) -> tuple[bytes, bytes, dict[bytes, Location]]:
    """Build a payload's object with the given chunk boundaries (offsets in ``data``)."""
    data = payload.SerializeToString(deterministic=True)
    split = split_payload(payload, data)
    assert split is not None
    digest = plain_digest(data) if cipher is None else cipher.digest(data)
    bounds = [split.head, *(split.head + at for at in cut_at), len(data) - split.tail]
    cuts = []
    for start, end in itertools.pairwise(bounds):
        piece = data[start:end]
        cuts.append(
            Cut(start, end - start, plain_digest(piece) if cipher is None else cipher.digest(piece))
        )
    found = [None if known is None else known.get(c.digest) for c in cuts]
    obj, learned = build_chunked(
        data, split, cuts, found, level=None, cipher=cipher, digest=digest,
        key=object_key(LOCATION, digest),
    )  # fmt: skip
    return digest, obj, dict(learned)


def claim(digest: bytes, size: int, key_id: str | None = None) -> StorageDriverClaim:
    text = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    suffix = "" if key_id is None else f",{key_id}"
    return StorageDriverClaim({"c": f"2,{LOCATION},{text},{size}{suffix}"})


def test_golden_chunked_objects_encoding() -> None:
    digest, earlier, learned = build(EARLIER, [])
    assert earlier == GOLDEN_EARLIER
    assert earlier[:8] == b"CAS\x03\x00\x00\x00\x00"  # v3, plain, no key id, no references
    _, newer, _ = build(NEWER, [len(TURN_1)], learned)
    assert newer == GOLDEN_NEWER
    assert newer[:8] == b"CAS\x03\x00\x00\x00\x01"  # one reference: the earlier object
    assert newer[8:40] == digest


def test_golden_sealed_chunked_objects_encoding() -> None:
    cipher = Ciphers(RING).active
    digest, earlier, learned = build(EARLIER, [], cipher=cipher)
    assert earlier == GOLDEN_EARLIER_SEALED
    _, newer, _ = build(NEWER, [len(TURN_1)], learned, cipher=cipher)
    assert newer == GOLDEN_NEWER_SEALED
    assert newer[:10] == b"CAS\x03\x01\x02k1\x00\x01"
    assert newer[10:42] == digest  # the reference table is readable (gc needs no key)


def test_golden_manifest_fields() -> None:
    data = NEWER.SerializeToString(deterministic=True)
    digest = plain_digest(data)
    manifest = decode_manifest(
        GOLDEN_NEWER, key=object_key(LOCATION, digest), size=len(data), own_digest=digest,
        cipher=None,
    )  # fmt: skip
    earlier_digest = plain_digest(EARLIER.SerializeToString(deterministic=True))
    assert manifest.references == (earlier_digest,)
    assert [(where.source, where.offset, where.length) for _, where in manifest.chunks] == [
        (earlier_digest, 0, len(TURN_1)),
        (None, 0, len(TOOL)),
    ]
    assert manifest.head + TURN_1 + TOOL + manifest.tail == data


async def test_golden_chunked_objects_retrieve() -> None:
    for objects, key_id, ring in (
        ((GOLDEN_EARLIER, GOLDEN_NEWER), None, None),
        ((GOLDEN_EARLIER_SEALED, GOLDEN_NEWER_SEALED), "k1", RING),
    ):
        cipher = None if ring is None else Ciphers(ring).active
        backend = MemoryBackend()
        claims = []
        for payload, obj in zip((EARLIER, NEWER), objects, strict=True):
            data = payload.SerializeToString(deterministic=True)
            digest = plain_digest(data) if cipher is None else cipher.digest(data)
            await backend.put(object_key(LOCATION, digest), obj)
            claims.append(claim(digest, len(data), key_id))
        # A cold reader of the newer claim alone reads the earlier object's range.
        driver = CasStorageDriver(backend, keyring=ring)
        assert await driver.retrieve(StorageDriverRetrieveContext(), claims[1:]) == [NEWER]
        assert await driver.retrieve(StorageDriverRetrieveContext(), claims[:1]) == [EARLIER]
