"""Backend options from a URL's query and from keyword arguments, checked alike.

``open_backend(url, **options)`` takes each backend's options either way:
``?fsync=false`` or ``fsync=False``. Query values are strings and are parsed;
keyword values may be strings too, or already of the option's type. A keyword
option overrides the query option of the same name; ``None`` means "not given".
Every problem is a :class:`~casstore.errors.ConfigurationError` naming the
option and the URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

from casstore.errors import ConfigurationError

_T = TypeVar("_T", bound=str)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_MIB = 1024 * 1024
_SIZE_RE = re.compile(r"(\d+)\s*(|B|KiB|MiB|GiB)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": _MIB, "gib": 1024 * _MIB}

Options = Mapping[str, object]


def merge_options(
    url: str, query: str, keywords: Mapping[str, object], *, allowed: set[str]
) -> dict[str, object]:
    """Return the query's options overridden by ``keywords``, rejecting unknown names.

    Raises:
        ConfigurationError: For an option not in ``allowed``, naming it and the URL.
    """
    options: dict[str, object] = {}
    for name, values in parse_qs(query, keep_blank_values=True, strict_parsing=False).items():
        _check_known(url, name, allowed, "in backend URL")
        options[name] = values[-1]
    for name, value in keywords.items():
        _check_known(url, name, allowed, "for backend URL")
        if value is not None:
            options[name] = value
    return options


def _check_known(url: str, name: str, allowed: set[str], where: str) -> None:
    if name not in allowed:
        expected = ", ".join(sorted(allowed)) or "none"
        raise ConfigurationError(
            f"unknown option {name!r} {where} (expected: {expected}) [url={url}]"
        )


def option_flag(url: str, options: Options, name: str, *, default: bool) -> bool:
    """Read a boolean option: a bool, or true/false, yes/no, on/off, 1/0."""
    value = options.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE:
        return True
    if isinstance(value, str) and value.lower() in _FALSE:
        return False
    raise ConfigurationError(f"option {name} must be true or false, got {value!r} [url={url}]")


def option_text(url: str, options: Options, name: str) -> str | None:
    """Read a string option; an empty string is "not given"."""
    value = options.get(name)
    if value is None or isinstance(value, str):
        return value or None
    raise ConfigurationError(f"option {name} must be a string, got {value!r} [url={url}]")


def option_choice(url: str, options: Options, name: str, allowed: tuple[_T, ...]) -> _T | None:
    """Read a string option that must be one of ``allowed``."""
    value = option_text(url, options, name)
    for choice in allowed:
        if value == choice:
            return choice
    if value is not None:
        raise ConfigurationError(
            f"option {name} must be one of {', '.join(allowed)}, got {value!r} [url={url}]"
        )
    return None


def option_int(url: str, options: Options, name: str) -> int | None:
    """Read a whole-number option."""
    value = options.get(name)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise ConfigurationError(f"option {name} must be a number, got {value!r} [url={url}]")


def option_float(url: str, options: Options, name: str) -> float | None:
    """Read a number option (seconds, say)."""
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigurationError(f"option {name} must be a number, got {value!r} [url={url}]")


def option_size(url: str, options: Options, name: str, *, default: int) -> int:
    """Read a size option: bytes as an int, or a string like ``16777216`` or ``16MiB``."""
    value = options.get(name)
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ConfigurationError(
            f"option {name} must be a size in bytes, like 16777216 or 16MiB, "
            f"got {value!r} [url={url}]"
        )
    return int(match[1]) * _SIZE_UNITS[match[2].lower()]


def redacted(url: str) -> str:
    """``url`` with any password in it masked, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()
