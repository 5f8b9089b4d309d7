import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from casstore.backends import Backend, LocalBackend
from casstore.errors import BackendError, ObjectNotFoundError
from casstore.testing import BackendTests, DriverTests


def leftover_temp_files(root: Path) -> list[str]:
    """Temporary files (in root/.tmp) and stray dot files anywhere else."""
    temps = root / ".tmp"
    found = [p.name for p in temps.iterdir()] if temps.is_dir() else []
    return found + [p.name for p in root.rglob(".*") if p != temps]


class TestLocalBackend(BackendTests, DriverTests):
    # Timestamps finer than a second: a short refresh_after keeps the suite quick.
    refresh_after = timedelta(seconds=1)

    @pytest.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[LocalBackend]:
        async with LocalBackend(tmp_path / "store") as backend:
            yield backend

    async def raw_get(self, backend: Backend, key: str) -> bytes:
        assert isinstance(backend, LocalBackend)
        return backend.path_for(key).read_bytes()

    async def raw_put(self, backend: Backend, key: str, data: bytes) -> None:
        assert isinstance(backend, LocalBackend)
        backend.path_for(key).parent.mkdir(parents=True, exist_ok=True)
        backend.path_for(key).write_bytes(data)

    async def test_objects_are_sharded_and_no_temp_files_remain(self, tmp_path: Path) -> None:
        backend = LocalBackend(tmp_path)
        key = "v1/default/wf/" + "ab" * 32
        await backend.put(key, b"data")
        assert (tmp_path / "v1/default/wf/ab" / ("ab" * 32)).read_bytes() == b"data"
        assert leftover_temp_files(tmp_path) == []

    async def test_no_path_outside_root_is_ever_written(self, tmp_path: Path) -> None:
        backend = LocalBackend(tmp_path / "root")
        for key in ("../x", "v1/../../x", "v1/%2E%2E/x"):
            with contextlib.suppress(ValueError):
                await backend.put(key, b"data")
        outside = [p for p in tmp_path.rglob("*") if not p.is_relative_to(tmp_path / "root")]
        assert outside == []

    async def test_root_that_is_a_file_is_a_backend_error(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_bytes(b"")
        with pytest.raises(BackendError, match="file"):
            LocalBackend(tmp_path / "file")


def _put_from_another_process(root: str, key: str, data: bytes) -> list[bool]:
    async def put_many() -> list[bool]:
        backend = LocalBackend(root)
        return [await backend.put(key, data) for _ in range(20)]

    return asyncio.run(put_many())


async def test_processes_writing_one_key_all_succeed_and_exactly_one_creates(
    tmp_path: Path,
) -> None:
    key = "v1/default/wf/" + "ef" * 32
    data = os.urandom(512 * 1024)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=context) as pool:
        futures = [
            pool.submit(_put_from_another_process, str(tmp_path), key, data) for _ in range(4)
        ]
        results = [created for future in futures for created in future.result()]
    assert results.count(True) == 1
    assert len(results) == 80
    assert await LocalBackend(tmp_path).get(key) == data
    assert leftover_temp_files(tmp_path) == []


async def test_readers_never_see_a_partial_object(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    data = os.urandom(32 * 1024 * 1024)
    keys = [f"v1/default/wf/{i:064x}" for i in range(4)]
    seen: list[int] = []
    done = threading.Event()

    def keep_reading() -> None:
        # Another process's view: plain reads in a loop while the writes happen.
        while not done.is_set():
            for key in keys:
                with contextlib.suppress(ObjectNotFoundError):
                    seen.append(len(asyncio.run(backend.get(key))))

    readers = [threading.Thread(target=keep_reading) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for key in keys:
            await backend.put(key, data)
    finally:
        done.set()
        for reader in readers:
            reader.join()
    assert seen
    assert set(seen) == {len(data)}


def _record_listings(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record every directory os.walk lists (it calls os.scandir once per directory)."""
    listed: list[Path] = []
    real = os.scandir

    def scandir(path: str) -> "os._ScandirIterator[str]":
        listed.append(Path(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return listed


async def test_a_listing_enters_only_directories_that_can_hold_the_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LocalBackend(tmp_path)
    digests = [f"{i:02x}" * 32 for i in range(16)]
    for namespace in ("billing", "default", "defaults"):
        for digest in digests:
            await backend.put(f"v1/{namespace}/wf/{digest}", b"data")
    listed = _record_listings(monkeypatch)

    keys = [key async for key, _ in backend.scan("v1/default/")]
    assert keys == [f"v1/default/wf/{digest}" for digest in digests]
    assert not any("billing" in p.parts or "defaults" in p.parts for p in listed)

    listed.clear()
    assert [key async for key, _ in backend.scan("v1/default/wf/0")] == [
        f"v1/default/wf/{digest}" for digest in digests if digest.startswith("0")
    ]
    # Only the shard directories 00..0f, not 10 and beyond.
    shards = {p.name for p in listed if p.parent.name == "wf"}
    assert shards == {d[:2] for d in digests if d.startswith("0")}


async def test_a_listing_streams_instead_of_walking_the_whole_store_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LocalBackend(tmp_path, fsync=False)
    keys = [f"v1/default/wf/{i:04x}" + "0" * 60 for i in range(3000)]
    await asyncio.gather(*(backend.put(key, b"x") for key in keys))
    shard_dirs = {key.rsplit("/", 1)[1][:2] for key in keys}
    listed = _record_listings(monkeypatch)

    listing = backend.scan_stat()
    first_key, first = await anext(listing)
    assert first_key == keys[0]
    assert first.size == 1
    # One batch (1,000 objects) is out; most shard directories are not yet listed.
    assert len([p for p in listed if p.name in shard_dirs]) < len(shard_dirs) / 2
    rest = [key async for key, _ in listing]
    assert [first_key, *rest] == sorted(keys)
