"""How a driver spends its concurrency: backend requests and off-loop CPU jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from casstore._deadline import Deadline, Progress
from casstore._metrics import DriverMetrics, timed
from casstore._stats import DriverStats
from casstore.backends._base import Backend, describe_backend, describe_suffix
from casstore.errors import BackendError, CasstoreError

_T = TypeVar("_T")


class Requests:
    """Runs one driver's backend requests and large CPU jobs under one bound.

    Args:
        backend: The backend requests go to (named in errors).
        stats: Where requests are counted.
        max_concurrency: Most requests and off-loop CPU jobs at once.
        offload_threshold: CPU jobs on this many bytes or more go to a thread.
    """

    def __init__(
        self, backend: Backend, stats: DriverStats, max_concurrency: int, offload_threshold: int
    ) -> None:
        self._backend = backend
        self._stats = stats
        self.max_concurrency = max_concurrency
        self._offload_threshold = offload_threshold
        self._semaphore: asyncio.Semaphore | None = None
        self._progress = Progress()
        self.metrics: DriverMetrics | None = None
        """Where request latencies are reported, if anywhere."""

    async def cpu(self, size: int, func: Callable[..., _T], *args: Any) -> _T:
        """Run CPU work inline when small, in a worker thread when large."""
        if size < self._offload_threshold:
            return func(*args)
        async with self.limit():
            return await asyncio.get_running_loop().run_in_executor(None, func, *args)

    async def request(
        self, kind: str, key: str, call: Callable[[], Awaitable[_T]], deadline: Deadline
    ) -> _T:
        """Make one backend request under the concurrency bound and ``deadline``.

        Transient failures are retried while the deadline allows; errors are
        translated. ``call`` makes each attempt's coroutine once a slot is held.
        """
        self._stats.backend_requests[kind] += 1
        try:
            return await deadline.run(
                lambda: timed(self.metrics, kind, call),
                limit=self.limit(),
                progress=self._progress,
                what=f"backend {kind}",
                where=f"[key={key}{describe_suffix(self._backend)}]",
            )
        except CasstoreError as exc:
            # Backends name the key in their messages; make sure it is structured too.
            if exc.key is None:
                exc.key = key
            if exc.backend is None:
                exc.backend = describe_backend(self._backend)
            raise
        except Exception as exc:
            raise BackendError(
                f"backend {kind} failed [key={key}{describe_suffix(self._backend)}]: {exc!r}",
                key=key,
                backend=describe_backend(self._backend),
            ) from exc

    def limit(self) -> asyncio.Semaphore:
        """The bound shared by requests and CPU jobs."""
        # Created lazily: a driver may be built before the event loop exists.
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
        return self._semaphore
