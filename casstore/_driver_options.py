"""CasStorageDriver's options: defined once here, checked before anything is built.

:class:`DriverOptions` is the one list of the driver's keyword options and
their types, and :data:`DEFAULTS` gives each its default. Everything else is
derived from them: ``CasStorageDriver.__init__`` takes
``**options: Unpack[DriverOptions]`` (its signature, as ``inspect`` and
``help`` show it, is built from the two by :func:`keyword_signature`), and
``CasStorePlugin`` and the codec server pass the same ``DriverOptions`` on.
What each option means is documented on ``CasStorageDriver``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Final, TypedDict

from casstore._deadline import DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_MIN_THROUGHPUT, DEFAULT_TIMEOUT
from casstore._docs import docs_url
from casstore._format.compression import max_object_size
from casstore._format.keys import Scope
from casstore._format.manifest import DEFAULT_REFRESH_AFTER
from casstore._keyring import KeyRing
from casstore.backends._base import Backend
from casstore.errors import ConfigurationError


class DriverOptions(TypedDict, total=False):
    """Keyword options of :class:`~casstore.CasStorageDriver` (see its docstring)."""

    name: str
    scope: Scope
    compression_level: int | None
    max_payload_size: int
    max_concurrency: int
    known_objects_cache_size: int
    retrieval_cache_bytes: int
    refresh_after: timedelta | None
    offload_threshold: int
    lifecycle_manifest: bool
    timeout: float
    attempt_timeout: float
    min_throughput: float
    keyring: KeyRing | None
    require_encryption: bool
    chunking: bool
    chunking_threshold: int


DEFAULT_CHUNKING_THRESHOLD = 32 * 1024
"""Payloads at least this large are chunked: below it a payload is a chunk or two,
and a manifest would cost more than chunk dedup saves."""

DEFAULTS: Final[DriverOptions] = {
    "name": "casstore",
    "scope": "workflow",
    "compression_level": 3,
    "max_payload_size": 50 * 1024 * 1024,
    "max_concurrency": 32,
    "known_objects_cache_size": 65_536,
    "retrieval_cache_bytes": 128 * 1024 * 1024,
    "refresh_after": DEFAULT_REFRESH_AFTER,
    "offload_threshold": 64 * 1024,
    "lifecycle_manifest": False,
    "timeout": DEFAULT_TIMEOUT,
    "attempt_timeout": DEFAULT_ATTEMPT_TIMEOUT,
    "min_throughput": DEFAULT_MIN_THROUGHPUT,
    "keyring": None,
    "require_encryption": False,
    "chunking": True,
    "chunking_threshold": DEFAULT_CHUNKING_THRESHOLD,
}
if DEFAULTS.keys() != DriverOptions.__annotations__.keys():  # pragma: no cover - caught at import
    raise AssertionError("every driver option needs exactly one default")


def resolve_driver_options(backend: object, options: Mapping[str, object]) -> DriverOptions:
    """Return ``options`` over :data:`DEFAULTS`, every one checked.

    Raises:
        ConfigurationError: Naming the first option that is unknown or out of range.
    """
    unknown = sorted(set(options) - DEFAULTS.keys())
    if unknown:
        raise ConfigurationError(
            f"unknown driver option {unknown[0]!r} (expected: {', '.join(DEFAULTS)})"
        )
    resolved: DriverOptions = {**DEFAULTS, **options}  # type: ignore[typeddict-item]
    _check(backend, resolved)
    return resolved


def _check(backend: object, o: DriverOptions) -> None:
    if not isinstance(backend, Backend):
        raise ConfigurationError(
            f"backend must be a casstore.backends.Backend, got {type(backend).__name__}"
        )
    if not o["name"]:
        raise ConfigurationError("driver name must not be empty")
    if o["scope"] not in ("workflow", "namespace"):
        raise ConfigurationError(f"scope must be 'workflow' or 'namespace', got {o['scope']!r}")
    level = o["compression_level"]
    if level is not None and not -7 <= level <= 22:
        raise ConfigurationError(
            f"compression_level must be between -7 and 22 or None, got {level}"
        )
    for option, value in (
        ("max_payload_size", o["max_payload_size"]),
        ("max_concurrency", o["max_concurrency"]),
    ):
        if value <= 0:
            raise ConfigurationError(f"{option} must be greater than zero, got {value}")
    for option, value in (
        ("known_objects_cache_size", o["known_objects_cache_size"]),
        ("retrieval_cache_bytes", o["retrieval_cache_bytes"]),
        ("offload_threshold", o["offload_threshold"]),
        ("chunking_threshold", o["chunking_threshold"]),
    ):
        if value < 0:
            raise ConfigurationError(f"{option} must not be negative, got {value}")
    limit = backend.max_object_size
    largest = max_object_size(o["max_payload_size"])
    if limit is not None and largest > limit:
        raise ConfigurationError(
            f"max_payload_size {o['max_payload_size']} is too large for this backend: its "
            f"largest object would be {largest} bytes, above the store's {limit}-byte limit "
            f"[backend={backend!r}]"
        )
    refresh_after = o["refresh_after"]
    if refresh_after is not None and refresh_after <= timedelta(0):
        raise ConfigurationError(f"refresh_after must be positive, got {refresh_after}")
    if o["require_encryption"] and o["keyring"] is None:
        raise ConfigurationError(
            "require_encryption=True needs a keyring: pass keyring= "
            f"(see {docs_url('encryption.md')})"
        )


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


def keyword_signature(function: Callable[..., Any]) -> inspect.Signature:
    """``function``'s signature with ``**options`` spelled out as the keyword-only options."""
    signature = inspect.signature(function)
    kept = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    hints = DriverOptions.__annotations__
    options = [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=value, annotation=_spelled(hints[name])
        )
        for name, value in DEFAULTS.items()
    ]
    return signature.replace(parameters=[*kept, *options])


def _spelled(hint: object) -> object:
    # A TypedDict keeps postponed annotations as ForwardRefs; show them as written.
    return getattr(hint, "__forward_arg__", hint)
