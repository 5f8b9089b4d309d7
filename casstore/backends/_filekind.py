"""Name what kind of file stands where a regular file was expected, for error messages."""

from __future__ import annotations

import stat

__all__ = ["file_kind"]

_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """``"a directory"``, ``"a FIFO"``, ... for a ``st_mode`` that is not a regular file."""
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "a non-regular file"
