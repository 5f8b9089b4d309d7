"""Reading object format 3 (chunked): header, manifest and frames, all checked.

The layout is in :mod:`casstore._format.chunked` and docs/formats.md. Every
field is untrusted input: each is checked against the claim's size and the
format's limits before anything is allocated or requested.
"""

from __future__ import annotations

import zstandard

from casstore._format.chunked import (
    CIPHER_AES_256_GCM_SIV,
    CIPHER_NONE,
    DIGEST_SIZE,
    ENTRY,
    FIXED_SIZE,
    LENGTH_AD,
    MAX_FRAME_SIZE,
    MIN_READ_CHUNK,
    U16,
    U32,
    Location,
    Manifest,
    frame_associated,
    is_chunked,
)
from casstore._format.encrypted import TAG_SIZE, ObjectCipher
from casstore._format.header import Codec
from casstore.errors import IntegrityError


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
    if len(obj) < FIXED_SIZE:
        return None
    if not is_chunked(obj):
        raise _bad("has no format 3 header", key)
    cipher_byte, id_length = obj[4], obj[5]
    if cipher_byte not in (CIPHER_NONE, CIPHER_AES_256_GCM_SIV):
        raise _bad(f"names unknown cipher {cipher_byte}", key)
    if (cipher_byte == CIPHER_NONE) != (id_length == 0):
        raise _bad("has a key id that does not match its cipher", key)
    at = FIXED_SIZE + id_length
    if len(obj) < at + 2:
        return None
    count = U16.unpack_from(obj, at)[0]
    at += 2
    end_refs = at + DIGEST_SIZE * count
    length_size = U32.size + (0 if cipher_byte == CIPHER_NONE else TAG_SIZE)
    if len(obj) < end_refs + length_size:
        return None
    references = tuple(
        bytes(obj[at + i * DIGEST_SIZE : at + (i + 1) * DIGEST_SIZE]) for i in range(count)
    )
    if cipher_byte != CIPHER_NONE:
        return -1, references
    manifest_size = U32.unpack_from(obj, end_refs)[0]
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
    raw_id = bytes(obj[FIXED_SIZE : FIXED_SIZE + id_length])
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
    length_at = FIXED_SIZE + id_length + 2 + DIGEST_SIZE * len(references)
    if cipher is None:
        manifest_at = length_at + U32.size
        stored = U32.unpack_from(obj, length_at)[0]
    else:
        manifest_at = length_at + U32.size + TAG_SIZE
        prefix = bytes(obj[:length_at])
        sealed = cipher.open(
            obj[length_at:manifest_at],
            digest=own_digest,
            associated=prefix + key.encode("utf-8") + LENGTH_AD,
            key=key,
        )
        stored = U32.unpack(sealed)[0]
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

    declared = U32.unpack(take(4))[0]
    if size is None:
        if declared > max_size:
            raise _bad(f"is for a {declared}-byte payload, above the {max_size} allowed", key)
        size = declared
    elif declared != size:
        raise _bad(f"is for a {declared}-byte payload, its claim says {size}", key)
    head = bytes(take(U32.unpack(take(4))[0]))
    tail = bytes(take(U32.unpack(take(4))[0]))
    count = U32.unpack(take(4))[0]
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
