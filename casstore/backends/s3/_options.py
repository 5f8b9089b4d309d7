"""S3Backend's options: defaults, checks, the client configuration, URL parsing."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from importlib import import_module
from typing import Any, Literal, TypeVar, get_args
from urllib.parse import unquote, urlsplit

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import ProfileNotFound

from casstore.backends._prefix import check_prefix as check_prefix_of
from casstore.backends._s3url import ALL_NAMES, for_client
from casstore.backends._urlopts import (
    merge_options,
    option_choice,
    option_flag,
    option_float,
    option_int,
    option_size,
    option_text,
)
from casstore.errors import ConfigurationError

_T = TypeVar("_T")

RetryMode = Literal["standard", "adaptive"]
AddressingStyle = Literal["auto", "path", "virtual"]

_MIB = 1024 * 1024
MIN_PART_SIZE = 5 * _MIB
"""S3's smallest part size (every part but the last)."""
MAX_PARTS = 10_000
"""S3's largest number of parts in one multipart upload."""

DEFAULT_RETRY_MODE: RetryMode = "standard"
DEFAULT_MAX_ATTEMPTS = 1
"""botocore's own retries back off for seconds, blind to any deadline; the
driver retries instead, with jitter, within each payload's deadline."""
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_MAX_POOL_CONNECTIONS = 32
"""The driver's default ``max_concurrency``: one connection per request in flight."""
DEFAULT_MULTIPART_THRESHOLD = 16 * _MIB
DEFAULT_MULTIPART_PART_SIZE = 8 * _MIB
DEFAULT_MULTIPART_CONCURRENCY = 4

_BUCKET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")

URL_OPTIONS = {
    "endpoint_url",
    "region",
    "profile",
    "addressing_style",
    "retry_mode",
    "max_attempts",
    "connect_timeout",
    "read_timeout",
    "max_pool_connections",
    "multipart_threshold",
    "multipart_part_size",
    "multipart_concurrency",
    "conditional_writes",
}
"""Options ``s3://`` URLs take, in the query or as keywords of ``open_backend``."""


def url_arguments(url: str, keywords: Mapping[str, object]) -> tuple[str, str, dict[str, Any]]:
    """Parse ``s3://bucket[/prefix][?option=value&...]`` plus keyword options.

    Returns:
        The bucket, the prefix and the keyword arguments for ``S3Backend``.

    Raises:
        ConfigurationError: For a malformed URL, an unknown option or a bad
            value, naming it and the URL.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "s3" or not parts.netloc:
        raise ConfigurationError(f"S3 URLs look like s3://bucket/prefix [url={url}]")
    if "@" in parts.netloc or ":" in parts.netloc:
        raise ConfigurationError(
            "S3 URLs take no credentials or port; credentials come from the AWS "
            f"credential chain and the server from ?endpoint_url= [url={url}]"
        )
    options = merge_options(url, parts.query, keywords, allowed=URL_OPTIONS | ALL_NAMES)
    options = for_client(url, options, "aioboto3")
    arguments = {
        "endpoint_url": option_text(url, options, "endpoint_url"),
        "region": option_text(url, options, "region"),
        "profile": option_text(url, options, "profile"),
        "addressing_style": option_choice(
            url, options, "addressing_style", get_args(AddressingStyle)
        ),
        "retry_mode": option_choice(url, options, "retry_mode", get_args(RetryMode)),
        "max_attempts": option_int(url, options, "max_attempts"),
        "connect_timeout": option_float(url, options, "connect_timeout"),
        "read_timeout": option_float(url, options, "read_timeout"),
        "max_pool_connections": option_int(url, options, "max_pool_connections"),
        "multipart_threshold": option_size(
            url, options, "multipart_threshold", default=DEFAULT_MULTIPART_THRESHOLD
        ),
        "multipart_part_size": option_size(
            url, options, "multipart_part_size", default=DEFAULT_MULTIPART_PART_SIZE
        ),
        "multipart_concurrency": or_default(
            option_int(url, options, "multipart_concurrency"), DEFAULT_MULTIPART_CONCURRENCY
        ),
        "conditional_writes": option_flag(url, options, "conditional_writes", default=True),
    }
    return unquote(parts.netloc), unquote(parts.path), arguments


def or_default(value: _T | None, default: _T) -> _T:
    """Return ``value``, or ``default`` if it is None."""
    return default if value is None else value


def check_bucket(bucket: object) -> str:
    """Return ``bucket`` if it is a valid bucket name or access point ARN."""
    if not isinstance(bucket, str) or not (
        bucket.startswith("arn:") or _BUCKET_RE.fullmatch(bucket)
    ):
        raise ConfigurationError(
            f"invalid S3 bucket name {bucket!r}: expected 3-255 letters, digits, '.', '-' or '_' "
            "(or an access point ARN)"
        )
    return bucket


def check_prefix(prefix: object) -> str:
    """Return ``prefix`` without leading and trailing slashes, if it is valid."""
    return check_prefix_of(prefix, what="S3 prefix", store="S3's ")


def check_multipart(threshold: int, part_size: int, concurrency: int) -> None:
    """Check the multipart options against S3's limits."""
    if threshold < 1:
        raise ConfigurationError(f"multipart_threshold must be at least 1 byte, got {threshold}")
    if part_size < MIN_PART_SIZE:
        raise ConfigurationError(
            f"multipart_part_size must be at least 5 MiB ({MIN_PART_SIZE} bytes), got {part_size}"
        )
    if concurrency < 1:
        raise ConfigurationError(f"multipart_concurrency must be at least 1, got {concurrency}")


def new_session(profile: str | None) -> aioboto3.Session:
    """Return a session for ``profile`` (None: the default chain)."""
    try:
        return aioboto3.Session(profile_name=profile)
    except ProfileNotFound as exc:
        raise ConfigurationError(f"AWS profile {profile!r} not found: {exc}") from exc


def client_config(
    *,
    retry_mode: RetryMode | None,
    max_attempts: int | None,
    connect_timeout: float | None,
    read_timeout: float | None,
    max_pool_connections: int | None,
    addressing_style: AddressingStyle | None,
) -> AioConfig:
    """Return the client configuration for these options (None: the default)."""
    retry_mode = retry_mode or DEFAULT_RETRY_MODE
    if retry_mode not in get_args(RetryMode):
        raise ConfigurationError(f"retry_mode must be 'standard' or 'adaptive', got {retry_mode!r}")
    numbers = {
        "max_attempts": or_default(max_attempts, DEFAULT_MAX_ATTEMPTS),
        "connect_timeout": or_default(connect_timeout, DEFAULT_CONNECT_TIMEOUT),
        "read_timeout": or_default(read_timeout, DEFAULT_READ_TIMEOUT),
        "max_pool_connections": or_default(max_pool_connections, DEFAULT_MAX_POOL_CONNECTIONS),
    }
    for name, value in numbers.items():
        if value <= 0:
            raise ConfigurationError(f"{name} must be greater than zero, got {value}")
    if addressing_style not in (None, *get_args(AddressingStyle)):
        raise ConfigurationError(
            f"addressing_style must be 'auto', 'path' or 'virtual', got {addressing_style!r}"
        )
    return AioConfig(
        retries={"mode": retry_mode, "total_max_attempts": int(numbers["max_attempts"])},
        connect_timeout=numbers["connect_timeout"],
        read_timeout=numbers["read_timeout"],
        max_pool_connections=int(numbers["max_pool_connections"]),
        s3={"addressing_style": addressing_style} if addressing_style else None,
        user_agent_extra="casstore",
    )


def no_expect_continue(params: dict[str, Any], **_: Any) -> None:
    """Drop botocore's ``Expect: 100-continue`` (a ``before-call.s3`` handler).

    A server that never answers "100 Continue" (``rclone serve s3`` racing to
    create a directory) stalls such a request until it is cut; without the
    header the body is sent at once, and the server answers or fails.
    """
    params.get("headers", {}).pop("Expect", None)


def preload(session: aioboto3.Session) -> None:
    """Load what building an S3 client reads from disk; run it off the event loop.

    The first client of a process parses botocore's JSON models and imports
    boto3's S3 helpers: half a second of CPU, seconds on a loaded machine,
    during which the event loop -- and every deadline on it -- would stall.
    Warmed here (in a worker thread), the build on the loop takes ~0.05 s.
    """
    import_module("aioboto3.s3.inject")
    loader: Any = session._session.get_component("data_loader")
    for type_name in ("service-2", "endpoint-rule-set-1", "paginators-1", "waiters-2"):
        with contextlib.suppress(Exception):
            loader.load_service_model("s3", type_name)
    for name in ("endpoints", "partitions", "_retry", "sdk-default-configuration"):
        with contextlib.suppress(Exception):
            loader.load_data(name)
