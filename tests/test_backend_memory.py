from collections.abc import AsyncIterator

import pytest

from casstore.backends import MemoryBackend
from casstore.testing import BackendTests


class TestMemoryBackend(BackendTests):
    @pytest.fixture
    async def backend(self) -> AsyncIterator[MemoryBackend]:
        async with MemoryBackend() as backend:
            yield backend
