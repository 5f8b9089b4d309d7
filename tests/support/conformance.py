"""What the server-backed conformance classes share: raw access through their place.

``casstore.testing.BackendTests`` needs ``raw_get``/``raw_put`` that bypass the
backend under test. Every server-backed suite already has a place object with
such access (boto3, a SharedKey client, ...); its ``backend`` fixture sets
``self.place`` and this mixin does the rest.
"""

from __future__ import annotations

from typing import Protocol

from casstore.backends import Backend


class RawPlace(Protocol):
    """A bucket, container or database with access that bypasses the backend."""

    async def raw_get(self, key: str) -> bytes: ...

    async def raw_put(self, key: str, data: bytes) -> None: ...


class RawThroughPlace:
    """``raw_get``/``raw_put`` for a suite whose ``backend`` fixture sets ``self.place``."""

    place: RawPlace

    async def raw_get(self, backend: Backend, key: str) -> bytes:
        return await self.place.raw_get(key)

    async def raw_put(self, backend: Backend, key: str, data: bytes) -> None:
        await self.place.raw_put(key, data)
