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

import typing

from casstore import errors
from casstore._driver import CasStorageDriver
from casstore._keyring import KeyRing
from casstore._stats import DriverStats
from casstore._url import open_backend

if typing.TYPE_CHECKING:
    from casstore.plugin import CasStorePlugin

__version__ = "0.1.0"

__all__ = [
    "CasStorageDriver",
    "CasStorePlugin",
    "DriverStats",
    "KeyRing",
    "__version__",
    "errors",
    "open_backend",
]


def __getattr__(name: str) -> object:
    # The plugin pulls in temporalio's client, worker and plugin machinery, which
    # a process that only stores payloads (or runs the codec server) never needs:
    # ``import casstore`` stays light, ``from casstore import CasStorePlugin`` works.
    if name == "CasStorePlugin":
        from casstore.plugin import CasStorePlugin

        return CasStorePlugin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
