"""LocalBackend against a hostile store: links, special files, oversized objects, umask."""

import asyncio
import os
import stat
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from casstore.backends import LocalBackend
from casstore.errors import BackendError, IntegrityError

KEY = "v1/default/wf/" + "ab" * 32


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


async def test_a_linked_directory_inside_the_root_is_never_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    backend = LocalBackend(root)
    (root / "v1").symlink_to(outside)
    with pytest.raises(BackendError, match="link inside the store") as raised:
        await backend.put(KEY, b"data")
    assert "key=" + KEY in str(raised.value)
    with pytest.raises(BackendError, match="link inside the store"):
        await backend.get(KEY)
    with pytest.raises(BackendError, match="link inside the store"):
        await backend.stat(KEY)
    assert list(outside.rglob("*")) == []


async def test_a_linked_shard_directory_is_not_followed_for_reads(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (outside / "ab").mkdir(parents=True)
    (outside / "ab" / ("ab" * 32)).write_bytes(b"secret outside the store")
    backend = LocalBackend(root)
    (root / "v1/default/wf").mkdir(parents=True)
    (root / "v1/default/wf/ab").symlink_to(outside / "ab")
    with pytest.raises(BackendError, match="link inside the store"):
        await backend.get(KEY)
    with pytest.raises(BackendError, match="link inside the store"):
        await backend.delete(KEY)
    assert (outside / "ab" / ("ab" * 32)).exists()
    assert [key async for key, _ in backend.scan()] == []


async def test_an_object_replaced_by_a_link_is_refused(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "root")
    await backend.put(KEY, b"data")
    path = backend.path_for(KEY)
    path.unlink()
    path.symlink_to("/dev/zero")
    with pytest.raises(IntegrityError, match=r"symbolic link|link or special file"):
        await backend.get(KEY, max_size=100)
    with pytest.raises(IntegrityError, match="symbolic link"):
        await backend.stat(KEY)
    with pytest.raises(IntegrityError, match="symbolic link"):
        await backend.touch(KEY)
    await backend.delete(KEY)  # removes the link itself
    assert not path.is_symlink()
    assert Path("/dev/zero").exists()


async def test_a_fifo_in_place_of_an_object_is_refused_without_blocking(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "root")
    await backend.put(KEY, b"data")
    path = backend.path_for(KEY)
    path.unlink()
    os.mkfifo(path)
    async with asyncio.timeout(5):
        with pytest.raises(IntegrityError, match=r"FIFO|special file"):
            await backend.get(KEY, max_size=100)


async def test_reads_stop_at_max_size_before_allocating(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "root")
    await backend.put(KEY, b"small")
    path = backend.path_for(KEY)
    # A sparse 2 GiB file costs no disk; reading it whole would cost 2 GiB of memory.
    with path.open("r+b") as file:
        file.truncate(2 * 1024**3)
    with pytest.raises(IntegrityError, match=r"2147483648 bytes, above the 35 bytes") as raised:
        await backend.get(KEY, max_size=35)
    assert KEY in str(raised.value)


async def test_get_within_max_size_returns_the_whole_object(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "root")
    data = os.urandom(3 * 1024 * 1024 + 7)
    await backend.put(KEY, data)
    assert await backend.get(KEY, max_size=len(data)) == data
    assert await backend.get(KEY) == data


async def test_modes_are_fixed_whatever_the_umask(tmp_path: Path, umask_000: None) -> None:
    backend = LocalBackend(tmp_path / "root")
    await backend.put(KEY, b"data")
    assert stat.S_IMODE(backend.path_for(KEY).stat().st_mode) == 0o640
    assert stat.S_IMODE(backend.path_for(KEY).parent.stat().st_mode) == 0o750
    other = LocalBackend(tmp_path / "other", file_mode=0o600, dir_mode=0o700)
    await other.put(KEY, b"data")
    assert stat.S_IMODE(other.path_for(KEY).stat().st_mode) == 0o600
    assert stat.S_IMODE(other.path_for(KEY).parent.stat().st_mode) == 0o700


def test_the_root_and_its_missing_parents_get_dir_mode(tmp_path: Path, umask_000: None) -> None:
    LocalBackend(tmp_path / "default" / "root")
    assert stat.S_IMODE((tmp_path / "default").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "default" / "root").stat().st_mode) == 0o750
    LocalBackend(tmp_path / "private", dir_mode=0o700)
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o700
    # An existing root is the operator's: its mode is left as it is.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)
    LocalBackend(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o775


def test_a_file_where_the_root_belongs_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "root").write_bytes(b"not a directory")
    with pytest.raises(BackendError) as raised:
        LocalBackend(tmp_path / "root")
    assert str(tmp_path / "root") in str(raised.value)


async def test_stale_temp_files_are_removed_on_start_fresh_ones_kept(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    await backend.put(KEY, b"data")
    temps = tmp_path / ".tmp"
    stale, fresh = temps / "stale-writer", temps / "live-writer"
    stale.write_bytes(b"x" * 1000)
    fresh.write_bytes(b"y")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    (temps / "planted-link").symlink_to(tmp_path / "v1")
    LocalBackend(tmp_path)
    assert sorted(p.name for p in temps.iterdir()) == ["live-writer", "planted-link"]
    assert backend.remove_stale_temp_files(timedelta(0)) == 1
    assert (tmp_path / "v1").is_dir()
    assert await backend.get(KEY) == b"data"
