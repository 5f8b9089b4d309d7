"""Workflow and activity of the end-to-end scenario.

Imports nothing but temporalio and the standard library, so the workflow
sandbox can load it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow


@activity.defn
async def summarize(document: dict[str, Any], index: int) -> dict[str, int]:
    """Look at the shared input, as each activity of a fan-out would."""
    return {"index": index, "records": len(document.get("records", ()))}


@workflow.defn
class FanOutWorkflow:
    """Hands one large input to ``activities`` activities at once."""

    @workflow.run
    async def run(self, document: dict[str, Any], activities: int) -> int:
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
        return sum(r["records"] for r in results)
