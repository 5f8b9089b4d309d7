"""Chunked storing for one driver: which earlier objects a new payload may reference.

A manifest that references an earlier object vouches for it exactly as a
dedup hit does (docs/operations.md, rules W1 and W2): the writer references an
object only while it may vouch for it, that is while the known-object cache
holds it (written or checked less than ``refresh_after`` ago). A source
learned by reading has an unknown age, so it is checked (and refreshed when
too old) once before its first use; a source found missing is forgotten and
its chunks are written again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

from temporalio.api.common.v1 import Payload

from casstore._cache import KnownObjects
from casstore._chunk_write import ChunkIndex, build_chunked
from casstore._chunker import Split, cut, split_payload
from casstore._deadline import Deadline
from casstore._format.chunked import Location
from casstore._format.encrypted import ObjectCipher, encode_stored
from casstore._format.header import Codec
from casstore._format.keys import object_key
from casstore._requests import Requests
from casstore.backends._aio import gather_cancel_on_error

MAX_SOURCES = 32
"""Most earlier objects one payload reads chunks from. A cold reader fetches one
range per source, so a long conversation whose every turn added a little would
otherwise make its reader wait for one request per turn; the chunks of the
sources contributing least are written again instead, into this object, where
later payloads find them together (docs/formats.md, "Writer's choices")."""

Vouch = Callable[[str, Deadline], Coroutine[Any, Any, bool]]


class ChunkWriter:
    """Builds format 3 objects, referencing chunks of objects it may vouch for.

    Args:
        run: The driver's request and CPU runner.
        index: Where chunks written or read by this process are.
        known: The driver's known-object cache (what it may vouch for).
        vouch: Checks (and refreshes if needed) an object of unknown age;
            False if it is gone.
        level: zstd level for frames (and whole objects), or None for raw.
        threshold: The smallest payload chunked; None: chunking is off.
    """

    def __init__(
        self,
        run: Requests,
        index: ChunkIndex,
        known: KnownObjects[Codec],
        vouch: Vouch,
        level: int | None,
        *,
        threshold: int | None,
    ) -> None:
        self._run = run
        self.index = index
        self._known = known
        self._vouch = vouch
        self._level = level
        self._threshold = threshold

    async def encode_new(
        self,
        *,
        location: str,
        key: str,
        digest: bytes,
        data: bytes,
        payload: Payload,
        cipher: ObjectCipher | None,
        deadline: Deadline,
    ) -> tuple[Codec, bytes, list[tuple[bytes, Location]]]:
        """Encode a new payload: chunked (format 3) when large enough, else whole (1 or 2).

        Returns:
            The codec to record in the claim, the object, and where its new
            chunks are (for the index, once the object is written).
        """
        threshold = self._threshold
        split = None if threshold is None or len(data) < threshold else split_payload(payload, data)
        if split is None:
            codec, obj = await self._run.cpu(
                len(data), encode_stored, data, self._level, cipher, digest, key
            )
            return codec, obj, []
        obj, learned = await self.encode(
            location=location,
            key=key,
            digest=digest,
            data=data,
            split=split,
            cipher=cipher,
            deadline=deadline,
        )
        # As for a found object: a claim records what the size says (readers
        # decode by the object's own header).
        return (Codec.RAW if len(obj) >= len(data) else Codec.ZSTD), obj, learned

    async def encode(
        self,
        *,
        location: str,
        key: str,
        digest: bytes,
        data: bytes,
        split: Split,
        cipher: ObjectCipher | None,
        deadline: Deadline,
    ) -> tuple[bytes, list[tuple[bytes, Location]]]:
        """Return the object for a new payload and its new chunks' locations."""
        cuts = await self._run.cpu(len(data), cut, data, split, cipher)
        key_id = None if cipher is None else cipher.key_id
        found = [self.index.get(location, key_id, piece.digest) for piece in cuts]
        sources = {where.source for where in found if where is not None and where.source}
        sources.discard(digest)
        unknown = [s for s in sources if self._known.get(object_key(location, s)) is None]
        if unknown:
            checks = [self._vouch(object_key(location, s), deadline) for s in unknown]
            for source, alive in zip(unknown, await gather_cancel_on_error(checks), strict=True):
                if not alive:
                    sources.discard(source)
                    self.index.discard_source(location, key_id, source)
        if len(sources) > MAX_SOURCES:
            sources = _most_used(found, sources)
        usable = [
            where if where is not None and where.source in sources else None for where in found
        ]
        build = functools.partial(
            build_chunked,
            data,
            split,
            cuts,
            usable,
            level=self._level,
            cipher=cipher,
            digest=digest,
            key=key,
        )
        return await self._run.cpu(len(data), build)


def _most_used(found: list[Location | None], sources: set[bytes]) -> set[bytes]:
    """The :data:`MAX_SOURCES` sources holding the most of this payload's bytes."""
    held: dict[bytes, int] = {}
    for where in found:
        if where is not None and where.source in sources:
            held[where.source] = held.get(where.source, 0) + where.length
    ranked = sorted(held, key=lambda source: (-held[source], source))
    return set(ranked[:MAX_SOURCES])
