"""Storage backends: one interface, one module per backend.

The S3 backend lives in :mod:`casstore.backends.s3` so that importing this
package needs no AWS libraries.
"""

from casstore.backends._base import Backend, ObjectStat
from casstore.backends._local import LocalBackend
from casstore.backends._memory import MemoryBackend

__all__ = ["Backend", "LocalBackend", "MemoryBackend", "ObjectStat"]
