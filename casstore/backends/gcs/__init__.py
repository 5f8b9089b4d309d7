"""The Google Cloud Storage backend: objects in a GCS bucket, on its JSON API.

This package is the only part of casstore that imports ``gcloud-aio-storage``
(the asyncio client the Temporal SDK's own GCS driver uses); it needs the
``gcs`` extra (``pip install casstore[gcs]``), and importing it without that
extra raises an error saying so (both a
:class:`~casstore.errors.ConfigurationError` and an ``ImportError``).

One job per module: ``_options`` (defaults, checks, URL parsing), ``_errors``
(aiohttp and gcloud-aio errors mapped to casstore's) and ``_backend``
(:class:`GCSBackend`). See docs/backends.md for URL options, credentials, IAM
permissions, lifecycle pairing and what the emulator cannot show.
"""

from casstore.errors import ConfigurationError

try:
    import gcloud.aio.storage  # noqa: F401 - checked here, used by the modules below
except ImportError as _exc:

    class GCSDependencyError(ConfigurationError, ImportError):
        """The GCS backend's optional dependency is not installed."""

    raise GCSDependencyError(
        f"the GCS backend needs gcloud-aio-storage: pip install casstore[gcs] ({_exc})"
    ) from _exc

from casstore.backends.gcs._backend import GCSBackend

__all__ = ["GCSBackend"]
