"""Checking one stored object against its key, without trusting anything in it.

An object key ends with the BLAKE3 digest of the serialized payload, so an
object can be verified on its own: the header must be valid, the body must
decode to a size within bounds, and the decoded bytes must hash to the digest
in the key. zstd bodies are decompressed and hashed in chunks, so checking an
object needs about its stored size in memory, whatever it decompresses to.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import blake3
import zstandard

from casstore._codec import HEADER_SIZE, MAGIC, OBJECT_FORMAT_VERSION, Codec

_CHUNK = 1 << 20
_MULTITHREAD_HASH_SIZE = 1 << 20
_local = threading.local()


class ObjectProblem(Exception):
    """The object is bad; the message says why, without repeating the key."""


@dataclass(frozen=True)
class ObjectFacts:
    """What checking a good object learned about it."""

    codec: Codec
    logical_size: int
    """Size of the serialized payload the object holds."""


def read_header(obj: bytes) -> Codec:
    """Check an object's header and return its codec.

    Raises:
        ObjectProblem: For a short object, a wrong magic, an unknown format
            version or codec.
    """
    if len(obj) < HEADER_SIZE:
        raise ObjectProblem(
            f"truncated: {len(obj)} bytes, shorter than the {HEADER_SIZE}-byte header"
        )
    if obj[:3] != MAGIC:
        raise ObjectProblem(
            f"no casstore header (starts with {obj[:3].hex()}, expected {MAGIC.hex()})"
        )
    if obj[3] != OBJECT_FORMAT_VERSION:
        raise ObjectProblem(
            f"unsupported object format version {obj[3]} "
            f"(this casstore reads version {OBJECT_FORMAT_VERSION})"
        )
    try:
        return Codec(obj[4])
    except ValueError:
        raise ObjectProblem(f"unknown codec {obj[4]} in the header") from None


def logical_size(obj: bytes, codec: Codec) -> int:
    """The payload size an object declares, from its header and zstd frame header only.

    Raises:
        ObjectProblem: If a zstd frame header is unreadable or declares no size.
    """
    body = memoryview(obj)[HEADER_SIZE:]
    if codec is Codec.RAW:
        return len(body)
    try:
        declared = zstandard.frame_content_size(body)
    except zstandard.ZstdError as exc:
        raise ObjectProblem(f"corrupt zstd frame header: {exc}") from exc
    if declared < 0:
        raise ObjectProblem("zstd frame does not declare its content size")
    return int(declared)


def check_object(obj: bytes, digest: bytes, *, max_payload_size: int) -> ObjectFacts:
    """Verify a stored object against the digest its key names.

    Args:
        obj: The object's bytes, as stored.
        digest: The BLAKE3-256 digest from the object's key.
        max_payload_size: Largest payload a reader accepts; an object declaring
            more is bad (and is not decompressed).

    Returns:
        The codec and payload size of a good object.

    Raises:
        ObjectProblem: Naming what is wrong: header, size, frame or digest.
    """
    codec = read_header(obj)
    size = logical_size(obj, codec)
    if size > max_payload_size:
        raise ObjectProblem(
            f"declares a {size}-byte payload, above max_payload_size {max_payload_size}"
        )
    hasher = (
        blake3.blake3(max_threads=blake3.blake3.AUTO)
        if size >= _MULTITHREAD_HASH_SIZE
        else blake3.blake3()
    )
    body = memoryview(obj)[HEADER_SIZE:]
    if codec is Codec.RAW:
        hasher.update(body)
    else:
        _hash_zstd(body, size, hasher)
    actual = hasher.digest()
    if actual != digest:
        raise ObjectProblem(
            f"content does not match its key: key names blake3 {digest.hex()}, "
            f"content hashes to {actual.hex()}"
        )
    return ObjectFacts(codec=codec, logical_size=size)


def _hash_zstd(body: memoryview, size: int, hasher: blake3.blake3) -> None:
    """Decompress one zstd frame in chunks into ``hasher``, holding it to its declared size."""
    decompressor = _decompressor().decompressobj()
    produced = 0
    try:
        for start in range(0, len(body), _CHUNK):
            chunk = decompressor.decompress(body[start : start + _CHUNK])
            produced += len(chunk)
            if produced > size:
                raise ObjectProblem(f"zstd frame decodes to more than the {size} bytes it declares")
            hasher.update(chunk)
            if decompressor.eof:
                trailing = len(decompressor.unused_data) + max(0, len(body) - start - _CHUNK)
                if trailing:
                    raise ObjectProblem(f"{trailing} unexpected bytes after the zstd frame")
                break
    except zstandard.ZstdError as exc:
        raise ObjectProblem(f"corrupt zstd frame: {exc}") from exc
    if not decompressor.eof:
        raise ObjectProblem(f"truncated zstd frame: decoded {produced} of {size} bytes")
    if produced != size:
        raise ObjectProblem(f"zstd frame declares {size} bytes but decodes to {produced}")


def _decompressor() -> zstandard.ZstdDecompressor:
    # One per thread: a decompressor is not thread-safe, and making one per
    # object costs more than checking a small object.
    decompressor: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    return decompressor
