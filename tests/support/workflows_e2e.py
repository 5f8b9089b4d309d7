"""Workflows and activities for the end-to-end tests.

Imports nothing from boto or casstore's storage code, so the workflow sandbox
accepts this module.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy


@activity.defn
async def describe(document: dict[str, Any], step: str) -> str:
    """Say which step saw how many rows."""
    return f"{step}:{len(document['rows'])}"


@activity.defn
async def echo(value: int) -> int:
    """Return the value; each call stores a small distinct input and result."""
    return value * 2


@workflow.defn
class WaitsForSignal:
    """Runs one activity, waits for ``proceed``, runs another: a workflow that outlives a worker."""

    def __init__(self) -> None:
        self._proceed = False

    @workflow.signal
    def proceed(self) -> None:
        """Let the second step run."""
        self._proceed = True

    @workflow.run
    async def run(self, document: dict[str, Any]) -> list[str]:
        """Describe the document before and after the signal."""
        first = await workflow.execute_activity(
            describe, args=[document, "first"], start_to_close_timeout=timedelta(seconds=30)
        )
        await workflow.wait_condition(lambda: self._proceed)
        second = await workflow.execute_activity(
            describe, args=[document, "second"], start_to_close_timeout=timedelta(seconds=30)
        )
        return [first, second]


@workflow.defn
class ManySmall:
    """Fans out to ``count`` activities with small distinct inputs and results."""

    @workflow.run
    async def run(self, count: int) -> list[int]:
        """Return every activity's result, in order."""
        return list(
            await asyncio.gather(
                *(
                    workflow.execute_activity(echo, i, start_to_close_timeout=timedelta(seconds=30))
                    for i in range(count)
                )
            )
        )


@workflow.defn
class ActivityElsewhere:
    """Hands its input to one activity on another task queue, without retries."""

    @workflow.run
    async def run(self, document: dict[str, Any], activity_queue: str) -> str:
        """Return what the activity says; fail if it fails once."""
        return await workflow.execute_activity(
            describe,
            args=[document, "elsewhere"],
            task_queue=activity_queue,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )
