"""Small asyncio helpers shared by the backends and the driver layer (which may import them)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any, TypeVar

_T = TypeVar("_T")


async def gather_cancel_on_error(coros: Sequence[Coroutine[Any, Any, _T]]) -> list[_T]:
    """Run coroutines concurrently; if one fails, cancel the rest and raise its error."""
    if len(coros) == 1:
        return [await coros[0]]
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # The error's traceback holds this frame: drop the tasks (and the
        # errors and buffers they hold) so no reference cycle keeps them alive.
        tasks.clear()
        raise


async def gather_bounded(calls: Sequence[Awaitable[_T]], limit: int) -> list[_T]:
    """Await ``calls`` with at most ``limit`` in flight; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[_T]) -> _T:
        async with gate:
            return await call

    return list(await asyncio.gather(*(one(call) for call in calls)))
