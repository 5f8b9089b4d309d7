"""Operating a store: the ``casstore`` commands that inspect and check one.

Each command lives in its own private module exposing ``register(subparsers)``
for the CLI dispatcher; the work behind it is also callable from Python:

* :func:`store_stats` (``casstore stats``): objects and bytes by scope,
  namespace, workflow and codec;
* :func:`verify_store` (``casstore verify``): every object checked against
  the digest in its key.

See docs/operations.md.
"""

from casstore.ops._stats import StoreStats, store_stats
from casstore.ops._verify import BadObject, VerifyReport, verify_store

__all__ = ["BadObject", "StoreStats", "VerifyReport", "store_stats", "verify_store"]
