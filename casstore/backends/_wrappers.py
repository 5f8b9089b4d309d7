"""Backends that wrap another backend: count requests, inject failures, add latency.

For tests, benchmarks and diagnostics; none of them imports pytest.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta

from casstore.backends._base import Backend, ObjectStat
from casstore.errors import BackendError

_MANIFEST_KEY = "_casstore/lifecycle.json"
"""The lifecycle manifest's key (a stored format, see docs/formats.md)."""


class _WrappingBackend(Backend):
    """Delegates every call to ``inner``; subclasses hook :meth:`_before`."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.conditional_writes = inner.conditional_writes
        self.max_object_size = inner.max_object_size

    @property
    def expires_after(self) -> timedelta | None:
        return self.inner.expires_after

    async def _before(self, kind: str, key: str) -> None:
        """Run before each call of ``kind``; may raise to fail it."""

    async def stat(self, key: str) -> ObjectStat | None:
        await self._before("stat", key)
        return await self.inner.stat(key)

    async def put(self, key: str, data: bytes) -> bool:
        await self._before("put", key)
        return await self.inner.put(key, data)

    async def get(self, key: str, *, max_size: int | None = None) -> bytes:
        await self._before("get", key)
        return await self.inner.get(key, max_size=max_size)

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        await self._before("get_range", key)
        return await self.inner.get_range(key, offset, length)

    async def touch(self, key: str) -> None:
        await self._before("touch", key)
        await self.inner.touch(key)

    async def delete(self, key: str) -> None:
        await self._before("delete", key)
        await self.inner.delete(key)

    async def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        await self._before("scan", prefix)
        async for item in self.inner.scan(prefix):
            yield item

    async def scan_stat(self, prefix: str = "") -> AsyncIterator[tuple[str, ObjectStat]]:
        await self._before("scan_stat", prefix)
        async for item in self.inner.scan_stat(prefix):
            yield item

    async def delete_many(self, keys: Sequence[str]) -> None:
        await self._before("delete_many", keys[0] if keys else "")
        await self.inner.delete_many(keys)

    async def move(self, src: str, dst: str) -> bool:
        await self._before("move", src)
        return await self.inner.move(src, dst)

    async def move_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        await self._before("move_many", pairs[0][0] if pairs else "")
        return await self.inner.move_many(pairs)

    def describe(self) -> Mapping[str, str]:
        return self.inner.describe()

    async def open(self) -> None:
        await self.inner.open()

    async def aclose(self) -> None:
        await self.inner.aclose()


class CountingBackend(_WrappingBackend):
    """Counts the requests made to ``inner``, by kind, and the object bytes moved.

    Requests for the lifecycle manifest (each driver reads it once, on its
    first store) are counted apart, in :attr:`manifest_calls`, so that
    :attr:`calls` shows what payloads cost.

    Args:
        inner: The backend every call is passed on to (and closed with it).
    """

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.calls: Counter[str] = Counter()
        """Calls started, by method name (``stat``, ``put``, ``get``, ...)."""
        self.manifest_calls: Counter[str] = Counter()
        """Calls for the lifecycle manifest (``_casstore/lifecycle.json``), by method name."""
        self.bytes_written = 0
        """Object bytes passed to ``put``."""
        self.bytes_read = 0
        """Object bytes returned by ``get`` and ``get_range``."""

    async def _before(self, kind: str, key: str) -> None:
        (self.manifest_calls if key == _MANIFEST_KEY else self.calls)[kind] += 1

    async def put(self, key: str, data: bytes) -> bool:
        if key != _MANIFEST_KEY:
            self.bytes_written += len(data)
        return await super().put(key, data)

    async def get(self, key: str, *, max_size: int | None = None) -> bytes:
        data = await super().get(key, max_size=max_size)
        if key != _MANIFEST_KEY:
            self.bytes_read += len(data)
        return data

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        data = await super().get_range(key, offset, length)
        self.bytes_read += len(data)
        return data


class FailingBackend(_WrappingBackend):
    """Raises ``error`` on calls of the kinds in ``fail_on``, ``times`` times (None: always).

    Args:
        inner: The backend calls that do not fail are passed on to.
        fail_on: Method names to fail (``{"put", "get"}``, ...).
        error: The exception to raise; default a :class:`~casstore.errors.BackendError`.
        times: How many calls fail before the rest go through; None: all.
    """

    def __init__(
        self,
        inner: Backend,
        *,
        fail_on: set[str],
        error: Exception | None = None,
        times: int | None = None,
    ) -> None:
        super().__init__(inner)
        self.fail_on = fail_on
        self.error = error or BackendError("injected failure")
        self.remaining = times

    async def _before(self, kind: str, key: str) -> None:
        if kind in self.fail_on and (self.remaining is None or self.remaining > 0):
            if self.remaining is not None:
                self.remaining -= 1
            raise self.error


class LatencyBackend(_WrappingBackend):
    """Sleeps ``latency`` seconds before every call, like a remote store would."""

    def __init__(self, inner: Backend, latency: float) -> None:
        super().__init__(inner)
        self.latency = latency

    async def _before(self, kind: str, key: str) -> None:
        await asyncio.sleep(self.latency)
