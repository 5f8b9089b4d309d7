"""Scenarios 1-3: payloads through the SDK's storage path, driver by driver.

Each payload goes through the path a worker uses for every payload it sends
or receives (``DataConverter._transform_outbound_payload`` with a workflow
store context, and ``_transform_inbound_payload``): codec (none here), the
External Storage layer calling the driver, and the reference payload that
lands in history. Values are converted to payloads once, up front, because
JSON conversion costs the same whatever the driver; the end-to-end scenario
includes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    ExternalStorage,
    StorageDriver,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from benchmarks._drivers import Rig
from benchmarks._measure import Meter
from benchmarks._workloads import json_payload, random_payload, small_payload_workload

MiB = 1024 * 1024
FANOUT_WORKFLOW = "fanout-parent"
RACED_DIRECTORIES = (
    "v1/default",
    "v0/ns/default/wt/Parent/wi",
    f"v0/ns/default/wt/Parent/wi/{FANOUT_WORKFLOW}/ri/run-{FANOUT_WORKFLOW}/d/sha256",
)
"""Directories that concurrent first writes of scenarios 1-3 would race to create
on a server that keeps keys as files (``rclone serve s3``), for casstore's key
layout (``v1/<namespace>/<workflow>/``) and the SDK driver's
(``v0/ns/<namespace>/wt/<type>/wi/<workflow>/ri/<run>/d/sha256/``): the shared
parents of every workflow's directory, and the fan-out workflow's own, which
the SDK driver's concurrent PUTs of one payload share. See ``_cli._prepare_rclone_bucket``."""


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; ``--quick`` shrinks them to smoke-test sizes."""

    fanout_copies: int = 1000
    fanout_bytes: int = MiB
    small_count: int = 10_000
    small_per_workflow: int = 50
    large_bytes: int = 16 * MiB
    e2e_activities: int = 200
    e2e_bytes: int = MiB

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            fanout_copies=20,
            fanout_bytes=64 * 1024,
            small_count=200,
            small_per_workflow=20,
            large_bytes=256 * 1024,
            e2e_activities=10,
            e2e_bytes=64 * 1024,
        )


def converter_for(rig: Rig, driver: StorageDriver | None = None) -> DataConverter:
    """The default converter with ``driver`` (``rig.driver``) externalizing every payload."""
    return dataclasses.replace(
        DataConverter.default,
        external_storage=ExternalStorage(drivers=[driver or rig.driver], payload_size_threshold=0),
    )


def in_workflow(converter: DataConverter, workflow_id: str) -> DataConverter:
    """The converter as a worker binds it while a workflow stores payloads."""
    return converter._with_store_context(
        StorageDriverStoreContext(
            target=StorageDriverWorkflowInfo(
                namespace="default", id=workflow_id, run_id=f"run-{workflow_id}", type="Parent"
            )
        )
    )


class Scenario(ABC):
    """One workload, run against one driver per repetition."""

    name: str
    title: str
    """One line: what is measured, with its sizes."""
    models: str
    """What real workload this stands for."""

    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes

    @abstractmethod
    def prepare(self) -> None:
        """Build the payloads (once, before any timing)."""

    @abstractmethod
    async def run(self, rig: Rig, meter: Meter) -> None:
        """Run one repetition, timing its phases with ``meter``."""


def _account(meter: Meter, originals: Sequence[Payload], refs: Sequence[Payload]) -> None:
    meter.sample.payloads += len(refs)
    meter.sample.payload_bytes += sum(p.ByteSize() for p in originals)
    meter.sample.reference_bytes += sum(r.ByteSize() for r in refs)


def _check(kind: str, expected: Sequence[Payload], got: Sequence[Payload]) -> None:
    if len(expected) != len(got) or any(a != b for a, b in zip(expected, got, strict=True)):
        raise AssertionError(f"{kind} returned payloads that differ from those stored")


def size_label(size: int) -> str:
    """``1 MiB``, ``64 KiB``, ``100 B``."""
    for unit, scale in (("MiB", MiB), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


class FanOut(Scenario):
    name = "fanout"

    def __init__(self, sizes: Sizes) -> None:
        super().__init__(sizes)
        copies, size = f"{sizes.fanout_copies:,}", size_label(sizes.fanout_bytes)
        self.title = f"Fan-out: one {size} JSON input to {copies} activities"
        self.models = (
            f"A workflow scheduling {copies} activities with the same {size} JSON argument: "
            "the SDK makes one store call per activity, all at once; then each activity "
            "retrieves it, all at once."
        )

    def prepare(self) -> None:
        self.payload = json_payload(self.sizes.fanout_bytes)

    async def run(self, rig: Rig, meter: Meter) -> None:
        converter = converter_for(rig)
        workflow = in_workflow(converter, FANOUT_WORKFLOW)
        copies = [self.payload] * self.sizes.fanout_copies
        async with meter.phase("store"):
            refs = await asyncio.gather(*(workflow._transform_outbound_payload(p) for p in copies))
        async with meter.phase("retrieve"):
            got = await asyncio.gather(*(converter._transform_inbound_payload(r) for r in refs))
        _account(meter, copies, refs)
        _check(rig.kind, copies, got)


class SmallPayloads(Scenario):
    def __init__(self, sizes: Sizes, *, cold_reader: bool = False) -> None:
        super().__init__(sizes)
        self.cold_reader = cold_reader
        workflows = -(-sizes.small_count // sizes.small_per_workflow)
        self.name = "threshold0-cold" if cold_reader else "threshold0"
        self.title = f"Threshold 0: {sizes.small_count:,} small payloads" + (
            ", read back by another worker" if cold_reader else ""
        )
        self.models = (
            "payload_size_threshold=0, so every argument and result is externalized: "
            f"{workflows} workflows (run concurrently) each store {sizes.small_per_workflow} "
            "small JSON values one after another, then read them back the same way"
            + (
                ", through a second driver instance on the same storage with cold caches, "
                "as another worker process (or a restarted one) reads them."
                if cold_reader
                else "."
            )
        )

    def prepare(self) -> None:
        self.workload = small_payload_workload(
            self.sizes.small_count, self.sizes.small_per_workflow
        )

    async def run(self, rig: Rig, meter: Meter) -> None:
        converter = converter_for(rig)
        reader = converter_for(rig, rig.another_driver()) if self.cold_reader else converter

        async def store(workflow_id: str, payloads: Sequence[Payload]) -> list[Payload]:
            bound = in_workflow(converter, workflow_id)
            return [await bound._transform_outbound_payload(p) for p in payloads]

        async def retrieve(refs: Sequence[Payload]) -> list[Payload]:
            return [await reader._transform_inbound_payload(r) for r in refs]

        async with meter.phase("store"):
            refs = await asyncio.gather(*(store(w.workflow_id, w.payloads) for w in self.workload))
        async with meter.phase("retrieve"):
            got = await asyncio.gather(*(retrieve(r) for r in refs))
        for workflow, stored, back in zip(self.workload, refs, got, strict=True):
            _account(meter, workflow.payloads, stored)
            _check(rig.kind, workflow.payloads, back)


class Large(Scenario):
    def __init__(self, sizes: Sizes, *, random_bytes: bool) -> None:
        super().__init__(sizes)
        self.random_bytes = random_bytes
        kind = "random bytes" if random_bytes else "JSON"
        size = size_label(sizes.large_bytes)
        self.name = "large-random" if random_bytes else "large-json"
        self.title = f"Large: one {size} {kind} payload"
        self.models = (
            f"A single {size} {kind} payload (a report, a file) stored once and read back once."
        )

    def prepare(self) -> None:
        size = self.sizes.large_bytes
        self.payload = random_payload(size) if self.random_bytes else json_payload(size, 1)

    async def run(self, rig: Rig, meter: Meter) -> None:
        converter = converter_for(rig)
        async with meter.phase("store"):
            ref = await in_workflow(converter, "large")._transform_outbound_payload(self.payload)
        async with meter.phase("retrieve"):
            got = await converter._transform_inbound_payload(ref)
        _account(meter, [self.payload], [ref])
        _check(rig.kind, [self.payload], [got])
