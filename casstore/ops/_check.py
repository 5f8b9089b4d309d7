"""Checking one stored object against its key, without trusting anything in it.

An object key ends with the BLAKE3 digest of the serialized payload, so an
object can be verified on its own: the header must be valid, the body must
decode to a size within bounds, and the decoded bytes must hash to the digest
in the key. zstd bodies are decompressed and hashed in chunks, so checking an
object needs about its stored size in memory, whatever it decompresses to.

An encrypted object (format 2) is checked with the keyring key its header
names: it must authenticate (bound to its key), decode within bounds, and hash
to the key's digest under that key's digest key; it is decoded whole, so up to
``max_payload_size`` in memory. Without that key it cannot be checked either
way: :class:`ObjectSkipped`, never reported as bad.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import blake3
import zstandard

from casstore._codec import (
    ENCRYPTED_OBJECT_FORMAT_VERSION,
    HEADER_SIZE,
    MAGIC,
    OBJECT_FORMAT_VERSION,
    Codec,
    decode_body,
)
from casstore._codec import read_header as read_object_header
from casstore._crypto import TAG_SIZE, Ciphers
from casstore.errors import IntegrityError

_CHUNK = 1 << 20
_MULTITHREAD_HASH_SIZE = 1 << 20
_local = threading.local()


class ObjectProblem(Exception):
    """The object is bad; the message says why, without repeating the key."""


class ObjectSkipped(Exception):
    """The object is encrypted with a key the keyring lacks: neither good nor bad."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"encrypted with key {key_id!r}, which the keyring does not hold")
        self.key_id = key_id


@dataclass(frozen=True)
class ObjectFacts:
    """What checking a good object learned about it."""

    codec: Codec
    logical_size: int
    """Size of the serialized payload the object holds."""
    key_id: str | None = None
    """The keyring key an encrypted object is sealed with; None for a plain one."""


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
    if obj[3] == ENCRYPTED_OBJECT_FORMAT_VERSION:
        raise ObjectProblem("encrypted object (format 2): checking it needs its key")
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
    return _declared_size(body)


def _declared_size(body: memoryview) -> int:
    """The content size a zstd frame header declares."""
    try:
        declared = zstandard.frame_content_size(body)
    except zstandard.ZstdError as exc:
        raise ObjectProblem(f"corrupt zstd frame header: {exc}") from exc
    if declared < 0:
        raise ObjectProblem("zstd frame does not declare its content size")
    return int(declared)


def encrypted_header(obj: bytes, key: str = "") -> tuple[Codec, str] | None:
    """Return (codec, key id) of an encrypted object, None for a plain one.

    Raises:
        ObjectProblem: For an encrypted object whose header is malformed.
    """
    if len(obj) < HEADER_SIZE or obj[:3] != MAGIC or obj[3] != ENCRYPTED_OBJECT_FORMAT_VERSION:
        return None
    try:
        header = read_object_header(obj, key=key)
    except IntegrityError as exc:
        raise ObjectProblem(str(exc).replace(f" [key={key}]", "")) from None
    assert header.key_id is not None
    return header.codec, header.key_id


def check_object(
    obj: bytes,
    digest: bytes,
    *,
    max_payload_size: int,
    key: str = "",
    ciphers: Ciphers | None = None,
) -> ObjectFacts:
    """Verify a stored object against the digest its key names.

    Args:
        obj: The object's bytes, as stored.
        digest: The digest from the object's key (keyed, for an encrypted object).
        max_payload_size: Largest payload a reader accepts; an object declaring
            more is bad (and is not decompressed).
        key: The object's key: an encrypted object is authenticated with it.
        ciphers: The keyring's ciphers, to check encrypted objects.

    Returns:
        The codec and payload size of a good object.

    Raises:
        ObjectProblem: Naming what is wrong: header, size, frame or digest.
        ObjectSkipped: The object is encrypted with a key ``ciphers`` lacks.
    """
    encrypted = encrypted_header(obj, key)
    if encrypted is not None:
        return _check_encrypted(obj, digest, encrypted, key, ciphers, max_payload_size)
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


def _check_encrypted(
    obj: bytes,
    digest: bytes,
    header: tuple[Codec, str],
    key: str,
    ciphers: Ciphers | None,
    max_payload_size: int,
) -> ObjectFacts:
    codec, key_id = header
    if ciphers is None or key_id not in ciphers.keyring:
        raise ObjectSkipped(key_id)
    cipher = ciphers.get(key_id, key=key)
    start = 7 + len(key_id)
    if len(obj) - start - TAG_SIZE > max_payload_size and codec is Codec.RAW:
        raise ObjectProblem(f"holds more than max_payload_size {max_payload_size} bytes")
    try:
        associated = bytes(obj[:start]) + key.encode("utf-8")
        body = cipher.open(memoryview(obj)[start:], digest=digest, associated=associated, key=key)
        size = len(body) if codec is Codec.RAW else _declared_size(memoryview(body))
        if size > max_payload_size:
            raise ObjectProblem(
                f"declares a {size}-byte payload, above max_payload_size {max_payload_size}"
            )
        data = decode_body(codec, body, size=size, key=key)
    except IntegrityError as exc:
        raise ObjectProblem(str(exc).replace(f" [key={key}]", "")) from None
    actual = cipher.digest(data)
    if actual != digest:
        raise ObjectProblem(
            f"content does not match its key: key names keyed blake3 (key {key_id!r}) "
            f"{digest.hex()}, content hashes to {actual.hex()}"
        )
    return ObjectFacts(codec=codec, logical_size=size, key_id=key_id)


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
