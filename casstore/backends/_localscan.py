"""LocalBackend's listing: a walk of the sharded tree that enters only what can match.

The walk is blocking and runs in a worker thread, a batch at a time
(:func:`next_batch`), so memory stays bounded by the batch, not the store.
Errors are raised as ``OSError`` for the backend to translate.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from pathlib import Path

from casstore.backends._base import ObjectStat
from casstore.backends._localfs import NotRegularError, lstat_regular, open_dir

__all__ = ["next_batch", "walk"]

_SCAN_BATCH = 1000
"""Objects a listing hands over per worker-thread step."""


def next_batch(walk: Iterator[tuple[str, ObjectStat]]) -> list[tuple[str, ObjectStat]]:
    """The next batch of a walk (empty at its end)."""
    return list(itertools.islice(walk, _SCAN_BATCH))


def walk(root: Path, prefix: str, *, irregular: bool) -> Generator[tuple[str, ObjectStat]]:
    """Yield (key, stat) for the objects under ``root`` whose keys start with ``prefix``.

    ``irregular``: also list entries that are not regular files (links,
    FIFOs, devices), with their own lstat.
    """
    # os.walk does not descend into linked directories; lstat skips linked
    # files. A directory removed mid-walk is skipped; other errors raise,
    # so a listing never silently leaves part of the store out.
    for directory, dirnames, filenames in os.walk(root, onerror=_raise_unless_gone):
        parts = Path(directory).relative_to(root).parts
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and _may_hold(parts, d, prefix)
        )
        if not parts:
            continue  # files at the root are not objects
        names = [
            name
            for name in sorted(filenames)
            if not name.startswith(".") and "/".join((*parts[:-1], name)).startswith(prefix)
        ]
        if names:
            yield from _stat_all(root, parts, names, irregular=irregular)


def _stat_all(
    root: Path, parts: tuple[str, ...], names: list[str], *, irregular: bool
) -> Iterator[tuple[str, ObjectStat]]:
    try:
        with open_dir(str(root), list(parts)) as fd:
            for name in names:
                try:
                    st = lstat_regular(fd, name)
                except FileNotFoundError:
                    continue  # deleted meanwhile
                except NotRegularError:
                    if not irregular:
                        continue  # not a file: not an object
                    try:
                        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                modified = datetime.fromtimestamp(st.st_mtime, UTC)
                yield "/".join((*parts[:-1], name)), ObjectStat(st.st_size, modified)
    except FileNotFoundError:
        return  # the directory went away mid-walk


def _may_hold(parts: tuple[str, ...], name: str, prefix: str) -> bool:
    """Whether directory ``parts/name`` can hold a key that starts with ``prefix``.

    Every key below it starts with ``a/b/name`` (a sharding directory ``ab`` is
    the first two characters of its files' names), so it can match only if
    that path and the prefix are prefixes one of the other.
    """
    path = "/".join((*parts, name))
    return path.startswith(prefix) or prefix.startswith(path)


def _raise_unless_gone(error: OSError) -> None:
    if not isinstance(error, FileNotFoundError):
        raise error
