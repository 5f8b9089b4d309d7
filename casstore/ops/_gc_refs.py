"""gc's second mark step: the objects that chunked (format 3) objects reference.

A format 3 object may hold only a manifest and its payload's new chunks; the
rest of its payload is read from earlier objects of the same location, which
must live as long as it does. Their digests are in its header's reference
table (readable without any keyring key), so each marked object costs one
ranged read of its first bytes (a second only for an unusually long table).
Writers always reference the object that holds a chunk's bytes, never an
object that references it in turn, so one level is complete.

A marked object that is missing is looked for in the trash (gc restores
referenced trash copies); one found nowhere references nothing. A header
that cannot be read aborts the mark, as an unreadable claim does: gc never
deletes what it could not judge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from casstore._format.chunked import is_chunked
from casstore._format.chunked_read import manifest_extent
from casstore._format.keys import object_key
from casstore._format.trash import trash_key
from casstore.backends._base import Backend
from casstore.errors import IntegrityError, ObjectNotFoundError
from casstore.ops._gc_mark import MarkError

FIRST_READ = 4096
"""Bytes read first: a header with up to about 120 references."""


async def referenced_objects(
    backend: Backend, keys: Iterable[str], *, concurrency: int = 16
) -> set[str]:
    """Return the keys the chunked objects among ``keys`` reference (not in ``keys``).

    Raises:
        MarkError: An object's header could not be read or is malformed.
    """
    marked = set(keys)
    found: set[str] = set()
    limit = asyncio.Semaphore(concurrency)

    async def one(key: str) -> None:
        async with limit:
            references = await _references(backend, key)
        location = key.split("/", 1)[1].rpartition("/")[0]
        for digest in references:
            target = object_key(location, digest)
            if target not in marked:
                found.add(target)

    tasks = [asyncio.ensure_future(one(key)) for key in sorted(marked)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return found


async def _references(backend: Backend, key: str) -> tuple[bytes, ...]:
    for at in (key, trash_key(key)):
        try:
            head = await backend.get_range(at, 0, FIRST_READ)
        except ObjectNotFoundError:
            continue
        if not is_chunked(head):
            return ()
        try:
            extent = manifest_extent(head, key=at)
            if extent is None:  # a longer reference table: read all of it
                count = int.from_bytes(head[6 + head[5] : 8 + head[5]], "big")
                head = await backend.get_range(at, 0, 8 + head[5] + 32 * count + 20)
                extent = manifest_extent(head, key=at)
            if extent is None:
                raise IntegrityError(f"chunked object header is truncated [key={at}]", key=at)
        except IntegrityError as exc:
            raise MarkError(
                f"a referenced object's header cannot be read, so gc cannot tell what it "
                f"needs [key={at}]: {exc}"
            ) from exc
        return extent[1]
    return ()
