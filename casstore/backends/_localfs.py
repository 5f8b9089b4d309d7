"""File-system primitives for LocalBackend that never follow a link inside the root.

Every path below the root is walked one directory at a time with ``openat``
(``dir_fd``) and ``O_NOFOLLOW``, so a symbolic link planted anywhere inside
the store -- for a directory or for an object -- is refused instead of
followed out of it. Files are opened with ``O_NONBLOCK`` and checked with
``fstat`` before any read, so a FIFO or device in place of an object is
refused without blocking, and reads are bounded by the size the caller allows.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Iterator, Sequence

from casstore.backends._filekind import file_kind

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

_CHUNK = 1 << 20

TEMP_DIR = ".tmp"
"""Directory under the root holding objects being written (keys never start with '.')."""


class LinkRefusedError(OSError):
    """A symbolic link (or other non-directory) sits where a store directory belongs."""


class NotRegularError(OSError):
    """Something other than a regular file sits where an object belongs."""


class TooLargeError(OSError):
    """An object is larger than the caller allows."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"object is {size} bytes, above the {limit} bytes allowed")
        self.size = size
        self.limit = limit


def make_root(root: str, mode: int) -> None:
    """Create ``root`` and its missing parents, each with exactly ``mode``.

    An existing directory keeps the mode it has: it is the operator's. A
    directory another process creates meanwhile is left to that process.
    """
    missing = []
    path = os.path.abspath(root)
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", directory) from None
            continue
        os.chmod(directory, mode)  # mkdir's mode is filtered by the umask; chmod is not


@contextlib.contextmanager
def open_dir(
    root: str, parts: Sequence[str], *, create: bool = False, mode: int = 0o750
) -> Iterator[int]:
    """Yield a descriptor of ``root/parts...``, walking without following links.

    Args:
        root: The store root (itself may be a link: the operator chose it).
        parts: Directory names below the root.
        create: Create missing directories (with exactly ``mode``).
        mode: Permission bits of created directories, whatever the umask.

    Raises:
        LinkRefusedError: A part is a symbolic link or not a directory.
        FileNotFoundError: A part is missing and ``create`` is False.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in parts:
            parent, fd = fd, -1  # _step closes the parent, whatever happens
            fd = _step(parent, name, create=create, mode=mode)
        yield fd
    finally:
        if fd >= 0:
            os.close(fd)


def _step(parent: int, name: str, *, create: bool, mode: int) -> int:
    """Open ``name`` under ``parent`` (closing ``parent``); return the new descriptor."""
    try:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
        created = False
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent)
            created = True
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        if created:
            # mkdir's mode is filtered by the umask; fchmod is not.
            os.fchmod(fd, mode)
        return fd
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise LinkRefusedError(
                exc.errno, f"{name!r} inside the store is a link or not a directory"
            ) from exc
        raise
    finally:
        os.close(parent)


def lstat_regular(dir_fd: int, name: str) -> os.stat_result:
    """``lstat`` an object, refusing anything but a regular file."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularError(errno.EINVAL, f"{file_kind(st.st_mode)} where an object belongs")
    return st


def read_bounded(dir_fd: int, name: str, max_size: int | None) -> bytes:
    """Read a regular file, never more than ``max_size`` bytes.

    Raises:
        NotRegularError: The name is a link, FIFO, device, directory, ...
        TooLargeError: The file is larger than ``max_size``.
    """
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            raise NotRegularError(
                exc.errno, "a link or special file where an object belongs"
            ) from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularError(errno.EINVAL, f"{file_kind(st.st_mode)} where an object belongs")
        if max_size is not None and st.st_size > max_size:
            raise TooLargeError(st.st_size, max_size)
        # The first read is sized from fstat (plus one byte to notice growth)
        # and fills a bytes object directly: no intermediate buffer or copy.
        parts: list[bytes] = []
        total = 0
        budget = st.st_size + 1 if max_size is None else min(st.st_size, max_size) + 1
        while chunk := os.read(fd, budget):
            parts.append(chunk)
            total += len(chunk)
            if max_size is not None and total > max_size:
                raise TooLargeError(total, max_size)
            budget = _CHUNK if max_size is None else min(_CHUNK, max_size + 1 - total)
        return parts[0] if len(parts) == 1 else b"".join(parts)
    finally:
        os.close(fd)


def read_range(dir_fd: int, name: str, offset: int, length: int) -> bytes:
    """Read up to ``length`` bytes of a regular file from ``offset`` (``pread``).

    Raises:
        NotRegularError: The name is a link, FIFO, device, directory, ...
    """
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            raise NotRegularError(
                exc.errno, "a link or special file where an object belongs"
            ) from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularError(errno.EINVAL, f"{file_kind(st.st_mode)} where an object belongs")
        parts: list[bytes] = []
        at, end = offset, min(offset + length, st.st_size)
        while at < end and (chunk := os.pread(fd, end - at, at)):
            parts.append(chunk)
            at += len(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def write_temp(temp_dir: int, name: str, data: bytes, *, mode: int, fsync: bool) -> None:
    """Create ``name`` under ``temp_dir`` holding ``data``, with exactly ``mode``."""
    fd = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=temp_dir)
    try:
        os.fchmod(fd, mode)  # independent of the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def link_into_place(temps: int, temp: str, directory: int, name: str) -> bool:
    """Link ``temp`` into place as ``name``; False if ``name`` already exists."""
    try:
        os.link(temp, name, src_dir_fd=temps, dst_dir_fd=directory, follow_symlinks=False)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
    # No hard links here (some network and FUSE file systems): rename is
    # still atomic; replacing an object with identical bytes is harmless.
    try:
        os.stat(name, dir_fd=directory, follow_symlinks=False)
        return False
    except FileNotFoundError:
        os.replace(temp, name, src_dir_fd=temps, dst_dir_fd=directory)
        return True


def remove_stale_temps(root: str, max_age: float) -> int:
    """Delete temporary files older than ``max_age`` seconds; return how many.

    Only regular files directly in the temp directory are removed, so a link
    planted there cannot redirect the deletion.
    """
    removed = 0
    cutoff = time.time() - max_age
    try:
        with open_dir(root, [TEMP_DIR]) as fd:
            for name in os.listdir(fd):
                with contextlib.suppress(FileNotFoundError):
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode) and st.st_mtime <= cutoff:
                        os.unlink(name, dir_fd=fd)
                        removed += 1
    except FileNotFoundError:
        return 0
    return removed


def fsync_dir(dir_fd: int) -> None:
    """Persist a directory's entries, so a crash cannot lose a reported write."""
    os.fsync(dir_fd)
