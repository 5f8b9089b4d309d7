"""Redis test target: one Debian ``redis-server`` per session, a fresh prefix per test.

Raw access goes through a separate redis-py client of the test's own, never
through the backend under test.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis

from casstore.backends.redis import RedisBackend
from testrig.redis import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@dataclass
class RedisPlace:
    """A fresh key prefix on the session's server, with raw access."""

    server: RedisServer
    prefix: str
    raw: Redis

    @property
    def url(self) -> str:
        return f"{self.server.url}?prefix={self.prefix}"

    def backend(self, **options: Any) -> RedisBackend:
        options.setdefault("prefix", self.prefix)
        if "client" not in options:
            options.setdefault("host", "127.0.0.1")
            options.setdefault("port", self.server.port)
        return RedisBackend(**options)

    async def raw_get(self, key: str) -> bytes:
        found = await self.raw.get(f"{self.prefix}/{key}")
        assert found is not None, f"no Redis key {self.prefix}/{key}"
        assert isinstance(found, bytes)
        return found

    async def raw_put(self, key: str, data: bytes) -> None:
        await self.raw.set(f"{self.prefix}/{key}", data)

    async def raw_keys(self) -> list[str]:
        names = [name.decode() async for name in self.raw.scan_iter(match=f"{self.prefix}*")]
        return sorted(names)


@pytest.fixture
async def redis_place(redis_server: RedisServer) -> AsyncIterator[RedisPlace]:
    raw = Redis(host="127.0.0.1", port=redis_server.port)
    place = RedisPlace(redis_server, f"t-{secrets.token_hex(6)}", raw)
    try:
        yield place
    finally:
        names = [name async for name in raw.scan_iter(match=f"{place.prefix}*")]
        if names:
            await raw.delete(*names)
        await raw.aclose()
