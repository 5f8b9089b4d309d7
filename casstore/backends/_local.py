"""A backend on the local file system: the embedded default."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from casstore._keys import check_key
from casstore.backends._base import Backend, ObjectStat, describe_backend
from casstore.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    ObjectNotFoundError,
)

_TEMP_PREFIX = ".tmp-"


class LocalBackend(Backend):
    """Stores each object as a file under ``root``.

    A key's last segment is sharded by its first two characters
    (``v1/default/wf/ab12…`` lives at ``root/v1/default/wf/ab/ab12…``) so no
    directory grows past a few thousand entries. Writes go to a hidden
    temporary file in the target directory, are fsynced, and are then
    hard-linked into place, which is atomic and fails if the object already
    exists: readers never see a partial object, and two processes writing the
    same key concurrently both succeed, exactly one of them creating it. Every
    key is checked before use, so no key can name a path outside ``root``.

    Blocking file I/O runs in worker threads, off the event loop.

    Args:
        root: Directory holding the objects; created if missing.
        fsync: Flush each new object (and its directory entry) to stable
            storage before reporting it written. Turn off only for scratch
            stores whose loss after a crash is acceptable.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self._root = Path(root).expanduser().absolute()
        self._fsync = fsync
        with self._translate("", self._root):
            self._root.mkdir(parents=True, exist_ok=True)

    @property
    def root(self) -> Path:
        """The directory holding the objects."""
        return self._root

    def path_for(self, key: str) -> Path:
        """Return the file that holds ``key`` (the key is checked first)."""
        *dirs, name = check_key(key).split("/")
        return self._root.joinpath(*dirs, name[:2], name)

    async def stat(self, key: str) -> ObjectStat | None:
        return await asyncio.to_thread(self._stat, key, self.path_for(key))

    async def put(self, key: str, data: bytes) -> bool:
        return await asyncio.to_thread(self._put, key, self.path_for(key), data)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._get, key, self.path_for(key))

    async def touch(self, key: str) -> None:
        await asyncio.to_thread(self._touch, key, self.path_for(key))

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key, self.path_for(key))

    async def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        for key, stat in await asyncio.to_thread(self._scan, prefix):
            yield key, stat.size

    async def scan_stat(self, prefix: str = "") -> AsyncIterator[tuple[str, ObjectStat]]:
        for item in await asyncio.to_thread(self._scan, prefix):
            yield item

    async def move(self, src: str, dst: str) -> bool:
        """Rename the file (atomic), then set its modification time to now."""
        [moved] = await self.move_many([(src, dst)])
        return moved

    async def move_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Rename each file in one worker thread; each directory is fsynced once."""
        items = [(src, self.path_for(src), self.path_for(dst)) for src, dst in pairs]
        return await asyncio.to_thread(self._move_many, items)

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Unlink each file in one worker thread (missing files are not errors)."""
        paths = [(key, self.path_for(key)) for key in keys]
        await asyncio.to_thread(self._delete_many, paths)

    def describe(self) -> Mapping[str, str]:
        return {"backend": "local", "root": str(self._root)}

    # Blocking implementations, run in worker threads.

    def _stat(self, key: str, path: Path) -> ObjectStat | None:
        with self._translate(key, path):
            try:
                st = path.stat()
            except FileNotFoundError:
                return None
        return ObjectStat(size=st.st_size, modified=datetime.fromtimestamp(st.st_mtime, UTC))

    def _put(self, key: str, path: Path, data: bytes) -> bool:
        with self._translate(key, path):
            if path.exists():
                return False
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(f"{_TEMP_PREFIX}{path.name[:16]}-{secrets.token_hex(8)}")
            # O_EXCL: the random name is ours alone; 0o666 lets the umask decide.
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    file.flush()
                    if self._fsync:
                        os.fsync(file.fileno())
                created = self._link_into_place(temp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
            if created and self._fsync:
                _fsync_directory(path.parent)
            return created

    @staticmethod
    def _link_into_place(temp: Path, path: Path) -> bool:
        try:
            os.link(temp, path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
        # No hard links here (some network and FUSE file systems): rename is
        # still atomic; replacing an object with identical bytes is harmless.
        existed = path.exists()
        os.replace(temp, path)
        return not existed

    def _get(self, key: str, path: Path) -> bytes:
        with self._translate(key, path):
            return path.read_bytes()

    def _touch(self, key: str, path: Path) -> None:
        with self._translate(key, path):
            os.utime(path)

    def _delete(self, key: str, path: Path) -> None:
        with self._translate(key, path), contextlib.suppress(FileNotFoundError):
            path.unlink()

    def _delete_many(self, paths: list[tuple[str, Path]]) -> None:
        for key, path in paths:
            self._delete(key, path)

    def _move_many(self, items: list[tuple[str, Path, Path]]) -> list[bool]:
        moved = [self._move(src, src_path, dst_path) for src, src_path, dst_path in items]
        if self._fsync:  # the renames are durable before anyone is told they happened
            touched = {p.parent for (_, s, d), done in zip(items, moved, strict=True) if done
                       for p in (s, d)}  # fmt: skip
            for directory in sorted(touched):
                _fsync_directory(directory)
        return moved

    def _move(self, src: str, src_path: Path, dst_path: Path) -> bool:
        with self._translate(src, src_path):
            dst_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(src_path, dst_path)
            except FileNotFoundError:
                if not self._root.is_dir():
                    raise
                return False
            # The move's time, not the object's: gc dates trash copies by it.
            os.utime(dst_path)
            return True

    def _scan(self, prefix: str) -> list[tuple[str, ObjectStat]]:
        found: list[tuple[str, ObjectStat]] = []
        with self._translate(prefix, self._root, of_object=False):
            for directory, dirnames, filenames in os.walk(self._root):
                dirnames.sort()
                parts = Path(directory).relative_to(self._root).parts
                for name in sorted(filenames):
                    if name.startswith(".") or not parts:
                        continue
                    key = "/".join((*parts[:-1], name))
                    if key.startswith(prefix):
                        with contextlib.suppress(FileNotFoundError):
                            st = os.stat(os.path.join(directory, name))
                            modified = datetime.fromtimestamp(st.st_mtime, UTC)
                            found.append((key, ObjectStat(size=st.st_size, modified=modified)))
        return found

    @contextlib.contextmanager
    def _translate(self, key: str, path: Path, *, of_object: bool = True) -> Iterator[None]:
        """Map OSError to casstore's hierarchy, naming key, path and root.

        ``of_object``: ``key`` is an object's (not a listing prefix), so errors
        carry it as their ``key``.
        """
        where = f"[key={key}, path={path}, root={self._root}]"
        about = {"key": key if of_object and key else None, "backend": describe_backend(self)}
        try:
            yield
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


def _fsync_directory(directory: Path) -> None:
    # Persist the new directory entry, so a crash cannot lose a reported write.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
