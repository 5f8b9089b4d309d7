"""Operating a store: the ``casstore`` commands that inspect and check one.

Each command lives in its own private module exposing ``register(subparsers)``
for the CLI dispatcher; the work behind it is also callable from Python:

* :func:`store_stats` (``casstore stats``): objects and bytes by scope,
  namespace, workflow and codec;
* :func:`verify_store` (``casstore verify``): every object checked against
  the digest in its key;
* :func:`collect_garbage` (``casstore gc``): a namespace's unreferenced
  objects moved to the trash, then deleted a grace later.

See docs/operations.md.
"""

from casstore.ops._gc import GcOptions, GcResult, collect_garbage
from casstore.ops._stats import StoreStats, store_stats
from casstore.ops._verify import BadObject, VerifyReport, verify_store

__all__ = [
    "BadObject",
    "GcOptions",
    "GcResult",
    "StoreStats",
    "VerifyReport",
    "collect_garbage",
    "store_stats",
    "verify_store",
]
