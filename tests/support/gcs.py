"""GCS test places: a fresh bucket and prefix on the session's fake-gcs-server, with raw access.

The fixtures are in tests/conftest.py.

Raw access goes through testrig's stdlib client, never through gcloud-aio.
fake-gcs-server honours ``ifGenerationMatch=0`` on the multipart uploads the
backend sends, so the conformance suite runs with conditional writes on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from casstore.backends.gcs import GCSBackend
from testrig.gcs import FakeGCSServer, GCSClient


@dataclass
class GCSPlace:
    """A fresh bucket and prefix on the session's server, with raw access."""

    server: FakeGCSServer
    bucket: str
    prefix: str
    raw: GCSClient

    @property
    def url(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}?endpoint={self.server.endpoint}&emulator=true"

    def backend(self, **options: Any) -> GCSBackend:
        if "client" not in options:
            options.setdefault("endpoint", self.server.endpoint)
            options.setdefault("emulator", True)
        return GCSBackend(self.bucket, self.prefix, **options)

    def name(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    async def raw_get(self, key: str) -> bytes:
        return await asyncio.to_thread(self.raw.get, self.bucket, self.name(key))

    async def raw_put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self.raw.put, self.bucket, self.name(key), data)

    async def raw_keys(self, prefix: str | None = None) -> list[str]:
        start = self.prefix + "/" if prefix is None else prefix
        return sorted(await asyncio.to_thread(self.raw.list, self.bucket, start))
