"""A fan-out: a parent hands one large document to activities and to children that do the same.

The shape that makes per-payload storage expensive and content addressing
cheap: every activity gets the whole document. The workflows take it as a
:class:`~temporalio.common.RawValue` and pass the payload on untouched, as a
workflow that only routes data should. Imports nothing from casstore's storage
code, so the workflow sandbox accepts this module.
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


@dataclass(frozen=True)
class ShardResult:
    """What one activity reports about its shard of the document."""

    shard: int
    rows: int
    checksum: str


@dataclass(frozen=True)
class FanOutSummary:
    """What a fan-out workflow (parent or child) returns."""

    activities: int
    children: int
    rows: int


@activity.defn
async def analyze_shard(document: dict[str, Any], shard: int, shards: int) -> ShardResult:
    """Look at every ``shards``-th row of the document, starting at ``shard``."""
    rows = document["rows"][shard::shards]
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    return ShardResult(shard=shard, rows=len(rows), checksum=digest[:16])


async def _analyze(document: RawValue, activities: int) -> list[ShardResult]:
    # The tests' documents are small: every activity is scheduled at once.
    return list(
        await asyncio.gather(
            *(
                workflow.execute_activity(
                    analyze_shard,
                    args=[document, shard, activities],
                    start_to_close_timeout=timedelta(minutes=2),
                )
                for shard in range(activities)
            )
        )
    )


@workflow.defn
class FanOutChild:
    """Hands the document to ``activities`` activities."""

    @workflow.run
    async def run(self, document: RawValue, activities: int) -> FanOutSummary:
        """Add up the rows the activities saw."""
        results = await _analyze(document, activities)
        return FanOutSummary(activities=len(results), children=0, rows=sum(r.rows for r in results))


@workflow.defn
class FanOutParent:
    """Hands the document to activities and to children that hand it on again."""

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
            _analyze(document, activities), asyncio.gather(*child_runs)
        )
        return FanOutSummary(
            activities=len(results) + sum(s.activities for s in summaries),
            children=len(summaries),
            rows=sum(r.rows for r in results) + sum(s.rows for s in summaries),
        )
