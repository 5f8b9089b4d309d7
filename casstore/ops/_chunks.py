"""Checking chunked (format 3) objects completely: their chunks and what they reference.

A chunked object is good only if every chunk it lists, in itself and in the
earlier objects it references, matches its digest and the whole payload
matches the digest in its key. That is exactly what the driver's retrieval
checks, so each object is read through a driver built for the purpose (with
the keyring, and a chunk cache, so that a conversation's objects verified one
after the other re-read little of each other). Concurrency and the bytes in
flight are bounded as for the first pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from temporalio.converter import StorageDriverClaim, StorageDriverRetrieveContext

from casstore._driver import CasStorageDriver
from casstore._format.claims import claim_data_for
from casstore._format.header import Codec
from casstore._format.keys import parse_object_key
from casstore._keyring import KeyRing
from casstore.backends._base import Backend
from casstore.errors import CasstoreError, ObjectNotFoundError
from casstore.ops._check import ObjectFacts
from casstore.ops._reader import ByteBudget

VANISHED = "vanished"
"""The outcome of an object deleted between the listing and its check (not a fault)."""


async def read_chunked(
    backend: Backend,
    objects: Sequence[tuple[str, ObjectFacts]],
    *,
    keyring: KeyRing | None,
    max_payload_size: int,
    concurrency: int,
    memory_budget: int,
) -> list[str | None]:
    """Read each chunked object as a reader would; per object None (good) or why not."""
    if not objects:
        return []
    driver = CasStorageDriver(
        backend,
        keyring=keyring,
        max_payload_size=max_payload_size,
        max_concurrency=concurrency,
        retrieval_cache_bytes=memory_budget // 4,
        known_objects_cache_size=0,
    )
    limit = asyncio.Semaphore(concurrency)
    budget = ByteBudget(memory_budget)

    async def one(key: str, facts: ObjectFacts) -> str | None:
        name = parse_object_key(key)
        assert facts.logical_size is not None  # facts of checked objects know it
        location = key.split("/", 1)[1].rpartition("/")[0]
        claim = StorageDriverClaim(
            claim_data_for(location, name.digest, facts.logical_size, Codec.ZSTD, facts.key_id)
        )
        # A read holds about twice the payload: its pieces, then the whole.
        cost = budget.cost(2 * facts.logical_size)
        async with limit:
            await budget.acquire(cost)
            try:
                await driver.retrieve(StorageDriverRetrieveContext(), [claim])
            except ObjectNotFoundError as exc:
                return str(exc) if "referenced=" in str(exc) else VANISHED
            except CasstoreError as exc:
                return str(exc)
            finally:
                await budget.release(cost)
        return None

    return list(await asyncio.gather(*(one(key, facts) for key, facts in objects)))
