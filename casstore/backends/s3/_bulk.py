"""S3 requests for many keys at once: batched deletes and server-side moves (used by gc)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from casstore.errors import BackendError, ObjectNotFoundError

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

DELETE_BATCH = 1000
"""S3's limit on keys per DeleteObjects request."""
COPY_CONCURRENCY = 16

Translate = Callable[[str, str], AbstractContextManager[None]]


async def delete_objects(
    client: S3Client, bucket: str, s3_keys: Sequence[str], translate: Translate
) -> None:
    """Delete keys with DeleteObjects, 1,000 a request; a key S3 refuses is an error."""
    for start in range(0, len(s3_keys), DELETE_BATCH):
        chunk = s3_keys[start : start + DELETE_BATCH]
        with translate("delete_many", chunk[0]):
            response = await client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
            )
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            key = first.get("Key", "")
            raise BackendError(
                f"S3 refused to delete {len(errors)} of {len(chunk)} objects, the first with "
                f"{first.get('Code')}: {first.get('Message')} [bucket={bucket}, key={key}]",
                key=key,
            )


async def copy_objects(
    client: S3Client, bucket: str, pairs: Sequence[tuple[str, str]], translate: Translate
) -> list[bool]:
    """Copy each ``(src, dst)`` server-side (dst gets a fresh LastModified); False: no src."""
    limit = asyncio.Semaphore(COPY_CONCURRENCY)

    async def copy(src: str, dst: str) -> bool:
        async with limit:
            try:
                with translate("move", src):
                    await client.copy_object(
                        Bucket=bucket, Key=dst, CopySource={"Bucket": bucket, "Key": src}
                    )
            except ObjectNotFoundError:
                return False
            return True

    return list(await asyncio.gather(*(copy(src, dst) for src, dst in pairs)))
