"""Creating an S3 object unless it exists: one PutObject, or a multipart upload."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from casstore.backends._aio import gather_cancel_on_error
from casstore.backends.s3._errors import TRANSIENT, raise_unless_lost_race
from casstore.backends.s3._options import MAX_PARTS
from casstore.errors import BackendUnavailableError, ObjectNotFoundError

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import (
        CompletedPartTypeDef,
        CompleteMultipartUploadRequestTypeDef,
        PutObjectRequestTypeDef,
    )

CLEANUP_TIMEOUT = 5.0
"""Seconds a best-effort cleanup (aborting an upload) may take."""


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
    background: Callable[[Coroutine[Any, Any, None]], None]
    """Runs a best-effort cleanup without making the caller wait for it."""
    live: set[str]
    """Ids of the uploads this backend is running: never orphans."""


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
    try:
        with target.errors():
            upload = await client.create_multipart_upload(Bucket=bucket, Key=s3_key)
    except BaseException:
        # The server may have created an upload whose answer was lost (a reset,
        # a timeout): nothing knows its id, so it is found by its key.
        target.background(_abort_orphans(target))
        raise
    upload_id = upload["UploadId"]
    target.live.add(upload_id)
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
        try:
            with target.errors():
                try:
                    await client.complete_multipart_upload(**request)
                    return True
                except ClientError as exc:
                    raise_unless_lost_race(exc)
        except (BackendUnavailableError, ObjectNotFoundError) as exc:
            # The answer was lost (the upload may have completed), or a retried
            # Complete found the upload gone: whoever completed it, the object
            # is there if it has our size, and content-addressed bytes match.
            if await _holds(target, len(data)):
                return True
            if isinstance(exc, BackendUnavailableError):
                raise
            raise BackendUnavailableError(
                f"multipart upload {upload_id} vanished before it completed (aborted by a "
                f"cleanup or a lifecycle rule); the object is not there [key={s3_key}]",
                key=s3_key,
            ) from exc
    except BaseException:
        # Not awaited: a caller past its deadline must not wait on a cleanup.
        target.background(_abort(target, upload_id))
        raise
    finally:
        target.live.discard(upload_id)
    # Lost the race: the upload was never completed, so free its parts.
    await _abort(target, upload_id)
    return False


async def _holds(target: UploadTarget, size: int) -> bool:
    """Return True if the object exists with ``size`` bytes (one HEAD)."""
    with contextlib.suppress(ClientError, BotoCoreError, *TRANSIENT):
        head = await target.client.head_object(Bucket=target.bucket, Key=target.s3_key)
        return bool(head["ContentLength"] == size)
    return False


async def _abort_orphans(target: UploadTarget) -> None:
    """Abort uploads of the key that no writer here is running: answers lost in transit.

    An upload some other process runs for the same key at that moment is
    aborted too; its Complete then fails, it finds the object or retries (the
    error is transient). Needs ``s3:ListBucketMultipartUploads``; the
    lifecycle rule is the backstop. Start times are not compared: servers'
    clocks (and some servers' answers) cannot be trusted for that.
    """
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLEANUP_TIMEOUT):
            listing = await target.client.list_multipart_uploads(
                Bucket=target.bucket, Prefix=target.s3_key
            )
            for upload in listing.get("Uploads", []):
                upload_id = upload["UploadId"]
                if upload.get("Key") == target.s3_key and upload_id not in target.live:
                    await _abort(target, upload_id)


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
        async with asyncio.timeout(CLEANUP_TIMEOUT):
            await target.client.abort_multipart_upload(
                Bucket=target.bucket, Key=target.s3_key, UploadId=upload_id
            )
