"""Following the store's lifecycle manifest: reading it, recording it, and vouching by it.

The first driver to store anything records its policy (create-if-absent), and
every driver adopts the store's ``refresh_after`` when it is stricter than its
own (:class:`Freshness`), which bounds how long it vouches for an object it has
not looked at. The manifest's bytes are :mod:`casstore._format.manifest`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from casstore._format.manifest import MANIFEST_KEY, MAX_MANIFEST_SIZE, LifecyclePolicy
from casstore.backends._base import Backend, ObjectStat, describe_suffix
from casstore.errors import CasstoreError, ObjectNotFoundError

_T = TypeVar("_T")

Call = Callable[[str, Callable[[], Awaitable[_T]]], Awaitable[_T]]
"""Runs one backend request ``(kind, attempt)``: e.g. a driver's, under its deadline."""


async def _direct(kind: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
    del kind
    return await attempt()


async def read_policy(backend: Backend, call: Call[Any] = _direct) -> LifecyclePolicy | None:
    """Return the store's lifecycle policy, or ``None`` if it has no manifest.

    Raises:
        ConfigurationError: The manifest exists but cannot be trusted.
        BackendError: The store could not be read.
    """
    try:
        data = await call("get", lambda: backend.get(MANIFEST_KEY, max_size=MAX_MANIFEST_SIZE))
    except ObjectNotFoundError:
        return None
    return LifecyclePolicy.decode(data, where=describe_suffix(backend))


async def ensure_policy(
    backend: Backend, proposed: LifecyclePolicy, call: Call[Any] = _direct
) -> LifecyclePolicy:
    """Return the store's policy, recording ``proposed`` first if it has none.

    The write is create-if-absent: when writers race to create the manifest,
    one wins and the others read what it wrote.
    """
    found = await read_policy(backend, call)
    if found is not None:
        return found
    if await call("put", lambda: backend.put(MANIFEST_KEY, proposed.encode())):
        return proposed
    found = await read_policy(backend, call)
    if found is None:  # created and deleted between our two requests
        raise CasstoreError(
            f"lifecycle manifest vanished while being created "
            f"[key={MANIFEST_KEY}{describe_suffix(backend)}]"
        )
    return found


class Freshness:
    """How long one driver may vouch for an object: its ``refresh_after``, capped by the store's.

    On the driver's first store, :meth:`adopt` reads the store's manifest (one
    request per driver), writing one with this driver's ``refresh_after`` if
    there is none and ``record`` is set; the driver then uses the shorter of
    the two. A driver with ``refresh_after=None`` only follows a manifest, and
    writes none.
    """

    def __init__(
        self,
        backend: Backend,
        refresh_after: timedelta | None,
        calls: Callable[[], Call[Any]] = lambda: _direct,
    ) -> None:
        self._backend = backend
        self._calls = calls
        # Makes the request runner of one adoption (a driver: one deadline for all of it).
        self._seconds = refresh_after.total_seconds() if refresh_after is not None else None
        self._ready = False
        self._adopting: asyncio.Future[None] | None = None

    @property
    def seconds(self) -> float | None:
        """The vouch bound in seconds, or ``None`` (vouch forever, never refresh)."""
        return self._seconds

    async def adopt(self, *, record: bool = True) -> None:
        """Follow the store's manifest (once; concurrent callers share the request).

        Args:
            record: Write a manifest with this driver's ``refresh_after`` when
                the store has none.
        """
        if self._ready:
            return
        if self._adopting is None or self._adopting.done():  # first call, or the last one failed
            self._adopting = asyncio.ensure_future(self._adopt(record))
        await asyncio.shield(self._adopting)

    async def _adopt(self, record: bool) -> None:
        call = self._calls()
        if self._seconds is None or not record:
            policy = await read_policy(self._backend, call)
        else:
            proposed = LifecyclePolicy(refresh_after=timedelta(seconds=self._seconds))
            policy = await ensure_policy(self._backend, proposed, call)
        if policy is not None:
            store_seconds = policy.refresh_after.total_seconds()
            self._seconds = min(self._seconds or store_seconds, store_seconds)
        self._ready = True

    def vouch_until(self, modified: float) -> float | None:
        """Until when an object last modified at ``modified`` may be vouched for.

        Returns:
            The time, or ``None`` if the object is too old and needs a refresh first.
        """
        if self._seconds is None:
            return float("inf")
        if time.time() - modified < self._seconds:
            return modified + self._seconds
        return None

    async def keep_alive(
        self, found: ObjectStat, touch: Callable[[], Awaitable[None]]
    ) -> float | None:
        """Refresh a found object too old to vouch for (``touch``); return until when to vouch.

        Returns:
            The time, or ``None`` if the object vanished before it could be refreshed.
        """
        until = self.vouch_until(found.modified.timestamp())
        if until is not None:
            return until
        refreshed_at = time.time()
        try:
            await touch()
        except ObjectNotFoundError:
            return None
        return self.expiry(refreshed_at)

    def expiry(self, fresh_at: float) -> float:
        """Until when an object known to exist at ``fresh_at`` may be vouched for."""
        return float("inf") if self._seconds is None else fresh_at + self._seconds
