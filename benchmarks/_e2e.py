"""Scenario 4: a real workflow on a real Temporal dev server, threshold 0."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import uuid
from datetime import timedelta

from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.worker import Worker

from benchmarks._drivers import Rig
from benchmarks._measure import Meter
from benchmarks._scenarios import Scenario, Sizes, converter_for, size_label
from benchmarks._workflows import FanOutWorkflow, summarize
from benchmarks._workloads import records_json


@functools.cache
def _quiet_runtime() -> Runtime:
    """A runtime whose core warnings go to Python logging (stderr), not into the report.

    By default the SDK core prints its warnings to stdout, where they would
    land in the middle of the markdown report.
    """
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
            )
        )
    )


RUN_TIMEOUT = timedelta(minutes=5)
"""A run that takes longer has failed; the workflow is timed out, not waited for."""


class EndToEnd(Scenario):
    name = "e2e"

    def __init__(self, sizes: Sizes, address: str | None) -> None:
        super().__init__(sizes)
        self.address = address
        size, count = size_label(sizes.e2e_bytes), sizes.e2e_activities
        self.title = f"End to end: {size} input fanned out to {count} activities on a dev server"
        self.models = (
            f"A parent workflow started with a {size} JSON document (passed as bytes) schedules "
            f"{count} activities that each take that input and an index, on a Temporal server, "
            "with a client and "
            "a worker in this process sharing one driver and payload_size_threshold=0 (so the "
            "indices and results are externalized too). Timed from start to result."
        )

    def prepare(self) -> None:
        document = records_json(self.sizes.e2e_bytes, seed=2)
        self.document = json.dumps(document, separators=(",", ":")).encode()

    async def run(self, rig: Rig, meter: Meter) -> None:
        if self.address is None:
            raise RuntimeError("the end-to-end scenario needs a Temporal server")
        client = await Client.connect(
            self.address, data_converter=converter_for(rig), runtime=_quiet_runtime()
        )
        task_queue = f"bench-{uuid.uuid4()}"
        workflow_id = f"fanout-{uuid.uuid4()}"
        activities = self.sizes.e2e_activities
        # A stuck worker (e.g. evictions that never finish) must not hang the run.
        async with (
            asyncio.timeout(RUN_TIMEOUT.total_seconds() + 60),
            Worker(
                client,
                task_queue=task_queue,
                workflows=[FanOutWorkflow],
                activities=[summarize],
                max_concurrent_activities=activities,
            ),
            meter.phase("run"),
        ):
            result = await client.execute_workflow(
                FanOutWorkflow.run,
                args=[self.document, activities],
                id=workflow_id,
                task_queue=task_queue,
                execution_timeout=RUN_TIMEOUT,
            )
        expected = len(self.document) * activities
        if result != expected:
            raise AssertionError(f"{rig.kind}: workflow returned {result}, expected {expected}")
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        meter.sample.extra["history_events"] = len(history.events)
        meter.sample.extra["history_bytes"] = sum(e.ByteSize() for e in history.events)
