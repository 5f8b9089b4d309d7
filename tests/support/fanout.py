"""Running the fan-out workflow end to end: a worker for it, one execution, its summary.

Kept apart from tests/support/workflows_fanout.py, which the workflow sandbox
imports and which should therefore import no worker machinery.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from tests.support.workflows_fanout import FanOutChild, FanOutParent, FanOutSummary, analyze_shard

FAN_OUT_WORKFLOWS = [FanOutParent, FanOutChild]


async def run_fan_out(
    client: Client,
    document: object,
    *,
    activities: int,
    children: int,
    child_activities: int,
    workflow_id: str,
    task_queue: str,
) -> FanOutSummary:
    """Run ``FanOutParent`` on a worker of its own until it completes; return its summary."""
    async with Worker(
        client, task_queue=task_queue, workflows=FAN_OUT_WORKFLOWS, activities=[analyze_shard]
    ):
        return await client.execute_workflow(
            FanOutParent.run,
            args=[document, activities, children, child_activities],
            id=workflow_id,
            task_queue=task_queue,
        )
