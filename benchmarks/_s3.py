"""S3 plumbing shared by the S3 drivers: one client recipe, one way of counting."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError
from types_aiobotocore_s3.client import S3Client


@dataclass(frozen=True)
class S3Endpoint:
    """Where an S3-compatible server listens and how to sign for it."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``aioboto3.Session().client("s3", ...)``.

        Every S3 driver gets the same client settings: botocore's defaults (as
        a user who follows the SDK's documentation gets them) plus path-style
        addressing, which a loopback endpoint needs.
        """
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            "config": Config(s3={"addressing_style": "path"}),
        }


@dataclass
class Traffic:
    """Requests and bytes, counted per request by kind (operation or file op)."""

    requests: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0
    bytes_received: int = 0

    def snapshot(self) -> Traffic:
        """Return an independent copy."""
        return Traffic(Counter(self.requests), self.bytes_sent, self.bytes_received)

    def __sub__(self, other: Traffic) -> Traffic:
        return Traffic(
            self.requests - other.requests,
            self.bytes_sent - other.bytes_sent,
            self.bytes_received - other.bytes_received,
        )


def count_requests(client: S3Client, traffic: Traffic) -> None:
    """Count every HTTP request ``client`` sends, by S3 operation, into ``traffic``.

    Hooks botocore's per-attempt events, so retries and the parts of a
    multipart upload each count as the requests they are. Bytes are the
    ``Content-Length`` of request and response bodies (headers excluded; a
    HEAD answer has no body).
    """

    def before_send(request: Any, event_name: str, **_: Any) -> None:
        traffic.requests[event_name.rsplit(".", 1)[-1]] += 1
        traffic.bytes_sent += int(request.headers.get("Content-Length") or 0)

    def response_received(
        response_dict: dict[str, Any] | None, event_name: str = "", **_: Any
    ) -> None:
        # A HEAD answer's Content-Length is the object's size, not a body sent.
        if response_dict is not None and not event_name.endswith(".HeadObject"):
            headers = response_dict.get("headers", {})
            traffic.bytes_received += int(headers.get("content-length") or 0)

    client.meta.events.register("before-send.s3", before_send)
    client.meta.events.register("response-received.s3", response_received)


def add_latency(client: S3Client, seconds: float) -> None:
    """Delay every request ``client`` sends by ``seconds``, like a network round trip.

    The delay is taken before the request gets a pooled connection, so many
    concurrent requests wait out their latency side by side: if anything, this
    flatters a driver that makes many concurrent requests.
    """

    async def delay(**_: Any) -> None:
        await asyncio.sleep(seconds)

    # aiobotocore awaits a handler's awaitable result; botocore's stubs only know sync handlers.
    client.meta.events.register("before-send.s3", delay)  # type: ignore[arg-type]


def bucket_name(*parts: str) -> str:
    """A fresh, valid bucket name made of ``parts`` and a random suffix."""
    stem = "-".join(p.lower().replace("_", "-") for p in parts)[:50].strip("-")
    return f"{stem}-{secrets.token_hex(4)}"


async def objects_at_rest(client: S3Client, bucket: str) -> tuple[int, int]:
    """Return how many objects ``bucket`` holds and their total size."""
    count = size = 0
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            count += 1
            size += item.get("Size", 0)
    return count, size


async def delete_bucket(client: S3Client, bucket: str) -> None:
    """Delete every object in ``bucket``, then the bucket if the server lets us.

    rclone may keep a bucket's emptied directories for a moment and refuse to
    delete it; the objects are gone, which is what keeps the server small.
    """
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", []) if "Key" in item]
        if keys:
            await client.delete_objects(Bucket=bucket, Delete={"Objects": keys})  # type: ignore[typeddict-item]
    with contextlib.suppress(ClientError):
        await client.delete_bucket(Bucket=bucket)
