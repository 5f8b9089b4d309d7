"""A backend written from docs/backends.md alone: the conformance suite and the driver on it.

``SqliteBackend`` below is the example of "Writing a backend", verbatim (a test
keeps the two the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from casstore import CasStorageDriver
from casstore.backends import Backend, ObjectStat, check_key
from casstore.errors import BackendError, IntegrityError, ObjectNotFoundError
from casstore.testing import BackendTests, DriverTests
from tests.support.sdk import big_json, in_workflow, make_converter


class SqliteBackend(Backend):
    """Each object is a row of one table in a SQLite file."""

    conditional_writes = True  # INSERT OR IGNORE says whether it inserted

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()  # one connection, used from worker threads
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS objects "
            "(key TEXT PRIMARY KEY, data BLOB NOT NULL, modified REAL NOT NULL)"
        )

    async def _sql(self, key: str, sql: str, *args: Any) -> tuple[list[Any], int]:
        def run() -> tuple[list[Any], int]:
            with self._lock:
                cursor = self._db.execute(sql, args)
                return cursor.fetchall(), cursor.rowcount

        try:
            return await asyncio.to_thread(run)  # blocking I/O stays off the event loop
        except sqlite3.Error as exc:
            raise BackendError(f"SQLite failed: {exc} [key={key}, path={self._path}]") from exc

    def _not_found(self, key: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(f"object not found [key={key}, path={self._path}]", key=key)

    async def stat(self, key: str) -> ObjectStat | None:
        sql = "SELECT length(data), modified FROM objects WHERE key = ?"
        rows, _ = await self._sql(key, sql, check_key(key))
        return ObjectStat(rows[0][0], datetime.fromtimestamp(rows[0][1], UTC)) if rows else None

    async def put(self, key: str, data: bytes) -> bool:
        sql = "INSERT OR IGNORE INTO objects VALUES (?, ?, ?)"
        _, inserted = await self._sql(key, sql, check_key(key), data, time.time())
        return inserted == 1

    async def get(self, key: str, *, max_size: int | None = None) -> bytes:
        # The size is checked in SQL: an object above max_size is never loaded.
        limit = -1 if max_size is None else max_size
        sql = (
            "SELECT CASE WHEN ? < 0 OR length(data) <= ? THEN data END, length(data) "
            "FROM objects WHERE key = ?"
        )
        rows, _ = await self._sql(key, sql, limit, limit, check_key(key))
        if not rows:
            raise self._not_found(key)
        data, size = rows[0]
        if data is None:
            raise IntegrityError(
                f"object is {size} bytes, above the {max_size} allowed [key={key}]", key=key
            )
        return bytes(data)

    async def touch(self, key: str) -> None:
        sql = "UPDATE objects SET modified = ? WHERE key = ?"
        _, updated = await self._sql(key, sql, time.time(), check_key(key))
        if not updated:
            raise self._not_found(key)

    async def delete(self, key: str) -> None:
        await self._sql(key, "DELETE FROM objects WHERE key = ?", check_key(key))

    async def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        # substr, not LIKE: '%' and '_' are ordinary characters in keys.
        sql = "SELECT key, length(data) FROM objects WHERE substr(key, 1, ?) = ? ORDER BY key"
        rows, _ = await self._sql(prefix, sql, len(prefix), prefix)
        for key, size in rows:
            yield key, size

    def describe(self) -> Mapping[str, str]:
        return {"backend": "sqlite", "path": self._path}

    async def aclose(self) -> None:
        self._db.close()


# The tests.

DOCS = Path(__file__).resolve().parents[1] / "docs" / "backends.md"


class TestSqliteBackend(BackendTests, DriverTests):
    # Timestamps finer than a second: a short refresh_after keeps the suite quick.
    refresh_after = timedelta(seconds=1)

    @pytest.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[SqliteBackend]:
        async with SqliteBackend(str(tmp_path / "store.db")) as backend:
            yield backend

    # Another connection to the same file: the backend under test is not involved.

    async def raw_get(self, backend: Backend, key: str) -> bytes:
        with contextlib.closing(sqlite3.connect(backend.describe()["path"])) as db:
            [(data,)] = db.execute("SELECT data FROM objects WHERE key = ?", (key,)).fetchall()
        return bytes(data)

    async def raw_put(self, backend: Backend, key: str, data: bytes) -> None:
        with contextlib.closing(sqlite3.connect(backend.describe()["path"])) as db, db:
            db.execute("INSERT INTO objects VALUES (?, ?, ?)", (key, data, time.time()))


async def test_the_driver_stores_dedups_and_retrieves_through_it(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    value = big_json(20_000)
    async with SqliteBackend(path) as backend:
        writer = CasStorageDriver(backend)
        stored = await in_workflow(make_converter(writer)).encode([value, value])
        assert writer.stats.objects_written == 1  # one object for both payloads
    async with SqliteBackend(path) as backend:
        # Another worker process: cold caches, same store.
        other = CasStorageDriver(backend)
        again = await in_workflow(make_converter(other)).encode([value])
        assert (other.stats.objects_written, other.stats.dedup_backend_hits) == (0, 1)
        assert len([key async for key, _ in backend.scan()]) == 1
        reader = CasStorageDriver(backend)
        assert await make_converter(reader).decode([again[0], *stored]) == [value] * 3
        assert reader.stats.objects_read == 1


def test_the_docs_show_this_backend_verbatim() -> None:
    assert inspect.getsource(SqliteBackend) in DOCS.read_text()
