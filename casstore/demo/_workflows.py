"""The demo's workflows and activity: a parent that fans one large input out.

Kept free of casstore's storage code (and of any AWS library) so the workflow
sandbox accepts this module; the driver runs in the worker, outside workflows.

The workflows take the document as a :class:`~temporalio.common.RawValue` and
pass that payload on untouched, as a workflow that only routes data should:
decoding a few MiB of JSON and encoding it again for each of a hundred
activities would take seconds of workflow-task time, past the SDK's 2 s
deadlock detector. The bytes sent are the same JSON either way.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RawValue

_COPY_BUDGET = 48 * 1024 * 1024
"""Bytes of activity arguments one workflow task may schedule (at least one activity)."""


@dataclass(frozen=True)
class ShardResult:
    """What one activity reports about its shard of the input."""

    shard: int
    rows: int
    checksum: str


@dataclass(frozen=True)
class FanOutSummary:
    """What a fan-out workflow (parent or child) returns."""

    activities: int
    children: int
    rows: int


@activity.defn(name="casstore-demo-analyze")
async def analyze_shard(document: dict[str, Any], shard: int, shards: int) -> ShardResult:
    """Look at every ``shards``-th row of the document, starting at ``shard``."""
    rows = document["rows"][shard::shards]
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    return ShardResult(shard=shard, rows=len(rows), checksum=digest[:16])


async def _fan_out(document: RawValue, activities: int) -> list[ShardResult]:
    # Every activity gets the whole document: the pattern that makes
    # per-payload storage expensive and content addressing cheap. Scheduling
    # an activity deep-copies its arguments into the command (3 MiB each), so
    # one workflow task schedules at most _COPY_BUDGET bytes of them and the
    # next batch waits for a completion, that is for the next workflow task:
    # a 500-way fan-out in one task copied 1.5 GiB and tripped the SDK's 2 s
    # deadlock detector on a loaded machine.
    batch = max(1, _COPY_BUDGET // max(document.payload.ByteSize(), 1))
    running: list[workflow.ActivityHandle[ShardResult]] = []
    results: list[ShardResult] = []
    scheduled = 0
    while scheduled < activities or running:
        for shard in range(scheduled, min(activities, scheduled + batch)):
            running.append(
                workflow.start_activity(
                    analyze_shard,
                    args=[document, shard, activities],
                    start_to_close_timeout=timedelta(minutes=2),
                )
            )
        scheduled = min(activities, scheduled + batch)
        done, pending = await workflow.wait(running, return_when=asyncio.FIRST_COMPLETED)
        results.extend(handle.result() for handle in done)
        running = pending
    return sorted(results, key=lambda r: r.shard)


@workflow.defn(name="casstore-demo-child")
class FanOutChild:
    """Fans the document out to ``activities`` activities."""

    @workflow.run
    async def run(self, document: RawValue, activities: int) -> FanOutSummary:
        """Run the fan-out and add up the rows the activities saw."""
        results = await _fan_out(document, activities)
        return FanOutSummary(activities=len(results), children=0, rows=sum(r.rows for r in results))


@workflow.defn(name="casstore-demo-parent")
class FanOutParent:
    """Fans the document out to activities and to child workflows that fan out again."""

    @workflow.run
    async def run(
        self, document: RawValue, activities: int, children: int, child_activities: int
    ) -> FanOutSummary:
        """Run the activities and the children concurrently; return the totals."""
        info = workflow.info()
        child_runs = [
            workflow.execute_child_workflow(
                FanOutChild.run,
                args=[document, child_activities],
                id=f"{info.workflow_id}-child-{i}",
            )
            for i in range(children)
        ]
        results, summaries = await asyncio.gather(
            _fan_out(document, activities), asyncio.gather(*child_runs)
        )
        return FanOutSummary(
            activities=len(results) + sum(s.activities for s in summaries),
            children=len(summaries),
            rows=sum(r.rows for r in results) + sum(s.rows for s in summaries),
        )
