"""Helpers for the codec-server tests: what workers store, what clients post, what comes back."""

from __future__ import annotations

from typing import Any

import httpx
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import DataConverter, StorageDriver

from casstore import CasStorageDriver
from tests.support.sdk import codec_converter

JSON = {"Content-Type": "application/json"}
ORDER = {"customer": "ada", "items": ["sku-1", "sku-2"]}


async def stored(driver: StorageDriver, *values: Any, **options: Any) -> list[Payload]:
    """What history holds for ``values`` written by a worker through ``driver``."""
    return await codec_converter(driver, **options).encode(list(values))


def body(payloads: list[Payload]) -> str:
    """Proto3 JSON, as the Web UI and the CLI send it."""
    return json_format.MessageToJson(Payloads(payloads=payloads))


def payloads_of(response: httpx.Response) -> list[Payload]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return list(json_format.Parse(response.text, Payloads()).payloads)


def values_of(response: httpx.Response) -> list[Any]:
    return DataConverter.default.payload_converter.from_payloads(payloads_of(response))


async def post(
    client: httpx.AsyncClient,
    path: str,
    content: str | bytes,
    namespace: str | None = "default",
    **headers: str,
) -> httpx.Response:
    sent = {**JSON, **({"X-Namespace": namespace} if namespace else {}), **headers}
    return await client.post(path, content=content, headers=sent)


async def still_serving(client: httpx.AsyncClient, driver: CasStorageDriver) -> None:
    """A good request still succeeds after a bad one."""
    response = await post(client, "/decode", body(await stored(driver, "still here")))
    assert values_of(response) == ["still here"]
