"""The set of object keys gc's mark found referenced, in about 60 bytes a key.

A namespace with ten million live objects would hold ten million key strings
(``v1/<namespace>/<workflow>/<64 hex digits>``, 150-250 bytes each as Python
strings in a set): gigabytes. The mark keeps a 60-bit keyed hash of each key
instead, a small Python int (32 bytes) in a set of ints.

Safety: membership can answer a false "referenced" (two keys sharing a hash),
never a false "unreferenced": every key added is found again. gc only asks
"referenced?" to *keep* an object (or restore a trash copy), so a collision
can only keep garbage one more run, never delete a live object. The hash is
keyed with random bytes drawn per process, so keys chosen by someone who can
start workflows (workflow ids are part of keys) cannot be made to collide on
purpose; by chance, the first collision is expected after about 10^9 keys.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from hashlib import blake2b

_SALT = os.urandom(16)


def _hash(key: str) -> int:
    digest = blake2b(key.encode(), digest_size=8, key=_SALT).digest()
    # 60 bits: CPython stores ints below 2**60 in two 30-bit digits (32 bytes).
    return int.from_bytes(digest, "little") >> 4


class KeySet:
    """Object keys, held as hashes: ``in`` may say yes wrongly, never no wrongly."""

    __slots__ = ("_hashes",)

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._hashes: set[int] = {_hash(key) for key in keys}

    def add(self, key: str) -> None:
        """Remember ``key``."""
        self._hashes.add(_hash(key))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _hash(key) in self._hashes

    def __len__(self) -> int:
        return len(self._hashes)

    def __repr__(self) -> str:
        return f"KeySet({len(self)} keys)"
