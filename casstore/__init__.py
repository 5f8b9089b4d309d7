"""casstore: content-addressed, deduplicating external payload storage for Temporal.

Quick start::

    import dataclasses
    from temporalio.converter import DataConverter, ExternalStorage
    from casstore import CasStorageDriver
    from casstore.backends import LocalBackend

    driver = CasStorageDriver(LocalBackend("/var/lib/casstore"))
    converter = dataclasses.replace(
        DataConverter.default,
        external_storage=ExternalStorage(drivers=[driver], payload_size_threshold=0),
    )
"""

from casstore import errors
from casstore._driver import CasStorageDriver
from casstore._keyring import KeyRing
from casstore._stats import DriverStats
from casstore._url import open_backend

__version__ = "0.1.0"

__all__ = [
    "CasStorageDriver",
    "DriverStats",
    "KeyRing",
    "__version__",
    "errors",
    "open_backend",
]
