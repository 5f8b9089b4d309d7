"""Test helpers: the backend conformance suite and backend wrappers.

:class:`BackendTests` is the contract every backend must meet. A backend's
test module subclasses it and supplies a ``backend`` fixture; the suite then
checks the backend through its public methods, and checks what it stored
through ``raw_get``/``raw_put``, which a subclass may override to bypass the
backend and read or write the underlying storage directly.

The wrappers (:class:`CountingBackend`, :class:`FailingBackend`,
:class:`LatencyBackend`) wrap any backend to count requests, inject failures
or add latency, for tests and benchmarks.

Requires pytest and pytest-asyncio (``asyncio_mode = "auto"``).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta

import pytest

from casstore.backends._base import Backend, ObjectStat
from casstore.errors import BackendError, IntegrityError, ObjectNotFoundError

__all__ = ["BackendTests", "CountingBackend", "FailingBackend", "LatencyBackend"]

_KEY = "v1/default/order-42/" + "ab" * 32


class _WrappingBackend(Backend):
    """Delegates every call to ``inner``; subclasses hook :meth:`_call`."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.exact_create = inner.exact_create

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

    def describe(self) -> Mapping[str, str]:
        return self.inner.describe()

    async def aclose(self) -> None:
        await self.inner.aclose()


class CountingBackend(_WrappingBackend):
    """Counts calls by kind (``stat``, ``put``, ``get``, ...) in :attr:`calls`."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.calls: Counter[str] = Counter()

    async def _before(self, kind: str, key: str) -> None:
        self.calls[kind] += 1


class FailingBackend(_WrappingBackend):
    """Raises ``error`` on calls of the kinds in ``fail_on``, ``times`` times (None: always)."""

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


class BackendTests:
    """The conformance suite every backend's test module inherits.

    Subclasses define a ``backend`` fixture (async, function scope, empty store)
    and may override :meth:`raw_get` and :meth:`raw_put` to reach the
    underlying storage without going through the backend under test.
    """

    async def raw_get(self, backend: Backend, key: str) -> bytes:
        """Read an object bypassing the store where possible."""
        return await backend.get(key)

    async def raw_put(self, backend: Backend, key: str, data: bytes) -> None:
        """Write an object bypassing the store where possible."""
        await backend.put(key, data)

    async def test_put_then_get_round_trips(self, backend: Backend) -> None:
        data = bytes(range(256)) * 4
        assert await backend.put(_KEY, data) is True
        assert await backend.get(_KEY) == data
        assert await self.raw_get(backend, _KEY) == data

    async def test_put_existing_returns_false_and_keeps_object(self, backend: Backend) -> None:
        await self.raw_put(backend, _KEY, b"first")
        created = await backend.put(_KEY, b"first")
        if backend.exact_create:
            assert created is False
        assert await backend.get(_KEY) == b"first"

    async def test_stat_reports_size_and_recent_modification(self, backend: Backend) -> None:
        assert await backend.stat(_KEY) is None
        await backend.put(_KEY, b"x" * 1234)
        found = await backend.stat(_KEY)
        assert found is not None
        assert found.size == 1234
        assert found.modified.tzinfo is not None
        assert abs(datetime.now(UTC) - found.modified) < timedelta(minutes=5)

    async def test_get_missing_raises_not_found_naming_key(self, backend: Backend) -> None:
        with pytest.raises(ObjectNotFoundError, match="order-42") as info:
            await backend.get(_KEY)
        assert isinstance(info.value, FileNotFoundError)

    async def test_get_refuses_an_object_above_max_size(self, backend: Backend) -> None:
        data = os.urandom(64 * 1024)
        await self.raw_put(backend, _KEY, data)
        assert await backend.get(_KEY, max_size=len(data)) == data
        with pytest.raises(IntegrityError, match=str(len(data) - 1)) as info:
            await backend.get(_KEY, max_size=len(data) - 1)
        assert "order-42" in str(info.value)
        assert await backend.get(_KEY, max_size=None) == data

    async def test_empty_object_round_trips(self, backend: Backend) -> None:
        assert await backend.put(_KEY, b"") is True
        assert await backend.get(_KEY) == b""
        found = await backend.stat(_KEY)
        assert found is not None
        assert found.size == 0

    async def test_large_object_round_trips(self, backend: Backend) -> None:
        data = os.urandom(9 * 1024 * 1024)
        await backend.put(_KEY, data)
        assert await backend.get(_KEY) == data

    async def test_delete_is_idempotent(self, backend: Backend) -> None:
        await backend.put(_KEY, b"data")
        await backend.delete(_KEY)
        await backend.delete(_KEY)
        assert await backend.stat(_KEY) is None
        with pytest.raises(ObjectNotFoundError):
            await backend.get(_KEY)

    async def test_touch_resets_age(self, backend: Backend) -> None:
        await backend.put(_KEY, b"data")
        before = await backend.stat(_KEY)
        assert before is not None
        await asyncio.sleep(1.1)  # object stores keep one-second timestamps
        await backend.touch(_KEY)
        after = await backend.stat(_KEY)
        assert after is not None
        assert after.modified > before.modified
        assert await backend.get(_KEY) == b"data"

    async def test_touch_missing_raises_not_found(self, backend: Backend) -> None:
        with pytest.raises(ObjectNotFoundError):
            await backend.touch(_KEY)

    async def test_concurrent_puts_of_one_key_all_succeed(self, backend: Backend) -> None:
        data = os.urandom(256 * 1024)
        results = await asyncio.gather(*(backend.put(_KEY, data) for _ in range(8)))
        if backend.exact_create:
            assert sorted(results) == [False] * 7 + [True]
        assert await backend.get(_KEY) == data

    async def test_scan_lists_keys_under_prefix_with_sizes(self, backend: Backend) -> None:
        keys = {
            "v1/ns-a/wf-1/" + "01" * 32: b"a",
            "v1/ns-a/wf-2/" + "02" * 32: b"bb",
            "v1/ns-b/wf-1/" + "03" * 32: b"ccc",
        }
        for key, data in keys.items():
            await backend.put(key, data)
        listed = [item async for item in backend.scan("v1/ns-a/")]
        assert sorted(listed) == [
            ("v1/ns-a/wf-1/" + "01" * 32, 1),
            ("v1/ns-a/wf-2/" + "02" * 32, 2),
        ]
        everything = [key async for key, _ in backend.scan()]
        assert sorted(everything) == sorted(keys)

    async def test_escaped_segments_are_kept_verbatim(self, backend: Backend) -> None:
        key = "v1/my%2Fns/_h" + "0f" * 16 + "/" + "cd" * 32
        await backend.put(key, b"escaped")
        assert await backend.get(key) == b"escaped"
        assert [k async for k, _ in backend.scan("v1/my%2Fns/")] == [key]

    @pytest.mark.parametrize(
        "key",
        [
            "",
            "../escape",
            "v1/../../etc/passwd",
            "/absolute",
            "v1//double",
            "v1/.hidden",
            "v1/./x",
            "v1/back\\slash",
            "v1/sp ace",
            "v1/" + "a" * 1100,
            "v1/naïve",
        ],
    )
    async def test_unsafe_keys_are_rejected_before_any_io(self, backend: Backend, key: str) -> None:
        for call in (backend.stat(key), backend.put(key, b"x"), backend.get(key)):
            with pytest.raises(ValueError, match="invalid object key"):
                await call
        assert [k async for k, _ in backend.scan()] == []

    async def test_describe_is_a_string_mapping(self, backend: Backend) -> None:
        facts = backend.describe()
        assert facts
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in facts.items())
