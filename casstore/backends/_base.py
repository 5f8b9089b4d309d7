"""The one interface every storage backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self

from casstore.errors import ObjectNotFoundError


@dataclass(frozen=True)
class ObjectStat:
    """What an existence check learns about a stored object."""

    size: int
    """Stored size in bytes (the object, header included)."""
    modified: datetime
    """When the object was last written or refreshed (timezone-aware, UTC)."""


class Backend(ABC):
    """An object store addressed by string keys.

    docs/backends.md ("Writing a backend") is the full contract; in short:

    * **Who calls what.** The driver uses :meth:`stat`, :meth:`put`,
      :meth:`get` and :meth:`touch` (and :meth:`get_range`, which has a
      default built on :meth:`get`); only tooling (garbage collection,
      inspection) uses :meth:`delete` and :meth:`scan`. All six are required.
      Garbage collection also uses :meth:`scan_stat`, :meth:`delete_many`,
      :meth:`move` and :meth:`move_many`, which have defaults built on the six.
    * **Keys.** ``/``-separated segments of ``[A-Za-z0-9._%-]``, none empty or
      starting with a dot, at most 1,024 bytes. Every method passes each key
      through :func:`casstore.backends.check_key` before any I/O, which raises
      :class:`~casstore.errors.InvalidKeyError` for anything else, so no key can reach outside the
      backend's root.
    * **Atomicity.** Objects are immutable: :meth:`put` creates an object only
      if the key is absent, and no reader ever sees a partial object.
      Concurrent puts of one key (always the same bytes) all succeed.
    * **Errors.** Raise :mod:`casstore.errors` types, ``from`` the native
      error: :class:`~casstore.errors.ObjectNotFoundError` for a missing
      object (:meth:`get`, :meth:`touch`),
      :class:`~casstore.errors.BackendPermissionError` for refused
      credentials, :class:`~casstore.errors.BackendUnavailableError` when the
      store or its container cannot be reached, and
      :class:`~casstore.errors.BackendError` for anything else; messages end
      with the key and what :meth:`describe` reports, in ``[brackets]``.
    * **Lifecycle.** Backends are async context managers; leaving the context
      calls :meth:`aclose`.
    """

    conditional_writes: bool = True
    """True if :meth:`put` reliably reports a lost create race by returning
    False (another writer created the key first). The driver then lets a small
    write double as the existence check. Set it False for stores that cannot
    tell (e.g. S3-compatible servers that ignore ``If-None-Match``); writing
    identical bytes to a content-addressed key twice is harmless either way."""

    max_object_size: int | None = None
    """The largest object the store can hold, in bytes (None: no limit worth checking).

    ``CasStorageDriver`` refuses a ``max_payload_size`` whose largest object
    would not fit, when it is built rather than on the first large payload
    (Redis strings, for one, hold at most 512 MiB)."""

    @property
    def expires_after(self) -> timedelta | None:
        """How long after a write or refresh the store deletes an object by itself.

        None: it never does, or the backend cannot know (an S3 lifecycle rule is
        configured on the bucket, out of its sight). A backend that expires
        objects itself (Redis with a ``ttl``) says so, and ``CasStorageDriver``
        caps its ``refresh_after`` at half of it, so that it never vouches for
        an object about to expire.
        """
        return None

    @abstractmethod
    async def stat(self, key: str) -> ObjectStat | None:
        """Return the object's size and modification time, or ``None`` if there is none.

        Used by the driver as the existence check before writing (and to read
        an object's age when ``refresh_after`` is set).
        """

    @abstractmethod
    async def put(self, key: str, data: bytes) -> bool:
        """Create the object if it does not exist, atomically.

        No reader ever sees a partial object, and an existing object is never
        replaced by different bytes. Concurrent puts of one key all succeed.

        Returns:
            True if this call created the object; False if it already existed
            (with :attr:`conditional_writes` False, a store that cannot tell
            may return True for a key that a concurrent writer created).
        """

    @abstractmethod
    async def get(self, key: str, *, max_size: int | None = None) -> bytes:
        """Return the object's bytes, never reading more than ``max_size`` of them.

        A backend learns the object's size before reading it (``fstat``,
        ``Content-Length``, a ranged request) and refuses a larger object
        without allocating it; a stream that runs past ``max_size`` is cut
        there. The driver passes the largest object a claim allows, so a
        hostile or corrupted object cannot make a reader allocate more.

        Raises:
            ObjectNotFoundError: If there is no object at ``key``.
            IntegrityError: If the object is larger than ``max_size``, or is
                not a plain object (a link or special file on a file system).
        """

    @abstractmethod
    async def touch(self, key: str) -> None:
        """Reset the object's modification time (its age) to now, keeping its bytes.

        Used by the driver to keep deduplicated objects alive under age-based
        expiry (``refresh_after``).

        Raises:
            ObjectNotFoundError: If there is no object at ``key``.
        """

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Delete the object; deleting a missing object is not an error.

        Never called by the driver; only tooling (garbage collection) deletes.
        """

    @abstractmethod
    def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        """Yield ``(key, size)`` for every object whose key starts with ``prefix``.

        Never called by the driver; used by tooling. Objects in the store
        whose names are not valid keys (put there by something else) are
        skipped, never yielded.
        """

    # Optional capability, used by the driver to read chunks of earlier objects.

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes of the object starting at ``offset``.

        Fewer bytes come back when the object ends first (none when it ends
        before ``offset``); the caller decides whether that is an error. The
        default reads the whole object and slices it; backends override it
        with a ranged request (a ``Range`` header, ``pread``), so that reading
        a few chunks of a large object costs only those bytes.

        Raises:
            ObjectNotFoundError: If there is no object at ``key``.
            ValueError: If ``offset`` or ``length`` is negative.
        """
        check_range(offset, length)
        data = await self.get(key)
        return data[offset : offset + length]

    # Optional capabilities, used by garbage collection (casstore gc). The
    # defaults are built on the six methods above; backends override them
    # where the store does better (listings with ages, batched deletes,
    # atomic renames).

    async def scan_stat(self, prefix: str = "") -> AsyncIterator[tuple[str, ObjectStat]]:
        """Yield ``(key, stat)`` for every object whose key starts with ``prefix``.

        The default stats each key :meth:`scan` yields (skipping objects deleted
        in between); backends whose listings carry modification times override it.
        """
        async for key, _ in self.scan(prefix):
            found = await self.stat(key)
            if found is not None:
                yield key, found

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Delete objects (missing ones are not an error); default: one :meth:`delete` each."""
        for key in keys:
            await self.delete(key)

    async def move(self, src: str, dst: str) -> bool:
        """Move an object to another key and set its modification time to now.

        ``dst`` may exist only with the same bytes (content-addressed keys); it is
        replaced. The copy exists before the source is removed, so a failure
        midway leaves the object at ``src``, ``dst`` or both, never at neither.
        The default reads, writes (or refreshes ``dst``), then deletes.

        Returns:
            False (and nothing changed) if ``src`` does not exist.
        """
        try:
            data = await self.get(src)
        except ObjectNotFoundError:
            return False
        if not await self.put(dst, data):
            await self.touch(dst)
        await self.delete(src)
        return True

    async def move_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """:meth:`move` each ``(src, dst)``; S3 copies them all, then deletes in batches."""
        return [await self.move(src, dst) for src, dst in pairs]

    def describe(self) -> Mapping[str, str]:
        """Return facts for error messages and summaries (e.g. backend, root, bucket).

        Cheap, no I/O, never raises; every key and value is a string.
        """
        return {}

    async def open(self) -> None:  # noqa: B027 - most backends have nothing to prepare
        """Get ready to serve requests (e.g. build a client); idempotent.

        Requests work without it; it moves the one-off set-up cost out of the
        first request's deadline. ``async with backend:`` and a worker running
        :class:`~casstore.plugin.CasStorePlugin` call it before any request.
        """

    async def aclose(self) -> None:  # noqa: B027 - most backends hold nothing to close
        """Release resources (clients, connections) this backend owns."""

    async def __aenter__(self) -> Self:
        await self.open()
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


def check_range(offset: int, length: int) -> None:
    """Refuse a negative range before any I/O."""
    if offset < 0 or length < 0:
        raise ValueError(
            f"invalid range: offset {offset}, length {length} (neither may be negative)"
        )


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
