"""Shared test helpers: converters wired the way a worker wires them, test data, references."""

from __future__ import annotations

import dataclasses
import json

from temporalio.api.common.v1 import Payload
from temporalio.api.sdk.v1.external_storage_pb2 import ExternalStorageReference
from temporalio.converter import DataConverter, PayloadCodec, StorageDriver

# The converter wiring and test data the driver suite uses too.
from casstore._driver_suite import big_json, in_workflow, make_converter
from casstore.backends import CountingBackend, MemoryBackend

__all__ = [
    "OpenCloseBackend",
    "big_json",
    "codec_converter",
    "in_workflow",
    "make_converter",
    "reference_of",
]


def codec_converter(
    *drivers: StorageDriver,
    namespace: str = "default",
    workflow_id: str = "order-42",
    codec: PayloadCodec | None = None,
    threshold: int = 0,
) -> DataConverter:
    """A worker's converter with a payload codec, bound to a workflow as the SDK binds it."""
    plain = dataclasses.replace(make_converter(*drivers, threshold=threshold), payload_codec=codec)
    return in_workflow(plain, workflow_id, namespace=namespace, workflow_type=None)


def reference_of(payload: Payload) -> ExternalStorageReference:
    """Decode the reference payload the SDK leaves in history."""
    assert payload.metadata["encoding"] == b"json/protobuf", payload.metadata
    data = json.loads(payload.data)
    return ExternalStorageReference(
        driver_name=data["driverName"], claim_data=data.get("claimData", {})
    )


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
