"""The writer's side of chunking: the chunk index, and building format 3 objects.

The index maps a chunk (its location, key id and digest) to where an earlier
object of the same location holds its bytes. It is filled only by what this
process wrote or read and verified, is bounded, and is never consulted
remotely: a cold process writes its chunks again, which costs bytes, never a
wrong reference or a request.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

from casstore._chunker import Cut, Split
from casstore._format.chunked import (
    MAX_REFERENCES,
    Location,
    data_start_for,
    encode_chunked_object,
    encode_frame,
    frame_offsets,
)
from casstore._format.encrypted import ObjectCipher

DEFAULT_CHUNK_INDEX_ENTRIES = 262_144
"""About 4 GiB of distinct 16 KiB chunks, in about 60 MB of memory."""
FRAME_TARGET = 1024 * 1024
"""New chunks are packed into frames of about this many bytes: zstd sees as much
context as in a whole-object frame (level 3 uses about a 1 MiB window), and a
reader of a later payload fetches whole frames, which for a growing
conversation it needs anyway."""

_IndexKey = tuple[str, str | None, bytes]


class ChunkIndex:
    """A bounded LRU: (location, key id, chunk digest) -> where its bytes are."""

    def __init__(self, max_entries: int = DEFAULT_CHUNK_INDEX_ENTRIES) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[_IndexKey, Location] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, location: str, key_id: str | None, digest: bytes) -> Location | None:
        entry = self._entries.get((location, key_id, digest))
        if entry is not None:
            self._entries.move_to_end((location, key_id, digest))
        return entry

    def add(
        self, location: str, key_id: str | None, chunks: Sequence[tuple[bytes, Location]]
    ) -> None:
        """Remember where chunks are (``source`` must name an object, not None)."""
        if self._max_entries <= 0:
            return
        for digest, where in chunks:
            self._entries[(location, key_id, digest)] = where
            self._entries.move_to_end((location, key_id, digest))
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def discard_source(self, location: str, key_id: str | None, source: bytes) -> None:
        """Forget every chunk held by one object (found missing or unusable)."""
        stale = [
            k
            for k, where in self._entries.items()
            if k[0] == location and k[1] == key_id and where.source == source
        ]
        for k in stale:
            del self._entries[k]


def build_chunked(
    serialized: bytes,
    split: Split,
    cuts: Sequence[Cut],
    found: Sequence[Location | None],
    *,
    level: int | None,
    cipher: ObjectCipher | None,
    digest: bytes,
    key: str,
    frame_target: int = FRAME_TARGET,
) -> tuple[bytes, list[tuple[bytes, Location]]]:
    """Build the format 3 object for one payload; CPU work, run off the loop.

    Args:
        serialized: The serialized payload.
        split: Where its data is.
        cuts: Its chunks.
        found: Per chunk, where an earlier object of the location holds it
            (vouched for by the caller), or None: the chunk goes in this object.
        level: zstd level for the frames, or None for raw.
        cipher: Seals the manifest and frames when given.
        digest: The payload's digest.
        key: The object key.
        frame_target: New chunks are packed into frames of about this size.

    Returns:
        The object, and where each of its new chunks is in it (for the index).
    """
    view = memoryview(serialized)
    entries: list[tuple[bytes, Location]] = []
    frames: list[list[memoryview]] = []
    frame_sizes: list[int] = []
    own: dict[bytes, Location] = {}
    references: dict[bytes, None] = {}
    for piece, where in zip(cuts, found, strict=True):
        if (
            where is not None
            and where.source is not None
            and where.source != digest
            and (where.source in references or len(references) < MAX_REFERENCES)
        ):
            references[where.source] = None
            entries.append((piece.digest, where))
            continue
        repeated = own.get(piece.digest)
        if repeated is not None:  # the same chunk earlier in this payload
            entries.append((piece.digest, repeated))
            continue
        if not frames or frame_sizes[-1] + piece.length > frame_target:
            frames.append([])
            frame_sizes.append(0)
        here = Location(None, len(frames) - 1, 0, frame_sizes[-1], piece.length)
        frames[-1].append(view[piece.offset : piece.offset + piece.length])
        frame_sizes[-1] += piece.length
        own[piece.digest] = here
        entries.append((piece.digest, here))
    head = bytes(view[: split.head])
    tail = bytes(view[len(serialized) - split.tail :])
    refs = list(references)
    start = data_start_for(
        head=len(head), tail=len(tail), chunks=len(entries), references=len(refs), cipher=cipher
    )
    encoded: list[bytes] = []
    at = start
    for parts in frames:
        frame = encode_frame(b"".join(parts), level, cipher, digest=digest, key=key, offset=at)
        encoded.append(frame)
        at += len(frame)
    obj = encode_chunked_object(
        size=len(serialized),
        head=head,
        tail=tail,
        chunks=entries,
        frames=encoded,
        references=refs,
        cipher=cipher,
        digest=digest,
        key=key,
    )
    offsets = frame_offsets(start, encoded)
    learned = [
        (
            chunk_digest,
            replace(
                where,
                source=digest,
                frame_offset=offsets[where.frame_offset],
                frame_size=len(encoded[where.frame_offset]),
            ),
        )
        for chunk_digest, where in own.items()
    ]
    return obj, learned
