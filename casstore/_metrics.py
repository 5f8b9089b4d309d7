"""Reporting a driver's counters through a Temporal runtime's metric meter.

Temporal workers export their metrics through the SDK runtime (Prometheus or
OpenTelemetry, as the user configured it). :class:`DriverMetrics` puts
casstore's counters on the same meter, so they reach the same dashboards
under Temporal's naming conventions: snake_case names with a ``casstore_``
prefix (Temporal's own are ``temporal_...``), counters without a ``_total``
suffix and latencies as duration histograms (milliseconds, or seconds with
``durations_as_seconds``), exactly as the runtime exports its own.

The driver keeps counting in :class:`~casstore.DriverStats`; this module
adds the growth of those counters to the meter after each store and
retrieve call (:meth:`DriverMetrics.sync`), so the exported figures equal
``driver.stats`` whenever no call is in flight, and the driver's hot path only
increments integers. Backend request latencies are recorded per request.
docs/operations.md lists the metrics with sample queries.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from temporalio.common import MetricCounter, MetricHistogramTimedelta, MetricMeter

from casstore._stats import ERROR_KINDS, DriverStats

__all__ = ["COUNTERS", "REQUEST_LATENCY", "DriverMetrics", "MetricMeter", "reported", "timed"]

_BYTES = "By"
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Counter:
    name: str
    description: str
    unit: str
    values: Callable[[DriverStats], Mapping[str, int]]
    """The counter's values by its ``kind`` attribute ("" for none)."""
    kinds: tuple[str, ...] = ("",)
    """Every ``kind`` it can report: each series starts at 0, so dashboards and
    alerts see it before its first event."""


def _plain(field: str) -> Callable[[DriverStats], Mapping[str, int]]:
    return lambda stats: {"": getattr(stats, field)}


COUNTERS: tuple[_Counter, ...] = (
    _Counter(
        "casstore_payloads_stored",
        "Payloads handed to the casstore driver to store",
        "",
        _plain("payloads_stored"),
    ),
    _Counter(
        "casstore_payloads_retrieved",
        "Payloads the casstore driver retrieved",
        "",
        _plain("payloads_retrieved"),
    ),
    _Counter(
        "casstore_logical_bytes_stored",
        "Serialized size of the payloads handed to store",
        _BYTES,
        _plain("logical_bytes_stored"),
    ),
    _Counter(
        "casstore_dedup_hits",
        "Stores that wrote nothing because the content was already stored, by kind",
        "",
        lambda s: {
            "cache": s.dedup_cache_hits,
            "inflight": s.dedup_inflight_hits,
            "backend": s.dedup_backend_hits,
        },
        ("cache", "inflight", "backend"),
    ),
    _Counter(
        "casstore_objects_written",
        "Objects the casstore driver created in the store",
        "",
        _plain("objects_written"),
    ),
    _Counter(
        "casstore_logical_bytes_written",
        "Serialized size of the payloads in the objects written (before compression)",
        _BYTES,
        _plain("logical_bytes_written"),
    ),
    _Counter(
        "casstore_stored_bytes_written",
        "Bytes of the objects written (after compression, header included)",
        _BYTES,
        _plain("bytes_written"),
    ),
    _Counter(
        "casstore_objects_refreshed",
        "Existing objects whose age was reset before being reused (refresh_after)",
        "",
        _plain("objects_refreshed"),
    ),
    _Counter(
        "casstore_objects_read",
        "Objects read from the store (retrievals not served from memory)",
        "",
        _plain("objects_read"),
    ),
    _Counter(
        "casstore_stored_bytes_read",
        "Bytes of the objects read from the store",
        _BYTES,
        _plain("bytes_read"),
    ),
    _Counter(
        "casstore_retrieval_cache_hits",
        "Retrievals served without a read, by kind: cache (verified bytes in memory) "
        "or inflight (joined an identical read)",
        "",
        lambda s: {"cache": s.retrieval_cache_hits, "inflight": s.retrieval_inflight_hits},
        ("cache", "inflight"),
    ),
    _Counter(
        "casstore_backend_requests",
        "Requests made to the store, by kind (stat, put, get, touch)",
        "",
        lambda s: s.backend_requests,
        ("stat", "put", "get", "touch"),
    ),
    _Counter(
        "casstore_errors",
        "Store and retrieve failures, by kind (not_found, integrity, claim, backend, "
        "unavailable, permission, too_large, other)",
        "",
        lambda s: s.errors,
        ERROR_KINDS,
    ),
)

REQUEST_LATENCY = "casstore_backend_request_latency"


class DriverMetrics:
    """Exports a driver's counters to a Temporal ``MetricMeter``.

    Args:
        meter: The meter, normally ``runtime.metric_meter`` of the runtime the
            client uses (a no-op meter when the runtime exports no metrics).
        driver_name: Put on every metric as the ``driver`` attribute, so
            several drivers in one process stay apart.
    """

    def __init__(self, meter: MetricMeter, *, driver_name: str) -> None:
        self._meter = meter.with_additional_attributes({"driver": driver_name})
        self._counters: dict[str, MetricCounter] = {
            c.name: self._meter.create_counter(c.name, c.description, c.unit) for c in COUNTERS
        }
        self._latency: MetricHistogramTimedelta = self._meter.create_histogram_timedelta(
            REQUEST_LATENCY,
            "Time taken by requests to the store, by kind (stat, put, get, touch)",
            "duration",
        )
        self._reported: dict[tuple[str, str], int] = {}
        for counter in COUNTERS:
            for kind in counter.kinds:
                self._counters[counter.name].add(0, {"kind": kind} if kind else None)

    @property
    def meter(self) -> MetricMeter:
        """The meter the metrics go to (with the ``driver`` attribute)."""
        return self._meter

    def sync(self, stats: DriverStats) -> None:
        """Add to each counter what ``stats`` gained since the last sync."""
        for counter in COUNTERS:
            for kind, value in counter.values(stats).items():
                reported = self._reported.get((counter.name, kind), 0)
                if value > reported:
                    self._counters[counter.name].add(
                        value - reported, {"kind": kind} if kind else None
                    )
                    self._reported[(counter.name, kind)] = value

    def request(self, kind: str, elapsed: timedelta) -> None:
        """Record one backend request's latency."""
        self._latency.record(elapsed, {"kind": kind})


async def timed(metrics: DriverMetrics | None, kind: str, call: Callable[[], Awaitable[_T]]) -> _T:
    """Make a backend request, recording its latency when metrics are on."""
    if metrics is None:
        return await call()
    started = time.monotonic()
    try:
        return await call()
    finally:
        metrics.request(kind, timedelta(seconds=time.monotonic() - started))


async def reported(metrics: DriverMetrics | None, stats: DriverStats, work: Awaitable[_T]) -> _T:
    """Await a batch of store or retrieve work, then report the counters' growth."""
    try:
        return await work
    finally:
        if metrics is not None:
            metrics.sync(stats)
