"""Counters a user can print to see what the driver did."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from casstore.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    ClaimError,
    IntegrityError,
    MissingKeyError,
    ObjectNotFoundError,
    PayloadTooLargeError,
)


@dataclass
class DriverStats:
    """What a :class:`~casstore.CasStorageDriver` has done since it was made.

    The counters only grow; take :meth:`snapshot` copies and subtract to
    measure one piece of work.
    """

    payloads_stored: int = 0
    """Payloads handed to ``store``."""
    logical_bytes_stored: int = 0
    """Serialized size of those payloads."""
    objects_written: int = 0
    """Objects this driver created in the backend."""
    logical_bytes_written: int = 0
    """Serialized size of the payloads in those objects (before compression)."""
    bytes_written: int = 0
    """Bytes of those objects (after compression, header included)."""
    dedup_cache_hits: int = 0
    """Stores answered by the in-process known-object cache: no request."""
    dedup_inflight_hits: int = 0
    """Stores that joined an identical store already in flight: no request."""
    dedup_backend_hits: int = 0
    """Stores whose object the backend already had (existence check, or a lost create race)."""
    objects_refreshed: int = 0
    """Old objects whose age was reset before being vouched for (``refresh_after``)."""
    payloads_retrieved: int = 0
    """Payloads returned by ``retrieve``."""
    retrieval_cache_hits: int = 0
    """Retrievals served from verified bytes in memory: no request."""
    retrieval_inflight_hits: int = 0
    """Retrievals that joined an identical read already in flight: no request."""
    objects_read: int = 0
    """Objects read from the backend (retrieval cache misses)."""
    bytes_read: int = 0
    """Bytes of those objects."""
    backend_requests: Counter[str] = field(default_factory=Counter)
    """Backend calls by kind: ``stat``, ``put``, ``get``, ``touch``."""
    errors: Counter[str] = field(default_factory=Counter)
    """Payloads whose store or retrieve failed, by kind (see :func:`error_kind`)."""

    @property
    def dedup_hits(self) -> int:
        """Stores that wrote nothing because the content was already stored."""
        return self.dedup_cache_hits + self.dedup_inflight_hits + self.dedup_backend_hits

    def snapshot(self) -> DriverStats:
        """Return an independent copy of the current counters."""
        copy = dataclasses.replace(self)
        copy.backend_requests = Counter(self.backend_requests)
        copy.errors = Counter(self.errors)
        return copy

    def __sub__(self, other: DriverStats) -> DriverStats:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, Counter):
                values[f.name] = Counter(mine) - Counter(theirs)
            else:
                values[f.name] = mine - theirs
        return DriverStats(**values)

    def as_dict(self) -> dict[str, Any]:
        """Return the counters as plain JSON-friendly values."""
        data = dataclasses.asdict(self)
        data["backend_requests"] = dict(sorted(self.backend_requests.items()))
        data["errors"] = dict(sorted(self.errors.items()))
        data["dedup_hits"] = self.dedup_hits
        return data

    def __str__(self) -> str:
        requests = ", ".join(f"{k}={v}" for k, v in sorted(self.backend_requests.items())) or "none"
        return (
            f"stored {self.payloads_stored} payloads ({self.logical_bytes_stored} B): "
            f"{self.objects_written} objects written ({self.bytes_written} B), "
            f"{self.dedup_hits} dedup hits (cache {self.dedup_cache_hits}, "
            f"in-flight {self.dedup_inflight_hits}, backend {self.dedup_backend_hits}); "
            f"retrieved {self.payloads_retrieved} payloads: {self.objects_read} objects read "
            f"({self.bytes_read} B), {self.retrieval_cache_hits} cache hits, "
            f"{self.retrieval_inflight_hits} in-flight hits; backend requests: {requests}"
        )


_ERROR_KINDS: tuple[tuple[type[Exception], str], ...] = (
    (ObjectNotFoundError, "not_found"),
    (BackendPermissionError, "permission"),
    (BackendUnavailableError, "unavailable"),
    (BackendError, "backend"),
    (IntegrityError, "integrity"),
    (ClaimError, "claim"),
    (PayloadTooLargeError, "too_large"),
    (MissingKeyError, "missing_key"),
)


ERROR_KINDS = (*(kind for _, kind in _ERROR_KINDS), "other")
"""Every kind :func:`error_kind` returns."""


def error_kind(exc: BaseException) -> str:
    """The kind :attr:`DriverStats.errors` counts an error under.

    ``not_found``, ``permission``, ``unavailable``, ``backend`` (any other
    backend failure), ``integrity``, ``claim``, ``too_large``, ``missing_key``
    (an encrypted object whose key the keyring lacks), or ``other``.
    """
    for cls, kind in _ERROR_KINDS:
        if isinstance(exc, cls):
            return kind
    return "other"
