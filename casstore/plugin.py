"""CasStorePlugin: casstore as a temporalio plugin for clients, workers and replayers.

::

    from temporalio.client import Client
    from temporalio.worker import Worker
    from casstore.plugin import CasStorePlugin

    async with CasStorePlugin("s3://temporal-payloads/prod", payload_size_threshold=0) as plugin:
        client = await Client.connect("localhost:7233", plugins=[plugin])
        worker = Worker(client, task_queue="q", workflows=[...], activities=[...])

A plugin given to ``Client.connect`` also configures every ``Worker`` built
from that client (the SDK hands client plugins to workers); give it to a
``Replayer`` directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self, Unpack

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    ExternalStorage,
    StorageDriver,
    StorageDriverSelectContext,
)
from temporalio.plugin import SimplePlugin
from temporalio.runtime import Runtime
from temporalio.service import ConnectConfig, ServiceClient
from temporalio.worker import ReplayerConfig, WorkerConfig

from casstore._driver import CasStorageDriver
from casstore._driver_options import DriverOptions
from casstore._url import open_backend
from casstore.backends._base import Backend
from casstore.errors import ConfigurationError

__all__ = ["PLUGIN_NAME", "CasStorePlugin", "DriverOptions", "DriverSelector"]

PLUGIN_NAME = "casstore.CasStorePlugin"

DEFAULT_PAYLOAD_SIZE_THRESHOLD = 256 * 1024
"""The SDK's own default: payloads below 256 KiB stay inline in Event History."""

DriverSelector = Callable[[StorageDriverSelectContext, Payload], StorageDriver | None]
"""Chooses the driver that stores a payload, or ``None`` to keep it inline."""


class CasStorePlugin(SimplePlugin):
    """Installs casstore external storage on a client's (or replayer's) data converter.

    The plugin replaces only the data converter's ``external_storage``: the
    payload converter, payload codec and failure converter the application
    configured stay as they are.

    Args:
        store: Where payloads go: a backend URL (see
            :func:`casstore.open_backend`), a
            :class:`~casstore.backends.Backend`, or a ready
            :class:`~casstore.CasStorageDriver`.
        payload_size_threshold: Payloads at least this large (serialized) are
            stored externally; smaller ones stay inline. ``0`` stores every
            payload. Defaults to the SDK's 256 KiB.
        extra_drivers: More drivers registered for retrieval, e.g. the SDK's
            ``S3StorageDriver`` whose references are still in histories while
            moving to casstore. New payloads go to casstore unless
            ``driver_selector`` says otherwise.
        driver_selector: Picks the driver for each payload (or ``None`` to
            keep it inline), as ``ExternalStorage.driver_selector`` does; by
            default casstore stores everything above the threshold.
        metrics: Report the driver's counters through the metric meter of the
            Temporal runtime the client (or replayer) uses, so they reach the
            exporter configured there (docs/operations.md). ``False`` leaves
            the driver's meter alone.
        **driver_options: Options for the :class:`~casstore.CasStorageDriver`
            built from a URL or backend (``scope``, ``compression_level``, ...).

    Raises:
        ConfigurationError: For a bad store, a driver given together with
            driver options, or driver names that clash.

    A backend opened from a URL belongs to the plugin: close it with
    :meth:`aclose` (or ``async with plugin``) once the clients and workers
    using it are done. The SDK offers no client-shutdown hook to do it
    automatically. A backend or driver passed in stays the caller's to close.
    """

    def __init__(
        self,
        store: str | Backend | CasStorageDriver,
        *,
        payload_size_threshold: int = DEFAULT_PAYLOAD_SIZE_THRESHOLD,
        extra_drivers: Sequence[StorageDriver] = (),
        driver_selector: DriverSelector | None = None,
        metrics: bool = True,
        **driver_options: Unpack[DriverOptions],
    ) -> None:
        if isinstance(payload_size_threshold, bool) or payload_size_threshold < 0:
            raise ConfigurationError(
                f"payload_size_threshold must be zero or more bytes, got {payload_size_threshold!r}"
            )
        extra = list(extra_drivers)
        for extra_driver in extra:
            if not isinstance(extra_driver, StorageDriver):
                raise ConfigurationError(
                    f"extra_drivers must hold StorageDriver instances, "
                    f"got {type(extra_driver).__name__}"
                )
        self._owned_backend: Backend | None = None
        if isinstance(store, CasStorageDriver):
            if driver_options:
                raise ConfigurationError(
                    "driver options cannot be applied to a ready CasStorageDriver; pass a "
                    f"backend or URL instead, or drop {', '.join(sorted(driver_options))}"
                )
            driver = store
        elif isinstance(store, Backend):
            driver = CasStorageDriver(store, **driver_options)
        elif isinstance(store, str):
            # A freshly opened backend has done no I/O: nothing to release if this fails.
            # A store opened from a URL is a shared store: record its policy if it has none.
            driver_options.setdefault("lifecycle_manifest", True)
            driver = CasStorageDriver(open_backend(store), **driver_options)
            self._owned_backend = driver.backend
        else:
            raise ConfigurationError(
                "store must be a backend URL, a casstore Backend or a CasStorageDriver, "
                f"got {type(store).__name__}"
            )
        names = [driver.name(), *(d.name() for d in extra)]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise ConfigurationError(
                f"storage driver names must be unique, {', '.join(map(repr, clashes))} is "
                "used more than once; give the casstore driver another name= (names are "
                "recorded in references, so keep the one existing histories use)"
            )

        self._driver = driver
        self._metrics = metrics
        self._metrics_runtime: Runtime | None = None
        self._external_storage = ExternalStorage(
            drivers=[driver, *extra],
            # The SDK requires a selector once several drivers are registered.
            driver_selector=driver_selector
            if driver_selector is not None or not extra
            else lambda _context, _payload: driver,
            payload_size_threshold=payload_size_threshold,
        )
        super().__init__(
            PLUGIN_NAME, data_converter=self._configure_data_converter, run_context=self._ready
        )

    @property
    def driver(self) -> CasStorageDriver:
        """The casstore driver; ``plugin.driver.stats`` counts what it did."""
        return self._driver

    @property
    def backend(self) -> Backend:
        """The backend the casstore driver stores into."""
        return self._driver.backend

    @property
    def external_storage(self) -> ExternalStorage:
        """The ``ExternalStorage`` installed on data converters."""
        return self._external_storage

    def _report_metrics_to(self, runtime: Runtime | None) -> None:
        """Send the driver's metrics to the runtime the client uses (the first one seen)."""
        if not self._metrics or self._metrics_runtime is not None:
            return
        self._metrics_runtime = runtime or Runtime.default()
        self._driver.set_metric_meter(self._metrics_runtime.metric_meter)

    async def connect_service_client(
        self, config: ConnectConfig, next: Callable[[ConnectConfig], Awaitable[ServiceClient]]
    ) -> ServiceClient:
        """Connect as usual, reporting metrics through the runtime the connection uses."""
        self._report_metrics_to(config.runtime)
        return await super().connect_service_client(config, next)

    def configure_worker(self, config: WorkerConfig) -> WorkerConfig:
        """Configure as usual; a worker's client may come from elsewhere, so bind its runtime."""
        client = config.get("client")
        if client is not None:
            self._report_metrics_to(client.service_client.config.runtime)
        return super().configure_worker(config)

    def configure_replayer(self, config: ReplayerConfig) -> ReplayerConfig:
        """Configure as usual, reporting metrics through the replayer's runtime."""
        self._report_metrics_to(config.get("runtime"))
        return super().configure_replayer(config)

    def _configure_data_converter(self, existing: DataConverter | None) -> DataConverter:
        base = existing if existing is not None else DataConverter.default
        current = base.external_storage
        if current is self._external_storage:
            return base  # already applied, e.g. a client rebuilt from client.config()
        if current is not None:
            raise ConfigurationError(
                "the data converter already has external storage "
                f"(drivers: {', '.join(d.name() for d in current.drivers)}); remove it and "
                "pass those drivers to CasStorePlugin(extra_drivers=...) so references they "
                "wrote stay readable"
            )
        return dataclasses.replace(base, external_storage=self._external_storage)

    @asynccontextmanager
    async def _ready(self) -> AsyncIterator[None]:
        # Around each worker or replayer run: build the backend's client before
        # the first task, so no task's storage deadline pays for it.
        await self._driver.backend.open()
        yield

    async def aclose(self) -> None:
        """Close the backend this plugin opened from a URL (idempotent)."""
        backend, self._owned_backend = self._owned_backend, None
        if backend is not None:
            await backend.aclose()

    async def __aenter__(self) -> Self:
        await self._driver.backend.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        threshold = self._external_storage.payload_size_threshold
        return f"CasStorePlugin({self._driver!r}, payload_size_threshold={threshold})"
