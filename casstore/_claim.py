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
    raw = _claim_text(claim_data)
    try:
        claim = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise ClaimError(_explain(raw, exc)) from exc
    except RecursionError as exc:
        raise ClaimError(f"claim nests too deeply to be a claim [claim={raw[:200]!r}]") from exc
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


def _claim_text(claim_data: object) -> str:
    """Return the claim's text out of untrusted ``claim_data``, whatever its types.

    Anything but a mapping holding exactly one ``str`` entry ``"c"`` of valid
    Unicode is a :class:`ClaimError`, including mappings whose methods raise.
    """
    if not isinstance(claim_data, Mapping):
        raise ClaimError(f"claim data must be a mapping, got {type(claim_data).__name__}")
    try:
        entries = {key: claim_data[key] for key in claim_data}
    except Exception as exc:
        # A hostile or broken Mapping implementation: nothing it says can be trusted.
        raise ClaimError(
            f"claim data cannot be read as a mapping ({type(claim_data).__name__}): "
            f"{type(exc).__name__}"
        ) from exc
    names = sorted(k if type(k) is str else f"<{type(k).__name__}>" for k in entries)
    if set(names) - {CLAIM_DATA_KEY}:
        # Versions live inside "c"; anything else (a bucket, a key) is not ours to honour.
        raise ClaimError(
            f"claim data has unexpected entries; a casstore claim holds only {CLAIM_DATA_KEY!r} "
            f"[keys={[_printable(n) for n in names][:20]}]"
        )
    raw = entries.get(CLAIM_DATA_KEY)
    if not isinstance(raw, str):
        raise ClaimError(
            f"claim data has no string entry {CLAIM_DATA_KEY!r}; is this a casstore claim? "
            f"[keys={names}, type={type(raw).__name__}]"
        )
    raw = str.__str__(raw)  # an exact str, whatever a subclass overrides
    if len(raw) > MAX_CLAIM_LENGTH:
        raise ClaimError(f"claim is {len(raw)} characters, above the {MAX_CLAIM_LENGTH} limit")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ClaimError(
            f"claim is not valid Unicode text ({exc.reason} at {exc.start}) "
            f"[claim={_printable(raw[:200])}]"
        ) from exc
    return raw


def _printable(text: str) -> str:
    """Render untrusted text safely for a message (lone surrogates escaped)."""
    return repr(text.encode("utf-8", "backslashreplace").decode("utf-8"))


def _explain(raw: str, exc: msgspec.DecodeError) -> str:
    """Turn a msgspec decode error into a message that says what was wrong."""
    try:
        generic: Any = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return f"claim is not valid JSON: {exc} [claim={raw[:200]!r}]"
    version = generic[0] if isinstance(generic, list) and generic else None
    if isinstance(version, int) and version != CLAIM_FORMAT_VERSION:
        return (
            f"claim has unsupported format version {version} "
            f"(this casstore reads version {CLAIM_FORMAT_VERSION}) [claim={raw[:200]!r}]"
        )
    return f"claim is malformed: {exc} [claim={raw[:200]!r}]"
