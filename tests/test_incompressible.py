"""Incompressible payloads are stored whole: chunking them would find nothing to share."""

from __future__ import annotations

import os

from temporalio.api.common.v1 import Payload

from casstore import CasStorageDriver
from casstore._format.chunked import is_chunked
from casstore.backends import MemoryBackend
from tests.test_chunking import CONTEXT, key_of, retrieve


def raw_payload(data: bytes) -> Payload:
    return Payload(metadata={"encoding": b"binary/plain"}, data=data)


async def stored_object(backend: MemoryBackend, payload: Payload) -> bytes:
    driver = CasStorageDriver(backend)
    [claim] = await driver.store(CONTEXT, [payload])
    assert await retrieve(CasStorageDriver(backend), [claim]) == [payload]
    return await backend.get(key_of(claim))


async def test_random_bytes_are_stored_whole_and_read_back() -> None:
    obj = await stored_object(MemoryBackend(), raw_payload(os.urandom(2 * 1024 * 1024)))
    assert not is_chunked(obj)


async def test_a_payload_with_some_compressible_part_is_still_chunked() -> None:
    text = b"".join(b'{"turn": %d, "text": "the same words again"},' % i for i in range(40_000))
    obj = await stored_object(MemoryBackend(), raw_payload(os.urandom(512 * 1024) + text))
    assert is_chunked(obj)


async def test_a_growing_random_payload_still_dedups_whole_copies() -> None:
    backend = MemoryBackend()
    payload = raw_payload(os.urandom(1024 * 1024))
    driver = CasStorageDriver(backend)
    first = await driver.store(CONTEXT, [payload])
    again = await CasStorageDriver(backend).store(CONTEXT, [payload])
    assert first == again
    assert len([k async for k, _ in backend.scan()]) == 1
