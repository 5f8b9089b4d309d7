"""Workflow and activity of the end-to-end scenario.

Imports nothing but temporalio and the standard library, so the workflow
sandbox can load it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow


@activity.defn
async def summarize(document: bytes, index: int) -> dict[str, int]:
    """Look at the shared input, as each activity of a fan-out would."""
    return {"index": index, "bytes": len(document)}


@workflow.defn
class FanOutWorkflow:
    """Hands one large input to ``activities`` activities at once.

    The input is JSON text carried as bytes (``binary/plain``): converting a
    1 MiB dict to JSON once per activity inside one workflow activation takes
    longer than the SDK's 2-second deadlock detector allows on a small machine,
    and that cost is the same whatever the storage driver.
    """

    @workflow.run
    async def run(self, document: bytes, activities: int) -> int:
        results = await asyncio.gather(
            *(
                workflow.execute_activity(
                    summarize,
                    args=[document, i],
                    start_to_close_timeout=timedelta(minutes=2),
                )
                for i in range(activities)
            )
        )
        return sum(r["bytes"] for r in results)
