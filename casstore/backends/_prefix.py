"""Key prefixes: the one check every object-store backend makes of its prefix."""

from __future__ import annotations

from casstore.backends._keys import check_key
from casstore.errors import ConfigurationError, InvalidKeyError

MAX_PREFIX_LENGTH = 256
"""Longest prefix accepted, so that prefix + key stays under object stores' 1,024 bytes."""


def check_prefix(prefix: object, *, what: str = "prefix", store: str = "") -> str:
    """Return ``prefix`` without leading and trailing slashes, if it is valid.

    Args:
        prefix: The prefix as given.
        what: How messages name it (e.g. ``"S3 prefix"``).
        store: Whose key limit messages cite (e.g. ``"S3's "``), or nothing.

    Raises:
        ConfigurationError: Naming the prefix and what is wrong with it.
    """
    if not isinstance(prefix, str):
        raise ConfigurationError(f"{what} must be a string, got {type(prefix).__name__}")
    prefix = prefix.strip("/")
    if not prefix:
        return ""
    try:
        check_key(prefix)
    except InvalidKeyError:
        raise ConfigurationError(
            f"invalid {what} {prefix!r}: use '/'-separated segments of letters, digits, "
            "'.', '_', '%' and '-' that do not start with a dot"
        ) from None
    if len(prefix) > MAX_PREFIX_LENGTH:
        raise ConfigurationError(
            f"{what} is {len(prefix)} characters, above the {MAX_PREFIX_LENGTH} limit "
            f"(keys must stay under {store}1,024 bytes)"
        )
    return prefix
