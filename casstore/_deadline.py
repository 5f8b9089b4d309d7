"""Deadlines and retries for backend requests: bounded stalls whatever the backend does.

Each payload the driver stores or retrieves gets one overall deadline, scaled
by its size, that covers every backend request made for it -- connecting,
sending, a server that never answers, a trickling answer, every retry and the
backoff between them. It counts only while the payload holds a request slot:
waiting behind other payloads for one (``max_concurrency``) is bounded by the
driver's stall detector instead (:class:`Progress`: no request answered for a
whole deadline), so a large batch never fails on a healthy backend while a
stalled one still fails every call within about one deadline, whatever its
size. Each attempt gets its own shorter timeout,
so one silent connection costs one attempt, not the whole budget. Transient
failures (:class:`~casstore.errors.BackendUnavailableError`, an attempt that
timed out) are retried with exponential backoff and full jitter while the
deadline allows; anything else fails at once.

Retrying is safe for every request the driver makes: a write is
create-if-absent of content-addressed bytes, so a retry after an ambiguous
failure either creates the object or finds it (success either way); reads,
existence checks and refreshes are idempotent.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from casstore.errors import BackendUnavailableError, ConfigurationError

_T = TypeVar("_T")

DEFAULT_TIMEOUT = 5.0
"""Seconds for all backend requests of one small payload: well inside the 10 s
workflow task timeout Temporal uses by default."""
DEFAULT_ATTEMPT_TIMEOUT = 2.0
"""Seconds one attempt of a small request may take before it is retried."""
DEFAULT_MIN_THROUGHPUT = 2 * 1024 * 1024
"""Bytes per second below which a large transfer is considered stalled; both
timeouts grow by ``size / min_throughput``."""
_BACKOFF_BASE = 0.05
_BACKOFF_MAX = 1.0
_REASON_CHARS = 300
_LAG_TOLERANCE = 0.1
"""Seconds a slot wait may end late before the stall detector looks again instead."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long backend requests may take, and how failures are retried.

    Attributes:
        timeout: Seconds for every request of one small payload, retries
            included.
        attempt_timeout: Seconds for one attempt of a small request.
        min_throughput: Bytes per second; a payload of ``n`` bytes adds
            ``n / min_throughput`` to both timeouts.
    """

    timeout: float = DEFAULT_TIMEOUT
    attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT
    min_throughput: float = DEFAULT_MIN_THROUGHPUT

    def __post_init__(self) -> None:
        for name in ("timeout", "attempt_timeout", "min_throughput"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(f"{name} must be a positive number, got {value!r}")

    def deadline(self, size: int) -> Deadline:
        """Start the deadline of one payload of ``size`` bytes, now."""
        transfer = size / self.min_throughput
        return Deadline(self.timeout + transfer, self.attempt_timeout + transfer)


class Progress:
    """When a backend request of one driver last got an answer: its stall detector.

    A payload's deadline counts only the time its own requests run (see
    :class:`Deadline`), so a payload queued behind thousands of others is
    not failed for waiting. What bounds the wait instead is this: a payload
    that cannot get a request slot while no request of its driver has been
    answered for a whole deadline gives up, because then the backend is
    stalled, not busy.
    """

    def __init__(self) -> None:
        self.last = time.monotonic()
        """``time.monotonic()`` of the latest answer (success or a definite error)."""

    def mark(self) -> None:
        """Record that a request was just answered."""
        self.last = time.monotonic()


class Deadline:
    """The time left for one payload's backend requests.

    The clock runs while the payload holds a request slot (its attempts, and
    the backoff between them), from its first request on; waiting for a slot
    behind other payloads (``max_concurrency``) does not count, so the size
    of a batch never fails a healthy backend. That wait is bounded by the
    driver's :class:`Progress` instead.
    """

    def __init__(self, budget: float, attempt_timeout: float) -> None:
        self.budget = budget
        self.attempt_timeout = attempt_timeout
        self._spent = 0.0
        self._since: float | None = None
        self._charged = ""

    def charge(self, seconds: float, why: str) -> None:
        """Count ``seconds`` the payload already waited (``why``) against the budget.

        A store call's first payloads wait for the store's lifecycle manifest
        before their own requests start; charging that wait keeps the whole
        call within about one deadline instead of two.
        """
        if seconds > 0:
            self._spent += seconds
            self._charged = f" ({seconds:.2f}s of it {why})"

    def elapsed(self) -> float:
        """Seconds this payload's requests have run (slot waits excluded)."""
        running = 0.0 if self._since is None else time.monotonic() - self._since
        return self._spent + running

    def remaining(self) -> float:
        """Seconds left (negative once expired)."""
        return self.budget - self.elapsed()

    def _resume(self) -> None:
        self._since = time.monotonic()

    def _pause(self) -> None:
        if self._since is not None:
            self._spent += time.monotonic() - self._since
            self._since = None

    async def run(
        self,
        call: Callable[[], Awaitable[_T]],
        *,
        limit: asyncio.Semaphore,
        progress: Progress,
        what: str,
        where: str,
    ) -> _T:
        """Run ``call`` until it succeeds, fails for good, or the deadline passes.

        Args:
            call: Makes one attempt (called again for each retry).
            limit: The concurrency bound each attempt runs under.
            progress: The driver's stall detector, which bounds slot waits.
            what: What is attempted, for the error (e.g. ``"backend put"``).
            where: The ``[key=..., backend=...]`` context for the error.

        Raises:
            BackendUnavailableError: Every attempt failed transiently or timed
                out, or no slot came free while the backend answered nothing
                for a whole deadline; the message lists each attempt and why.
        """
        reasons: list[str] = []
        last: BaseException | None = None
        try:
            while self.remaining() > 0:
                await self._acquire(limit, progress, what, where, reasons)
                self._resume()
                started = time.monotonic()
                window = min(self.attempt_timeout, self.remaining())
                try:
                    async with asyncio.timeout(window):
                        result = await call()
                    progress.mark()
                    return result
                except TimeoutError as exc:
                    last = exc
                    reasons.append(f"no answer within {window:.2f}s")
                except BackendUnavailableError as exc:
                    last = exc
                    took = time.monotonic() - started
                    reasons.append(f"{_first_line(exc)} (after {took:.2f}s)")
                except Exception:
                    progress.mark()  # a definite answer (missing, refused): the backend is alive
                    raise
                finally:
                    limit.release()
                # Full jitter: retries of many callers spread out instead of stampeding.
                backoff = random.uniform(0, min(_BACKOFF_MAX, _BACKOFF_BASE * 2 ** len(reasons)))
                await asyncio.sleep(max(0.0, min(backoff, self.remaining())))
                self._pause()
        finally:
            self._pause()
        attempts = "; ".join(f"attempt {i}: {r}" for i, r in enumerate(reasons, 1))
        raise BackendUnavailableError(
            f"{what} gave up after {len(reasons)} attempt(s) in {self.elapsed():.2f}s, "
            f"past its {self.budget:.2f}s deadline{self._charged} {where}: "
            f"{attempts or 'no time to try'}"
        ) from last

    async def _acquire(
        self,
        limit: asyncio.Semaphore,
        progress: Progress,
        what: str,
        where: str,
        reasons: list[str],
    ) -> None:
        """Take a request slot; give up only if the backend answers nothing meanwhile."""
        waiting_since = time.monotonic()
        due: float | None = None  # when the last wait was meant to end
        while True:
            now = time.monotonic()
            quiet = now - max(waiting_since, progress.last)
            # A wait that ended late means the event loop was busy (e.g. starting
            # a large batch's payloads): answers may be waiting to be seen, so
            # look again shortly before calling the backend stalled.
            lagged = due is not None and now - due > max(_LAG_TOLERANCE, 0.1 * self.budget)
            if quiet >= self.budget and not lagged:
                waited = now - waiting_since
                earlier = "".join(f"; attempt {i}: {r}" for i, r in enumerate(reasons, 1))
                raise BackendUnavailableError(
                    f"{what} gave up waiting {waited:.2f}s for a free request slot "
                    f"(max_concurrency): no request of this driver was answered for "
                    f"{quiet:.2f}s, past the {self.budget:.2f}s deadline, so the backend looks "
                    f"stalled {where}{earlier}"
                )
            wait = self.budget - quiet if quiet < self.budget else _LAG_TOLERANCE
            due = now + wait
            try:
                async with asyncio.timeout(wait):
                    await limit.acquire()
                return
            except TimeoutError:
                continue  # a request was answered meanwhile: keep waiting


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS] + "..."
