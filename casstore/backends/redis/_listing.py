"""Listing a prefix: ``SCAN MATCH`` pages, each object's size and time in one pipeline."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from casstore.backends._keys import check_key

SCAN_COUNT = 1000
_SCAN_PREFIX_RE = re.compile(r"[A-Za-z0-9._%/-]*")


def from_ms(stamp: Any) -> datetime:
    """A time stored as milliseconds since the epoch (the server's clock)."""
    return datetime.fromtimestamp(int(stamp) / 1000, UTC)


async def list_objects(
    redis: Callable[[], Awaitable[Redis]],
    translate: Callable[[str], AbstractContextManager[None]],
    root: str,
    times_root: str,
    prefix: str,
    *,
    times: bool,
) -> AsyncIterator[tuple[str, int, datetime]]:
    """Yield ``(key, size, modified)`` for the strings under ``root + prefix``, no duplicates.

    Args:
        redis: Returns the client (built and checked on first use).
        translate: Maps redis-py errors for the listing of the Redis prefix given.
        root: The objects' Redis prefix (``{prefix}/``).
        times_root: The modification times' Redis prefix (``{prefix}#modified/``).
        prefix: The casstore key prefix to list.
        times: Read each object's time (one ``MGET`` a page); without, ``modified`` is the epoch.
    """
    if not isinstance(prefix, str) or not _SCAN_PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"invalid scan prefix {prefix!r}")
    match = root + prefix + "*"
    seen: set[str] = set()  # SCAN may return a key more than once
    cursor = 0
    while True:
        with translate(root + prefix):
            client = await redis()
            cursor, names = await client.scan(cursor, match=match, count=SCAN_COUNT, _type="string")
            keys = [key for key in (_key_of(root, n) for n in names) if key and key not in seen]
            seen.update(keys)
            rows: list[Any] = []
            if keys:
                async with client.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.exists(root + key)
                        pipe.strlen(root + key)
                    if times:
                        pipe.mget([times_root + key for key in keys])
                        pipe.time()
                    rows = await pipe.execute()
        now_ms = 0
        stamps: list[Any] = [None] * len(keys)
        if times and keys:
            seconds, micros = rows[-1]
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            stamps = rows[-2]
        for index, key in enumerate(keys):
            if rows[2 * index]:  # deleted since SCAN saw it: skip
                stamp = stamps[index]
                modified = from_ms(int(stamp) if stamp is not None else now_ms)
                yield key, int(rows[2 * index + 1]), modified
        if cursor == 0:
            return


def _key_of(root: str, name: bytes | str) -> str | None:
    """The casstore key of a Redis key SCAN returned; None for a foreign one."""
    raw = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
    try:
        return check_key(raw[len(root) :])
    except ValueError:
        return None
