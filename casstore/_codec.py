"""Object formats: a header, then the body; version 1 plain, version 2 encrypted.

Format 1 (plain)::

    offset  size  field
    0       3     magic  b"CAS"
    3       1     object format version (1)
    4       1     codec: 0 = raw, 1 = zstd
    5       ...   body: the serialized Payload (raw), or one zstd frame whose
                  header records the content size (zstd)

Format 2 (encrypted)::

    offset  size  field
    0       3     magic  b"CAS"
    3       1     object format version (2)
    4       1     codec of the sealed body: 0 = raw, 1 = zstd
    5       1     cipher: 1 = AES-256-GCM-SIV with BLAKE3-derived keys
    6       1     key id length n (1-32)
    7       n     key id (ASCII)
    7+n     ...   the body (as in format 1) sealed by :mod:`casstore._crypto`:
                  ciphertext, then a 16-byte tag; associated data is the
                  header (bytes 0 to 7+n) followed by the object key

The header makes every object self-describing: a reader decodes it whatever
codec settings its writer had. Decoding is bounded by the size the claim
promises, so a corrupted or hostile object cannot make a reader allocate more
than that (the claim's size is itself capped by ``max_payload_size``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

import zstandard

from casstore._keyring import validate_key_id
from casstore.errors import ConfigurationError, IntegrityError

if TYPE_CHECKING:
    from casstore._crypto import ObjectCipher

MAGIC = b"CAS"
OBJECT_FORMAT_VERSION = 1
HEADER_SIZE = 5
"""Size of a format 1 header."""
ENCRYPTED_OBJECT_FORMAT_VERSION = 2
CIPHER_AES_256_GCM_SIV = 1
_ENCRYPTED_FIXED_HEADER_SIZE = 7

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
    return codec, _header(codec) + body


def encode_encrypted_object(
    data: bytes,
    compression_level: int | None,
    cipher: ObjectCipher,
    *,
    digest: bytes,
    key: str,
) -> tuple[Codec, bytes]:
    """Encode a serialized payload as an encrypted (format 2) object: compress, then seal.

    Args:
        data: The serialized payload.
        compression_level: zstd level, or ``None`` to always store raw.
        cipher: The active key's cipher.
        digest: ``cipher.digest(data)``, which the nonce is taken from.
        key: The object key, bound in as associated data.

    Returns:
        The codec chosen and the object bytes (header included).
    """
    codec, body = compress(data, compression_level)
    header = encrypted_header(codec, cipher.key_id)
    sealed = cipher.seal(body, digest=digest, associated=header + key.encode("utf-8"))
    return codec, header + sealed


def encode_stored(
    data: bytes, compression_level: int | None, cipher: ObjectCipher | None, digest: bytes, key: str
) -> tuple[Codec, bytes]:
    """Encode ``data`` as a plain object, or an encrypted one when ``cipher`` is given."""
    if cipher is None:
        return encode_object(data, compression_level)
    return encode_encrypted_object(data, compression_level, cipher, digest=digest, key=key)


def _header(codec: Codec) -> bytes:
    return MAGIC + bytes((OBJECT_FORMAT_VERSION, codec))


def encrypted_header(codec: Codec, key_id: str) -> bytes:
    """Return the format 2 header for a body of ``codec`` sealed with ``key_id``."""
    try:
        raw_id = validate_key_id(key_id).encode("ascii")
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from exc
    return (
        MAGIC
        + bytes((ENCRYPTED_OBJECT_FORMAT_VERSION, codec, CIPHER_AES_256_GCM_SIV))
        + (bytes((len(raw_id),)) + raw_id)
    )


@dataclass(frozen=True, slots=True)
class ObjectHeader:
    """What an object's header says."""

    version: int
    codec: Codec
    key_id: str | None
    """The key the body is sealed with (format 2), or None (format 1, plain)."""
    size: int
    """The header's length in bytes: where the body starts."""


def read_header(obj: bytes, *, key: str) -> ObjectHeader:
    """Read and check an object's header (format 1 or 2).

    Raises:
        IntegrityError: If the header is short, has the wrong magic, or names an
            unknown format version, codec, cipher, or a malformed key id.
    """
    if len(obj) < HEADER_SIZE or obj[:3] != MAGIC:
        raise IntegrityError(
            f"stored object has no casstore header [key={key}, bytes={len(obj)}]", key=key
        )
    version = obj[3]
    if version not in (OBJECT_FORMAT_VERSION, ENCRYPTED_OBJECT_FORMAT_VERSION):
        raise IntegrityError(
            f"stored object has unsupported format version {version} (this casstore reads "
            f"versions {OBJECT_FORMAT_VERSION} and {ENCRYPTED_OBJECT_FORMAT_VERSION}) [key={key}]",
            key=key,
        )
    try:
        codec = Codec(obj[4])
    except ValueError:
        raise IntegrityError(
            f"stored object has unknown codec {obj[4]} [key={key}]", key=key
        ) from None
    if version == OBJECT_FORMAT_VERSION:
        return ObjectHeader(version, codec, None, HEADER_SIZE)
    if len(obj) < _ENCRYPTED_FIXED_HEADER_SIZE:
        raise IntegrityError(f"encrypted object header is truncated [key={key}]", key=key)
    if obj[5] != CIPHER_AES_256_GCM_SIV:
        raise IntegrityError(f"stored object names unknown cipher {obj[5]} [key={key}]", key=key)
    end = _ENCRYPTED_FIXED_HEADER_SIZE + obj[6]
    raw_id = bytes(obj[_ENCRYPTED_FIXED_HEADER_SIZE:end])
    try:
        key_id = validate_key_id(raw_id.decode("ascii"))
    except (UnicodeDecodeError, ConfigurationError):
        raise IntegrityError(
            f"encrypted object header has a malformed key id {raw_id!r} [key={key}]",
            key=key,
        ) from None
    if len(obj) < end:
        raise IntegrityError(f"encrypted object header is truncated [key={key}]", key=key)
    return ObjectHeader(version, codec, key_id, end)


def object_codec(obj: bytes, *, key: str) -> Codec:
    """Read and check an object's header, returning its codec.

    Raises:
        IntegrityError: If the header is short, has the wrong magic, or names an
            unknown format version or codec.
    """
    return read_header(obj, key=key).codec


def decode_object(
    obj: bytes,
    *,
    size: int,
    key: str,
    cipher: ObjectCipher | None = None,
    digest: bytes = b"",
) -> bytes:
    """Decode a stored object (authenticating and decrypting it if encrypted).

    Args:
        obj: The object as read from the backend.
        size: The serialized payload size the claim promises.
        key: The object's key, for error messages and as associated data.
        cipher: The cipher of the key the claim names, or None for a plain claim.
        digest: The claimed (keyed) digest, whose prefix is the nonce; needed
            with ``cipher``.

    Returns:
        The serialized payload, exactly ``size`` bytes long. Its digest is not
        checked here.

    Raises:
        IntegrityError: If the header is bad, the object is encrypted when the
            claim is not (or the reverse, or with another key id), fails
            authentication, is not valid for its codec, or does not decode to
            exactly ``size`` bytes.
    """
    header = read_header(obj, key=key)
    body: bytes | memoryview = memoryview(obj)[header.size :]
    if cipher is None:
        if header.key_id is not None:
            raise IntegrityError(
                f"stored object is encrypted with key {header.key_id!r} but its claim is "
                f"not encrypted [key={key}]",
                key=key,
            )
    else:
        if header.key_id != cipher.key_id:
            found = "not encrypted" if header.key_id is None else f"key {header.key_id!r}"
            raise IntegrityError(
                f"claim says the object is encrypted with key {cipher.key_id!r}, the stored "
                f"object says {found} [key={key}]",
                key=key,
            )
        associated = bytes(obj[: header.size]) + key.encode("utf-8")
        body = cipher.open(body, digest=digest, associated=associated, key=key)
    return decode_body(header.codec, body, size=size, key=key)


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
