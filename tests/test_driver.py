"""CasStorageDriver through the SDK's ExternalStorage path (encode/decode)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

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
from casstore.backends import Backend, CountingBackend, LocalBackend, MemoryBackend
from casstore.backends._wrappers import FailingBackend, LatencyBackend
from casstore.errors import (
    BackendError,
    ClaimError,
    ConfigurationError,
    IntegrityError,
    ObjectNotFoundError,
    PayloadTooLargeError,
)
from tests.support.sdk import big_json, in_workflow, make_converter, reference_of
from tests.support.threads import RecordingExecutor


def counted(inner: Backend | None = None) -> CountingBackend:
    return CountingBackend(inner or MemoryBackend())


async def keys_in(backend: Backend) -> list[str]:
    return [key async for key, _ in backend.scan()]


# Round trips and dedup through the SDK.


async def test_round_trip_through_external_storage() -> None:
    driver = CasStorageDriver(MemoryBackend())
    converter = in_workflow(make_converter(driver))
    value = big_json(200_000)
    [reference] = await converter.encode([value])
    assert reference_of(reference).driver_name == "casstore"
    assert reference.external_payloads[0].size_bytes > 200_000
    assert await converter.decode([reference], [dict]) == [value]


async def test_same_content_in_one_workflow_is_written_once_and_costs_no_request_after() -> None:
    backend = counted()
    converter = in_workflow(make_converter(CasStorageDriver(backend)))
    value = big_json(100_000)
    first = await converter.encode([value])
    assert backend.calls == {"stat": 1, "put": 1}
    for _ in range(20):
        assert await converter.encode([value]) == first
    assert backend.calls == {"stat": 1, "put": 1}


async def test_run_id_and_type_do_not_split_a_workflows_scope() -> None:
    backend = counted()
    converter = make_converter(CasStorageDriver(backend))
    value = big_json(10_000)
    # Start input (empty run id), activity input (real run id), child result (no type).
    a = await in_workflow(converter, run_id="", workflow_type="Parent").encode([value])
    b = await in_workflow(converter, run_id="run-1", workflow_type="Parent").encode([value])
    c = await in_workflow(converter, run_id="run-1", workflow_type=None).encode([value])
    assert a == b == c
    assert backend.calls["put"] == 1


async def test_workflow_scope_keeps_workflows_apart_and_namespace_scope_shares() -> None:
    for scope, expected_objects in (("workflow", 3), ("namespace", 1)):
        backend = MemoryBackend()
        converter = make_converter(CasStorageDriver(backend, scope=scope))  # type: ignore[arg-type]
        for child in ("child-1", "child-2", "child-3"):
            await in_workflow(converter, child).encode([big_json(5_000)])
        assert len(await keys_in(backend)) == expected_objects, scope


@pytest.mark.parametrize(
    ("size", "options", "requests"),
    [
        # The refused write is the existence check; the object's age decides
        # whether it needs a refresh (refresh_after, on by default).
        (10_000, {}, {"put": 1, "stat": 1}),
        (10_000, {"refresh_after": None}, {"put": 1}),
        (200_000, {}, {"stat": 1}),
    ],
    ids=["small-write-first", "small-write-first-no-refresh", "large-check-first"],
)
async def test_a_second_process_finds_the_object_without_uploading_it_again(
    tmp_path: Path, size: int, options: dict[str, Any], requests: dict[str, int]
) -> None:
    value = big_json(size)
    await in_workflow(make_converter(CasStorageDriver(LocalBackend(tmp_path)))).encode([value])
    backend = counted(LocalBackend(tmp_path))
    driver = CasStorageDriver(backend, **options)
    await in_workflow(make_converter(driver)).encode([value])
    assert backend.calls == requests
    assert driver.stats.dedup_backend_hits == 1
    assert driver.stats.objects_written == 0


async def test_stored_bytes_serve_later_retrievals_without_a_read() -> None:
    backend = counted()
    driver = CasStorageDriver(backend)
    converter = in_workflow(make_converter(driver))
    [reference] = await converter.encode([big_json(100_000)])
    assert await converter.decode([reference]) == [big_json(100_000)]
    assert "get" not in backend.calls
    assert driver.stats.retrieval_cache_hits == 1


async def test_thousand_concurrent_stores_make_one_check_and_one_write() -> None:
    backend = CountingBackend(LatencyBackend(MemoryBackend(), 0.01))
    driver = CasStorageDriver(backend)
    converter = in_workflow(make_converter(driver))
    value = b"0123456789abcdef" * 65536  # 1 MiB; bytes keep the SDK's own JSON work out
    results = await asyncio.gather(*(converter.encode([value]) for _ in range(1000)))
    assert all(r == results[0] for r in results)
    assert backend.calls == {"stat": 1, "put": 1}
    assert driver.stats.payloads_stored == 1000
    assert driver.stats.dedup_hits == 999
    assert driver.stats.objects_written == 1


async def test_repeated_retrievals_read_the_object_once() -> None:
    backend = CountingBackend(LatencyBackend(MemoryBackend(), 0.01))
    driver = CasStorageDriver(backend)
    converter = in_workflow(make_converter(driver))
    value = b"0123456789abcdef" * 20_000
    [reference] = await in_workflow(make_converter(CasStorageDriver(backend))).encode([value])
    # This driver stored nothing itself, like a worker reading a client's input.
    decoded = await asyncio.gather(*(converter.decode([reference], [bytes]) for _ in range(1000)))
    assert all(d == [value] for d in decoded)
    assert backend.calls["get"] == 1
    assert driver.stats.objects_read == 1
    assert driver.stats.retrieval_cache_hits + driver.stats.retrieval_inflight_hits == 999


async def test_retrieval_cache_is_bounded_by_bytes() -> None:
    backend = counted()
    driver = CasStorageDriver(backend, retrieval_cache_bytes=250_000)
    converter = in_workflow(make_converter(driver))
    references = [(await converter.encode([big_json(100_000, seed=i)]))[0] for i in range(3)]
    for reference in references:
        await converter.decode([reference])
    # Room for two of three ~100 kB payloads: the oldest was evicted.
    await converter.decode([references[2]])
    await converter.decode([references[1]])
    assert backend.calls["get"] == 3
    await converter.decode([references[0]])
    assert backend.calls["get"] == 4


async def test_every_payload_of_a_batch_round_trips_in_order() -> None:
    converter = in_workflow(make_converter(CasStorageDriver(MemoryBackend())))
    values: list[Any] = [None, 1, "x", {"a": [1, 2]}, big_json(70_000), "x", None]
    references = await converter.encode(values)
    assert len(references) == len(values)
    assert await converter.decode(references) == values


# Codec.


async def test_compressible_payload_is_stored_compressed() -> None:
    backend = MemoryBackend()
    driver = CasStorageDriver(backend)
    await in_workflow(make_converter(driver)).encode([big_json(1_000_000)])
    [(_, stored)] = [item async for item in backend.scan()]
    assert stored * 4 < driver.stats.logical_bytes_stored


async def test_incompressible_and_tiny_payloads_are_stored_raw() -> None:
    backend = MemoryBackend()
    # Whole-object storage (format 1); chunked objects are tested in test_chunking.py.
    converter = in_workflow(make_converter(CasStorageDriver(backend, chunking=False)))
    references = await converter.encode([os.urandom(300_000), "ok"])
    claims = [json.loads(reference_of(r).claim_data["c"]) for r in references]
    assert [c[4] for c in claims] == [0, 0]
    for key, size in [item async for item in backend.scan()]:
        obj = await backend.get(key)
        assert obj[:5] == b"CAS\x01\x00"
        assert size == len(obj)


async def test_writers_with_different_codec_settings_read_each_others_objects() -> None:
    backend = MemoryBackend()
    raw_writer = in_workflow(make_converter(CasStorageDriver(backend, compression_level=None)))
    zstd_writer = in_workflow(make_converter(CasStorageDriver(backend, compression_level=19)))
    a, b = big_json(200_000, seed=1), big_json(200_000, seed=2)
    a_raw = await raw_writer.encode([a])  # stored raw
    a_zstd = await zstd_writer.encode([a])  # dedup hit on the raw object
    b_zstd = await zstd_writer.encode([b])  # stored compressed
    b_raw = await raw_writer.encode([b])  # dedup hit on the compressed object
    assert len(await keys_in(backend)) == 2
    for reader in (raw_writer, zstd_writer):
        for references, value in ((a_raw, a), (a_zstd, a), (b_zstd, b), (b_raw, b)):
            fresh = make_converter(CasStorageDriver(backend))
            assert await fresh.decode(references, [dict]) == [value]
            assert await reader.decode(references, [dict]) == [value]


# Threshold 0 and references in history.


async def test_tiny_payloads_at_threshold_zero_all_round_trip() -> None:
    backend = MemoryBackend()
    converter = in_workflow(make_converter(CasStorageDriver(backend)))
    values: list[Any] = [None, True, 0, "", "a", [], {}, {"status": "ok"}] * 5
    references = await converter.encode(values)
    assert all(reference_of(r).driver_name == "casstore" for r in references)
    assert len(await keys_in(backend)) == 8
    assert await converter.decode(references) == values


@pytest.mark.parametrize("key_id", [None, "prod-2026"], ids=["plain", "encrypted"])
async def test_reference_is_at_most_55_percent_of_the_sdk_s3_drivers(key_id: str | None) -> None:
    from temporalio.contrib.aws.s3driver import S3StorageDriver, S3StorageDriverClient

    from casstore import KeyRing

    class DictClient(S3StorageDriverClient):
        def __init__(self) -> None:
            self.objects: dict[tuple[str, str], bytes] = {}

        async def put_object(self, *, bucket: str, key: str, data: bytes) -> None:
            self.objects[bucket, key] = data

        async def object_exists(self, *, bucket: str, key: str) -> bool:
            return (bucket, key) in self.objects

        async def get_object(self, *, bucket: str, key: str) -> bytes:
            return self.objects[bucket, key]

    workflow_id = "6cdfe788-696a-4785-9350-9ee70a2fb047"
    value = big_json(1_000_000)
    sdk = make_converter(S3StorageDriver(DictClient(), bucket="temporal-payloads"))
    keyring = None if key_id is None else KeyRing.from_bytes(bytes(32), key_id=key_id)
    ours = make_converter(CasStorageDriver(MemoryBackend(), keyring=keyring))
    run_id = "ccff0f44-553d-42ea-b9e1-65bb76c24a69"
    [sdk_ref] = await in_workflow(sdk, workflow_id, run_id=run_id).encode([value])
    [our_ref] = await in_workflow(ours, workflow_id, run_id=run_id).encode([value])
    assert our_ref.ByteSize() <= 0.55 * sdk_ref.ByteSize(), (our_ref.ByteSize(), sdk_ref.ByteSize())


# Integrity: nothing is parsed unless size and digest match.


@pytest.mark.parametrize("level", [None, 3], ids=["raw", "zstd"])
@pytest.mark.parametrize("where", ["header", "body-start", "middle", "last-byte"])
async def test_flipped_byte_is_an_integrity_error(level: int | None, where: str) -> None:
    backend = MemoryBackend()
    converter = in_workflow(make_converter(CasStorageDriver(backend, compression_level=level)))
    [reference] = await converter.encode([big_json(20_000)])
    [key] = await keys_in(backend)
    obj = bytearray(await backend.get(key))
    position = {"header": 3, "body-start": 5, "middle": len(obj) // 2, "last-byte": -1}[where]
    obj[position] ^= 0x01
    await backend.delete(key)
    await backend.put(key, bytes(obj))
    fresh = make_converter(CasStorageDriver(backend))
    with pytest.raises(IntegrityError, match=key.rsplit("/", 1)[-1]):
        await fresh.decode([reference])


async def test_digest_mismatch_names_key_and_both_digests() -> None:
    backend = MemoryBackend()
    converter = in_workflow(make_converter(CasStorageDriver(backend, compression_level=None)))
    [reference] = await converter.encode(["A" * 1000])
    [key] = await keys_in(backend)
    obj = await backend.get(key)
    await backend.delete(key)
    await backend.put(key, obj[:5] + obj[5:].replace(b"A", b"B"))
    with pytest.raises(IntegrityError) as info:
        await make_converter(CasStorageDriver(backend)).decode([reference])
    message = str(info.value)
    assert key in message
    assert "expected blake3" in message
    assert "got" in message


@pytest.mark.parametrize("level", [None, 3], ids=["raw", "zstd"])
async def test_truncated_object_is_an_integrity_error(level: int | None) -> None:
    backend = MemoryBackend()
    converter = in_workflow(make_converter(CasStorageDriver(backend, compression_level=level)))
    [reference] = await converter.encode([big_json(20_000)])
    [key] = await keys_in(backend)
    obj = await backend.get(key)
    for cut in (0, 3, 5, len(obj) // 2, len(obj) - 1):
        await backend.delete(key)
        await backend.put(key, obj[:cut])
        with pytest.raises(IntegrityError, match="order-42"):
            await make_converter(CasStorageDriver(backend)).decode([reference])


async def test_zstd_bomb_is_refused_before_allocating() -> None:
    import zstandard

    backend = MemoryBackend()
    converter = in_workflow(make_converter(CasStorageDriver(backend)))
    [reference] = await converter.encode([big_json(20_000)])
    [key] = await keys_in(backend)
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (512 * 1024 * 1024))
    await backend.delete(key)
    await backend.put(key, b"CAS\x01\x01" + bomb)
    with pytest.raises(IntegrityError, match="frame declares 536870912"):
        await make_converter(CasStorageDriver(backend)).decode([reference])


async def test_missing_object_is_not_found_naming_the_key() -> None:
    backend = MemoryBackend()
    converter = in_workflow(make_converter(CasStorageDriver(backend)))
    [reference] = await converter.encode([big_json(2_000)])
    [key] = await keys_in(backend)
    await backend.delete(key)
    with pytest.raises(ObjectNotFoundError, match=key):
        await make_converter(CasStorageDriver(backend)).decode([reference])


async def test_object_deleted_behind_the_drivers_back_is_written_again_after_a_failed_read() -> (
    None
):
    backend = MemoryBackend()
    driver = CasStorageDriver(backend, retrieval_cache_bytes=0)
    converter = in_workflow(make_converter(driver))
    [reference] = await converter.encode([big_json(2_000)])
    [key] = await keys_in(backend)
    await backend.delete(key)
    with pytest.raises(ObjectNotFoundError):
        await converter.decode([reference])
    await converter.encode([big_json(2_000)])
    assert await keys_in(backend) == [key]
    assert len(await converter.decode([reference])) == 1


# Hostile claims.


def _claim(raw: str) -> StorageDriverClaim:
    return StorageDriverClaim(claim_data={"c": raw})


_DIGEST = "A" * 42 + "A"


@pytest.mark.parametrize(
    ("claim_data", "message"),
    [
        ({}, "no string entry 'c'"),
        ({"bucket": "other", "key": "v0/x"}, "unexpected entries"),
        ({"c": f'[1,"default/wf","{_DIGEST}",10,0]', "bucket": "other"}, "unexpected entries"),
        ({"c": "not json"}, "not valid JSON"),
        ({"c": "{}"}, "malformed"),
        ({"c": f'[2,"default/wf","{_DIGEST}",10,0]'}, "unsupported format version 2"),
        (
            {"c": f'[1,"default/wf","{_DIGEST}","10",0]'},
            r"Expected `int`, got `str` - at `\$\[3\]`",
        ),
        ({"c": f'[1,"default/wf","{_DIGEST}",-1,0]'}, "malformed"),
        ({"c": f'[1,"default/wf","{_DIGEST}",10,7]'}, "unknown codec 7"),
        ({"c": f'[1,"default/wf","{_DIGEST}",{2**40},0]'}, "above max_payload_size"),
        ({"c": '[1,"default/wf","short",10,0]'}, "regex"),
        ({"c": f'[1,"default/wf","{"A" * 42}B",10,0]'}, "not a canonical"),
        ({"c": f'[1,"../../etc","{_DIGEST}",10,0]'}, "not a valid casstore location"),
        ({"c": f'[1,"default/../x","{_DIGEST}",10,0]'}, "not a valid casstore location"),
        ({"c": f'[1,"/abs","{_DIGEST}",10,0]'}, "not a valid casstore location"),
        ({"c": f'[1,"a/b/c/d","{_DIGEST}",10,0]'}, "not a valid casstore location"),
        ({"c": f'[1,"default/.hidden","{_DIGEST}",10,0]'}, "not a valid casstore location"),
        ({"c": "[" * 5000}, "above the 4096 limit"),
    ],
)
async def test_hostile_claims_are_claim_errors_before_any_request(
    claim_data: dict[str, str], message: str
) -> None:
    backend = counted()
    driver = CasStorageDriver(backend)
    with pytest.raises(ClaimError, match=message):
        await driver.retrieve(StorageDriverRetrieveContext(), [StorageDriverClaim(claim_data)])
    assert backend.calls == {}


async def test_hostile_claim_in_a_reference_fails_decode_through_the_sdk() -> None:
    from temporalio.api.sdk.v1.external_storage_pb2 import ExternalStorageReference
    from temporalio.converter import JSONProtoPayloadConverter

    reference = JSONProtoPayloadConverter().to_payload(
        ExternalStorageReference(
            driver_name="casstore",
            claim_data={"c": f'[1,"../../../etc","{_DIGEST}",10,0]'},
        )
    )
    assert reference is not None
    with pytest.raises(ClaimError, match="location"):
        await make_converter(CasStorageDriver(MemoryBackend())).decode([reference])


# Errors, batches and limits.


async def test_payload_above_max_size_is_refused_naming_sizes() -> None:
    driver = CasStorageDriver(MemoryBackend(), max_payload_size=10_000)
    with pytest.raises(PayloadTooLargeError, match="above max_payload_size 10000"):
        await in_workflow(make_converter(driver)).encode([big_json(20_000)])


async def test_failed_payload_of_a_batch_is_named_and_the_rest_cancelled() -> None:
    started: list[str] = []

    class SlowAfterFirst(MemoryBackend):
        async def put(self, key: str, data: bytes) -> bool:
            started.append(key)
            if len(started) == 1:
                raise OSError("disk on fire")
            await asyncio.Event().wait()  # held until the failure cancels it
            return await super().put(key, data)

    backend = SlowAfterFirst()
    driver = CasStorageDriver(backend)
    payloads = [Payload(data=f"payload {i}".encode()) for i in range(5)]
    context = StorageDriverStoreContext(target=StorageDriverWorkflowInfo(namespace="ns", id="wf"))
    with pytest.raises(BackendError, match=r"payload 1 of 5 failed.*disk on fire") as info:
        await asyncio.wait_for(driver.store(context, payloads), timeout=5)
    assert "key=v1/ns/wf/" in str(info.value)
    # The backend's own error, not a rebuilt copy: structure and cause survive.
    assert (info.value.position, info.value.batch_size) == (0, 5)
    assert info.value.key is not None
    assert info.value.key.startswith("v1/ns/wf/")
    assert info.value.backend is not None
    assert info.value.backend.startswith("SlowAfterFirst")
    assert isinstance(info.value.__cause__, OSError)
    assert await keys_in(backend) == []


async def test_backend_failure_is_not_cached_and_a_retry_succeeds() -> None:
    backend = FailingBackend(MemoryBackend(), fail_on={"put"}, times=1)
    converter = in_workflow(make_converter(CasStorageDriver(backend)))
    with pytest.raises(BackendError, match="injected failure"):
        await converter.encode(["value"])
    [reference] = await converter.encode(["value"])
    assert await converter.decode([reference]) == ["value"]


async def test_store_targets_get_distinct_defined_scopes() -> None:
    backend = MemoryBackend()
    driver = CasStorageDriver(backend)
    payload = [Payload(data=b"same")]
    targets = [
        None,
        StorageDriverWorkflowInfo(namespace="ns", id="wf/with slash"),
        StorageDriverActivityInfo(namespace="ns", id="act-1"),
        StorageDriverWorkflowInfo(namespace="ns", id="x" * 5000),
    ]
    for target in targets:
        [claim] = await driver.store(StorageDriverStoreContext(target=target), payload)
        assert await driver.retrieve(StorageDriverRetrieveContext(), [claim]) == payload
    scopes = sorted(key.rsplit("/", 1)[0] for key in await keys_in(backend))
    assert scopes[:3] == ["v1/_", "v1/ns/_aact-1", "v1/ns/_h" + scopes[2][8:]]
    assert len(scopes[2]) == len("v1/ns/_h") + 32
    assert scopes[3] == "v1/ns/wf%2Fwith%20slash"


async def test_multiple_drivers_with_a_selector_store_and_retrieve_by_name() -> None:
    small, large = MemoryBackend(), MemoryBackend()
    small_driver = CasStorageDriver(small, name="casstore-small")
    large_driver = CasStorageDriver(large, name="casstore-large")

    def select(context: object, payload: Payload) -> CasStorageDriver:
        return large_driver if payload.ByteSize() > 1000 else small_driver

    converter = in_workflow(make_converter(small_driver, large_driver, selector=select))
    references = await converter.encode(["tiny", big_json(5_000)])
    assert [reference_of(r).driver_name for r in references] == ["casstore-small", "casstore-large"]
    assert len(await keys_in(small)) == len(await keys_in(large)) == 1
    assert await converter.decode(references) == ["tiny", big_json(5_000)]


async def test_refresh_after_bounds_how_long_the_cache_vouches(monkeypatch: Any) -> None:
    import time as time_module

    clock = [time_module.time()]
    monkeypatch.setattr("casstore._cache.time.time", lambda: clock[0])
    monkeypatch.setattr("casstore._driver.time.time", lambda: clock[0])
    monkeypatch.setattr("casstore._freshness.time.time", lambda: clock[0])
    backend = counted()
    converter = in_workflow(
        make_converter(CasStorageDriver(backend, refresh_after=timedelta(days=7)))
    )
    await converter.encode(["value"])
    clock[0] += 6 * 86400
    await converter.encode(["value"])
    assert backend.calls == {"put": 1}
    clock[0] += 2 * 86400  # eight days after the write: the cache no longer vouches
    await converter.encode(["value"])
    # The write finds the object, the check finds it older than refresh_after.
    assert backend.calls == {"put": 2, "stat": 1, "touch": 1}


async def test_large_payload_cpu_work_runs_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    threads = RecordingExecutor.install().threads
    backend = MemoryBackend()
    converter = in_workflow(make_converter(CasStorageDriver(backend, chunking=False)))
    [small] = await converter.encode(["small"])
    await converter.decode([small])
    assert threads == []
    [large] = await converter.encode([big_json(2_000_000)])
    stored_jobs = len(threads)
    await make_converter(CasStorageDriver(backend)).decode([large])
    assert stored_jobs == 2  # hash, then compress
    assert len(threads) == 4  # then decompress and verify, then parse
    assert loop_thread not in threads


def test_bad_options_are_configuration_errors() -> None:
    backend = MemoryBackend()
    for kwargs, message in (
        ({"scope": "run"}, "scope must be"),
        ({"compression_level": 99}, "compression_level"),
        ({"max_payload_size": 0}, "max_payload_size"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"retrieval_cache_bytes": -1}, "retrieval_cache_bytes"),
        ({"refresh_after": timedelta(0)}, "refresh_after"),
        ({"name": ""}, "name"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            CasStorageDriver(backend, **kwargs)
    with pytest.raises(ConfigurationError, match="Backend"):
        CasStorageDriver("/tmp/x")  # type: ignore[arg-type]


def test_driver_type_and_name() -> None:
    driver = CasStorageDriver(MemoryBackend(), name="payloads")
    assert (driver.type(), driver.name()) == ("casstore", "payloads")
