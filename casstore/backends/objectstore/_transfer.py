"""Single-object transfers: create-if-absent PUT, bounded GET, ranged GET.

Every request runs inside the backend's ``translate`` context, which maps
obstore's errors to casstore's in one place; the casstore errors raised here
are the ones these functions decide themselves (an object above its bound, a
write conflict that never resolved).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Literal

import obstore
from obstore.exceptions import AlreadyExistsError, GenericError, PreconditionError
from obstore.store import AzureStore, S3Store

from casstore.backends.objectstore._errors import error, where
from casstore.errors import BackendUnavailableError, IntegrityError

__all__ = ["get_bounded", "get_range", "put_object"]

Translate = Callable[[str, str], AbstractContextManager[None]]

# AWS answers 409 ConditionalRequestConflict while another conditional write of
# the key is in flight, and asks for a retry; that resolves to 200 or 412.
_CONFLICT_ATTEMPTS = 4
_CONFLICT_BACKOFF = 0.05


async def put_object(
    store: S3Store | AzureStore,
    path: str,
    data: bytes,
    *,
    conditional: bool,
    translate: Translate,
    facts: Mapping[str, str],
) -> bool:
    """PUT in one request (``If-None-Match: *`` if ``conditional``); False if it existed."""
    mode: Literal["create", "overwrite"] = "create" if conditional else "overwrite"
    for attempt in range(_CONFLICT_ATTEMPTS):
        with translate("put", path):
            try:
                await obstore.put_async(store, path, data, mode=mode, use_multipart=False)
                return True
            except (AlreadyExistsError, PreconditionError) as exc:
                if "ConditionalRequestConflict" not in str(exc):
                    if isinstance(exc, AlreadyExistsError):
                        return False
                    raise
        await asyncio.sleep(_CONFLICT_BACKOFF * 2**attempt)
    raise error(
        BackendUnavailableError,
        f"the service kept reporting a conflicting concurrent write after "
        f"{_CONFLICT_ATTEMPTS} attempts{where(facts, path)}",
        path,
        facts,
    )


async def get_bounded(
    store: S3Store | AzureStore, path: str, max_size: int | None, facts: Mapping[str, str]
) -> bytes:
    """GET the object's bytes; one above ``max_size`` is refused before its body is read."""
    result = await obstore.get_async(store, path)
    size = int(result.meta["size"])
    if max_size is not None and size > max_size:
        message = f"stored object is {size} bytes, above the {max_size} bytes its claim"
        raise error(IntegrityError, f"{message} allows{where(facts, path)}", path, facts)
    body = await result.bytes_async()
    return body.to_bytes()


async def get_range(store: S3Store | AzureStore, path: str, offset: int, length: int) -> bytes:
    """GET ``length`` bytes from ``offset`` (a ranged request; fewer at the end)."""
    if length == 0:
        await obstore.head_async(store, path)  # still reports a missing object
        return b""
    try:
        body = await obstore.get_range_async(store, path, start=offset, length=length)
    except GenericError as exc:
        text = str(exc)
        if "Invalid range" in text or "InvalidRange" in text:
            return b""  # starts at or past the end
        if "non-partial response" not in text:
            raise
        # A server that ignores Range (rclone for some ranges): slice the object.
        whole = await (await obstore.get_async(store, path)).bytes_async()
        return whole.to_bytes()[offset : offset + length]
    return body.to_bytes()
