"""Claim format v1: what a reference in Event History holds.

A claim is one msgspec struct encoded as a compact JSON array and carried as
the single ``claim_data`` entry ``"c"``::

    claim_data = {"c": '[1,"default/order-42","<digest>",1048576,1]'}

with the array's elements, in order:

1. claim format version (the struct's tag), 1;
2. location: the dedup scope the object lives in (see :mod:`casstore._keys`);
3. BLAKE3-256 digest of the serialized payload, unpadded base64url (43 chars);
4. size of the serialized payload in bytes;
5. codec of the stored object as the writer knew it (0 raw, 1 zstd); readers
   decode by the object's own header, since the same content may have been
   stored first by a writer with other settings.

Schema evolution (msgspec rules): a new version is a new tagged struct; a
field may be added to an existing version only at the end and with a
default; a field's type never changes. Claims come from Event History, so
decoding treats them as untrusted and reports every problem as a
:class:`~casstore.errors.ClaimError`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from casstore._codec import Codec
from casstore._keys import DIGEST_SIZE, object_key, validate_location
from casstore.errors import ClaimError

CLAIM_FORMAT_VERSION = 1
CLAIM_DATA_KEY = "c"
MAX_CLAIM_LENGTH = 4096
"""Longest encoded claim accepted; real ones are about 110 characters."""


class ClaimV1(msgspec.Struct, array_like=True, tag=1, frozen=True):
    """Version 1 of the claim record (encoded as ``[1, location, digest, size, codec]``)."""

    location: str
    digest: Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{43}$")]
    size: Annotated[int, msgspec.Meta(ge=0)]
    codec: int


@dataclass(frozen=True, slots=True)
class Claim:
    """A validated claim, in the types its readers use."""

    location: str
    """The dedup scope the object lives in (see :mod:`casstore._keys`)."""
    digest: bytes
    """BLAKE3-256 digest of the serialized payload (32 bytes)."""
    size: int
    """Size of the serialized payload in bytes."""
    codec: Codec
    """Codec of the stored object as the writer knew it (informational)."""
    version: int
    """Claim format version the claim was written in."""

    @property
    def key(self) -> str:
        """The key of the object the claim points at."""
        return object_key(self.location, self.digest)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ClaimV1)


def encode_digest(digest: bytes) -> str:
    """Encode a 32-byte digest as unpadded base64url."""
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def decode_digest(text: str) -> bytes:
    """Decode an unpadded base64url digest, rejecting non-canonical spellings."""
    try:
        digest = base64.urlsafe_b64decode(text + "=")
    except (binascii.Error, ValueError) as exc:
        raise ClaimError(f"claim digest is not base64url [digest={text!r}]") from exc
    if len(digest) != DIGEST_SIZE or encode_digest(digest) != text:
        raise ClaimError(f"claim digest is not a canonical 32-byte digest [digest={text!r}]")
    return digest


def make_claim_data(location: str, digest: bytes, size: int, codec: Codec) -> dict[str, str]:
    """Build the ``claim_data`` mapping for a stored payload."""
    claim = ClaimV1(location=location, digest=encode_digest(digest), size=size, codec=int(codec))
    return {CLAIM_DATA_KEY: _encoder.encode(claim).decode("ascii")}


def parse_claim_data(claim_data: Mapping[str, str], *, max_size: int) -> Claim:
    """Decode and validate untrusted ``claim_data``, once, into a :class:`Claim`.

    Args:
        claim_data: The mapping from a ``StorageDriverClaim``.
        max_size: Largest payload size a claim may promise.

    Returns:
        The validated claim.

    Raises:
        ClaimError: Naming what is wrong: a missing, extra or non-string entry, bad
            JSON, wrong field types, an unknown version, a malformed digest or
            location, an unknown codec, or a size above ``max_size``.
    """
    if not isinstance(claim_data, Mapping):
        raise ClaimError(f"claim data must be a mapping, got {type(claim_data).__name__}")
    if set(claim_data) - {CLAIM_DATA_KEY}:
        # Versions live inside "c"; anything else (a bucket, a key) is not ours to honour.
        raise ClaimError(
            f"claim data has unexpected entries; a casstore claim holds only {CLAIM_DATA_KEY!r} "
            f"[keys={sorted(map(str, claim_data))}]"
        )
    raw = claim_data.get(CLAIM_DATA_KEY)
    if not isinstance(raw, str):
        raise ClaimError(
            f"claim data has no string entry {CLAIM_DATA_KEY!r}; is this a casstore claim? "
            f"[keys={sorted(map(str, claim_data))}]"
        )
    if len(raw) > MAX_CLAIM_LENGTH:
        raise ClaimError(f"claim is {len(raw)} characters, above the {MAX_CLAIM_LENGTH} limit")
    try:
        claim = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise ClaimError(_explain(raw, exc)) from exc
    location = validate_location(claim.location)
    digest = decode_digest(claim.digest)
    if claim.codec not in Codec._value2member_map_:
        raise ClaimError(f"claim names unknown codec {claim.codec} [claim={raw}]")
    if claim.size > max_size:
        raise ClaimError(
            f"claim size {claim.size} bytes is above max_payload_size {max_size} [claim={raw}]"
        )
    return Claim(
        location=location,
        digest=digest,
        size=claim.size,
        codec=Codec(claim.codec),
        version=CLAIM_FORMAT_VERSION,
    )


def _explain(raw: str, exc: msgspec.DecodeError) -> str:
    """Turn a msgspec decode error into a message that says what was wrong."""
    try:
        generic: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return f"claim is not valid JSON: {exc} [claim={raw[:200]!r}]"
    version = generic[0] if isinstance(generic, list) and generic else None
    if isinstance(version, int) and version != CLAIM_FORMAT_VERSION:
        return (
            f"claim has unsupported format version {version} "
            f"(this casstore reads version {CLAIM_FORMAT_VERSION}) [claim={raw[:200]!r}]"
        )
    return f"claim is malformed: {exc} [claim={raw[:200]!r}]"
