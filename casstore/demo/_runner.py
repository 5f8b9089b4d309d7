"""The demo's event loop: Ctrl-C and SIGTERM stop it promptly, even with a stuck worker.

``asyncio.run`` is not enough for that: on the way out it waits, unbounded,
for every task still pending (the SDK's eviction retry loop swallows
cancellation, so that wait can last forever) and for the default executor,
and the interpreter then joins every worker thread at exit (a workflow thread
busy in a long activation blocks that). Here every wait is bounded, and what
had to be given up on is recorded so that the CLI, after stopping the dev
server and printing its message, ends the process without those joins.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_CLEANUP_SECONDS = 3.0
_THREAD_JOIN_SECONDS = 3.0
_abandoned: list[str] = []


class Interrupted(BaseException):
    """The demo was stopped by a signal (SIGINT or SIGTERM); unwinds like KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by this signal (128 + its number)."""
        return 128 + self.signum


def abandon(what: str) -> None:
    """Record that ``what`` was given up on, so the process must not wait for it at exit."""
    _abandoned.append(what)


def run_interruptible(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on a new event loop; SIGINT or SIGTERM cancels it.

    Raises:
        Interrupted: If a signal stopped ``main`` (after it cleaned up).
    """
    loop = asyncio.new_event_loop()
    task = loop.create_task(main)
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        task.cancel()

    watched = (signal.SIGINT, signal.SIGTERM)
    for sig in watched:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        if received:
            raise Interrupted(received[0]) from None
        raise
    finally:
        for sig in watched:
            loop.remove_signal_handler(sig)
        _close(loop)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on ``loop`` and close it, waiting a bounded time."""
    left = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in left:
        task.cancel()
    if left:
        loop.run_until_complete(asyncio.wait(left, timeout=_CLEANUP_SECONDS))
        stuck = [t for t in left if not t.done()]
        if stuck:
            abandon(f"{len(stuck)} asyncio task(s) that ignored cancellation")
    loop.run_until_complete(loop.shutdown_asyncgens())
    # Not loop.shutdown_default_executor(): it joins its threads unbounded even
    # when cancelled. close() shuts the executor down without waiting, and
    # exit_now_if_stuck() bounds the join at exit.
    loop.close()


def exit_now_if_stuck(code: int) -> None:
    """End the process with ``code`` if something given up on would block its exit.

    Interpreter shutdown joins every non-daemon thread (``concurrent.futures``
    workers among them, through an atexit hook), so a worker thread still busy
    in a workflow activation would keep the demo alive after Ctrl-C. Call this
    last, after every resource (dev server, store) is released and messages
    are printed: it waits a little for the threads, then, if any is still
    running or something was abandoned, calls ``os._exit`` - the one place a
    CLI may skip the remaining finalizers, since there is nothing left to
    release and waiting is what the user asked us not to do.
    """
    deadline = time.monotonic() + _THREAD_JOIN_SECONDS
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
    busy = [t.name for t in threading.enumerate() if t.is_alive() and not t.daemon]
    busy = [name for name in busy if name != threading.current_thread().name]
    if busy or _abandoned:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
