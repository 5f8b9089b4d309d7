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

import zstandard

from casstore._format.compression import compress, max_object_size
from casstore._format.encrypted import TAG_SIZE, ObjectCipher
from casstore._format.header import MAGIC, Codec, validate_key_id
from casstore.errors import ConfigurationError, IntegrityError

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
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_FIXED = 6  # magic, version, cipher, key id length
_FRAME_AD = b"CAS3F"
_LENGTH_AD = b"CAS3L"


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
    return head + _U16.pack(len(references)) + b"".join(references)


def frame_associated(key: str, frame_offset: int) -> bytes:
    """Associated data a sealed frame is bound to: its object's key and its offset."""
    return _FRAME_AD + key.encode("utf-8") + _U32.pack(frame_offset)


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
    parts = [_U32.pack(size), _U32.pack(len(head)), head, _U32.pack(len(tail)), tail]
    parts.append(_U32.pack(len(chunks)))
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
    length = _U32.pack(stored)
    encoded_key = key.encode("utf-8")
    if cipher is not None:
        length = cipher.seal(length, digest=digest, associated=prefix + encoded_key + _LENGTH_AD)
        manifest = cipher.seal(manifest, digest=digest, associated=prefix + length + encoded_key)
    header = prefix + length
    if len(header) + len(manifest) != data_start:
        raise AssertionError("format 3 layout miscomputed")  # a bug here, never input
    return header + manifest + b"".join(frames)


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
    return _FIXED + key_id_size + 2 + DIGEST_SIZE * references + _U32.size + manifest + extra


def max_chunked_object_size(size: int) -> int:
    """The largest format 3 object (or any older one) a claim of ``size`` bytes allows.

    Its frames hold at most the payload's bytes once (as a format 1 body
    would); the manifest is bounded as :func:`decode_manifest` checks.
    """
    manifest = 16 + size + ENTRY.size * (size // MIN_READ_CHUNK + 2) + 2 * TAG_SIZE
    header = _FIXED + 255 + 2 + DIGEST_SIZE * MAX_REFERENCES + _U32.size
    return max_object_size(size) + manifest + header


def _bad(message: str, key: str) -> IntegrityError:
    return IntegrityError(f"chunked object {message} [key={key}]", key=key)


def manifest_extent(obj: bytes | memoryview, *, key: str) -> tuple[int, tuple[bytes, ...]] | None:
    """From an object's first bytes: where its manifest ends, and its references.

    Returns:
        ``(end, references)``, or ``None`` if ``obj`` is too short to tell
        (read more). For an encrypted object ``end`` needs the key, so it is
        ``-1``; the references are readable without it.

    Raises:
        IntegrityError: The header is malformed.
    """
    if len(obj) < _FIXED:
        return None
    if not is_chunked(obj):
        raise _bad("has no format 3 header", key)
    cipher_byte, id_length = obj[4], obj[5]
    if cipher_byte not in (CIPHER_NONE, CIPHER_AES_256_GCM_SIV):
        raise _bad(f"names unknown cipher {cipher_byte}", key)
    if (cipher_byte == CIPHER_NONE) != (id_length == 0):
        raise _bad("has a key id that does not match its cipher", key)
    at = _FIXED + id_length
    if len(obj) < at + 2:
        return None
    count = _U16.unpack_from(obj, at)[0]
    at += 2
    end_refs = at + DIGEST_SIZE * count
    length_size = _U32.size + (0 if cipher_byte == CIPHER_NONE else TAG_SIZE)
    if len(obj) < end_refs + length_size:
        return None
    references = tuple(
        bytes(obj[at + i * DIGEST_SIZE : at + (i + 1) * DIGEST_SIZE]) for i in range(count)
    )
    if cipher_byte != CIPHER_NONE:
        return -1, references
    manifest_size = _U32.unpack_from(obj, end_refs)[0]
    return end_refs + length_size + manifest_size, references


def decode_manifest(
    obj: bytes | memoryview,
    *,
    key: str,
    size: int | None,
    own_digest: bytes,
    cipher: ObjectCipher | None,
    max_size: int = 0,
) -> Manifest:
    """Read and check a format 3 object's header and manifest.

    Args:
        obj: The object (or at least its header and manifest).
        key: Its key (named in errors, and bound into sealed parts).
        size: The serialized payload size the claim promises; None to take the
            manifest's word for it (tooling), up to ``max_size``.
        own_digest: The claim's digest: no object may reference itself.
        cipher: The cipher the claim's key id names, or None for a plain claim.
        max_size: With ``size=None``, the largest payload size accepted.

    Raises:
        IntegrityError: Any field is malformed, inconsistent with the claim,
            or fails authentication; nothing is requested or allocated past
            the claim's bounds first.
    """
    extent = manifest_extent(obj, key=key)
    if extent is None:
        raise _bad(f"is truncated in its header ({len(obj)} bytes)", key)
    id_length = obj[5]
    raw_id = bytes(obj[_FIXED : _FIXED + id_length])
    key_id = raw_id.decode("ascii", "replace") if id_length else None
    claimed = None if cipher is None else cipher.key_id
    if key_id != claimed:
        found = "not encrypted" if key_id is None else f"encrypted with key {key_id!r}"
        wanted = "not encrypted" if claimed is None else f"encrypted with key {claimed!r}"
        raise _bad(f"is {found}, its claim says {wanted}", key)
    references = extent[1]
    if own_digest in references:
        raise _bad("references itself", key)
    if len(set(references)) != len(references):
        raise _bad("lists a referenced object twice", key)
    length_at = _FIXED + id_length + 2 + DIGEST_SIZE * len(references)
    if cipher is None:
        manifest_at = length_at + _U32.size
        stored = _U32.unpack_from(obj, length_at)[0]
    else:
        manifest_at = length_at + _U32.size + TAG_SIZE
        prefix = bytes(obj[:length_at])
        sealed = cipher.open(
            obj[length_at:manifest_at],
            digest=own_digest,
            associated=prefix + key.encode("utf-8") + _LENGTH_AD,
            key=key,
        )
        stored = _U32.unpack(sealed)[0]
    bound = max_size if size is None else size
    # A manifest needs 16 bytes and one entry per MIN_READ_CHUNK of payload at most.
    limit = (
        16
        + bound
        + ENTRY.size * (bound // MIN_READ_CHUNK + 2)
        + (0 if cipher is None else TAG_SIZE)
    )
    if stored > limit:
        raise _bad(
            f"declares a {stored}-byte manifest, above {limit} for a {bound}-byte payload", key
        )
    data_start = manifest_at + stored
    if len(obj) < data_start:
        raise _bad(f"is truncated in its manifest ({len(obj)} of {data_start} bytes)", key)
    body: bytes | memoryview = memoryview(obj)[manifest_at:data_start]
    if cipher is not None:
        associated = bytes(obj[:manifest_at]) + key.encode("utf-8")
        body = cipher.open(body, digest=own_digest, associated=associated, key=key)
    return _parse_manifest(
        body,
        key=key,
        size=size,
        max_size=max_size,
        references=references,
        key_id=key_id,
        data_start=data_start,
    )


def _parse_manifest(
    body: bytes | memoryview,
    *,
    key: str,
    size: int | None,
    max_size: int,
    references: tuple[bytes, ...],
    key_id: str | None,
    data_start: int,
) -> Manifest:
    view = memoryview(body)
    at = 0

    def take(n: int) -> memoryview:
        nonlocal at
        if at + n > len(view):
            raise _bad("has a truncated manifest", key)
        piece = view[at : at + n]
        at += n
        return piece

    declared = _U32.unpack(take(4))[0]
    if size is None:
        if declared > max_size:
            raise _bad(f"is for a {declared}-byte payload, above the {max_size} allowed", key)
        size = declared
    elif declared != size:
        raise _bad(f"is for a {declared}-byte payload, its claim says {size}", key)
    head = bytes(take(_U32.unpack(take(4))[0]))
    tail = bytes(take(_U32.unpack(take(4))[0]))
    count = _U32.unpack(take(4))[0]
    if count * ENTRY.size != len(view) - at:
        raise _bad(f"manifest lists {count} chunks in {len(view) - at} bytes", key)
    total = len(head) + len(tail)
    chunks: list[tuple[bytes, Location]] = []
    for _ in range(count):
        digest, length, source, frame_offset, frame_size, offset = ENTRY.unpack(take(ENTRY.size))
        if source > len(references):
            raise _bad(f"names referenced object {source} of {len(references)}", key)
        if length == 0 or offset + length > MAX_FRAME_SIZE:
            raise _bad(f"has a chunk of {length} bytes at {offset} of its frame", key)
        if frame_size == 0 or frame_size > MAX_FRAME_SIZE + 1024:
            raise _bad(f"has a frame of {frame_size} bytes", key)
        if source == 0 and frame_offset < data_start:
            raise _bad(f"has a frame at {frame_offset}, inside its own header or manifest", key)
        total += length
        where = Location(
            source=None if source == 0 else references[source - 1],
            frame_offset=frame_offset,
            frame_size=frame_size,
            offset=offset,
            length=length,
        )
        chunks.append((bytes(digest), where))
    if total != size:
        raise _bad(f"manifest adds up to {total} bytes, its claim says {size}", key)
    return Manifest(size, head, tail, tuple(chunks), references, key_id, data_start)


def decode_frame(
    frame: bytes | memoryview,
    *,
    key: str,
    frame_offset: int,
    cipher: ObjectCipher | None,
    digest: bytes,
    needed: int,
) -> bytes:
    """Open (if sealed) and decode one frame of the object at ``key``.

    Args:
        frame: The frame's stored bytes.
        key: The key of the object holding it.
        frame_offset: Where it sits in that object (bound into a sealed frame).
        cipher: The cipher, or None for a plain object.
        digest: The digest of the object holding it (a sealed frame's nonce).
        needed: The least decoded size the manifest's chunks need.

    Raises:
        IntegrityError: Bad codec, failed authentication, a zstd frame that
            declares more than :data:`MAX_FRAME_SIZE` or less than needed.
    """
    if cipher is not None:
        frame = cipher.open(
            frame, digest=digest, associated=frame_associated(key, frame_offset), key=key
        )
    if len(frame) < 1:
        raise _bad(f"has an empty frame at {frame_offset}", key)
    codec_byte, body = frame[0], memoryview(frame)[1:]
    if codec_byte == Codec.RAW:
        data = bytes(body)
    elif codec_byte == Codec.ZSTD:
        try:
            declared = zstandard.frame_content_size(body)
        except zstandard.ZstdError as exc:
            raise _bad(f"has a corrupt zstd frame at {frame_offset}: {exc}", key) from exc
        if declared < needed or declared > MAX_FRAME_SIZE:
            raise _bad(f"has a frame at {frame_offset} declaring {declared} bytes", key)
        try:
            data = zstandard.ZstdDecompressor().decompress(body, max_output_size=declared)
        except zstandard.ZstdError as exc:
            raise _bad(f"has a corrupt zstd frame at {frame_offset}: {exc}", key) from exc
    else:
        raise _bad(f"has a frame of unknown codec {codec_byte} at {frame_offset}", key)
    if len(data) < needed:
        raise _bad(f"has a frame at {frame_offset} of {len(data)} bytes, {needed} needed", key)
    return data
