"""In-process memory: which objects exist, recent verified bytes, and in-flight work."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import traceback
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, NamedTuple, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class KnownObjects(Generic[V]):
    """A bounded LRU of object keys known to exist, each with an expiry.

    An entry vouches for its object only until its expiry (wall-clock seconds),
    so age-based expiry in the backend can never outlive what this cache
    believes.
    """

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[V, float]] = OrderedDict()

    def get(self, key: str) -> V | None:
        """Return the value stored for a live entry, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if time.time() >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def add(self, key: str, value: V, expires_at: float = float("inf")) -> None:
        """Remember that ``key`` exists until ``expires_at``."""
        if self._max_entries <= 0:
            return
        self._entries[key] = (value, expires_at)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def discard(self, key: str) -> None:
        """Forget ``key`` (e.g. after finding it missing)."""
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class ByteLRU(Generic[K]):
    """A least-recently-used cache of byte strings bounded by total size."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._size = 0
        self._entries: OrderedDict[K, bytes] = OrderedDict()

    @property
    def size(self) -> int:
        """Total bytes currently held."""
        return self._size

    def get(self, key: K) -> bytes | None:
        """Return the bytes for ``key`` and mark them recently used."""
        data = self._entries.get(key)
        if data is not None:
            self._entries.move_to_end(key)
        return data

    def put(self, key: K, data: bytes) -> None:
        """Store ``data``; evicts the least recently used entries to make room.

        Items larger than the whole budget are not cached.
        """
        if len(data) > self._max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= len(old)
        self._entries[key] = data
        self._size += len(data)
        while self._size > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._size -= len(evicted)

    def __len__(self) -> int:
        return len(self._entries)


class VerifiedIdentity(NamedTuple):
    """Everything a cold read checks before it trusts stored bytes for a claim.

    Two claims share a cache entry only if a cold read of either checks the
    same object the same way: the object key (location and digest, so a claim
    naming another namespace, workflow or the no-target location misses), and
    the key id, which also fixes the object format (``None``: a plain format 1
    object under a plain digest; an id: a format 2 object sealed with that key,
    under a keyed digest). The claimed size is checked on every hit.
    """

    key: str
    key_id: str | None


class VerifiedPayloads:
    """Verified serialized payloads by :class:`VerifiedIdentity`, bounded by total bytes.

    A hit answers exactly what a cold read of the same claim would: the entry
    was verified against this identity, and a claimed size other than the
    entry's is a miss (the cold read then reports the mismatch).
    """

    def __init__(self, max_bytes: int) -> None:
        self._lru: ByteLRU[VerifiedIdentity] = ByteLRU(max_bytes)

    @property
    def size(self) -> int:
        """Total bytes currently held."""
        return self._lru.size

    def get(self, identity: VerifiedIdentity, size: int) -> bytes | None:
        """Return the payload verified for ``identity`` if it is ``size`` bytes, else None."""
        data = self._lru.get(identity)
        if data is None or len(data) != size:
            return None
        return data

    def put(self, identity: VerifiedIdentity, data: bytes) -> None:
        """Remember ``data`` as verified for ``identity``."""
        self._lru.put(identity, data)

    def __len__(self) -> int:
        return len(self._lru)


class SingleFlight(Generic[K, V]):
    """Runs one operation per key at a time; concurrent callers share its result.

    The shared operation runs as its own task, shielded from any one caller's
    cancellation, so a caller that gives up never fails the others.
    """

    def __init__(self) -> None:
        self._inflight: dict[K, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    async def run(self, key: K, operation: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """Run ``operation`` for ``key``, or join the run already in flight.

        Returns:
            The result, and True if this call joined another caller's run.
        """
        future = self._inflight.get(key)
        joined = future is not None
        if future is None:
            future = asyncio.ensure_future(operation())
            self._inflight[key] = future
            future.add_done_callback(lambda done: self._finish(key, done))
        # Drop our reference before waiting: a joiner's operation may hold large
        # buffers that nothing needs any more.
        del operation
        try:
            return await asyncio.shield(future), joined
        finally:
            # A failure's traceback holds this frame; without this, frame ->
            # future -> exception -> traceback -> frame is a cycle that keeps
            # the operation's buffers alive until a full garbage collection.
            del future

    def _finish(self, key: K, done: asyncio.Future[V]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]
        # Mark the exception retrieved: every caller may have been cancelled.
        if not done.cancelled() and (exc := done.exception()) is not None:
            _release_frames(exc)


def _release_frames(exc: BaseException) -> None:
    """Drop the locals of the finished frames a failed operation's exception holds.

    The shared operation failed and will not resume: its frames' locals (the
    payload buffers it read or decoded) are of no use to anyone, yet would
    live as long as the exception, which every caller shares and may keep.
    Every frame of the exception's own traceback has finished (it propagated
    out of them). Its causes were caught along the way, so of their frames
    only plain functions are cleared: clearing a suspended coroutine's frame
    would close that coroutine (on Python < 3.13).
    """
    traceback.clear_frames(exc.__traceback__)
    seen = {id(exc)}
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        tb = cause.__traceback__
        while tb is not None:
            if not tb.tb_frame.f_code.co_flags & _RESUMABLE:
                with contextlib.suppress(RuntimeError):  # still executing
                    tb.tb_frame.clear()
            tb = tb.tb_next
        cause = cause.__cause__ or cause.__context__


_RESUMABLE = inspect.CO_COROUTINE | inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR
