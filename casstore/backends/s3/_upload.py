"""Creating an S3 object unless it exists: one PutObject, or a multipart upload."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from casstore._aio import gather_cancel_on_error
from casstore.backends.s3._errors import raise_unless_lost_race
from casstore.backends.s3._options import MAX_PARTS

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import (
        CompletedPartTypeDef,
        CompleteMultipartUploadRequestTypeDef,
        PutObjectRequestTypeDef,
    )


@dataclass(frozen=True)
class UploadTarget:
    """Where an upload goes and how it reports errors."""

    client: S3Client
    bucket: str
    s3_key: str
    conditional: bool
    """Send ``If-None-Match: *``, so that a lost create race answers 412."""
    errors: Callable[[], AbstractContextManager[None]]
    """Returns a context that maps botocore errors to casstore's."""


async def put_single(target: UploadTarget, data: bytes) -> bool:
    """PutObject; return False if the server said the object already existed (412).

    Raises:
        ConditionalConflict: For 409, a concurrent conditional write in flight.
    """
    request: PutObjectRequestTypeDef = {"Bucket": target.bucket, "Key": target.s3_key, "Body": data}
    if target.conditional:
        request["IfNoneMatch"] = "*"
    with target.errors():
        try:
            await target.client.put_object(**request)
        except ClientError as exc:
            raise_unless_lost_race(exc)
            return False
    return True


async def put_multipart(
    target: UploadTarget, data: bytes, part_size: int, concurrency: int
) -> bool:
    """Upload in parts and complete conditionally; abort the upload if anything fails.

    Returns:
        False if the server refused to complete it because the object exists.

    Raises:
        ConditionalConflict: For 409, a concurrent conditional write in flight.
    """
    client, bucket, s3_key = target.client, target.bucket, target.s3_key
    with target.errors():
        upload = await client.create_multipart_upload(Bucket=bucket, Key=s3_key)
    upload_id = upload["UploadId"]
    try:
        parts = await _upload_parts(target, upload_id, data, part_size, concurrency)
        request: CompleteMultipartUploadRequestTypeDef = {
            "Bucket": bucket,
            "Key": s3_key,
            "UploadId": upload_id,
            "MultipartUpload": {"Parts": parts},
        }
        if target.conditional:
            request["IfNoneMatch"] = "*"
        with target.errors():
            try:
                await client.complete_multipart_upload(**request)
                return True
            except ClientError as exc:
                raise_unless_lost_race(exc)
    except BaseException:
        await _abort(target, upload_id)
        raise
    # Lost the race: the upload was never completed, so free its parts.
    await _abort(target, upload_id)
    return False


async def _upload_parts(
    target: UploadTarget, upload_id: str, data: bytes, part_size: int, concurrency: int
) -> list[CompletedPartTypeDef]:
    part_size = max(part_size, -(-len(data) // MAX_PARTS))
    limit = asyncio.Semaphore(concurrency)

    async def upload(number: int, start: int) -> CompletedPartTypeDef:
        async with limit:
            # botocore takes bytes or file objects, not memoryviews: each
            # part in flight costs one part-sized copy.
            body = data[start : start + part_size]
            with target.errors():
                part = await target.client.upload_part(
                    Bucket=target.bucket,
                    Key=target.s3_key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                )
        return {"PartNumber": number, "ETag": part["ETag"]}

    starts = range(0, len(data), part_size)
    return await gather_cancel_on_error(
        [upload(number, start) for number, start in enumerate(starts, 1)]
    )


async def _abort(target: UploadTarget, upload_id: str) -> None:
    # Best effort: the original error matters more, and an
    # AbortIncompleteMultipartUpload lifecycle rule cleans up leftovers.
    with contextlib.suppress(Exception):
        await asyncio.shield(
            target.client.abort_multipart_upload(
                Bucket=target.bucket, Key=target.s3_key, UploadId=upload_id
            )
        )
