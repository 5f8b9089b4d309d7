"""The reader's side of chunking: reassemble a format 3 object's payload, checked.

A chunk is used only once its bytes match the digest its manifest gives; the
whole payload is then checked against the claim's digest as for any object.
Frames of referenced objects are fetched with ranged reads, concurrently and
once per frame however many payloads need them at the same time; verified
chunks are kept (by digest) so that the next turn's read fetches only what
is new. Every manifest field is untrusted: references are resolved only in
the claim's own location, ranges are bounded, and references are never
followed further than one level, so no manifest can send a reader in circles.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import cast

from casstore._cache import ByteLRU, SingleFlight
from casstore._deadline import Deadline
from casstore._format.chunked import MAX_FRAME_SIZE, Location, Manifest
from casstore._format.chunked_read import decode_frame, decode_manifest
from casstore._format.compression import max_object_size
from casstore._format.digest import content_digest
from casstore._format.encrypted import ObjectCipher
from casstore._format.keys import object_key
from casstore._format.trash import trash_key
from casstore._requests import Requests
from casstore._stats import DriverStats
from casstore.backends._base import Backend
from casstore.errors import IntegrityError, ObjectNotFoundError

_Frame = tuple[bytes | None, int, int]  # source digest (None: this object), offset, size
ChunkCacheKey = tuple[str, str | None, bytes]
"""(key of the object the chunk was read from, key id, chunk digest): a warm read
accepts a chunk only where a cold read would have read and verified it."""


def _digest(data: bytes | memoryview, cipher: ObjectCipher | None) -> bytes:
    return content_digest(data) if cipher is None else cipher.digest(data)


def frame_chunks(
    frame: bytes | memoryview,
    chunks: Sequence[tuple[int, bytes, Location]],
    *,
    key: str,
    source_key: str,
    frame_offset: int,
    source_digest: bytes,
    cipher: ObjectCipher | None,
) -> list[tuple[int, bytes]]:
    """Decode one frame and check the chunks taken from it; CPU work.

    Args:
        frame: The frame's stored bytes.
        chunks: ``(position in payload, digest, location)`` of each chunk needed.
        key: The object being read (named in errors).
        source_key: The object holding the frame.
        frame_offset: Where the frame is in that object.
        source_digest: That object's digest (a sealed frame's nonce).
        cipher: The claim's cipher, or None when plain.

    Raises:
        IntegrityError: The frame does not decode, or a chunk does not match
            its digest; the message names both keys.
    """
    needed = max(where.offset + where.length for _, _, where in chunks)
    try:
        data = decode_frame(
            frame,
            key=source_key,
            frame_offset=frame_offset,
            cipher=cipher,
            digest=source_digest,
            needed=needed,
        )
    except IntegrityError as exc:
        raise _named(exc, key, source_key) from exc
    view = memoryview(data)
    out: list[tuple[int, bytes]] = []
    for position, digest, where in chunks:
        piece = view[where.offset : where.offset + where.length]
        actual = _digest(piece, cipher)
        if actual != digest:
            where_from = "" if source_key == key else f", referenced={source_key}"
            # The traceback outlives this frame: it must not keep the frame's bytes.
            del piece, view, data, out
            raise IntegrityError(
                f"chunk {position} does not match its digest [key={key}{where_from}, "
                f"frame_offset={frame_offset}]: expected {digest.hex()}, got {actual.hex()}",
                key=key,
            )
        out.append((position, bytes(piece)))
    return out


def _named(exc: IntegrityError, key: str, source_key: str) -> IntegrityError:
    if source_key == key:
        return exc
    return IntegrityError(f"{exc} [key={key}, referenced={source_key}]", key=key)


class ChunkReader:
    """Reads format 3 objects for one driver.

    Args:
        backend: Where objects are.
        run: The driver's request and CPU runner.
        stats: The driver's counters.
        cache: Verified chunks by (object read from, key id, digest).
        learn: Called with ``(location, key_id, chunks)`` for every chunk
            verified, so the writer may reference it.
    """

    def __init__(
        self,
        backend: Backend,
        run: Requests,
        stats: DriverStats,
        cache: ByteLRU[ChunkCacheKey],
        learn: Callable[[str, str | None, list[tuple[bytes, Location]]], None],
    ) -> None:
        self._backend = backend
        self._run = run
        self._stats = stats
        self._cache = cache
        self._learn = learn
        self._frames: SingleFlight[tuple[str, int, int, str | None], bytes] = SingleFlight()

    async def read(
        self,
        obj: bytes,
        *,
        key: str,
        location: str,
        digest: bytes,
        size: int,
        cipher: ObjectCipher | None,
        deadline: Deadline,
    ) -> bytes:
        """Return the serialized payload a format 3 object describes (digest not yet checked).

        Raises:
            IntegrityError: The object or a referenced range is malformed or
                does not match; names both keys.
            ObjectNotFoundError: A referenced object is missing; names both keys.
        """
        decode = functools.partial(
            decode_manifest, obj, key=key, size=size, own_digest=digest, cipher=cipher
        )
        manifest = await self._run.cpu(len(obj), decode)
        key_id = manifest.key_id
        pieces: list[bytes | None] = [None] * len(manifest.chunks)
        frames: dict[_Frame, list[tuple[int, bytes, Location]]] = {}

        def held_by(where: Location) -> str:
            return key if where.source is None else object_key(location, where.source)

        for position, (chunk_digest, where) in enumerate(manifest.chunks):
            cached = self._cache.get((held_by(where), key_id, chunk_digest))
            if cached is not None and len(cached) == where.length:
                pieces[position] = cached
                continue
            frame_id = (where.source, where.frame_offset, where.frame_size)
            frames.setdefault(frame_id, []).append((position, chunk_digest, where))
        self._check_budget(manifest, frames, key)
        work = [
            self._frame(obj, manifest, frame_id, wanted, key, location, digest, cipher, deadline)
            for frame_id, wanted in frames.items()
        ]
        learned: list[tuple[bytes, Location]] = []
        # Every frame's work runs to its end, even after one fails: CPU work in a
        # thread cannot be cancelled, and its buffers must be gone when we raise.
        outcomes = await asyncio.gather(*work, return_exceptions=True)
        del work
        failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failed is not None:
            del outcomes, pieces, frames
            raise failed
        results = cast("list[list[tuple[int, bytes]]]", outcomes)
        for found in results:
            for position, piece in found:
                pieces[position] = piece
                chunk_digest, where = manifest.chunks[position]
                self._cache.put((held_by(where), key_id, chunk_digest), piece)
                source = digest if where.source is None else where.source
                learned.append((chunk_digest, replace(where, source=source)))
        if learned:
            self._learn(location, key_id, learned)
        parts: list[bytes] = [manifest.head]
        parts.extend(p for p in pieces if p is not None)
        parts.append(manifest.tail)
        return b"".join(parts)

    def _check_budget(
        self, manifest: Manifest, frames: dict[_Frame, list[tuple[int, bytes, Location]]], key: str
    ) -> None:
        """Refuse a manifest that would make the reader fetch far more than the payload."""
        fetched = sum(size for source, _, size in frames if source is not None)
        budget = 2 * max_object_size(manifest.size) + 2 * MAX_FRAME_SIZE
        if fetched > budget:
            raise IntegrityError(
                f"chunked object would fetch {fetched} bytes of referenced frames for a "
                f"{manifest.size}-byte payload (at most {budget}) [key={key}]",
                key=key,
            )

    async def _frame(
        self,
        obj: bytes,
        manifest: Manifest,
        frame_id: _Frame,
        wanted: list[tuple[int, bytes, Location]],
        key: str,
        location: str,
        digest: bytes,
        cipher: ObjectCipher | None,
        deadline: Deadline,
    ) -> list[tuple[int, bytes]]:
        source, offset, size = frame_id
        if source is None:
            if offset + size > len(obj):
                raise IntegrityError(
                    f"chunked object has a frame at {offset}+{size}, past its end at "
                    f"{len(obj)} bytes [key={key}]",
                    key=key,
                )
            stored: bytes | memoryview = memoryview(obj)[offset : offset + size]
            source_key, source_digest = key, digest
        else:
            source_key, source_digest = object_key(location, source), source
            key_id = None if cipher is None else cipher.key_id
            stored, joined = await self._frames.run(
                (source_key, offset, size, key_id),
                lambda: self._fetch(key, source_key, offset, size, deadline),
            )
            if joined:
                self._stats.retrieval_inflight_hits += 1
        check = functools.partial(
            frame_chunks,
            stored,
            wanted,
            key=key,
            source_key=source_key,
            frame_offset=offset,
            source_digest=source_digest,
            cipher=cipher,
        )
        return await self._run.cpu(size, check)

    async def _fetch(
        self, key: str, source_key: str, offset: int, size: int, deadline: Deadline
    ) -> bytes:
        backend = self._backend

        async def ranged(at: str) -> bytes:
            return await self._run.request(
                "get_range", at, lambda: backend.get_range(at, offset, size), deadline
            )

        try:
            try:
                data = await ranged(source_key)
            except ObjectNotFoundError:
                data = await ranged(trash_key(source_key))
        except ObjectNotFoundError as exc:
            raise ObjectNotFoundError(
                f"object referenced by a chunked object is missing [key={key}, "
                f"referenced={source_key}]",
                key=key,
            ) from exc
        self._stats.objects_read += 1
        self._stats.bytes_read += len(data)
        if len(data) != size:
            raise IntegrityError(
                f"chunked object references bytes {offset}-{offset + size} of an object that "
                f"ends at {offset + len(data)} [key={key}, referenced={source_key}]",
                key=key,
            )
        return data
