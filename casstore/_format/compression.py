"""Object bodies, raw or zstd, and object format 1 (a plain header, then the body).

- raw: the body is the serialized payload, byte for byte;
- zstd: the body is one zstd frame whose header records the content size.

The writer compresses when the payload is at least :data:`MIN_COMPRESS_SIZE`
bytes and zstd shrinks it to at most :data:`MAX_COMPRESSED_FRACTION` of its
size. Decoding is bounded by the size the claim promises, so a corrupted or
hostile object cannot make a reader allocate more than that (the claim's size
is itself capped by ``max_payload_size``). See docs/formats.md ("Object format 1").
"""

from __future__ import annotations

import threading

import zstandard

from casstore._format.header import Codec, plain_header
from casstore.errors import IntegrityError

MIN_COMPRESS_SIZE = 128
"""Payloads smaller than this are stored raw: zstd saves next to nothing on them."""
MAX_COMPRESSED_FRACTION = 0.9
"""zstd is kept only when it shrinks the payload to at most this fraction."""

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


def compress(data: bytes, compression_level: int | None) -> tuple[Codec, bytes]:
    """Choose the codec for ``data`` and return it with the encoded body."""
    if compression_level is not None and len(data) >= MIN_COMPRESS_SIZE:
        compressed = _compressor(compression_level).compress(data)
        if len(compressed) <= len(data) * MAX_COMPRESSED_FRACTION:
            return Codec.ZSTD, compressed
    return Codec.RAW, data


def encode_object(data: bytes, compression_level: int | None) -> tuple[Codec, bytes]:
    """Encode a serialized payload as a plain (format 1) object.

    Args:
        data: The serialized payload.
        compression_level: zstd level, or ``None`` to always store raw.

    Returns:
        The codec chosen and the object bytes (header included).
    """
    codec, body = compress(data, compression_level)
    return codec, plain_header(codec) + body


def decode_body(codec: Codec, body: bytes | memoryview, *, size: int, key: str) -> bytes:
    """Decode an object body of ``codec`` into exactly ``size`` bytes.

    Raises:
        IntegrityError: If the body is not valid for its codec or does not
            decode to exactly ``size`` bytes.
    """
    if codec is Codec.RAW:
        if len(body) != size:
            raise IntegrityError(
                f"stored object size mismatch [key={key}]: expected {size} bytes, got {len(body)}",
                key=key,
            )
        return body if isinstance(body, bytes) else bytes(body)
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


def max_object_size(size: int) -> int:
    """Return the largest valid object for a payload of ``size`` bytes.

    A raw object is header + payload (+ tag when sealed); a zstd body is kept
    only when smaller than the payload, and no zstd frame exceeds zstd's
    compress bound. Readers refuse anything larger before reading it.
    """
    small_input_margin = (128 * 1024 - size) >> 11 if size < 128 * 1024 else 0
    # 512 covers the largest header (an encrypted one names its key) and tag.
    return size + (size >> 8) + small_input_margin + 512
