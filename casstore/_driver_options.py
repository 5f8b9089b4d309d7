"""Checks of CasStorageDriver's options, made before anything is built."""

from __future__ import annotations

from datetime import timedelta

from casstore._codec import max_object_size
from casstore.backends._base import Backend
from casstore.errors import ConfigurationError


def check_driver_options(
    *,
    backend: object,
    name: str,
    scope: str,
    compression_level: int | None,
    max_payload_size: int,
    max_concurrency: int,
    known_objects_cache_size: int,
    retrieval_cache_bytes: int,
    offload_threshold: int,
    refresh_after: timedelta | None,
) -> None:
    """Raise a ConfigurationError naming the first option that is out of range."""
    if not isinstance(backend, Backend):
        raise ConfigurationError(
            f"backend must be a casstore.backends.Backend, got {type(backend).__name__}"
        )
    if not name:
        raise ConfigurationError("driver name must not be empty")
    if scope not in ("workflow", "namespace"):
        raise ConfigurationError(f"scope must be 'workflow' or 'namespace', got {scope!r}")
    if compression_level is not None and not -7 <= compression_level <= 22:
        raise ConfigurationError(
            f"compression_level must be between -7 and 22 or None, got {compression_level}"
        )
    for option, value in (
        ("max_payload_size", max_payload_size),
        ("max_concurrency", max_concurrency),
    ):
        if value <= 0:
            raise ConfigurationError(f"{option} must be greater than zero, got {value}")
    for option, value in (
        ("known_objects_cache_size", known_objects_cache_size),
        ("retrieval_cache_bytes", retrieval_cache_bytes),
        ("offload_threshold", offload_threshold),
    ):
        if value < 0:
            raise ConfigurationError(f"{option} must not be negative, got {value}")
    limit = backend.max_object_size
    if limit is not None and max_object_size(max_payload_size) > limit:
        raise ConfigurationError(
            f"max_payload_size {max_payload_size} is too large for this backend: its largest "
            f"object would be {max_object_size(max_payload_size)} bytes, above the store's "
            f"{limit}-byte limit [backend={backend!r}]"
        )
    if refresh_after is not None and refresh_after <= timedelta(0):
        raise ConfigurationError(f"refresh_after must be positive, got {refresh_after}")


def capped_refresh_after(backend: Backend, refresh_after: timedelta | None) -> timedelta | None:
    """``refresh_after``, at most half the store's own expiry when it has one.

    A store that deletes objects a ttl after their last write or refresh
    (Redis with ``ttl``) must see them refreshed well before that, or the
    driver could vouch for an object about to expire; half the ttl leaves
    every claim at least half the ttl to live, as the store's lifecycle
    manifest tightens the value too.
    """
    expiry = backend.expires_after
    if expiry is None:
        return refresh_after
    if refresh_after is None or refresh_after > expiry / 2:
        return expiry / 2
    return refresh_after
