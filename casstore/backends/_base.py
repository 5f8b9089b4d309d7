"""The one interface every storage backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Self


@dataclass(frozen=True)
class ObjectStat:
    """What an existence check learns about a stored object."""

    size: int
    """Stored size in bytes (the object, header included)."""
    modified: datetime
    """When the object was last written or refreshed (timezone-aware, UTC)."""


class Backend(ABC):
    """An object store addressed by string keys.

    Keys are made of ``/``-separated segments of ``[A-Za-z0-9._%-]`` (see
    :func:`casstore._keys.check_key`); every backend rejects any other key with
    ``ValueError`` before touching storage. Objects are immutable once written:
    the driver only ever writes the same bytes under the same key.

    Errors are raised as :mod:`casstore.errors` types: a missing object is an
    :class:`~casstore.errors.ObjectNotFoundError`, anything else a
    :class:`~casstore.errors.BackendError` subclass naming the key.

    Backends are async context managers; leaving the context calls
    :meth:`aclose`.
    """

    #: True if :meth:`put` reports a lost create race reliably (returns False
    #: when another writer created the key first). Backends whose servers ignore
    #: conditional writes set this False; content-addressed writes of identical
    #: bytes are harmless either way.
    exact_create: bool = True

    @abstractmethod
    async def stat(self, key: str) -> ObjectStat | None:
        """Return the object's size and age, or ``None`` if there is none."""

    @abstractmethod
    async def put(self, key: str, data: bytes) -> bool:
        """Create the object if it does not exist, atomically.

        No reader ever sees a partial object.

        Returns:
            True if this call created the object; False if it already existed.
        """

    @abstractmethod
    async def get(self, key: str) -> bytes:
        """Return the object's bytes.

        Raises:
            ObjectNotFoundError: If there is no object at ``key``.
        """

    @abstractmethod
    async def touch(self, key: str) -> None:
        """Reset the object's age (its modification time) to now.

        Used to keep deduplicated objects alive under age-based expiry.

        Raises:
            ObjectNotFoundError: If there is no object at ``key``.
        """

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Delete the object; deleting a missing object is not an error."""

    @abstractmethod
    def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        """Yield ``(key, size)`` for every object whose key starts with ``prefix``."""

    def describe(self) -> Mapping[str, str]:
        """Return facts for error messages and summaries (e.g. root, bucket)."""
        return {}

    async def aclose(self) -> None:  # noqa: B027 - most backends hold nothing to close
        """Release resources (clients, connections) this backend owns."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        facts = ", ".join(f"{k}={v}" for k, v in self.describe().items())
        return f"{type(self).__name__}({facts})"


def describe_backend(backend: Backend) -> str:
    """Return ``backend``'s repr for error attributes, never failing."""
    try:
        return repr(backend)
    except Exception:
        return type(backend).__name__


def describe_suffix(backend: Backend) -> str:
    """Format ``backend.describe()`` as ``", k=v, ..."`` for error brackets.

    Diagnostic output must never mask the real error, so a failing
    ``describe`` yields an empty string.
    """
    try:
        facts = backend.describe()
    except Exception:
        return ""
    return "".join(f", {k}={v}" for k, v in facts.items())
