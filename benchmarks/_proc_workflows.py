"""Workflows and activities of the multi-process scenarios.

Imports nothing but temporalio and the standard library, so the workflow
sandbox can load it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

STEPS = 9
"""Activities per threshold-0 workflow: input, 9 arguments, 9 results, result = 20 payloads."""


@activity.defn
async def digest(document: bytes) -> str:
    """Read the shared input whole and say what it read (checked against what was sent)."""
    return hashlib.sha256(document).hexdigest()


@activity.defn
async def step(state: dict[str, Any]) -> dict[str, Any]:
    """One small step: its result depends on every byte of its input."""
    seen = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:12]
    return {**state, "step": state["step"] + 1, "trail": [*state["trail"], seen]}


async def expected_chain(state: dict[str, Any]) -> dict[str, Any]:
    """What :class:`Chain` returns for ``state``, computed without Temporal."""
    for _ in range(STEPS):
        state = await step(state)
    return state


WAVE = 100
"""Activities scheduled per workflow activation of the fan-out."""


@workflow.defn
class FanOutDigests:
    """Hands one large input to ``activities`` activities at once; returns what they read.

    They are scheduled in waves of :data:`WAVE` with a 1 ms timer between
    (all of them in flight together): converting a 1 MiB argument a thousand
    times in one activation takes longer than the SDK's 2-second deadlock
    detector allows, whatever the storage driver.
    """

    @workflow.run
    async def run(self, document: bytes, activities: int) -> dict[str, Any]:
        pending = []
        for i in range(activities):
            pending.append(
                workflow.start_activity(
                    digest, document, start_to_close_timeout=timedelta(minutes=5)
                )
            )
            if (i + 1) % WAVE == 0 and i + 1 < activities:
                await workflow.sleep(timedelta(milliseconds=1))
        results = await asyncio.gather(*pending)
        return {"count": len(results), "digests": sorted(set(results))}


@workflow.defn
class Chain:
    """Threshold 0's shape: small payloads through a few sequential activities."""

    @workflow.run
    async def run(self, state: dict[str, Any]) -> dict[str, Any]:
        for _ in range(STEPS):
            state = await workflow.execute_activity(
                step, state, start_to_close_timeout=timedelta(minutes=5)
            )
        return state
