"""What every backend accepts as a key: the check each one makes before any I/O."""

from __future__ import annotations

import re

from casstore.errors import InvalidKeyError

MAX_KEY_LENGTH = 1024
"""S3's limit on object key length, in UTF-8 bytes; every backend enforces it."""

_KEY_SEGMENT_RE = re.compile(r"[A-Za-z0-9_%-][A-Za-z0-9._%-]*")


def check_key(key: str) -> str:
    """Return ``key`` if it is safe for every backend.

    Backends call this on every key they are given, so that no key, whatever
    produced it, can reach outside a backend's root: segments are non-empty,
    made of ``[A-Za-z0-9._%-]``, never start with a dot, and the whole key is at
    most :data:`MAX_KEY_LENGTH` characters (bytes: segments are ASCII).

    Raises:
        InvalidKeyError: Naming the key (and the bad segment). It is a
            ``ValueError`` too.
    """
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(
            f"invalid object key (empty, not a string, or too long) [key={key!r}]",
            key=key if isinstance(key, str) else None,
        )
    for segment in key.split("/"):
        if not _KEY_SEGMENT_RE.fullmatch(segment):
            raise InvalidKeyError(f"invalid object key segment {segment!r} [key={key!r}]", key=key)
    return key


def is_valid_key(key: str) -> bool:
    """Whether :func:`check_key` accepts ``key`` (a listing may hold names it would not)."""
    try:
        check_key(key)
    except InvalidKeyError:
        return False
    return True
