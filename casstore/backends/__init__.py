"""Storage backends: one interface, one module per backend.

:class:`Backend` is the contract (docs/backends.md, "Writing a backend");
every backend calls :func:`check_key` on every key before any I/O. The S3
backend lives in :mod:`casstore.backends.s3` so that importing this package
needs no AWS libraries.
"""

from casstore.backends._base import Backend, ObjectStat
from casstore.backends._keys import check_key
from casstore.backends._local import LocalBackend
from casstore.backends._memory import MemoryBackend
from casstore.backends._wrappers import CountingBackend

__all__ = [
    "Backend",
    "CountingBackend",
    "LocalBackend",
    "MemoryBackend",
    "ObjectStat",
    "check_key",
]
