"""Redis test places: a fresh key prefix on the session's ``redis-server``, with raw access.

Raw access goes through a separate redis-py client of the test's own, never
through the backend under test. The fixtures are in tests/conftest.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from casstore.backends.redis import RedisBackend
from testrig.redis import RedisServer


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
