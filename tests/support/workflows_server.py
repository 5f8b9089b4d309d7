"""A workflow for the codec-server tests (imports nothing from boto: the sandbox accepts it)."""

from __future__ import annotations

from typing import Any

from temporalio import workflow


@workflow.defn
class ShipOrder:
    """Takes a small order, returns a larger shipping note: one inline-sized, one download-sized."""

    @workflow.run
    async def run(self, order: dict[str, Any]) -> dict[str, Any]:
        """Build the shipping note."""
        return {
            "shipped_to": order["customer"],
            "lines": [f"{sku}: packed in box {i}" for i, sku in enumerate(order["items"] * 10)],
        }
