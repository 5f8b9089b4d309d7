from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from casstore.backends import Backend, MemoryBackend
from casstore.testing import BackendTests, DriverTests


class TestMemoryBackend(BackendTests, DriverTests):
    # Timestamps finer than a second: a short refresh_after keeps the suite quick.
    refresh_after = timedelta(seconds=1)

    @pytest.fixture
    async def backend(self) -> AsyncIterator[MemoryBackend]:
        async with MemoryBackend() as backend:
            yield backend

    # The raw accessors use the backend's dict itself, not its methods.

    async def raw_get(self, backend: Backend, key: str) -> bytes:
        assert isinstance(backend, MemoryBackend)
        return backend._objects[key][0]

    async def raw_put(self, backend: Backend, key: str, data: bytes) -> None:
        assert isinstance(backend, MemoryBackend)
        backend._objects[key] = (data, datetime.now(UTC))
