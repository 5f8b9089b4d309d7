"""Claim formats 1 and 2: what a reference in Event History holds.

A claim is carried as the single ``claim_data`` entry ``"c"``.

Version 1 is a msgspec struct encoded as a compact JSON array::

    claim_data = {"c": '[1,"default/order-42","<digest>",1048576,1]'}

with the elements: version 1; location (the dedup scope, see
:mod:`casstore._format.keys`); BLAKE3-256 digest of the serialized payload, unpadded
base64url (43 chars); size of the serialized payload in bytes; codec of the
stored object as the writer knew it (0 raw, 1 zstd; informational, readers
decode by the object header).

Version 2 is comma-separated text, so that no quote needs escaping inside the
reference's JSON, and drops the codec::

    claim_data = {"c": "2,default/order-42,<digest>,1048576,k2026"}

with the fields: version 2; location; digest (keyed BLAKE3-256 under the
key's digest key when encrypted, plain BLAKE3-256 otherwise); size; and, only
for an encrypted object, the id of the keyring key it is sealed with. No field
can contain a comma (locations escape it, digests are base64url, key ids are
``[A-Za-z0-9._-]``). A claim whose text starts with digits and a comma is
version 2 or later; anything else is read as version 1 JSON.

Schema evolution: version 1 follows msgspec rules (a field may be added only at
the end and with a default; a field's type never changes); a later version is
a new leading number. Claims come from Event History, so decoding treats them
as untrusted and reports every problem as a :class:`~casstore.errors.ClaimError`.
See docs/formats.md ("Claims").
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from casstore._format.digest import DIGEST_SIZE
from casstore._format.header import Codec, validate_key_id
from casstore._format.keys import object_key, validate_location
from casstore.errors import ClaimError, ConfigurationError

CLAIM_FORMAT_VERSION = 1
CLAIM_V2 = 2
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
    """The dedup scope the object lives in (see :mod:`casstore._format.keys`)."""
    digest: bytes
    """BLAKE3-256 digest of the serialized payload (32 bytes)."""
    size: int
    """Size of the serialized payload in bytes."""
    codec: Codec | None
    """Codec of the stored object as the writer knew it (informational; version 1
    only, None for version 2: readers decode by the object header)."""
    version: int
    """Claim format version the claim was written in."""
    key_id: str | None = None
    """The keyring key the object is encrypted with (version 2), or None: plain."""

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


def claim_data_for(
    location: str, digest: bytes, size: int, codec: Codec, key_id: str | None
) -> dict[str, str]:
    """Build the ``claim_data`` a writer records.

    Plain objects get version 1 claims, which every casstore release reads (so
    a fleet can be upgraded one worker at a time); encrypted objects get
    version 2, which names the key id and is shorter.
    """
    if key_id is None:
        return make_claim_data(location, digest, size, codec)
    return make_claim_data_v2(location, digest, size, key_id)


def make_claim_data_v2(
    location: str, digest: bytes, size: int, key_id: str | None
) -> dict[str, str]:
    """Build a version 2 ``claim_data``: ``2,location,digest,size[,key_id]``."""
    fields = [str(CLAIM_V2), location, encode_digest(digest), str(size)]
    if key_id is not None:
        fields.append(key_id)
    return {CLAIM_DATA_KEY: ",".join(fields)}


_TEXT_VERSION_RE = re.compile(r"([0-9]{1,9}),")
"""Version 2 on are comma-separated text starting with the version; version 1 is JSON."""
_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,15}")


def _parse_v2(raw: str, *, max_size: int) -> Claim:
    """Parse and validate a version 2 claim."""
    fields = raw.split(",")
    if len(fields) not in (4, 5):
        raise ClaimError(
            f"version 2 claim has {len(fields)} fields, expected 4 or 5 "
            f"(2,location,digest,size[,key_id]) [claim={raw[:200]!r}]"
        )
    location = validate_location(fields[1])
    digest = decode_digest(fields[2])
    if not _SIZE_RE.fullmatch(fields[3]):
        raise ClaimError(f"claim size is not a canonical decimal number [claim={raw[:200]!r}]")
    size = int(fields[3])
    if size > max_size:
        raise ClaimError(
            f"claim size {size} bytes is above max_payload_size {max_size} [claim={raw[:200]}]"
        )
    key_id: str | None = None
    if len(fields) == 5:
        try:
            key_id = validate_key_id(fields[4])
        except ConfigurationError:
            raise ClaimError(f"claim names a malformed key id [claim={raw[:200]!r}]") from None
    return Claim(
        location=location, digest=digest, size=size, codec=None, version=CLAIM_V2, key_id=key_id
    )


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
    text_version = _TEXT_VERSION_RE.match(raw)
    if text_version is not None:
        if text_version.group(1) != str(CLAIM_V2):
            raise ClaimError(
                f"claim has unsupported format version {text_version.group(1)} "
                f"(this casstore reads versions {CLAIM_FORMAT_VERSION} and {CLAIM_V2}) "
                f"[claim={raw[:200]!r}]"
            )
        return _parse_v2(raw, max_size=max_size)
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
            f"claim has unsupported format version {version} (this casstore reads JSON "
            f"version {CLAIM_FORMAT_VERSION} and text version {CLAIM_V2}) [claim={raw[:200]!r}]"
        )
    return f"claim is malformed: {exc} [claim={raw[:200]!r}]"
