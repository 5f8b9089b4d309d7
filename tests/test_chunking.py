"""Chunked storage (format 3): near-identical payloads cost their new bytes only."""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from casstore import CasStorageDriver, KeyRing
from casstore._chunk_write import build_chunked
from casstore._chunker import cut, split_payload
from casstore._format.chunked import Location, encode_chunked_object, encode_frame
from casstore._format.chunked_read import decode_manifest
from casstore._format.claims import parse_claim_data
from casstore._format.digest import content_digest as plain_digest
from casstore._format.keys import object_key
from casstore.backends import Backend, CountingBackend, MemoryBackend
from casstore.errors import CasstoreError, ConfigurationError, IntegrityError, ObjectNotFoundError
from casstore.ops import store_stats, verify_store
from tests.support.agents import agent_turns
from tests.support.sdk import big_json, in_workflow, make_converter

LOCATION = "default/agent-1"
CONTEXT = StorageDriverStoreContext(
    target=StorageDriverWorkflowInfo(namespace="default", id="agent-1", run_id="r", type="Agent")
)
RING = KeyRing({"k1": bytes(range(32))}, active="k1")


def payloads_of(values: list[dict[str, object]]) -> list[Payload]:
    converter = DataConverter.default.payload_converter
    return [converter.to_payloads([v])[0] for v in values]


async def store_all(driver: CasStorageDriver, payloads: list[Payload]) -> list[StorageDriverClaim]:
    claims: list[StorageDriverClaim] = []
    for payload in payloads:  # one turn after the other, as an agent loop stores them
        claims.extend(await driver.store(CONTEXT, [payload]))
    return claims


async def retrieve(driver: CasStorageDriver, claims: list[StorageDriverClaim]) -> list[Payload]:
    return await driver.retrieve(StorageDriverRetrieveContext(), claims)


async def stored_bytes(backend: Backend) -> int:
    return sum([size async for _, size in backend.scan()])


def key_of(claim: StorageDriverClaim) -> str:
    return parse_claim_data(claim.claim_data, max_size=1 << 30).key


async def manifest_of(backend: Backend, claim: StorageDriverClaim, cipher: Any = None) -> Any:
    record = parse_claim_data(claim.claim_data, max_size=1 << 30)
    obj = await backend.get(record.key)
    return decode_manifest(
        obj, key=record.key, size=record.size, own_digest=record.digest, cipher=cipher
    )


TURNS = payloads_of(agent_turns(20))


async def test_an_agent_conversation_stores_each_turns_new_bytes_only() -> None:
    whole, chunked = MemoryBackend(), MemoryBackend()
    await store_all(CasStorageDriver(whole, chunking=False), TURNS)
    claims = await store_all(CasStorageDriver(chunked), TURNS)
    assert await stored_bytes(chunked) * 4 < await stored_bytes(whole)
    # The last turn's chunks live in several earlier objects, and a cold reader
    # with only its claim reads it whole, checked.
    manifest = await manifest_of(chunked, claims[-1])
    assert len(manifest.references) >= 3
    assert await retrieve(CasStorageDriver(chunked), claims[-1:]) == TURNS[-1:]
    assert await retrieve(CasStorageDriver(chunked), claims) == TURNS


async def test_a_warm_reader_fetches_only_ranges_it_has_not_verified() -> None:
    backend = CountingBackend(MemoryBackend())
    claims = await store_all(CasStorageDriver(backend), TURNS)
    reader = CasStorageDriver(backend)
    assert await retrieve(reader, claims[-2:-1]) == TURNS[-2:-1]
    before = backend.bytes_read
    assert await retrieve(reader, claims[-1:]) == TURNS[-1:]
    # The newest object, and only frames holding chunks the first read did not verify.
    newest = await manifest_of(backend.inner, claims[-1])
    verified = {digest for digest, _ in (await manifest_of(backend.inner, claims[-2])).chunks}
    unverified_frames = {
        (where.source, where.frame_offset, where.frame_size)
        for digest, where in newest.chunks
        if where.source is not None and digest not in verified
    }
    expected = len(await backend.inner.get(key_of(claims[-1])))
    expected += sum(size for _, _, size in unverified_frames)
    assert backend.bytes_read - before == expected
    assert expected < len(TURNS[-1].data) / 4


async def test_whole_payload_dedup_comes_first_and_costs_no_chunking() -> None:
    backend = CountingBackend(MemoryBackend())
    driver = CasStorageDriver(backend)
    [first] = await driver.store(CONTEXT, [TURNS[5]])
    calls = dict(backend.calls)
    again = await driver.store(CONTEXT, [TURNS[5]] * 10)
    assert again == [first] * 10
    assert dict(backend.calls) == calls
    # A second writer finds the object, whatever its format.
    other = CasStorageDriver(backend)
    assert await other.store(CONTEXT, [TURNS[5]]) == [first]
    assert backend.calls["put"] == 1


async def test_small_payloads_and_chunking_off_store_whole_objects() -> None:
    backend = MemoryBackend()
    small = Payload(metadata={"encoding": b"json/plain"}, data=b'"' + b"x" * 20_000 + b'"')
    [claim] = await CasStorageDriver(backend).store(CONTEXT, [small])
    assert (await backend.get(key_of(claim)))[:4] == b"CAS\x01"
    [claim] = await CasStorageDriver(backend, chunking=False).store(CONTEXT, [TURNS[3]])
    assert (await backend.get(key_of(claim)))[:4] == b"CAS\x01"
    other = Payload(metadata={"encoding": b"json/plain"}, data=b'"' + b"y" * 20_000 + b'"')
    [claim] = await CasStorageDriver(backend, chunking_threshold=1024).store(CONTEXT, [other])
    assert (await backend.get(key_of(claim)))[:4] == b"CAS\x03"
    with pytest.raises(ConfigurationError, match="chunking_threshold"):
        CasStorageDriver(backend, chunking_threshold=-1)


async def test_a_cold_writer_writes_its_chunks_again_and_references_nothing() -> None:
    backend = MemoryBackend()
    claims = await store_all(CasStorageDriver(backend), TURNS[:10])
    [claim] = await CasStorageDriver(backend).store(CONTEXT, [TURNS[10]])
    assert (await manifest_of(backend, claim)).references == ()
    assert await retrieve(CasStorageDriver(backend), [*claims, claim]) == TURNS[:11]


async def test_a_writer_learns_chunks_from_what_it_read() -> None:
    backend = MemoryBackend()
    claims = await store_all(CasStorageDriver(backend), TURNS[:10])
    worker = CasStorageDriver(backend)
    await retrieve(worker, claims[-1:])
    [claim] = await worker.store(CONTEXT, [TURNS[10]])
    manifest = await manifest_of(backend, claim)
    assert manifest.references
    assert sum(where.source is None for _, where in manifest.chunks) < len(manifest.chunks) / 2
    assert await retrieve(CasStorageDriver(backend), [claim]) == TURNS[10:11]


async def test_payloads_repeating_a_chunk_store_it_once() -> None:
    rng = random.Random(7)
    block = rng.randbytes(200_000)  # cut the same way, but at its edges, each time it recurs
    data = b"".join(block + rng.randbytes(5_000) for _ in range(6))
    payload = Payload(metadata={"encoding": b"binary/plain"}, data=data)
    backend = MemoryBackend()
    [claim] = await CasStorageDriver(backend, compression_level=None).store(CONTEXT, [payload])
    assert len(await backend.get(key_of(claim))) < len(data) * 0.35
    assert await retrieve(CasStorageDriver(backend), [claim]) == [payload]


# Damaged and hostile objects.


async def test_a_corrupt_referenced_range_is_caught_naming_both_keys() -> None:
    backend = MemoryBackend()
    claims = await store_all(CasStorageDriver(backend, compression_level=None), TURNS[:8])
    manifest = await manifest_of(backend, claims[-1])
    source, where = next((w.source, w) for _, w in manifest.chunks if w.source is not None)
    source_key = object_key(LOCATION, source)
    obj = bytearray(await backend.get(source_key))
    obj[where.frame_offset + 1 + where.offset + where.length // 2] ^= 0xFF
    await backend.delete(source_key)
    await backend.put(source_key, bytes(obj))
    with pytest.raises(IntegrityError) as info:
        await retrieve(CasStorageDriver(backend), claims[-1:])
    assert key_of(claims[-1]) in str(info.value)
    assert source_key in str(info.value)
    assert "does not match its digest" in str(info.value)


async def test_a_missing_referenced_object_is_not_found_naming_both_keys() -> None:
    backend = MemoryBackend()
    claims = await store_all(CasStorageDriver(backend), TURNS[:8])
    manifest = await manifest_of(backend, claims[-1])
    source_key = object_key(LOCATION, manifest.references[0])
    await backend.delete(source_key)
    with pytest.raises(ObjectNotFoundError) as info:
        await retrieve(CasStorageDriver(backend), claims[-1:])
    assert key_of(claims[-1]) in str(info.value)
    assert source_key in str(info.value)


def hostile(
    payload: Payload, location: Location, references: list[bytes], *, digest: bytes | None = None
) -> tuple[str, bytes, StorageDriverClaim]:
    """A format 3 object for ``payload`` whose one chunk is at ``location``."""
    data = payload.SerializeToString(deterministic=True)
    split = split_payload(payload, data)
    assert split is not None
    own = digest or plain_digest(data)
    key = object_key(LOCATION, own)
    head, tail = data[: split.head], data[len(data) - split.tail :]
    chunk = data[split.head : len(data) - split.tail]
    obj = encode_chunked_object(
        size=len(data),
        head=head,
        tail=tail,
        chunks=[(plain_digest(chunk), location)],
        frames=[],
        references=references,
        cipher=None,
        digest=own,
        key=key,
    )
    claim = StorageDriverClaim({"c": f"2,{LOCATION},{_b64(own)},{len(data)}"})
    return key, obj, claim


def _b64(digest: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


PAYLOAD = Payload(metadata={"encoding": b"json/plain"}, data=b'"' + b"a" * 40_000 + b'"')


async def test_a_manifest_referencing_itself_is_refused() -> None:
    digest = plain_digest(PAYLOAD.SerializeToString(deterministic=True))
    key, obj, claim = hostile(PAYLOAD, Location(digest, 0, 10, 0, 40_002), [digest])
    backend = MemoryBackend()
    await backend.put(key, obj)
    with pytest.raises(IntegrityError, match="references itself"):
        await retrieve(CasStorageDriver(backend), [claim])


async def test_a_manifest_pointing_past_an_objects_end_is_refused_naming_both_keys() -> None:
    backend = MemoryBackend()
    [earlier] = await CasStorageDriver(backend).store(CONTEXT, [TURNS[2]])
    source = parse_claim_data(earlier.claim_data, max_size=1 << 30).digest
    size = len(await backend.get(key_of(earlier)))
    key, obj, claim = hostile(PAYLOAD, Location(source, size - 5, 100, 0, 40_002), [source])
    await backend.put(key, obj)
    with pytest.raises(IntegrityError, match="ends at") as info:
        await retrieve(CasStorageDriver(backend), [claim])
    assert key_of(earlier) in str(info.value)


async def test_a_manifest_cannot_reach_outside_its_location() -> None:
    # References are digests resolved in the claim's own location: an object of
    # another workflow with that digest is never read.
    backend = MemoryBackend()
    other = StorageDriverStoreContext(
        target=StorageDriverWorkflowInfo(namespace="default", id="other", run_id="r", type="T")
    )
    [theirs] = await CasStorageDriver(backend).store(other, [TURNS[2]])
    source = parse_claim_data(theirs.claim_data, max_size=1 << 30).digest
    key, obj, claim = hostile(PAYLOAD, Location(source, 40, 100, 0, 40_002), [source])
    await backend.put(key, obj)
    with pytest.raises(ObjectNotFoundError) as info:
        await retrieve(CasStorageDriver(backend), [claim])
    assert object_key(LOCATION, source) in str(info.value)


async def test_a_manifest_pointing_into_another_manifest_or_a_cycle_is_refused() -> None:
    # Two objects referencing each other's header bytes as frames: neither decodes.
    backend = MemoryBackend()
    a = Payload(metadata={"encoding": b"json/plain"}, data=b'"' + b"b" * 40_000 + b'"')
    digest_a = plain_digest(a.SerializeToString(deterministic=True))
    digest_b = plain_digest(PAYLOAD.SerializeToString(deterministic=True))
    key_a, obj_a, claim_a = hostile(a, Location(digest_b, 0, 64, 0, 40_002), [digest_b])
    key_b, obj_b, claim_b = hostile(PAYLOAD, Location(digest_a, 0, 64, 0, 40_002), [digest_a])
    await backend.put(key_a, obj_a)
    await backend.put(key_b, obj_b)
    for claim in (claim_a, claim_b):
        with pytest.raises(IntegrityError, match="frame"):
            await retrieve(CasStorageDriver(backend), [claim])


async def test_a_manifest_that_does_not_add_up_is_refused() -> None:
    data = PAYLOAD.SerializeToString(deterministic=True)
    digest = plain_digest(data)
    key = object_key(LOCATION, digest)
    frame = encode_frame(b"a" * 10, None, None, digest=digest, key=key, offset=0)
    obj = encode_chunked_object(
        size=len(data),
        head=b"",
        tail=b"",
        chunks=[(plain_digest(b"a" * 10), Location(None, 0, 0, 0, 10))],
        frames=[frame],
        references=[],
        cipher=None,
        digest=digest,
        key=key,
    )
    backend = MemoryBackend()
    await backend.put(key, obj)
    claim = StorageDriverClaim({"c": f"2,{LOCATION},{_b64(digest)},{len(data)}"})
    with pytest.raises(IntegrityError, match="adds up to 10 bytes"):
        await retrieve(CasStorageDriver(backend), [claim])


# Encryption.


async def test_encrypted_chunks_dedup_within_a_key_and_reveal_nothing() -> None:
    backend = MemoryBackend()
    whole = MemoryBackend()
    await store_all(CasStorageDriver(whole, keyring=RING, chunking=False), TURNS)
    claims = await store_all(CasStorageDriver(backend, keyring=RING), TURNS)
    assert await stored_bytes(backend) * 4 < await stored_bytes(whole)
    assert await retrieve(CasStorageDriver(backend, keyring=RING), claims) == TURNS
    # No plaintext, no plain chunk digest, no chunk length in the clear.
    last = TURNS[-1].SerializeToString(deterministic=True)
    split = split_payload(TURNS[-1], last)
    assert split is not None
    plain_cuts = cut(last, split, None)
    objects = [await backend.get(key) async for key, _ in backend.scan()]
    for obj in objects:
        assert b"instructions" not in obj
        assert last[split.head + 100 : split.head + 132] not in obj
        for piece in plain_cuts:
            assert piece.digest not in obj
            assert piece.length.to_bytes(4, "big") not in obj
    # Boundaries are keyed: the same data cuts differently without the key.
    keyed_cuts = cut(last, split, CasStorageDriver(backend, keyring=RING)._ciphers.active)  # type: ignore[union-attr]
    assert [c.length for c in keyed_cuts] != [c.length for c in plain_cuts]
    # Without the key nothing reads; another key's claim never reads these.
    with pytest.raises(ConfigurationError):
        await retrieve(CasStorageDriver(backend), claims[-1:])


async def test_large_chunked_payloads_do_their_cpu_work_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    threads: list[int] = []

    class RecordingExecutor(concurrent.futures.ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            def run() -> Any:
                threads.append(threading.get_ident())
                return fn(*args, **kwargs)

            return super().submit(run)

    asyncio.get_running_loop().set_default_executor(RecordingExecutor(max_workers=2))
    backend = MemoryBackend()
    converter = in_workflow(make_converter(CasStorageDriver(backend)))
    [large] = await converter.encode([big_json(2_000_000)])
    assert len(threads) == 3  # hash; cut and digest chunks; compress and assemble
    await make_converter(CasStorageDriver(backend)).decode([large])
    assert len(threads) >= 6  # manifest, frames, whole digest, parse
    assert loop_thread not in threads


def test_split_payload_finds_data_between_metadata_and_later_fields() -> None:
    payload = Payload(metadata={"encoding": b"json/plain", "x": b"y" * 300}, data=b"z" * 200)
    data = payload.SerializeToString(deterministic=True)
    split = split_payload(payload, data)
    assert split is not None
    assert data[split.head : len(data) - split.tail] == payload.data
    assert split_payload(Payload(metadata={"a": b"b"}), b"") is None


def test_build_rejects_nothing_it_writes() -> None:
    payload = TURNS[4]
    data = payload.SerializeToString(deterministic=True)
    split = split_payload(payload, data)
    assert split is not None
    cuts = cut(data, split, None)
    digest = plain_digest(data)
    key = object_key(LOCATION, digest)
    obj, learned = build_chunked(
        data, split, cuts, [None] * len(cuts), level=3, cipher=None, digest=digest, key=key
    )
    manifest = decode_manifest(obj, key=key, size=len(data), own_digest=digest, cipher=None)
    assert [d for d, _ in manifest.chunks] == [c.digest for c in cuts]
    assert {d for d, _ in learned} == {c.digest for c in cuts}
    assert all(where.source == digest for _, where in learned)


# Fuzzing: a damaged chunked object, or a damaged object it references.


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_damage_to_chunked_objects_is_an_error_never_a_wrong_payload(
    data: st.DataObject,
) -> None:
    backend = MemoryBackend()
    claims = asyncio.run(store_all(CasStorageDriver(backend), TURNS[:4]))
    keys = [key_of(claim) for claim in claims]
    victim = data.draw(st.sampled_from(keys))
    obj = bytearray(backend._objects[victim][0])
    how = data.draw(st.sampled_from(["flip", "truncate", "extend", "zero-range"]))
    at = data.draw(st.integers(0, len(obj) - 1))
    if how == "flip":
        obj[at] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "truncate":
        del obj[at:]
    elif how == "extend":
        obj += data.draw(st.binary(min_size=1, max_size=64))
    else:
        obj[at : at + 64] = bytes(len(obj[at : at + 64]))
    backend._objects[victim] = (bytes(obj), backend._objects[victim][1])
    reader = CasStorageDriver(backend, retrieval_cache_bytes=0)
    error: CasstoreError | None = None
    try:
        got = asyncio.run(retrieve(reader, claims[-1:]))
    except (IntegrityError, ObjectNotFoundError) as exc:
        error = exc
    if error is None:
        assert got == TURNS[3:4]  # only an intact (or equivalent) read may pass
    else:
        assert key_of(claims[-1]) in str(error)  # named, whichever object was damaged


# Operator commands on a chunked store.


def chunked_count(payloads: list[Payload]) -> int:
    """How many of ``payloads`` are large enough to be chunked (the first turn is not)."""
    return sum(p.ByteSize() >= 32 * 1024 for p in payloads)


async def test_verify_reads_every_chunk_and_names_what_a_damaged_reference_breaks() -> None:
    backend = MemoryBackend()
    claims = await store_all(CasStorageDriver(backend, compression_level=None), TURNS[:8])
    report = await verify_store(backend)
    assert report.ok, report.bad
    assert report.good == 8
    assert report.codecs.get("chunked") == chunked_count(TURNS[:8])
    # Damage a chunk in an early object: it and every later object reading it go bad.
    manifest = await manifest_of(backend, claims[-1])
    source, where = next((w.source, w) for _, w in manifest.chunks if w.source is not None)
    source_key = object_key(LOCATION, source)
    obj = bytearray(backend._objects[source_key][0])
    obj[where.frame_offset + 1 + where.offset] ^= 0xFF
    backend._objects[source_key] = (bytes(obj), backend._objects[source_key][1])
    report = await verify_store(backend)
    bad = {b.key: b.reason for b in report.bad}
    assert source_key in bad
    assert key_of(claims[-1]) in bad
    assert f"referenced={source_key}" in bad[key_of(claims[-1])]
    # A missing referenced object, likewise.
    await backend.delete(source_key)
    report = await verify_store(backend)
    assert f"referenced={source_key}" in {b.key: b.reason for b in report.bad}[key_of(claims[-1])]


async def test_stats_deep_reports_what_chunk_dedup_saved() -> None:
    backend = MemoryBackend()
    await store_all(CasStorageDriver(backend), TURNS)
    stats = await store_stats(backend, deep=True)
    logical = sum(len(p.SerializeToString(deterministic=True)) for p in TURNS)
    assert stats.total.logical_bytes == logical
    assert stats.codecs["chunked"].objects == chunked_count(TURNS)
    # Nearly everything but each turn's new bytes was read from earlier objects.
    assert stats.chunk_dedup_bytes > 0.8 * logical
    assert stats.as_dict()["chunk_dedup_bytes"] == stats.chunk_dedup_bytes


async def test_encrypted_chunked_objects_need_the_key_to_verify() -> None:
    backend = MemoryBackend()
    await store_all(CasStorageDriver(backend, keyring=RING), TURNS[:5])
    without = await verify_store(backend)
    assert without.ok
    assert len(without.unchecked) == 5
    assert without.needs_keys == {"k1"}
    with_key = await verify_store(backend, keyring=RING)
    assert with_key.ok
    assert with_key.good == 5
    assert with_key.encrypted == {"k1": 5}
