"""GETs of one object: whole (bounded) and ranged, and the ListObjectsV2 listing.

Each function runs its requests bare: the backend wraps every call in its
``_translate`` context, which maps botocore errors to casstore's in one place.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from casstore.backends._download import read_bounded
from casstore.backends._keys import check_key
from casstore.backends.s3._errors import error_code
from casstore.errors import InvalidKeyError

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import ObjectTypeDef

__all__ = ["get_object", "get_object_range", "list_objects"]


async def get_object(
    client: S3Client, bucket: str, s3_key: str, key: str, max_size: int | None, where: str
) -> bytes:
    """GET the object's bytes, refusing one above ``max_size`` (see ``read_bounded``)."""
    response = await client.get_object(Bucket=bucket, Key=s3_key)
    body = response["Body"]
    # Entering the body yields aiohttp's response, whose read() takes no
    # size: read through botocore's StreamingBody, release on exit.
    async with body:
        return await read_bounded(body, response.get("ContentLength"), max_size, key, where)


async def get_object_range(
    client: S3Client, bucket: str, s3_key: str, key: str, offset: int, length: int, where: str
) -> bytes:
    """GET ``length`` (at least 1) bytes from ``offset`` with a ``Range`` header."""
    try:
        response = await client.get_object(
            Bucket=bucket, Key=s3_key, Range=f"bytes={offset}-{offset + length - 1}"
        )
    except ClientError as exc:
        if error_code(exc) == "InvalidRange":  # starts at or past the end
            return b""
        raise
    async with response["Body"] as body:
        # A server that ignores Range sends the whole object: slice it.
        ranged = "ContentRange" in response
        data = await read_bounded(
            body, response.get("ContentLength"), length if ranged else None, key, where
        )
    return data if ranged else data[offset : offset + length]


async def list_objects(
    client: S3Client,
    bucket: str,
    root: str,
    prefix: str,
    translate: Callable[[], AbstractContextManager[None]],
) -> AsyncIterator[tuple[str, ObjectTypeDef]]:
    """Yield (key, listing entry) under ``root + prefix``; foreign names are skipped."""
    pages = aiter(
        client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root + prefix)
    )
    while True:
        with translate():
            try:
                page = await anext(pages)
            except StopAsyncIteration:
                return
        for item in page.get("Contents", ()):
            key = item["Key"][len(root) :]
            # Skip foreign objects someone else put under our prefix.
            with contextlib.suppress(InvalidKeyError):
                yield check_key(key), item
