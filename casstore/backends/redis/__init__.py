"""The Redis backend: each object a Redis string, with an optional TTL.

This package is the only part of casstore that imports ``redis`` (redis-py);
it needs the ``redis`` extra (``pip install casstore[redis]``), and importing
it without that extra raises an error saying so (both a
:class:`~casstore.errors.ConfigurationError` and an ``ImportError``).

One job per module: ``_options`` (defaults, checks, URL parsing), ``_errors``
(redis-py errors mapped to casstore's), ``_scripts`` (the Lua scripts that
make each operation atomic) and ``_backend`` (:class:`RedisBackend`). See
docs/backends.md for URL options, what Redis promises and what it does not,
and lifecycle pairing.
"""

from casstore.errors import ConfigurationError

try:
    import redis  # noqa: F401 - checked here, used by the modules below
except ImportError as _exc:

    class RedisDependencyError(ConfigurationError, ImportError):
        """The Redis backend's optional dependency is not installed."""

    raise RedisDependencyError(
        f"the Redis backend needs redis-py: pip install casstore[redis] ({_exc})"
    ) from _exc

from casstore.backends.redis._backend import RedisBackend
from casstore.backends.redis._options import MAX_STRING_SIZE

__all__ = ["MAX_STRING_SIZE", "RedisBackend"]
