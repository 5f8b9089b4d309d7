"""Reading an object's body without reading more than the caller allows."""

from __future__ import annotations

from typing import Any

from casstore.errors import IntegrityError

_CHUNK = 1 << 20


async def read_bounded(
    body: Any, length: int | None, max_size: int | None, key: str, where: str
) -> bytes:
    """Read a streaming body (S3 GetObject, a GCS download), refusing one above ``max_size``.

    Args:
        body: The response's streaming body (``await body.read(n)``).
        length: Its ``Content-Length``, if the server sent one.
        max_size: The most bytes the caller accepts, or None for no bound.
        key: The object key (casstore's), for the error.
        where: The ``" [bucket=…, key=…]"`` suffix for the error.

    Raises:
        IntegrityError: The object is larger than ``max_size``; a body whose
            ``Content-Length`` says so is not read at all.
    """
    if max_size is None or (length is not None and length <= max_size):
        # The transport stops at Content-Length: no more than that arrives.
        return bytes(await body.read())
    if length is not None:
        raise _too_large(length, max_size, key, where)
    chunks: list[bytes] = []
    total = 0
    while chunk := await body.read(min(_CHUNK, max_size + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > max_size:
            raise _too_large(total, max_size, key, where)
    return b"".join(chunks)


def _too_large(size: int, max_size: int, key: str, where: str) -> IntegrityError:
    return IntegrityError(
        f"stored object is {size} bytes, above the {max_size} bytes its claim allows{where}",
        key=key,
    )
