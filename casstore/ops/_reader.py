"""Reading many objects with bounded concurrency and bounded memory.

``verify`` and ``stats --deep`` read every object of a store. A fixed pool of
workers takes keys from a short queue fed by the listing, so at most
``concurrency`` objects are in flight, and a byte budget caps the stored bytes
held at once (an object larger than the whole budget is read alone). Large
objects are checked in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable
from typing import TypeVar

from casstore.backends._aio import gather_cancel_on_error
from casstore.backends._base import Backend
from casstore.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    IntegrityError,
    ObjectNotFoundError,
)

_T = TypeVar("_T")

DEFAULT_CONCURRENCY = 16
DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024
OFFLOAD_SIZE = 64 * 1024
"""Objects at least this large are processed in a worker thread."""


class ByteBudget:
    """An async counting limit on bytes held at once."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._free = limit
        self._changed = asyncio.Condition()

    def cost(self, size: int) -> int:
        """What holding ``size`` bytes charges (capped so any object can be read)."""
        return max(1, min(size, self._limit))

    async def acquire(self, cost: int) -> None:
        """Wait until ``cost`` bytes are free, then take them."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._free >= cost)
            self._free -= cost

    async def release(self, cost: int) -> None:
        """Give ``cost`` bytes back."""
        async with self._changed:
            self._free += cost
            self._changed.notify_all()


class Outcome:
    """How reading one object ended, as passed to the result callback."""

    __slots__ = ("error", "key", "missing", "result", "size")

    def __init__(
        self,
        key: str,
        size: int,
        *,
        result: object = None,
        missing: bool = False,
        error: str | None = None,
    ) -> None:
        self.key = key
        self.size = size
        self.result = result
        self.missing = missing
        """The object was listed but gone when read (deleted meanwhile)."""
        self.error = error
        """Why the object could not be read (a backend error), if it could not."""


async def read_each(
    backend: Backend,
    listing: AsyncIterable[tuple[str, int]],
    process: Callable[[str, bytes], _T],
    done: Callable[[Outcome], None],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> None:
    """Read every listed object and run ``process(key, data)`` on it.

    Args:
        backend: The store.
        listing: ``(key, stored size)`` pairs, e.g. ``backend.scan()``.
        process: CPU work on one object, returning a verdict rather than
            raising (an exception ends the whole run); its return value goes
            to ``done`` as ``Outcome.result``. Runs in a worker thread for
            objects of :data:`OFFLOAD_SIZE` or more.
        done: Called on the event loop once per listed object, in completion order.
        concurrency: Objects read at once.
        memory_budget: Stored bytes held at once.

    Raises:
        BackendUnavailableError: The store stopped answering (not per object).
        BackendPermissionError: Reading was refused.
    """
    budget = ByteBudget(memory_budget)
    queue: asyncio.Queue[tuple[str, int] | None] = asyncio.Queue(maxsize=2 * concurrency)

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            key, size = item
            cost = budget.cost(size)
            await budget.acquire(cost)
            try:
                done(await _read_one(backend, key, size, process))
            finally:
                await budget.release(cost)

    async def feed() -> None:
        try:
            async for item in listing:
                await queue.put(item)
        finally:
            for _ in range(concurrency):
                await queue.put(None)

    await gather_cancel_on_error([feed(), *(worker() for _ in range(concurrency))])


async def _read_one(
    backend: Backend, key: str, size: int, process: Callable[[str, bytes], _T]
) -> Outcome:
    try:
        data = await backend.get(key)
    except ObjectNotFoundError:
        return Outcome(key, size, missing=True)
    except (BackendUnavailableError, BackendPermissionError):
        raise
    except BackendError as exc:
        return Outcome(key, size, error=f"read failed: {exc}")
    except IntegrityError as exc:  # a link, FIFO or device where an object belongs
        return Outcome(key, size, error=str(exc))
    if len(data) >= OFFLOAD_SIZE:
        result: object = await asyncio.to_thread(process, key, data)
    else:
        result = process(key, data)
    return Outcome(key, len(data), result=result)
