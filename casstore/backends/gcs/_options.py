"""GCSBackend's options: defaults, checks, URL parsing."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from casstore.backends._prefix import check_prefix as check_prefix_of
from casstore.backends._urlopts import (
    merge_options,
    option_flag,
    option_float,
    option_int,
    option_text,
)
from casstore.errors import ConfigurationError

DEFAULT_TIMEOUT = 60.0
"""Seconds one request may take in total (a 50 MiB upload included)."""
DEFAULT_MAX_CONNECTIONS = 32
"""The driver's default ``max_concurrency``: one connection per request in flight."""
DEFAULT_CONCURRENCY = 32
"""Deletes and moves of one batch sent at once (GCS has no multi-object delete)."""

# Bucket names: 3-63 characters (up to 222 with dots), lower-case letters,
# digits, '-', '_' and '.', starting and ending with a letter or digit.
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")

URL_OPTIONS = {
    "endpoint",
    "emulator",
    "service_file",
    "timeout",
    "max_connections",
    "conditional_writes",
}
"""Options ``gs://`` URLs take, in the query or as keywords of ``open_backend``."""


def url_arguments(url: str, keywords: Mapping[str, object]) -> tuple[str, str, dict[str, Any]]:
    """Parse ``gs://bucket[/prefix][?option=value&...]`` plus keyword options.

    Returns:
        The bucket, the prefix and the keyword arguments for ``GCSBackend``.

    Raises:
        ConfigurationError: For a malformed URL, an unknown option or a bad
            value, naming it and the URL.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "gs" or not parts.netloc:
        raise ConfigurationError(f"GCS URLs look like gs://bucket/prefix [url={url}]")
    if "@" in parts.netloc or ":" in parts.netloc:
        raise ConfigurationError(
            "GCS URLs take no credentials or port; credentials come from Application "
            f"Default Credentials or ?service_file=, the server from ?endpoint= [url={url}]"
        )
    options = merge_options(url, parts.query, keywords, allowed=URL_OPTIONS)
    emulator = options.get("emulator")
    arguments = {
        "endpoint": option_text(url, options, "endpoint"),
        "emulator": None
        if emulator is None
        else option_flag(url, options, "emulator", default=False),
        "service_file": option_text(url, options, "service_file"),
        "timeout": option_float(url, options, "timeout"),
        "max_connections": option_int(url, options, "max_connections"),
        "conditional_writes": option_flag(url, options, "conditional_writes", default=True),
    }
    return unquote(parts.netloc), unquote(parts.path), arguments


def check_bucket(bucket: object) -> str:
    """Return ``bucket`` if it is a valid GCS bucket name."""
    if not isinstance(bucket, str) or not _BUCKET_RE.fullmatch(bucket):
        raise ConfigurationError(
            f"invalid GCS bucket name {bucket!r}: expected 3-222 lower-case letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )
    return bucket


def check_prefix(prefix: object) -> str:
    """Return ``prefix`` without leading and trailing slashes, if it is valid."""
    return check_prefix_of(prefix, what="GCS prefix", store="GCS's ")


def check_positive(name: str, value: float | None, default: float) -> float:
    """Return ``value`` (or ``default`` if None) if it is greater than zero."""
    chosen = default if value is None else value
    if chosen <= 0:
        raise ConfigurationError(f"{name} must be greater than zero, got {chosen}")
    return chosen
