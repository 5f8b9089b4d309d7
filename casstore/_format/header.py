"""The object header: what every stored object starts with, plain or encrypted.

Format 1 (plain)::

    offset  size  field
    0       3     magic  b"CAS"
    3       1     object format version (1)
    4       1     codec: 0 = raw, 1 = zstd
    5       ...   body (:mod:`casstore._format.compression`)

Format 2 (encrypted)::

    offset  size  field
    0       3     magic  b"CAS"
    3       1     object format version (2)
    4       1     codec of the sealed body: 0 = raw, 1 = zstd
    5       1     cipher: 1 = AES-256-GCM-SIV with BLAKE3-derived keys
    6       1     key id length n (1-32)
    7       n     key id (ASCII)
    7+n     ...   sealed body (:mod:`casstore._format.encrypted`)

The header makes every object self-describing: a reader decodes it whatever
settings its writer had. Key ids are stored here and in claims, so their
syntax is part of the format too. See docs/formats.md ("Object formats").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from casstore.errors import ConfigurationError, IntegrityError

MAGIC = b"CAS"
OBJECT_FORMAT_VERSION = 1
HEADER_SIZE = 5
"""Size of a format 1 header."""
ENCRYPTED_OBJECT_FORMAT_VERSION = 2
CIPHER_AES_256_GCM_SIV = 1
_ENCRYPTED_FIXED_HEADER_SIZE = 7

MAX_KEY_ID_LENGTH = 32
KEY_ID_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_KEY_ID_LENGTH - 1}}}")
"""A key id: short, plain ASCII, never containing a comma (claims are comma-separated)."""


class Codec(IntEnum):
    """How an object's body is encoded. Values are stored; never renumber."""

    RAW = 0
    ZSTD = 1


def validate_key_id(key_id: object) -> str:
    """Return ``key_id`` if it is a valid key id, else raise ``ConfigurationError``."""
    if not isinstance(key_id, str) or not KEY_ID_RE.fullmatch(key_id):
        raise ConfigurationError(
            f"key id must be 1-{MAX_KEY_ID_LENGTH} characters of [A-Za-z0-9._-] starting "
            f"with a letter or digit [key_id={key_id!r}]"
        )
    return key_id


def plain_header(codec: Codec) -> bytes:
    """Return the format 1 header for a body of ``codec``."""
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
