"""Test helpers: the backend conformance suite and the driver suite.

:class:`BackendTests` is the contract every backend must meet. A backend's
test module subclasses it, supplies a ``backend`` fixture (an empty store),
and implements :meth:`~BackendTests.raw_get` and :meth:`~BackendTests.raw_put`
to read and write the underlying storage directly, bypassing the backend under
test, so that the suite can check what the backend really stored. A ``Test*``
subclass that does not define them is a ``TypeError`` when it is defined, so
the suite fails loudly at collection instead of being skipped or passing.

:class:`~casstore.backends.CountingBackend`, which counts a backend's
requests, lives in :mod:`casstore.backends`, which needs no pytest.

:class:`DriverTests` runs :class:`~casstore.CasStorageDriver` on the same
``backend`` fixture and checks what the driver costs and survives there
(dedup, races, refresh, vanished objects, hostile claims); a backend's test
module inherits both suites.

Requires pytest and pytest-asyncio (``asyncio_mode = "auto"``).
"""

from __future__ import annotations

import asyncio
import os
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from casstore._driver_suite import DriverTests
from casstore._format.trash import trash_key
from casstore.backends._base import Backend
from casstore.errors import IntegrityError, ObjectNotFoundError

__all__ = ["BackendTests", "DriverTests"]

_KEY = "v1/default/order-42/" + "ab" * 32


class BackendTests:
    """The conformance suite every backend's test module inherits.

    Subclasses define a ``backend`` fixture (async, function scope, empty
    store) and must implement :meth:`raw_get` and :meth:`raw_put`, which reach
    the underlying storage without going through the backend under test.
    """

    if TYPE_CHECKING:  # each suite defines them; a Test* class without them fails to import

        @abstractmethod
        async def raw_get(self, backend: Backend, key: str) -> bytes:
            """Read an object straight from the underlying storage, not through ``backend``.

            Every suite must define this (and :meth:`raw_put`): a suite that
            read back through the backend under test could not see what it stored.
            """

        @abstractmethod
        async def raw_put(self, backend: Backend, key: str, data: bytes) -> None:
            """Write an object straight into the underlying storage, not through ``backend``."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        # Checked when the class is defined: a suite missing them is one collection
        # error, and can never fall back to reading through the backend under test.
        super().__init_subclass__(**kwargs)
        if cls.__name__.startswith("Test"):  # the classes pytest collects
            missing = [name for name in _RAW_ACCESSORS if not callable(getattr(cls, name, None))]
            if missing:
                raise TypeError(_missing_raw_accessors(cls, missing))

    async def test_put_then_get_round_trips(self, backend: Backend) -> None:
        data = bytes(range(256)) * 4
        assert await backend.put(_KEY, data) is True
        assert await backend.get(_KEY) == data
        assert await self.raw_get(backend, _KEY) == data

    async def test_put_existing_returns_false_and_keeps_object(self, backend: Backend) -> None:
        await self.raw_put(backend, _KEY, b"first")
        created = await backend.put(_KEY, b"first")
        if backend.conditional_writes:
            assert created is False
        assert await backend.get(_KEY) == b"first"

    async def test_objects_written_directly_are_found(self, backend: Backend) -> None:
        await self.raw_put(backend, _KEY, b"stored elsewhere")
        found = await backend.stat(_KEY)
        assert found is not None
        assert found.size == len(b"stored elsewhere")
        assert await backend.get(_KEY) == b"stored elsewhere"
        assert [item async for item in backend.scan()] == [(_KEY, len(b"stored elsewhere"))]

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

    async def test_get_range_returns_exactly_the_range(self, backend: Backend) -> None:
        data = os.urandom(300 * 1024)
        await self.raw_put(backend, _KEY, data)
        assert await backend.get_range(_KEY, 0, 10) == data[:10]
        assert await backend.get_range(_KEY, 123_457, 70_001) == data[123_457:193_458]
        assert await backend.get_range(_KEY, len(data) - 1, 1) == data[-1:]
        assert await backend.get_range(_KEY, 5, 0) == b""

    async def test_get_range_past_the_end_returns_what_exists(self, backend: Backend) -> None:
        await self.raw_put(backend, _KEY, b"0123456789")
        assert await backend.get_range(_KEY, 8, 100) == b"89"
        assert await backend.get_range(_KEY, 10, 5) == b""
        assert await backend.get_range(_KEY, 1000, 5) == b""

    async def test_get_range_of_a_missing_object_raises_not_found(self, backend: Backend) -> None:
        with pytest.raises(ObjectNotFoundError, match="order-42"):
            await backend.get_range(_KEY, 0, 10)
        with pytest.raises(ObjectNotFoundError, match="order-42"):
            await backend.get_range(_KEY, 0, 0)

    async def test_get_range_refuses_a_negative_range(self, backend: Backend) -> None:
        await self.raw_put(backend, _KEY, b"data")
        with pytest.raises(ValueError, match="negative"):
            await backend.get_range(_KEY, -1, 2)
        with pytest.raises(ValueError, match="negative"):
            await backend.get_range(_KEY, 0, -2)

    async def test_chunked_payloads_round_trip_through_a_driver(self, backend: Backend) -> None:
        # Each payload is the previous one plus new bytes: later objects hold only
        # their new chunks and read the rest from earlier ones with ranged reads.
        from temporalio.api.common.v1 import Payload
        from temporalio.converter import (
            StorageDriverRetrieveContext,
            StorageDriverStoreContext,
            StorageDriverWorkflowInfo,
        )

        from casstore._driver import CasStorageDriver

        context = StorageDriverStoreContext(
            target=StorageDriverWorkflowInfo(namespace="default", id="agent", run_id="r", type="A")
        )
        rng = __import__("random").Random(3)
        data = b""
        payloads = []
        for _ in range(4):
            data += bytes(rng.getrandbits(8) for _ in range(40_000))
            payloads.append(Payload(metadata={"encoding": b"binary/plain"}, data=data))
        writer = CasStorageDriver(backend)
        claims = [(await writer.store(context, [p]))[0] for p in payloads]
        stored = sum([size async for _, size in backend.scan("v1/")])
        if backend.conditional_writes:  # else writers learn chunk locations only by reading
            assert stored < len(data) * 1.2  # each new byte stored about once, not 2.5 times
        reader = CasStorageDriver(backend)  # a cold reader of the newest claim only
        assert await reader.retrieve(StorageDriverRetrieveContext(), claims[-1:]) == payloads[-1:]
        fresh = CasStorageDriver(backend)
        assert await fresh.retrieve(StorageDriverRetrieveContext(), claims) == payloads

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
        if backend.conditional_writes:
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
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: backend.stat(key),
            lambda: backend.put(key, b"x"),
            lambda: backend.get(key),
            lambda: backend.touch(key),
            lambda: backend.delete(key),
        ]
        for call in calls:
            with pytest.raises(ValueError, match="invalid object key"):
                await call()
        assert [k async for k, _ in backend.scan()] == []

    async def test_describe_is_a_string_mapping(self, backend: Backend) -> None:
        facts = backend.describe()
        assert facts
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in facts.items())

    async def test_conditional_writes_is_a_flag(self, backend: Backend) -> None:
        assert isinstance(backend.conditional_writes, bool)

    # Capabilities garbage collection uses (defaults in Backend, overridden by most).

    async def test_scan_stat_lists_sizes_and_ages_under_prefix(self, backend: Backend) -> None:
        other = "v1/other/wf/" + "cd" * 32
        await self.raw_put(backend, _KEY, b"12345")
        await self.raw_put(backend, other, b"x")
        found = {key: stat async for key, stat in backend.scan_stat("v1/default/")}
        assert list(found) == [_KEY]
        assert [item async for item in backend.scan_stat("v1/nothing-here/")] == []
        assert found[_KEY].size == 5
        age = datetime.now(UTC) - found[_KEY].modified
        assert timedelta(seconds=-5) < age < timedelta(minutes=5)

    async def test_delete_many_deletes_what_it_is_given_and_nothing_else(
        self, backend: Backend
    ) -> None:
        keys = [f"v1/default/wf/{i:02x}" + "e" * 62 for i in range(5)]
        for key in keys:
            await self.raw_put(backend, key, key.encode())
        await backend.delete_many([*keys[:3], "v1/default/wf/" + "f" * 64])  # one missing
        await backend.delete_many([])
        # The contract promises no listing order (Redis SCAN has none).
        assert sorted([k async for k, _ in backend.scan()]) == keys[3:]

    async def test_move_keeps_the_bytes_and_gives_a_fresh_age(self, backend: Backend) -> None:
        dst = trash_key(_KEY)
        await self.raw_put(backend, _KEY, b"moved bytes")
        assert await backend.move(_KEY, dst) is True
        assert await backend.stat(_KEY) is None
        assert await self.raw_get(backend, dst) == b"moved bytes"
        found = await backend.stat(dst)
        assert found is not None
        assert abs(datetime.now(UTC) - found.modified) < timedelta(minutes=5)
        # Moving back over nothing, and a move whose source is gone.
        assert await backend.move(dst, _KEY) is True
        assert await backend.move(dst, _KEY) is False
        assert await self.raw_get(backend, _KEY) == b"moved bytes"

    async def test_move_replaces_an_existing_copy_and_reports_each_pair(
        self, backend: Backend
    ) -> None:
        keys = [f"v1/default/wf/{i:02x}" + "a" * 62 for i in range(3)]
        for key in keys[:2]:
            await self.raw_put(backend, key, key.encode())
        await self.raw_put(backend, trash_key(keys[0]), keys[0].encode())
        moved = await backend.move_many([(key, trash_key(key)) for key in keys])
        assert moved == [True, True, False]
        assert [k async for k, _ in backend.scan("v1/")] == []
        for key in keys[:2]:
            assert await self.raw_get(backend, trash_key(key)) == key.encode()


_RAW_ACCESSORS = ("raw_get", "raw_put")


def _missing_raw_accessors(suite: type[BackendTests], names: list[str]) -> str:
    return (
        f"{suite.__name__} must define {' and '.join(names)}(backend, key, ...) to reach the "
        "underlying storage (files, dict, bucket) directly, bypassing the backend under "
        "test; see casstore.testing.BackendTests"
    )
