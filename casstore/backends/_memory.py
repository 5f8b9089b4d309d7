"""An in-process backend for unit tests and ephemeral use."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

from casstore.backends._base import Backend, ObjectStat, check_range, describe_backend
from casstore.backends._keys import check_key
from casstore.errors import IntegrityError, ObjectNotFoundError


class MemoryBackend(Backend):
    """Keeps objects in a dict; nothing survives the process.

    Useful for tests and for trying casstore out; not a stand-in for a shared
    store, since every worker process sees only its own objects.
    """

    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, datetime]] = {}

    async def stat(self, key: str) -> ObjectStat | None:
        entry = self._objects.get(check_key(key))
        return None if entry is None else ObjectStat(size=len(entry[0]), modified=entry[1])

    async def put(self, key: str, data: bytes) -> bool:
        if check_key(key) in self._objects:
            return False
        self._objects[key] = (bytes(data), datetime.now(UTC))
        return True

    async def get(self, key: str, *, max_size: int | None = None) -> bytes:
        try:
            data = self._objects[check_key(key)][0]
        except KeyError:
            raise ObjectNotFoundError(
                f"object not found [key={key}, backend=memory]",
                key=key,
                backend=describe_backend(self),
            ) from None
        if max_size is not None and len(data) > max_size:
            raise IntegrityError(
                f"stored object is {len(data)} bytes, above the {max_size} bytes its claim "
                f"allows [key={key}, backend=memory]",
                key=key,
                backend=describe_backend(self),
            )
        return data

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        check_range(offset, length)
        return (await self.get(key))[offset : offset + length]

    async def touch(self, key: str) -> None:
        data = await self.get(key)
        self._objects[key] = (data, datetime.now(UTC))

    async def delete(self, key: str) -> None:
        self._objects.pop(check_key(key), None)

    async def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        for key, (data, _) in sorted(self._objects.items()):
            if key.startswith(prefix):
                yield key, len(data)

    async def scan_stat(self, prefix: str = "") -> AsyncIterator[tuple[str, ObjectStat]]:
        for key, (data, modified) in sorted(self._objects.items()):
            if key.startswith(prefix):
                yield key, ObjectStat(size=len(data), modified=modified)

    async def move(self, src: str, dst: str) -> bool:
        check_key(dst)
        entry = self._objects.pop(check_key(src), None)
        if entry is None:
            return False
        self._objects[dst] = (entry[0], datetime.now(UTC))
        return True

    def describe(self) -> Mapping[str, str]:
        return {"backend": "memory"}
