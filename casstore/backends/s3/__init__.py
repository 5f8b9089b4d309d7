"""The S3 backend: objects in an S3 bucket (AWS, MinIO, Ceph, R2, ...).

This package is the only part of casstore that imports ``aioboto3`` and
``botocore``; it needs the ``aioboto3`` extra (``pip install casstore[aioboto3]``),
and importing it without that extra raises an error saying so (both a
:class:`~casstore.errors.ConfigurationError` and an ``ImportError``).

One job per module: ``_options`` (defaults, checks, URL parsing), ``_errors``
(botocore errors mapped to casstore's), ``_client`` (the client: passed in, or
built on first use and closed), ``_upload`` (create-if-absent writes),
``_bulk`` (batched deletes and moves), ``_reads`` (GETs and listings) and
``_backend`` (:class:`S3Backend`);
bounded reads are shared with GCS (``casstore.backends._download``). See
docs/backends.md for configuration, URL options, IAM permissions, lifecycle pairing and the key
layout on S3.
"""

from casstore.errors import ConfigurationError

try:
    import aioboto3  # noqa: F401 - checked here, used by the modules below
    import botocore  # noqa: F401
except ImportError as _exc:

    class S3DependencyError(ConfigurationError, ImportError):
        """The S3 backend's optional dependencies are not installed."""

    raise S3DependencyError(
        "the aioboto3 S3 backend (S3Backend, s3:// URLs with client=aioboto3) needs "
        f"aioboto3: pip install casstore[aioboto3] ({_exc})"
    ) from _exc

from casstore.backends.s3._backend import S3Backend
from casstore.backends.s3._options import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_POOL_CONNECTIONS,
    DEFAULT_MULTIPART_CONCURRENCY,
    DEFAULT_MULTIPART_PART_SIZE,
    DEFAULT_MULTIPART_THRESHOLD,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_RETRY_MODE,
    MAX_PARTS,
    MIN_PART_SIZE,
    AddressingStyle,
    RetryMode,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_POOL_CONNECTIONS",
    "DEFAULT_MULTIPART_CONCURRENCY",
    "DEFAULT_MULTIPART_PART_SIZE",
    "DEFAULT_MULTIPART_THRESHOLD",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_RETRY_MODE",
    "MAX_PARTS",
    "MIN_PART_SIZE",
    "AddressingStyle",
    "RetryMode",
    "S3Backend",
]
