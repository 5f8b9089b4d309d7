"""Object format v1: a 5-byte header, then the body.

::

    offset  size  field
    0       3     magic  b"CAS"
    3       1     object format version (1)
    4       1     codec: 0 = raw, 1 = zstd
    5       ...   body: the serialized Payload (raw), or one zstd frame whose
                  header records the content size (zstd)

The header makes every object self-describing: a reader decodes it whatever
codec settings its writer had. Decoding is bounded by the size the claim
promises, so a corrupted or hostile object cannot make a reader allocate more
than that (the claim's size is itself capped by ``max_payload_size``).
"""

from __future__ import annotations

import threading
from enum import IntEnum

import zstandard

from casstore.errors import IntegrityError

MAGIC = b"CAS"
OBJECT_FORMAT_VERSION = 1
HEADER_SIZE = 5

MIN_COMPRESS_SIZE = 128
"""Payloads smaller than this are stored raw: zstd saves next to nothing on them."""
MAX_COMPRESSED_FRACTION = 0.9
"""zstd is kept only when it shrinks the payload to at most this fraction."""


class Codec(IntEnum):
    """How an object's body is encoded. Values are stored; never renumber."""

    RAW = 0
    ZSTD = 1


_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # Compressor objects are not thread-safe but are costly to build for tiny
    # inputs, so each worker thread keeps one per level.
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    compressor = cache.get(level)
    if compressor is None:
        compressor = cache[level] = zstandard.ZstdCompressor(
            level=level, write_content_size=True, write_checksum=False
        )
    return compressor


def encode_object(data: bytes, compression_level: int | None) -> tuple[Codec, bytes]:
    """Encode a serialized payload as a stored object.

    Args:
        data: The serialized payload.
        compression_level: zstd level, or ``None`` to always store raw.

    Returns:
        The codec chosen and the object bytes (header included).
    """
    if compression_level is not None and len(data) >= MIN_COMPRESS_SIZE:
        compressed = _compressor(compression_level).compress(data)
        if len(compressed) <= len(data) * MAX_COMPRESSED_FRACTION:
            return Codec.ZSTD, _header(Codec.ZSTD) + compressed
    return Codec.RAW, _header(Codec.RAW) + data


def _header(codec: Codec) -> bytes:
    return MAGIC + bytes((OBJECT_FORMAT_VERSION, codec))


def object_codec(obj: bytes, *, key: str) -> Codec:
    """Read and check an object's header, returning its codec.

    Raises:
        IntegrityError: If the header is short, has the wrong magic, or names an
            unknown format version or codec.
    """
    if len(obj) < HEADER_SIZE or obj[:3] != MAGIC:
        raise IntegrityError(
            f"stored object has no casstore header [key={key}, bytes={len(obj)}]", key=key
        )
    if obj[3] != OBJECT_FORMAT_VERSION:
        raise IntegrityError(
            f"stored object has unsupported format version {obj[3]} "
            f"(this casstore reads version {OBJECT_FORMAT_VERSION}) [key={key}]",
            key=key,
        )
    try:
        return Codec(obj[4])
    except ValueError:
        raise IntegrityError(
            f"stored object has unknown codec {obj[4]} [key={key}]", key=key
        ) from None


def decode_object(obj: bytes, *, size: int, key: str) -> bytes:
    """Decode a stored object, producing at most ``size`` bytes.

    Args:
        obj: The object as read from the backend.
        size: The serialized payload size the claim promises.
        key: The object's key, for error messages.

    Returns:
        The body, exactly ``size`` bytes long. Its digest is not checked here.

    Raises:
        IntegrityError: If the header is bad, the body is not valid for its
            codec, or it does not decode to exactly ``size`` bytes.
    """
    codec = object_codec(obj, key=key)
    body = memoryview(obj)[HEADER_SIZE:]
    if codec is Codec.RAW:
        if len(body) != size:
            raise IntegrityError(
                f"stored object size mismatch [key={key}]: expected {size} bytes, got {len(body)}",
                key=key,
            )
        return bytes(body)
    try:
        declared = zstandard.frame_content_size(body)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"stored zstd frame is corrupt [key={key}]: {exc}", key=key) from exc
    # zstandard allocates the frame's declared size up front, ignoring
    # max_output_size, so the declared size is checked before decompressing.
    if declared != size:
        raise IntegrityError(
            f"stored object size mismatch [key={key}]: expected {size} bytes, "
            f"zstd frame declares {declared}",
            key=key,
        )
    try:
        data = zstandard.ZstdDecompressor().decompress(body, max_output_size=size)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"stored zstd frame is corrupt [key={key}]: {exc}", key=key) from exc
    if len(data) != size:
        raise IntegrityError(
            f"stored object size mismatch [key={key}]: expected {size} bytes, decoded {len(data)}",
            key=key,
        )
    return data
