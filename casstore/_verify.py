"""Content digests, and the checks retrieval makes before trusting stored bytes."""

from __future__ import annotations

import blake3
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload

from casstore._codec import decode_object
from casstore._crypto import ObjectCipher
from casstore.errors import IntegrityError

_MULTITHREAD_HASH_SIZE = 1 << 20
"""Payloads this large are hashed with BLAKE3's multi-threaded mode."""


def content_digest(data: bytes, cipher: ObjectCipher | None = None) -> bytes:
    """Return the digest that names ``data`` in keys and claims.

    BLAKE3-256 for plain objects; keyed BLAKE3-256 under ``cipher``'s digest
    key for objects encrypted with it.
    """
    if cipher is not None:
        return cipher.digest(data)
    hasher = (
        blake3.blake3(max_threads=blake3.blake3.AUTO)
        if len(data) >= _MULTITHREAD_HASH_SIZE
        else blake3.blake3()
    )
    hasher.update(data)
    return hasher.digest()


def decode_and_verify(
    obj: bytes, size: int, digest: bytes, key: str, cipher: ObjectCipher | None = None
) -> bytes:
    """Decode a stored object and check it is exactly the content its claim names.

    Args:
        obj: The object as read.
        size: The size the claim promises.
        digest: The digest the claim names.
        key: The object key.
        cipher: For a claim naming a key id, that key's cipher: the object must
            be encrypted with it and pass authentication.

    Raises:
        IntegrityError: Wrong size, a failed authentication, undecodable body or
            a digest mismatch, naming the key; nothing was parsed.
    """
    data = decode_object(obj, size=size, key=key, cipher=cipher, digest=digest)
    check_digest(data, digest, key, cipher)
    return data


def check_digest(data: bytes, digest: bytes, key: str, cipher: ObjectCipher | None) -> None:
    """Check that decoded bytes are the content the claim names.

    Raises:
        IntegrityError: They are not; names the key and both digests.
    """
    actual = content_digest(data, cipher)
    if actual != digest:
        kind = "blake3" if cipher is None else f"keyed blake3 (key {cipher.key_id!r})"
        raise IntegrityError(
            f"stored object does not match its claim [key={key}]: expected {kind} "
            f"{digest.hex()}, got {actual.hex()}",
            key=key,
        )


def parse_payload(data: bytes, key: str) -> Payload:
    """Parse verified bytes into a fresh ``Payload``."""
    payload = Payload()
    try:
        payload.ParseFromString(data)
    except DecodeError as exc:
        raise IntegrityError(
            f"stored bytes match their digest but are not a Payload [key={key}]", key=key
        ) from exc
    return payload
