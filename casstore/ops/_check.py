"""Checking one stored object against its key, without trusting anything in it.

An object key ends with the digest of the serialized payload, so an object
can be verified on its own: the header must be valid, the body must decode to
a size within bounds, and the decoded bytes must hash to the digest in the
key. Plain (format 1) zstd bodies are decompressed and hashed in chunks, so
checking one needs about its stored size in memory, whatever it decompresses
to. Encrypted (format 2) objects are authenticated and decrypted with the
keyring key their header names, then checked against the keyed digest; without
that key they cannot be checked at all, which is reported as such
(:class:`NeedsKey`), never as corruption.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import blake3
import zstandard

from casstore._crypto import Ciphers
from casstore._format.chunked import is_chunked
from casstore._format.chunked_read import decode_manifest
from casstore._format.digest import content_hasher
from casstore._format.encrypted import TAG_SIZE, ObjectCipher, associated_data
from casstore._format.header import Codec, ObjectHeader, read_header
from casstore.errors import IntegrityError

_CHUNK = 1 << 20
_local = threading.local()


class ObjectProblem(Exception):
    """The object is bad; the message says why."""


class NeedsKey(Exception):
    """The object is encrypted with a key that was not given: it cannot be checked."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"needs key {key_id} (encrypted; pass --keyring with it to check)")
        self.key_id = key_id


@dataclass(frozen=True)
class ObjectFacts:
    """What reading a good object (or its header) learned about it."""

    codec: Codec
    logical_size: int | None
    """Size of the serialized payload it holds; None if it cannot be known (no key)."""
    key_id: str | None = None
    """The keyring key it is encrypted with, or None for a plain object."""
    chunked: bool = False
    """A chunked (format 3) object: a manifest and new chunks (``codec`` is moot)."""
    shared_bytes: int | None = None
    """For a chunked object: payload bytes it reads from earlier objects (what
    chunk dedup saved); None for a whole object, or when sealed without a key."""

    @property
    def codec_name(self) -> str:
        """How reports name its encoding: ``raw``, ``zstd`` or ``chunked``."""
        return "chunked" if self.chunked else Codec(self.codec).name.lower()


def chunked_facts(
    obj: bytes, *, key: str, ciphers: Ciphers | None, max_payload_size: int, required: bool
) -> ObjectFacts:
    """A chunked object's facts from its header and manifest (checked as a reader would).

    Its chunks are not checked here: those in other objects need reads (see
    ``verify``). Without the key of an encrypted one, only its key id is known.

    Raises:
        ObjectProblem: The header or manifest is malformed or fails authentication.
        NeedsKey: Encrypted with a key ``ciphers`` lacks, and ``required``.
    """
    key_id = None
    if len(obj) > 6 and obj[5]:
        key_id = bytes(obj[6 : 6 + obj[5]]).decode("ascii", "replace")
    cipher = None if key_id is None else _cipher(ciphers, key_id, key=key, required=required)
    if key_id is not None and cipher is None:
        return ObjectFacts(Codec.ZSTD, None, key_id, chunked=True)
    digest = bytes.fromhex(key.rpartition("/")[2])
    try:
        manifest = decode_manifest(
            obj, key=key, size=None, own_digest=digest, cipher=cipher, max_size=max_payload_size
        )
    except IntegrityError as exc:
        raise ObjectProblem(str(exc)) from None
    shared = sum(where.length for _, where in manifest.chunks if where.source is not None)
    return ObjectFacts(Codec.ZSTD, manifest.size, key_id, chunked=True, shared_bytes=shared)


def header_of(obj: bytes, *, key: str) -> ObjectHeader:
    """Read and check an object's header (format 1 or 2).

    Raises:
        ObjectProblem: For a short object, a wrong magic, an unknown format
            version, codec or cipher, or a malformed key id.
    """
    try:
        return read_header(obj, key=key)
    except IntegrityError as exc:
        raise ObjectProblem(str(exc)) from None


def declared_facts(obj: bytes, *, key: str, ciphers: Ciphers | None = None) -> ObjectFacts:
    """An object's codec and payload size from its headers only (``stats --deep``).

    An encrypted zstd object's frame header is sealed: its size is read only
    when ``ciphers`` holds its key (which authenticates and decrypts it).

    Raises:
        ObjectProblem: If a header is unreadable, or an encrypted object fails
            authentication.
    """
    if is_chunked(obj):
        return chunked_facts(
            obj, key=key, ciphers=ciphers, max_payload_size=1 << 62, required=False
        )
    header = header_of(obj, key=key)
    body: bytes | memoryview = memoryview(obj)[header.size :]
    if header.key_id is not None:
        cipher = _cipher(ciphers, header.key_id, key=key, required=False)
        if cipher is None:
            size = len(body) - TAG_SIZE if header.codec is Codec.RAW else None
            return ObjectFacts(header.codec, size, header.key_id)
        body = _open(cipher, obj, header, key)
    return ObjectFacts(header.codec, _declared_size(body, header.codec), header.key_id)


def check_object(
    obj: bytes, digest: bytes, *, key: str, max_payload_size: int, ciphers: Ciphers | None = None
) -> ObjectFacts:
    """Verify a stored object against the digest its key names.

    Args:
        obj: The object's bytes, as stored.
        digest: The digest from the object's key (keyed, for encrypted objects).
        key: The object's key (bound into encrypted objects).
        max_payload_size: Largest payload a reader accepts; an object declaring
            more is bad (and is not decompressed).
        ciphers: The keyring's ciphers, for encrypted objects.

    Returns:
        The codec, payload size and key id of a good object.

    Raises:
        ObjectProblem: Naming what is wrong: header, authentication, size,
            frame or digest.
        NeedsKey: The object is encrypted with a key ``ciphers`` does not hold.
    """
    if is_chunked(obj):
        # Its chunks, here and in the objects it references, are checked by
        # reading it as the driver does (verify's second pass).
        return chunked_facts(
            obj, key=key, ciphers=ciphers, max_payload_size=max_payload_size, required=True
        )
    header = header_of(obj, key=key)
    body: bytes | memoryview = memoryview(obj)[header.size :]
    cipher = None
    if header.key_id is not None:
        cipher = _cipher(ciphers, header.key_id, key=key, required=True)
        assert cipher is not None  # required=True raises instead
        body = _open(cipher, obj, header, key)
    size = _declared_size(body, header.codec)
    if size > max_payload_size:
        raise ObjectProblem(
            f"declares a {size}-byte payload, above max_payload_size {max_payload_size}"
        )
    # Decrypted bodies are in memory already, plain ones may be decompressed in
    # chunks: both are hashed as the driver hashes, plain or keyed.
    hasher = content_hasher(size, None if cipher is None else cipher.digest_key)
    if header.codec is Codec.RAW:
        hasher.update(body)
    else:
        _hash_zstd(body, size, hasher)
    actual = hasher.digest()
    if actual != digest:
        raise ObjectProblem(
            f"content does not match its key: key names {digest.hex()}, "
            f"content hashes to {actual.hex()}"
        )
    return ObjectFacts(header.codec, size, header.key_id)


def _cipher(
    ciphers: Ciphers | None, key_id: str, *, key: str, required: bool
) -> ObjectCipher | None:
    if ciphers is None or key_id not in ciphers.keyring:
        if required:
            raise NeedsKey(key_id)
        return None
    return ciphers.get(key_id, key=key)


def _open(cipher: ObjectCipher, obj: bytes, header: ObjectHeader, key: str) -> bytes:
    """Authenticate and decrypt an encrypted object's body (nonce from the key's digest)."""
    digest = bytes.fromhex(key.rpartition("/")[2])
    associated = associated_data(memoryview(obj)[: header.size], key)
    try:
        return cipher.open(
            memoryview(obj)[header.size :], digest=digest, associated=associated, key=key
        )
    except IntegrityError as exc:
        raise ObjectProblem(str(exc)) from None


def _declared_size(body: bytes | memoryview, codec: Codec) -> int:
    """The payload size a body declares: its length (raw) or its zstd frame header."""
    if codec is Codec.RAW:
        return len(body)
    try:
        declared = zstandard.frame_content_size(body)
    except zstandard.ZstdError as exc:
        raise ObjectProblem(f"corrupt zstd frame header: {exc}") from exc
    if declared < 0:
        raise ObjectProblem("zstd frame does not declare its content size")
    return int(declared)


def _hash_zstd(body: bytes | memoryview, size: int, hasher: blake3.blake3) -> None:
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
