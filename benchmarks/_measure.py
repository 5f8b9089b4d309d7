"""What one repetition measures, and how phases are timed."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from benchmarks._drivers import Rig
from benchmarks._s3 import Traffic

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Sample:
    """The figures of one scenario repetition for one driver."""

    phases: dict[str, float] = field(default_factory=dict)
    """Wall seconds per phase (``store``, ``retrieve``, or ``run``)."""
    cpu_s: float = 0.0
    """CPU seconds of this process (all threads) over the timed phases."""
    server_cpu_s: float | None = None
    """CPU seconds of the servers this run started, when known."""
    requests: dict[str, int] = field(default_factory=dict)
    bytes_sent: int = 0
    bytes_received: int = 0
    objects_at_rest: int = 0
    bytes_at_rest: int = 0
    payloads: int = 0
    """Payloads stored (references made)."""
    payload_bytes: int = 0
    """Serialized size of those payloads."""
    reference_bytes: int = 0
    """Bytes of the reference payloads left in history for them."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def wall_s(self) -> float:
        return sum(self.phases.values())

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def reference_bytes_per_payload(self) -> float | None:
        return self.reference_bytes / self.payloads if self.payloads else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "wall_s": self.wall_s,
            "phases_s": self.phases,
            "cpu_s": self.cpu_s,
            "server_cpu_s": self.server_cpu_s,
            "requests": self.requests,
            "total_requests": self.total_requests,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "objects_at_rest": self.objects_at_rest,
            "bytes_at_rest": self.bytes_at_rest,
            "payloads": self.payloads,
            "payload_bytes": self.payload_bytes,
            "reference_bytes": self.reference_bytes,
            "reference_bytes_per_payload": self.reference_bytes_per_payload,
            **self.extra,
        }


def median_sample(samples: Sequence[Sample]) -> Sample:
    """Field-by-field median of repetitions (counts are usually identical)."""
    first = samples[0]
    phases = {name: median(s.phases.get(name, 0.0) for s in samples) for name in first.phases}
    kinds = sorted({k for s in samples for k in s.requests})
    servers = [s.server_cpu_s for s in samples if s.server_cpu_s is not None]

    def mid(attr: str) -> int:
        return round(median(float(getattr(s, attr)) for s in samples))

    return Sample(
        phases=phases,
        cpu_s=median(s.cpu_s for s in samples),
        server_cpu_s=median(servers) if servers else None,
        requests={k: round(median(s.requests.get(k, 0) for s in samples)) for k in kinds},
        bytes_sent=mid("bytes_sent"),
        bytes_received=mid("bytes_received"),
        objects_at_rest=mid("objects_at_rest"),
        bytes_at_rest=mid("bytes_at_rest"),
        payloads=mid("payloads"),
        payload_bytes=mid("payload_bytes"),
        reference_bytes=mid("reference_bytes"),
        extra=dict(samples[len(samples) // 2].extra),
    )


class Meter:
    """Times phases of one repetition and gathers the rig's counters afterwards.

    Args:
        rig: The driver under test.
        server_pids: Processes whose CPU time is charged to the servers.
    """

    def __init__(self, rig: Rig, server_pids: Sequence[int] = ()) -> None:
        self.rig = rig
        self.sample = Sample()
        self._server_pids = list(server_pids)
        self._traffic_before: Traffic | None = None
        self._server_cpu = 0.0

    @asynccontextmanager
    async def phase(self, name: str) -> AsyncIterator[None]:
        """Time the body as phase ``name``; its traffic and CPU are counted."""
        if self._traffic_before is None:
            self._traffic_before = self.rig.traffic.snapshot()
        server_before = _process_cpu(self._server_pids)
        cpu_before = time.process_time()
        started = time.perf_counter()
        yield
        self.sample.phases[name] = self.sample.phases.get(name, 0.0) + (
            time.perf_counter() - started
        )
        self.sample.cpu_s += time.process_time() - cpu_before
        server_after = _process_cpu(self._server_pids)
        if server_before is not None and server_after is not None:
            self._server_cpu += server_after - server_before

    async def finish(self) -> Sample:
        """Add the traffic, objects at rest and driver details; return the sample."""
        before = self._traffic_before or Traffic()
        used = self.rig.traffic.snapshot() - before
        self.sample.requests = dict(sorted(used.requests.items()))
        self.sample.bytes_sent = used.bytes_sent
        self.sample.bytes_received = used.bytes_received
        self.sample.objects_at_rest, self.sample.bytes_at_rest = await self.rig.at_rest()
        if self._server_pids:
            self.sample.server_cpu_s = self._server_cpu
        self.sample.extra.update(self.rig.details())
        return self.sample


def _process_cpu(pids: Sequence[int]) -> float | None:
    """User + system CPU seconds of ``pids`` (Linux /proc), or None if unreadable."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # Fields after the command: state is [0]; utime, stime are [11], [12].
        total += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return total
