"""The object-store backend: S3 and Azure Blob Storage through obstore.

`obstore <https://developmentseed.org/obstore/>`_ is the Python binding of the
Rust ``object_store`` crate; a small request costs a fraction of the client
CPU botocore spends (docs/benchmarks.md), which is why ``s3://`` URLs build
this backend by default. This package is the only part of casstore that
imports ``obstore``; it needs the ``s3`` extra (``pip install casstore[s3]``,
obstore plus boto3 for the shared AWS config files) or, for Azure alone, the
``objectstore`` extra, and importing it without obstore raises an error
saying so (both a :class:`~casstore.errors.ConfigurationError` and an
``ImportError``).

One job per module: ``_options`` (defaults, checks, URL parsing, building
the obstore store), ``_errors`` (obstore errors mapped to casstore's),
``_listing`` (string-prefix listings), ``_transfer`` (single-object PUT
and GETs) and ``_backend``
(:class:`ObjectStoreBackend`). See docs/backends.md for URLs, credentials,
permissions and lifecycle pairing per service.
"""

from casstore.errors import ConfigurationError

try:
    import obstore  # noqa: F401 - checked here, used by the modules below
except ImportError as _exc:

    class ObjectStoreDependencyError(ConfigurationError, ImportError):
        """The object-store backend's optional dependency is not installed."""

    raise ObjectStoreDependencyError(
        "the object-store backend (s3:// and az:// URLs) needs obstore: "
        f"pip install casstore[s3] for S3, casstore[objectstore] for Azure ({_exc})"
    ) from _exc

from casstore.backends.objectstore._backend import ObjectStoreBackend
from casstore.backends.objectstore._options import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_RETRY_TIMEOUT,
    TouchMode,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_REQUEST_TIMEOUT",
    "DEFAULT_RETRY_TIMEOUT",
    "ObjectStoreBackend",
    "TouchMode",
]
