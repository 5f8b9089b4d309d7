"""Object format 3: a manifest of chunks, then this payload's new chunks.

Layout (all integers big-endian)::

    offset  size  field
    0       3     magic b"CAS"
    3       1     object format version (3)
    4       1     cipher: 0 = plain, 1 = AES-256-GCM-SIV (keys as in format 2)
    5       1     key id length n (0 when plain)
    6       n     key id (ASCII)
    6+n     2     reference count r
    8+n     32*r  referenced objects: the digests of earlier objects of the same
                  location (the key is ``v1/<location>/<hex digest>``)
    H-4|H-20      manifest length m: 4 bytes when plain; sealed when encrypted
                  (4 bytes of ciphertext + 16-byte tag, so it says nothing)
    H       m     the manifest (sealed when encrypted)
    H+m     ...   frames holding this payload's new chunks

Manifest (plaintext)::

    4   size of the serialized payload
    4   head length h, then h bytes: the serialized payload before ``data``
    4   tail length t, then t bytes: the serialized payload after ``data``
    4   chunk count c, then c entries of 50 bytes, in payload order:
        32  chunk digest (BLAKE3-256, or keyed BLAKE3-256 when encrypted)
        4   chunk length
        2   source: 0 = this object, i = the i-th referenced object
        4   frame offset in the source object
        4   frame size (stored bytes)
        4   offset of the chunk in the frame's decoded bytes

A frame is a codec byte (0 raw, 1 zstd) and the body; one frame holds one or
more consecutive new chunks. Encrypted, the whole frame (codec byte included)
is sealed with the object's digest as nonce and ``b"CAS3F" + object key +
frame offset`` as associated data, so a frame authenticates only where it was
written. The reference table stays readable (it only names objects of the
same location, whose keys are visible anyway) so that garbage collection can
follow references without holding any key; it is bound into the manifest's
associated data.

Everything here is untrusted input: a reader checks every field against the
claim's size and its own limits before allocating or requesting anything.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from casstore._format.compression import compress, max_object_size
from casstore._format.encrypted import TAG_SIZE, ObjectCipher
from casstore._format.header import MAGIC, validate_key_id
from casstore.errors import ConfigurationError

CHUNKED_OBJECT_FORMAT_VERSION = 3
CIPHER_NONE = 0
CIPHER_AES_256_GCM_SIV = 1
DIGEST_SIZE = 32
MAX_REFERENCES = 0xFFFF
MAX_FRAME_SIZE = 4 * 1024 * 1024
"""The most bytes a frame may decode to; readers refuse frames declaring more."""
MIN_READ_CHUNK = 64
"""Readers refuse manifests whose chunks average less (a bound on manifest size)."""
ENTRY = struct.Struct(">32sIHIII")
U32 = struct.Struct(">I")
U16 = struct.Struct(">H")
FIXED_SIZE = 6  # magic, version, cipher, key id length
FRAME_AD = b"CAS3F"
LENGTH_AD = b"CAS3L"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a chunk's bytes are: a frame of an object, and a span of its decoded bytes."""

    source: bytes | None
    """Digest of the object holding the frame (same location), or None for this object."""
    frame_offset: int
    frame_size: int
    offset: int
    """Offset of the chunk in the frame's decoded bytes."""
    length: int


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a format 3 object says about its payload."""

    size: int
    head: bytes
    tail: bytes
    chunks: tuple[tuple[bytes, Location], ...]
    """Per chunk, in payload order: its digest and where its bytes are."""
    references: tuple[bytes, ...]
    key_id: str | None
    data_start: int
    """Where this object's frames start (the end of header and manifest)."""


def is_chunked(obj: bytes | memoryview) -> bool:
    """True if ``obj`` starts like a format 3 object."""
    return len(obj) >= 4 and obj[:3] == MAGIC and obj[3] == CHUNKED_OBJECT_FORMAT_VERSION


def _prefix(key_id: str | None, references: Sequence[bytes]) -> bytes:
    if key_id is None:
        cipher_byte, raw_id = CIPHER_NONE, b""
    else:
        try:
            raw_id = validate_key_id(key_id).encode("ascii")
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from exc
        cipher_byte = CIPHER_AES_256_GCM_SIV
    head = MAGIC + bytes((CHUNKED_OBJECT_FORMAT_VERSION, cipher_byte, len(raw_id))) + raw_id
    return head + U16.pack(len(references)) + b"".join(references)


def frame_associated(key: str, frame_offset: int) -> bytes:
    """Associated data a sealed frame is bound to: its object's key and its offset."""
    return FRAME_AD + key.encode("utf-8") + U32.pack(frame_offset)


def encode_frame(
    body: bytes,
    level: int | None,
    cipher: ObjectCipher | None,
    *,
    digest: bytes,
    key: str,
    offset: int,
) -> bytes:
    """Encode decoded chunk bytes as one frame (compressed when that pays, sealed if keyed)."""
    codec, encoded = compress(body, level)
    frame = bytes((codec,)) + encoded
    if cipher is None:
        return frame
    return cipher.seal(frame, digest=digest, associated=frame_associated(key, offset))


def encode_chunked_object(
    *,
    size: int,
    head: bytes,
    tail: bytes,
    chunks: Sequence[tuple[bytes, Location]],
    frames: Sequence[bytes],
    references: Sequence[bytes],
    cipher: ObjectCipher | None,
    digest: bytes,
    key: str,
) -> bytes:
    """Assemble a format 3 object.

    Args:
        size: The serialized payload's size.
        head: The serialized payload's bytes before ``data``.
        tail: The serialized payload's bytes after ``data``.
        chunks: Per chunk, its digest and location. A location in this object
            (``source=None``) gives the index of its frame in ``frames`` as
            ``frame_offset``; the byte offsets are assigned here.
        frames: This object's frames, already encoded by :func:`encode_frame`
            at the offsets :func:`frame_offsets` gives from :func:`data_start_for`.
        references: The digests of the objects ``chunks`` names as sources.
        cipher: Seals the manifest (and its length) when given.
        digest: The payload's digest (the nonce when sealed).
        key: The object's key (bound into sealed parts).
    """
    if len(references) > MAX_REFERENCES:
        raise ValueError(f"too many referenced objects ({len(references)}) [key={key}]")
    key_id = None if cipher is None else cipher.key_id
    prefix = _prefix(key_id, references)
    data_start = data_start_for(
        head=len(head),
        tail=len(tail),
        chunks=len(chunks),
        references=len(references),
        cipher=cipher,
    )
    offsets = frame_offsets(data_start, frames)
    index = {ref: i + 1 for i, ref in enumerate(references)}
    parts = [U32.pack(size), U32.pack(len(head)), head, U32.pack(len(tail)), tail]
    parts.append(U32.pack(len(chunks)))
    for chunk_digest, where in chunks:
        if where.source is None:
            source, frame_offset = 0, offsets[where.frame_offset]
            frame_size = len(frames[where.frame_offset])
        else:
            source, frame_offset = index[where.source], where.frame_offset
            frame_size = where.frame_size
        parts.append(
            ENTRY.pack(chunk_digest, where.length, source, frame_offset, frame_size, where.offset)
        )
    manifest = b"".join(parts)
    stored = len(manifest) + (0 if cipher is None else TAG_SIZE)
    length = U32.pack(stored)
    encoded_key = key.encode("utf-8")
    if cipher is not None:
        length = cipher.seal(length, digest=digest, associated=prefix + encoded_key + LENGTH_AD)
        manifest = cipher.seal(manifest, digest=digest, associated=prefix + length + encoded_key)
    header = prefix + length
    if len(header) + len(manifest) != data_start:
        raise AssertionError("format 3 layout miscomputed")  # a bug here, never input
    return b"".join((header, manifest, *frames))


def frame_offsets(data_start: int, frames: Sequence[bytes]) -> list[int]:
    """The absolute offsets frames get when placed after ``data_start``."""
    out, at = [], data_start
    for frame in frames:
        out.append(at)
        at += len(frame)
    return out


def data_start_for(
    *, head: int, tail: int, chunks: int, references: int, cipher: ObjectCipher | None
) -> int:
    """Where frames will start in an object with these parts (to seal frames in place)."""
    key_id_size = 0 if cipher is None else len(cipher.key_id)
    extra = 0 if cipher is None else 2 * TAG_SIZE
    manifest = 16 + head + tail + ENTRY.size * chunks
    return FIXED_SIZE + key_id_size + 2 + DIGEST_SIZE * references + U32.size + manifest + extra


def max_chunked_object_size(size: int) -> int:
    """The largest format 3 object (or any older one) a claim of ``size`` bytes allows.

    Its frames hold at most the payload's bytes once (as a format 1 body
    would); the manifest is bounded as :func:`decode_manifest` checks.
    """
    manifest = 16 + size + ENTRY.size * (size // MIN_READ_CHUNK + 2) + 2 * TAG_SIZE
    header = FIXED_SIZE + 255 + 2 + DIGEST_SIZE * MAX_REFERENCES + U32.size
    return max_object_size(size) + manifest + header
