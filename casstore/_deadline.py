"""Deadlines and retries for backend requests: bounded stalls whatever the backend does.

Each payload the driver stores or retrieves gets one overall deadline, scaled
by its size, that covers every backend request made for it -- waiting for a
concurrency slot, connecting, sending, a server that never answers, a
trickling answer, and every retry. Each attempt gets its own shorter timeout,
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


class Deadline:
    """The time left for one payload's backend requests."""

    def __init__(self, budget: float, attempt_timeout: float) -> None:
        self.budget = budget
        self.attempt_timeout = attempt_timeout
        self._start = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the deadline started."""
        return time.monotonic() - self._start

    def remaining(self) -> float:
        """Seconds left (negative once expired)."""
        return self.budget - self.elapsed()

    async def run(
        self,
        call: Callable[[], Awaitable[_T]],
        *,
        limit: asyncio.Semaphore,
        what: str,
        where: str,
    ) -> _T:
        """Run ``call`` until it succeeds, fails for good, or the deadline passes.

        Args:
            call: Makes one attempt (called again for each retry).
            limit: The concurrency bound each attempt runs under.
            what: What is attempted, for the error (e.g. ``"backend put"``).
            where: The ``[key=..., backend=...]`` context for the error.

        Raises:
            BackendUnavailableError: Every attempt failed transiently or timed
                out; the message lists each attempt, how long they took and why.
        """
        reasons: list[str] = []
        last: BaseException | None = None
        while (remaining := self.remaining()) > 0:
            try:
                async with asyncio.timeout(remaining):
                    await limit.acquire()
            except TimeoutError as exc:
                last = exc
                reasons.append(f"no free request slot (max_concurrency) within {remaining:.2f}s")
                break
            started = time.monotonic()
            window = min(self.attempt_timeout, self.remaining())
            try:
                async with asyncio.timeout(window):
                    return await call()
            except TimeoutError as exc:
                last = exc
                reasons.append(f"no answer within {window:.2f}s")
            except BackendUnavailableError as exc:
                last = exc
                took = time.monotonic() - started
                reasons.append(f"{_first_line(exc)} (after {took:.2f}s)")
            finally:
                limit.release()
            # Full jitter: retries of many callers spread out instead of stampeding.
            backoff = random.uniform(0, min(_BACKOFF_MAX, _BACKOFF_BASE * 2 ** len(reasons)))
            await asyncio.sleep(max(0.0, min(backoff, self.remaining())))
        attempts = "; ".join(f"attempt {i}: {r}" for i, r in enumerate(reasons, 1))
        raise BackendUnavailableError(
            f"{what} gave up after {len(reasons)} attempt(s) in {self.elapsed():.2f}s, "
            f"past its {self.budget:.2f}s deadline {where}: {attempts or 'no time to try'}"
        ) from last


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS] + "..."
