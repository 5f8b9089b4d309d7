"""Object-store test targets: moto and rclone (S3) and Azurite (Azure), all on loopback.

Every test gets an :class:`ObjStorePlace`: an empty bucket or container and a
prefix on one target, a factory for :class:`ObjectStoreBackend` on it, and raw
access that bypasses obstore (boto3 for S3, a SharedKey-signed stdlib client
for Azure; both blocking, run in a thread, and made once per session because
building a botocore client costs more CPU than a whole test). Backends are
always given credentials, and a metadata endpoint on a dead loopback port, so
nothing ever falls back to a cloud's instance metadata service.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from casstore.backends.objectstore import ObjectStoreBackend
from testrig.azurite import AzuriteBlobServer, BlobClient
from tests.support.s3 import RACED_DIRECTORY, S3Target

OBJSTORE_TARGETS = ["moto", "rclone", "azurite"]
# Bound for the whole session but never listening: connections are refused at
# once, and no server started later can take the port.
_DEAD_SOCKET = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
_DEAD_SOCKET.bind(("127.0.0.1", 0))
DEAD_ENDPOINT = f"http://127.0.0.1:{_DEAD_SOCKET.getsockname()[1]}"
"""Nothing listens here: where a missing credential would be looked up instead."""


WRONG_CREDENTIALS: dict[str, dict[str, Any]] = {
    "rclone": {"access_key_id": "AKIAWRONG"},
    "azurite": {"account_key": "d3Jvbmcga2V5"},
}
"""Credentials the targets that check signatures refuse (moto accepts any)."""


def target_server(request: pytest.FixtureRequest, target: str) -> S3Target | AzuriteBlobServer:
    """The running server of ``target``, from its session fixture."""
    server: S3Target | AzuriteBlobServer = request.getfixturevalue(
        "azurite" if target == "azurite" else f"{target}_s3"
    )
    return server


@dataclass
class ObjStorePlace:
    """An empty bucket or container and prefix on one target, with raw access."""

    target: str
    container: str
    prefix: str
    s3: Any = None
    """A blocking boto3 S3 client (S3 targets)."""
    blob: BlobClient | None = None
    s3_target: S3Target | None = None

    @property
    def conditional_writes(self) -> bool:
        return self.s3_target.conditional_writes if self.s3_target else True

    def backend(self, **options: Any) -> ObjectStoreBackend:
        """A backend on this place, as a user builds it (credentials given explicitly)."""
        container = options.pop("container", self.container)
        prefix = options.pop("prefix", self.prefix)
        options.setdefault("conditional_writes", self.conditional_writes)
        options.setdefault("max_retries", 2)
        if self.s3_target is not None:
            target = self.s3_target
            options.setdefault("access_key_id", target.access_key)
            options.setdefault("secret_access_key", target.secret_key)
            return ObjectStoreBackend.s3(
                container,
                prefix,
                endpoint=target.endpoint_url,
                region=target.region,
                metadata_endpoint=DEAD_ENDPOINT,
                **options,
            )
        assert self.blob is not None
        options.setdefault("account_key", self.blob.key)
        return ObjectStoreBackend.azure(
            container,
            prefix,
            account=self.blob.account,
            endpoint=self.blob.endpoint,
            msi_endpoint=DEAD_ENDPOINT,
            **options,
        )

    def full_key(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    async def raw_get(self, key: str) -> bytes:
        return await self.raw_get_name(self.full_key(key))

    async def raw_get_name(self, name: str) -> bytes:
        """Read an object by its full name in the bucket or container."""
        if self.s3 is not None:
            response = await asyncio.to_thread(self.s3.get_object, Bucket=self.container, Key=name)
            return await asyncio.to_thread(response["Body"].read)
        assert self.blob is not None
        return await asyncio.to_thread(self.blob.get, self.container, name)

    async def raw_put(self, key: str, data: bytes) -> None:
        await self.raw_put_name(self.full_key(key), data)

    async def raw_put_name(self, name: str, data: bytes) -> None:
        """Write an object under its full name in the bucket or container."""
        if self.s3 is not None:
            await asyncio.to_thread(self.s3.put_object, Bucket=self.container, Key=name, Body=data)
            return
        assert self.blob is not None
        await asyncio.to_thread(self.blob.put, self.container, name, data)

    async def raw_delete(self, key: str) -> None:
        if self.s3 is not None:
            await asyncio.to_thread(
                self.s3.delete_object, Bucket=self.container, Key=self.full_key(key)
            )
            return
        assert self.blob is not None
        await asyncio.to_thread(self.blob.delete, self.container, self.full_key(key))

    async def raw_keys(self, prefix: str | None = None) -> list[str]:
        """Names under the backend's prefix (or under ``prefix``), as stored."""
        start = self.prefix + "/" if prefix is None else prefix
        if self.s3 is not None:
            return await asyncio.to_thread(self._s3_keys, start)
        assert self.blob is not None
        return await asyncio.to_thread(self.blob.list, self.container, start)

    def _s3_keys(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.container, Prefix=prefix
        )
        return [item["Key"] for page in pages for item in page.get("Contents", ())]

    async def last_modified(self, name: str) -> datetime:
        """The stored object's last-modified time, by its full name."""
        if self.s3 is not None:
            head = await asyncio.to_thread(self.s3.head_object, Bucket=self.container, Key=name)
            modified: datetime = head["LastModified"]
            return modified
        assert self.blob is not None
        return await asyncio.to_thread(self.blob.last_modified, self.container, name)


@functools.cache
def _boto3_client(endpoint: str, access_key: str, secret_key: str, region: str) -> Any:
    import boto3  # type: ignore[import-untyped, unused-ignore]
    from botocore.config import Config  # type: ignore[import-untyped, unused-ignore]

    config = Config(
        s3={"addressing_style": "path"}, retries={"mode": "standard", "total_max_attempts": 3}
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=config,
    )


@asynccontextmanager
async def objstore_place(
    target: str, server: S3Target | AzuriteBlobServer
) -> AsyncIterator[ObjStorePlace]:
    """A fresh bucket (S3) or container (Azure) on ``server``, with a scratch prefix."""
    container = f"casstore-{secrets.token_hex(6)}"
    prefix = f"casstore-test/{secrets.token_hex(6)}/store"
    if isinstance(server, AzuriteBlobServer):
        client = server.client()
        await asyncio.to_thread(client.create_container, container)
        yield ObjStorePlace(target, container, prefix, blob=client)
        return
    assert server.endpoint_url is not None
    assert server.access_key is not None
    assert server.secret_key is not None
    raw = _boto3_client(server.endpoint_url, server.access_key, server.secret_key, server.region)
    await asyncio.to_thread(raw.create_bucket, Bucket=container)
    await asyncio.to_thread(server.prepare_directories, container, [f"{prefix}/{RACED_DIRECTORY}"])
    yield ObjStorePlace(target, container, prefix, s3=raw, s3_target=server)
