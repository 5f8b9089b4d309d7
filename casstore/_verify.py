"""Content digests, and the checks retrieval makes before trusting stored bytes."""

from __future__ import annotations

import blake3
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload

from casstore._codec import decode_object
from casstore.errors import IntegrityError

_MULTITHREAD_HASH_SIZE = 1 << 20
"""Payloads this large are hashed with BLAKE3's multi-threaded mode."""


def content_digest(data: bytes) -> bytes:
    """Return the BLAKE3-256 digest that names ``data`` in keys and claims."""
    hasher = (
        blake3.blake3(max_threads=blake3.blake3.AUTO)
        if len(data) >= _MULTITHREAD_HASH_SIZE
        else blake3.blake3()
    )
    hasher.update(data)
    return hasher.digest()


def decode_and_verify(obj: bytes, size: int, digest: bytes, key: str) -> bytes:
    """Decode a stored object and check it is exactly the content its claim names.

    Raises:
        IntegrityError: Wrong size, undecodable body or a digest mismatch,
            naming the key; nothing was parsed.
    """
    data = decode_object(obj, size=size, key=key)
    actual = content_digest(data)
    if actual != digest:
        raise IntegrityError(
            f"stored object does not match its claim [key={key}]: expected blake3 "
            f"{digest.hex()}, got {actual.hex()}",
            key=key,
        )
    return data


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
