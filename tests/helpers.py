"""Shared test helpers: converters wired the way a worker wires them, test data, references."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable

from temporalio.api.common.v1 import Payload
from temporalio.api.sdk.v1.external_storage_pb2 import ExternalStorageReference
from temporalio.converter import (
    DataConverter,
    ExternalStorage,
    StorageDriver,
    StorageDriverSelectContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from casstore.backends import CountingBackend, MemoryBackend


def make_converter(
    *drivers: StorageDriver,
    threshold: int = 0,
    selector: Callable[[StorageDriverSelectContext, Payload], StorageDriver | None] | None = None,
) -> DataConverter:
    """A default DataConverter with external storage, as a client or worker has it."""
    return dataclasses.replace(
        DataConverter.default,
        external_storage=ExternalStorage(
            drivers=list(drivers), driver_selector=selector, payload_size_threshold=threshold
        ),
    )


def in_workflow(
    converter: DataConverter,
    workflow_id: str = "order-42",
    *,
    namespace: str = "default",
    run_id: str | None = None,
    workflow_type: str | None = "Parent",
) -> DataConverter:
    """The converter as the SDK binds it while storing for a workflow target."""
    # _with_store_context is how the SDK binds targets; there is no public hook.
    return converter._with_store_context(
        StorageDriverStoreContext(
            target=StorageDriverWorkflowInfo(
                namespace=namespace, id=workflow_id, run_id=run_id, type=workflow_type
            )
        )
    )


def reference_of(payload: Payload) -> ExternalStorageReference:
    """Decode the reference payload the SDK leaves in history."""
    assert payload.metadata["encoding"] == b"json/protobuf", payload.metadata
    data = json.loads(payload.data)
    return ExternalStorageReference(
        driver_name=data["driverName"], claim_data=data.get("claimData", {})
    )


def big_json(size: int, seed: int = 0) -> dict[str, object]:
    """A JSON-like value of roughly ``size`` bytes that compresses like real data."""
    rows: list[dict[str, object]] = []
    i = 0
    while len(rows) * 48 < size:
        rows.append(
            {"id": seed * 1_000_000 + i, "name": f"customer-{i % 977}", "active": i % 3 == 0}
        )
        i += 1
    return {"rows": rows}


class OpenCloseBackend(CountingBackend):
    """A memory backend that counts its requests, opens and closes."""

    def __init__(self) -> None:
        super().__init__(MemoryBackend())
        self.opened = 0
        self.closed = 0

    async def open(self) -> None:
        self.opened += 1
        await super().open()

    async def aclose(self) -> None:
        self.closed += 1
        await super().aclose()


def agent_turns(turns: int, seed: int = 0) -> list[dict[str, object]]:
    """A model-call input per turn of an agent loop: the whole conversation so far.

    Each turn adds a tool result (5-50 KB) and a reply (1-10 KB) of text that
    compresses like prose, after fixed instructions and tool schemas, so every
    input is the previous one plus a few KB.
    """
    rng = random.Random(seed)
    vocabulary = [f"{w}{i}" for i, w in enumerate(["alpha", "beta", "gamma", "delta"])]
    vocabulary += [f"word{i}" for i in range(2_000)]

    def text(size: int) -> str:
        out: list[str] = []
        length = 0
        while length < size:
            word = rng.choice(vocabulary)
            out.append(word)
            length += len(word) + 1
        return " ".join(out)

    instructions = text(8_000)
    tools = [{"name": f"tool_{i}", "schema": text(800)} for i in range(15)]
    messages: list[dict[str, object]] = [{"role": "user", "content": text(500)}]
    inputs: list[dict[str, object]] = []
    for turn in range(turns):
        inputs.append({"instructions": instructions, "tools": tools, "input": list(messages)})
        messages.append({"role": "assistant", "content": text(rng.randint(1_000, 10_000))})
        if rng.random() < 0.6:
            messages.append(
                {"role": "tool", "call": f"call_{turn}", "output": text(rng.randint(5_000, 50_000))}
            )
    return inputs
