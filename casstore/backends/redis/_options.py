"""RedisBackend's options: defaults, checks, URL parsing (credentials kept out of messages)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from casstore.backends._prefix import check_prefix as check_prefix_of
from casstore.backends._urlopts import (
    merge_options,
    option_flag,
    option_float,
    option_int,
    option_text,
    redacted,
)
from casstore.errors import ConfigurationError

MAX_STRING_SIZE = 512 * 1024 * 1024
"""Redis's largest string value (``proto-max-bulk-len``'s default): the largest object."""
DEFAULT_PREFIX = "casstore"
DEFAULT_MAX_CONNECTIONS = 32
"""The driver's default ``max_concurrency``: one connection per request in flight."""
DEFAULT_SOCKET_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_PORT = 6379

URL_OPTIONS = {
    "prefix",
    "ttl",
    "allow_eviction",
    "socket_timeout",
    "connect_timeout",
    "max_connections",
    "ssl_ca_certs",
}
"""Options ``redis://`` URLs take, in the query or as keywords of ``open_backend``."""


def url_arguments(url: str, keywords: Mapping[str, object]) -> dict[str, Any]:
    """Parse ``redis[s]://[user:password@]host[:port][/db][?option=value&...]``.

    Returns:
        The keyword arguments for ``RedisBackend``.

    Raises:
        ConfigurationError: For a malformed URL, an unknown option or a bad
            value, naming it and the URL (its password masked).
    """
    shown = redacted(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigurationError(
            f"Redis URLs look like redis://host:6379/0?prefix=casstore (rediss:// for TLS) "
            f"[url={shown}]"
        )
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ConfigurationError(f"invalid port in Redis URL [url={shown}]") from None
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit():
        raise ConfigurationError(
            f"the path of a Redis URL is the database number, got {db_text!r} [url={shown}]"
        )
    options = merge_options(shown, parts.query, keywords, allowed=URL_OPTIONS)
    ttl = option_float(shown, options, "ttl")
    return {
        "host": parts.hostname,
        "port": port,
        "db": int(db_text),
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password is not None else None,
        "tls": scheme == "rediss",
        "prefix": option_text(shown, options, "prefix") or DEFAULT_PREFIX,
        "ttl": None if ttl is None else timedelta(seconds=ttl),
        "allow_eviction": option_flag(shown, options, "allow_eviction", default=False),
        "socket_timeout": option_float(shown, options, "socket_timeout"),
        "connect_timeout": option_float(shown, options, "connect_timeout"),
        "max_connections": option_int(shown, options, "max_connections"),
        "ssl_ca_certs": option_text(shown, options, "ssl_ca_certs"),
    }


def check_prefix(prefix: object) -> str:
    """Return ``prefix`` without slashes at its ends; Redis needs one (it shares a database)."""
    checked = check_prefix_of(prefix, what="Redis key prefix", store="the ")
    if not checked:
        raise ConfigurationError(
            "the Redis key prefix must not be empty: a database is shared, and listing "
            "needs a prefix of its own (default 'casstore')"
        )
    return checked


def check_ttl(ttl: object) -> int:
    """Return ``ttl`` in milliseconds (0: objects never expire)."""
    if ttl is None:
        return 0
    if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
        raise ConfigurationError(f"ttl must be a positive timedelta or None, got {ttl!r}")
    return max(1, round(ttl.total_seconds() * 1000))


def check_positive(name: str, value: float | None, default: float) -> float:
    """Return ``value`` (or ``default`` if None) if it is greater than zero."""
    chosen = default if value is None else value
    if chosen <= 0:
        raise ConfigurationError(f"{name} must be greater than zero, got {chosen}")
    return chosen
