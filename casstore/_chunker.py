"""Content-defined chunking of a payload's ``data`` bytes (FastCDC 2020).

Chunk boundaries depend only on nearby content, so a payload that is the
previous one plus a few KB (an agent's conversation, turn after turn) shares
all its chunks but the last few with the previous payload. Only ``data`` is
chunked: the serialized ``Payload`` puts a varint of the data's length just
before it, which changes every turn and would make the first chunk new each
time; the bytes around ``data`` (metadata, the length) travel in the manifest.

The parameters are the writer's choice, not part of the stored format (a
manifest lists each chunk's length): 4 KiB minimum, 16 KiB average target,
64 KiB maximum, measured on agent payloads of 30 KB to 2 MB, where smaller
chunks save a little more content and cost more manifest, larger ones the
reverse (docs/formats.md, "Object format 3").

With a keyring the gear table is seeded from the key (as borg seeds its
chunker), so that chunk boundaries, which follow content, say nothing about
it to someone without the key.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyfastcdc import FastCDC
from temporalio.api.common.v1 import Payload

from casstore._format.digest import content_digest
from casstore._format.encrypted import ObjectCipher

MIN_CHUNK_SIZE = 4 * 1024
AVG_CHUNK_SIZE = 16 * 1024
"""pyfastcdc's average parameter; its chunks average about this plus the minimum."""
MAX_CHUNK_SIZE = 64 * 1024
CHUNKER_SEED_INPUT = b"casstore 2026-12-04 chunker seed v1"


@dataclass(frozen=True, slots=True)
class Cut:
    """One chunk of the data: where it is in the serialized payload, and its digest."""

    offset: int
    """Offset in the serialized payload (not in ``data``)."""
    length: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class Split:
    """A serialized payload as ``head + data + tail``; only ``data`` is chunked."""

    head: int
    """Length of the bytes before ``data`` (metadata, field tag, length varint)."""
    tail: int
    """Length of the bytes after ``data`` (fields numbered after it)."""


def split_payload(payload: Payload, serialized: bytes) -> Split | None:
    """Find ``payload.data`` inside its deterministic serialization.

    Deterministic serialization writes fields in number order: the metadata map
    (1), then ``data`` (2) as its tag (``0x12``), a varint length and the
    bytes, then later fields. The tag and length are read from ``serialized``
    itself, so no copy of the data is made; a layout this does not expect
    yields ``None`` (the payload is then stored whole). A split only decides
    what is chunked: any split reassembles to exactly ``serialized``.
    """
    meta = Payload()
    meta.metadata.MergeFrom(payload.metadata)
    at = len(meta.SerializeToString(deterministic=True))
    if at >= len(serialized) or serialized[at] != 0x12:
        return None
    length, shift, at = 0, 0, at + 1
    while at < len(serialized) and shift < 64:
        byte = serialized[at]
        length |= (byte & 0x7F) << shift
        at += 1
        shift += 7
        if not byte & 0x80:
            break
    else:
        return None
    end = at + length
    if length == 0 or end > len(serialized):
        return None
    return Split(head=at, tail=len(serialized) - end)


def chunker_seed(cipher: ObjectCipher | None) -> int:
    """The gear-table seed: 0 (FastCDC's own table) when plain, else keyed by the key."""
    if cipher is None:
        return 0
    # 63 bits: the chunker shifts the seed left by one within 64 bits.
    return (int.from_bytes(cipher.digest(CHUNKER_SEED_INPUT)[:8], "big") >> 1) or 1


def cut(
    serialized: bytes,
    split: Split,
    cipher: ObjectCipher | None,
    *,
    min_size: int = MIN_CHUNK_SIZE,
    avg_size: int = AVG_CHUNK_SIZE,
    max_size: int = MAX_CHUNK_SIZE,
) -> list[Cut]:
    """Chunk the data span of ``serialized`` and digest every chunk.

    Chunk digests are BLAKE3-256, or keyed BLAKE3-256 under ``cipher``, like
    payload digests. CPU-heavy on large payloads: run it off the event loop
    (pyfastcdc releases the GIL while it searches for boundaries).
    """
    view = memoryview(serialized)
    end = len(serialized) - split.tail
    chunker = FastCDC(avg_size, min_size=min_size, max_size=max_size, seed=chunker_seed(cipher))
    cuts: list[Cut] = []
    for chunk in chunker.cut_buf(view[split.head : end]):
        piece = chunk.data
        digest = content_digest(piece) if cipher is None else cipher.digest(piece)
        cuts.append(Cut(split.head + chunk.offset, chunk.length, digest))
    return cuts
