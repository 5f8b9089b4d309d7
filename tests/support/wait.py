"""Waiting for a condition instead of sleeping for a guessed time.

A sleep that orders events is either too short on a loaded machine (a flaky
test) or too long everywhere else (a slow one); polling with a deadline is
as fast as the condition allows and fails naming what never happened.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

POLL_SECONDS = 0.01


# timeout, not asyncio.timeout: the failure names what never happened.
async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float = 30.0,  # noqa: ASYNC109
    *,
    what: str = "",
) -> None:
    """Return once ``predicate()`` (plain or async) is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout:g}s: {what or predicate}")
        await asyncio.sleep(POLL_SECONDS)


def wait_until_sync(
    predicate: Callable[[], bool], timeout: float = 30.0, *, what: str = ""
) -> None:
    """:func:`wait_until` for code outside an event loop (threads, processes)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout:g}s: {what or predicate}")
        time.sleep(POLL_SECONDS)
