"""The checks retrieval makes before trusting stored bytes."""

from __future__ import annotations

from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload

from casstore._format.digest import content_digest
from casstore._format.encrypted import ObjectCipher, decode_object
from casstore.errors import IntegrityError


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
    actual = content_digest(data, None if cipher is None else cipher.digest_key)
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
