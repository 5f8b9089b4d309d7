"""A backend on the local file system: the embedded default."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from casstore.backends._base import Backend, ObjectStat, check_range, describe_backend
from casstore.backends._keys import check_key
from casstore.backends._localfs import (
    TEMP_DIR,
    LinkRefusedError,
    NotRegularError,
    TooLargeError,
    fsync_dir,
    link_into_place,
    lstat_regular,
    make_root,
    open_dir,
    read_bounded,
    read_range,
    remove_stale_temps,
    write_temp,
)
from casstore.backends._localscan import next_batch, walk
from casstore.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    IntegrityError,
    ObjectNotFoundError,
)

DEFAULT_FILE_MODE = 0o640
DEFAULT_DIR_MODE = 0o750
DEFAULT_STALE_TEMP_AGE = timedelta(hours=1)


class LocalBackend(Backend):
    """Stores each object as a file under ``root``.

    A key's last segment is sharded by its first two characters
    (``v1/default/wf/ab12…`` lives at ``root/v1/default/wf/ab/ab12…``) so no
    directory grows past a few thousand entries. Writes go to a uniquely named
    file in ``root/.tmp``, are fsynced, and are then hard-linked into place,
    which is atomic and fails if the object already exists: readers never see
    a partial object, and two processes writing the same key concurrently both
    succeed, exactly one of them creating it. Every key is checked before use.

    The store is treated as possibly hostile: paths below ``root`` are walked
    one directory at a time without following symbolic links (a link inside
    the store, to a directory or in place of an object, is refused, never
    followed out of it); anything but a regular file in place of an object is
    refused without blocking (a FIFO, a device); reads never return more than
    the caller's ``max_size``. Files and directories get fixed modes whatever
    the process umask. Temporary files left by a killed writer are removed
    when a backend is created, once older than ``stale_temp_age``.

    Blocking file I/O runs in worker threads, off the event loop.

    Args:
        root: Directory holding the objects; created if missing (with
            ``dir_mode``, as are missing parents).
        fsync: Flush each new object (and its directory entry) to stable
            storage before reporting it written. Turn off only for scratch
            stores whose loss after a crash is acceptable.
        file_mode: Permission bits of object files (default ``0o640``).
        dir_mode: Permission bits of directories created (default ``0o750``).
        stale_temp_age: Temporary files older than this are a dead writer's
            leftovers, removed on start; ``None`` skips the cleanup. Keep it
            well above the time one write can take.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fsync: bool = True,
        file_mode: int = DEFAULT_FILE_MODE,
        dir_mode: int = DEFAULT_DIR_MODE,
        stale_temp_age: timedelta | None = DEFAULT_STALE_TEMP_AGE,
    ) -> None:
        self._root = Path(root).expanduser().absolute()
        self._fsync = fsync
        self._file_mode = file_mode & 0o777
        self._dir_mode = dir_mode & 0o777
        with self._translate("", self._root):
            make_root(str(self._root), self._dir_mode)
            if stale_temp_age is not None:
                self.remove_stale_temp_files(stale_temp_age)

    @property
    def root(self) -> Path:
        """The directory holding the objects."""
        return self._root

    def path_for(self, key: str) -> Path:
        """Return the file that holds ``key`` (the key is checked first)."""
        *dirs, name = self._parts(key)
        return self._root.joinpath(*dirs, name)

    def remove_stale_temp_files(self, older_than: timedelta) -> int:
        """Delete temporary files older than ``older_than``; return how many.

        Safe while other processes write: a live writer's temporary file is
        younger than any sensible bound (it lives for one write).
        """
        with self._translate("", self._root / TEMP_DIR):
            return remove_stale_temps(str(self._root), older_than.total_seconds())

    async def stat(self, key: str) -> ObjectStat | None:
        return await asyncio.to_thread(self._stat, key, self._parts(key))

    async def put(self, key: str, data: bytes) -> bool:
        return await asyncio.to_thread(self._put, key, self._parts(key), data)

    async def get(self, key: str, *, max_size: int | None = None) -> bytes:
        return await asyncio.to_thread(self._get, key, self._parts(key), max_size)

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        check_range(offset, length)
        return await asyncio.to_thread(self._get_range, key, self._parts(key), offset, length)

    async def touch(self, key: str) -> None:
        await asyncio.to_thread(self._touch, key, self._parts(key))

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key, self._parts(key))

    async def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        """Like :meth:`scan_stat`, but entries that are not regular files are listed too.

        A link, FIFO or device where an object belongs is damage an operator
        must see: ``casstore verify`` reads it (the read refuses it, so it is
        reported bad) and ``stats`` counts it. gc judges from
        :meth:`scan_stat`, which skips them: it never moves or deletes what is
        not a regular file.
        """
        async for key, stat in self._walk(prefix, irregular=True):
            yield key, stat.size

    async def scan_stat(self, prefix: str = "") -> AsyncIterator[tuple[str, ObjectStat]]:
        """Walk the tree in a worker thread, a batch at a time.

        Memory stays bounded by the batch, not by the store, and only
        directories that can hold keys starting with ``prefix`` are entered.
        """
        async for item in self._walk(prefix, irregular=False):
            yield item

    async def _walk(self, prefix: str, *, irregular: bool) -> AsyncIterator[tuple[str, ObjectStat]]:
        steps = self._scan(prefix, irregular=irregular)
        try:
            while batch := await asyncio.to_thread(next_batch, steps):
                for item in batch:
                    yield item
        finally:
            steps.close()

    async def move(self, src: str, dst: str) -> bool:
        """Rename the file (atomic), then set its modification time to now."""
        [moved] = await self.move_many([(src, dst)])
        return moved

    async def move_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Rename each file in one worker thread; each directory is fsynced once."""
        items = [(src, self._parts(src), self._parts(dst)) for src, dst in pairs]
        return await asyncio.to_thread(self._move_many, items)

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Unlink each file in one worker thread (missing files are not errors)."""
        items = [(key, self._parts(key)) for key in keys]
        await asyncio.to_thread(self._delete_many, items)

    def describe(self) -> Mapping[str, str]:
        return {"backend": "local", "root": str(self._root)}

    # Blocking implementations, run in worker threads.

    @staticmethod
    def _parts(key: str) -> list[str]:
        *dirs, name = check_key(key).split("/")
        return [*dirs, name[:2], name]

    def _stat(self, key: str, parts: list[str]) -> ObjectStat | None:
        with self._translate(key, parts):
            try:
                with open_dir(str(self._root), parts[:-1]) as fd:
                    st = lstat_regular(fd, parts[-1])
            except FileNotFoundError:
                return None
        return ObjectStat(size=st.st_size, modified=datetime.fromtimestamp(st.st_mtime, UTC))

    def _put(self, key: str, parts: list[str], data: bytes) -> bool:
        root = str(self._root)
        name = parts[-1]
        with (
            self._translate(key, parts),
            open_dir(root, parts[:-1], create=True, mode=self._dir_mode) as directory,
        ):
            try:
                os.stat(name, dir_fd=directory, follow_symlinks=False)
                return False
            except FileNotFoundError:
                pass
            temp = f"{name[:16]}-{secrets.token_hex(8)}"
            with open_dir(root, [TEMP_DIR], create=True, mode=self._dir_mode) as temps:
                write_temp(temps, temp, data, mode=self._file_mode, fsync=self._fsync)
                try:
                    created = link_into_place(temps, temp, directory, name)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(temp, dir_fd=temps)
            if created and self._fsync:
                fsync_dir(directory)
            return created

    def _get(self, key: str, parts: list[str], max_size: int | None) -> bytes:
        with self._translate(key, parts), open_dir(str(self._root), parts[:-1]) as fd:
            return read_bounded(fd, parts[-1], max_size)

    def _get_range(self, key: str, parts: list[str], offset: int, length: int) -> bytes:
        with self._translate(key, parts), open_dir(str(self._root), parts[:-1]) as fd:
            return read_range(fd, parts[-1], offset, length)

    def _touch(self, key: str, parts: list[str]) -> None:
        with self._translate(key, parts), open_dir(str(self._root), parts[:-1]) as fd:
            lstat_regular(fd, parts[-1])
            os.utime(parts[-1], dir_fd=fd, follow_symlinks=False)

    def _delete(self, key: str, parts: list[str]) -> None:
        with (
            self._translate(key, parts),
            contextlib.suppress(FileNotFoundError),
            open_dir(str(self._root), parts[:-1]) as fd,
        ):
            # unlink removes a link itself, never what it points to.
            os.unlink(parts[-1], dir_fd=fd)

    def _delete_many(self, items: list[tuple[str, list[str]]]) -> None:
        for key, parts in items:
            self._delete(key, parts)

    def _move_many(self, items: list[tuple[str, list[str], list[str]]]) -> list[bool]:
        moved = [self._move(src, src_parts, dst_parts) for src, src_parts, dst_parts in items]
        if self._fsync:  # the renames are durable before anyone is told they happened
            touched = {
                tuple(parts[:-1])
                for (_, src_parts, dst_parts), done in zip(items, moved, strict=True)
                if done
                for parts in (src_parts, dst_parts)
            }
            for directory in sorted(touched):
                with (
                    self._translate("", list(directory), of_object=False),
                    open_dir(str(self._root), directory) as fd,
                ):
                    fsync_dir(fd)
        return moved

    def _move(self, src: str, src_parts: list[str], dst_parts: list[str]) -> bool:
        root = str(self._root)
        with self._translate(src, src_parts):
            try:
                with (
                    open_dir(root, src_parts[:-1]) as from_dir,
                    open_dir(root, dst_parts[:-1], create=True, mode=self._dir_mode) as to_dir,
                ):
                    # rename moves a link itself, never what it points to.
                    os.rename(src_parts[-1], dst_parts[-1], src_dir_fd=from_dir, dst_dir_fd=to_dir)
                    # The move's time, not the object's: gc dates trash copies by it.
                    os.utime(dst_parts[-1], dir_fd=to_dir, follow_symlinks=False)
                    return True  # _move_many fsyncs each directory once
            except FileNotFoundError:
                if not self._root.is_dir():
                    raise
                return False

    def _scan(self, prefix: str, *, irregular: bool) -> Generator[tuple[str, ObjectStat]]:
        with self._translate(prefix, [], of_object=False):
            yield from walk(self._root, prefix, irregular=irregular)

    @contextlib.contextmanager
    def _translate(
        self, key: str, parts: list[str] | Path, *, of_object: bool = True
    ) -> Iterator[None]:
        """Map OSError to casstore's hierarchy, naming key, path and root.

        ``of_object``: ``key`` is an object's (not a listing prefix), so errors
        carry it as their ``key``.
        """
        path = parts if isinstance(parts, Path) else self._root.joinpath(*parts)
        where = f"[key={key}, path={path}, root={self._root}]"
        about = {"key": key if of_object and key else None, "backend": describe_backend(self)}
        try:
            yield
        except TooLargeError as exc:
            raise IntegrityError(
                f"stored object is larger than its claim allows: {exc} {where}", **about
            ) from exc
        except NotRegularError as exc:
            raise IntegrityError(f"refusing to read {exc.strerror} {where}", **about) from exc
        except LinkRefusedError as exc:
            raise BackendError(
                f"refusing to follow a link inside the store: {exc.strerror} {where}", **about
            ) from exc
        except FileNotFoundError as exc:
            if not self._root.is_dir():
                raise BackendUnavailableError(
                    f"local store root is missing {where}", **about
                ) from exc
            raise ObjectNotFoundError(f"object not found {where}", **about) from exc
        except PermissionError as exc:
            raise BackendPermissionError(f"permission denied {where}: {exc}", **about) from exc
        except OSError as exc:
            raise BackendError(f"local store I/O failed {where}: {exc}", **about) from exc
