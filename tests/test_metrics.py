"""The driver's counters on a real Temporal runtime's metric meter (buffered, no server).

The end-to-end test that scrapes a runtime's Prometheus endpoint after a real
workflow is in tests/test_ops_temporal.py.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_HISTOGRAM,
    MetricBuffer,
    Runtime,
    TelemetryConfig,
)

from casstore import CasStorageDriver, KeyRing
from casstore._format.claims import parse_claim_data
from casstore._metrics import COUNTERS, REQUEST_LATENCY
from casstore.backends import LocalBackend
from casstore.errors import IntegrityError, MissingKeyError, ObjectNotFoundError
from casstore.plugin import CasStorePlugin

TARGET = StorageDriverWorkflowInfo(namespace="default", id="order-1", run_id=None, type=None)


def payload(n: int, size: int = 10) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=b'"' + b"x" * size + b'%d"' % n)


class Buffered:
    """A runtime whose metrics go to a buffer, and the totals read back from it."""

    def __init__(self) -> None:
        self.buffer = MetricBuffer(100_000)
        self.runtime = Runtime(telemetry=TelemetryConfig(metrics=self.buffer))
        self.counters: Counter[tuple[str, str]] = Counter()
        self.histogram_counts: Counter[str] = Counter()
        self.drivers: set[str] = set()

    def drain(self) -> None:
        for update in self.buffer.retrieve_updates():
            attributes = dict(update.attributes)
            if not update.metric.name.startswith("casstore_"):
                continue
            self.drivers.add(str(attributes["driver"]))
            kind = str(attributes.get("kind", ""))
            if update.metric.kind == BUFFERED_METRIC_KIND_COUNTER:
                self.counters[(update.metric.name, kind)] += int(update.value)
            elif update.metric.kind == BUFFERED_METRIC_KIND_HISTOGRAM:
                assert update.metric.name == REQUEST_LATENCY
                self.histogram_counts[kind] += 1


def expected(driver: CasStorageDriver) -> Counter[tuple[str, str]]:
    """What the meter should have received: every non-zero counter of driver.stats."""
    want: Counter[tuple[str, str]] = Counter()
    for counter in COUNTERS:
        for kind, value in counter.values(driver.stats).items():
            if value:
                want[(counter.name, kind)] = value
    return want


async def test_the_meter_receives_exactly_the_drivers_stats(tmp_path: Path) -> None:
    metrics = Buffered()
    backend = LocalBackend(tmp_path, fsync=False)
    driver = CasStorageDriver(backend)
    driver.set_metric_meter(metrics.runtime.metric_meter)
    context = StorageDriverStoreContext(target=TARGET)

    claims = await driver.store(context, [payload(n) for n in range(5)])
    await driver.store(context, [payload(0), payload(1)])  # cache dedup
    other = CasStorageDriver(backend)
    other.set_metric_meter(metrics.runtime.metric_meter)
    await other.store(context, [payload(2, size=100_000)])  # a new large object
    await other.store(context, [payload(3)])  # backend dedup
    await other.retrieve(StorageDriverRetrieveContext(), claims[:3])  # reads
    await driver.retrieve(StorageDriverRetrieveContext(), claims[:2])  # cache hits
    # Failures, by kind: a corrupt object, then the same object missing.
    key = sorted([k async for k, _ in backend.scan()])[0]
    [claim] = [c for c in claims if parse_claim_data(c.claim_data, max_size=1 << 30).key == key]
    data = backend.path_for(key).read_bytes()
    backend.path_for(key).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    corrupt = CasStorageDriver(backend)
    corrupt.set_metric_meter(metrics.runtime.metric_meter)
    with pytest.raises(IntegrityError):
        await corrupt.retrieve(StorageDriverRetrieveContext(), [claim])
    await backend.delete(key)
    missing = CasStorageDriver(backend)
    missing.set_metric_meter(metrics.runtime.metric_meter)
    with pytest.raises(ObjectNotFoundError):
        await missing.retrieve(StorageDriverRetrieveContext(), [claim])

    metrics.drain()
    want = expected(driver) + expected(other) + expected(corrupt) + expected(missing)
    assert metrics.counters == want
    assert metrics.counters[("casstore_errors", "integrity")] == 1
    assert metrics.counters[("casstore_errors", "not_found")] == 1
    assert metrics.counters[("casstore_dedup_hits", "cache")] == 2
    assert metrics.counters[("casstore_dedup_hits", "backend")] == 1
    requests: Counter[str] = Counter()
    for d in (driver, other, corrupt, missing):
        requests += d.stats.backend_requests
    assert metrics.histogram_counts == requests
    assert metrics.drivers == {"casstore"}


async def test_the_plugin_reports_through_the_replayers_runtime(tmp_path: Path) -> None:
    metrics = Buffered()
    async with CasStorePlugin(str(tmp_path)) as plugin:
        plugin.configure_replayer({"runtime": metrics.runtime})
        await plugin.driver.store(StorageDriverStoreContext(target=TARGET), [payload(1)])
    metrics.drain()
    assert metrics.counters[("casstore_payloads_stored", "")] == 1
    assert metrics.counters == expected(plugin.driver)


async def test_metrics_false_leaves_the_driver_unreported(tmp_path: Path) -> None:
    metrics = Buffered()
    async with CasStorePlugin(str(tmp_path), metrics=False) as plugin:
        plugin.configure_replayer({"runtime": metrics.runtime})
        await plugin.driver.store(StorageDriverStoreContext(target=TARGET), [payload(1)])
    metrics.drain()
    assert metrics.counters == Counter()


async def test_a_missing_keyring_key_is_counted_as_its_own_kind(tmp_path: Path) -> None:
    metrics = Buffered()
    backend = LocalBackend(tmp_path, fsync=False)
    writer = CasStorageDriver(backend, keyring=KeyRing.from_bytes(bytes(32), key_id="k1"))
    [claim] = await writer.store(StorageDriverStoreContext(target=TARGET), [payload(1)])
    reader = CasStorageDriver(backend)  # no keyring
    reader.set_metric_meter(metrics.runtime.metric_meter)
    with pytest.raises(MissingKeyError):
        await reader.retrieve(StorageDriverRetrieveContext(), [claim])
    metrics.drain()
    assert reader.stats.errors == Counter({"missing_key": 1})
    assert metrics.counters[("casstore_errors", "missing_key")] == 1
