"""Running one batch's payloads: in order, a bounded number at a time.

A batch of 10,000 payloads started all at once would serialize and hash every
one of them on the event loop before any request's answer could be seen (the
loop is busy for seconds, so healthy requests look timed out) and would hold
every payload's work in flight at once. Instead a fixed number of workers take
the payloads in order; a payload not yet taken has done nothing, so none of
its time counts against its deadline (docs/reliability.md).
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from casstore.backends._aio import gather_cancel_on_error

_T = TypeVar("_T")


async def gather_bounded(coros: Sequence[Coroutine[Any, Any, _T]], width: int) -> list[_T]:
    """Run ``coros`` with at most ``width`` at once; results in order.

    If one fails, the running ones are cancelled, the ones not started are
    closed unstarted, and its error is raised (as :func:`gather_cancel_on_error`).
    """
    if len(coros) <= width:
        return await gather_cancel_on_error(coros)
    results: list[_T | None] = [None] * len(coros)
    pending = iter(range(len(coros)))

    async def worker() -> None:
        for i in pending:
            results[i] = await coros[i]

    try:
        await gather_cancel_on_error([worker() for _ in range(width)])
    except BaseException:
        for i in pending:  # never started: close them so none is left un-awaited
            coros[i].close()
        raise
    return results  # type: ignore[return-value]  # every slot was filled
