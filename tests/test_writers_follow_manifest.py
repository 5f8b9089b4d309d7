"""Every writer follows the store's lifecycle manifest, however it was built.

gc trusts the manifest's ``refresh_after``: no writer may vouch for an object
(hand out a claim from its known-object cache) longer than that after it last
saw the object. A writer that kept its own, longer bound would hand out claims
for objects gc has since deleted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import DataConverter

from casstore import CasStorageDriver
from casstore._format.manifest import MANIFEST_KEY, LifecyclePolicy
from casstore._url import open_backend
from casstore.backends import Backend, LocalBackend
from casstore.errors import ObjectNotFoundError
from casstore.plugin import CasStorePlugin
from casstore.server import create_app
from tests.support.cli import cli
from tests.support.sdk import in_workflow, make_converter

SHORT = LifecyclePolicy(refresh_after=timedelta(seconds=1), claim_delay=timedelta(seconds=1))
"""gc then accepts --older-than 3s: max(2 x 1s, 1s + 2 x 1s)."""
VALUE = {"order": 42, "lines": ["sku-1", "sku-2"]}


async def _short_manifest(root: Path) -> str:
    backend = LocalBackend(root, fsync=False)
    assert await backend.put(MANIFEST_KEY, SHORT.encode())
    await backend.aclose()
    return f"file://{root}"


async def _post(client: httpx.AsyncClient, path: str, payloads: Payloads) -> Payloads:
    response = await client.post(
        path,
        content=json_format.MessageToJson(payloads),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    return json_format.Parse(response.text, Payloads())


async def _collect_twice(capsys: pytest.CaptureFixture[str], store: str) -> None:
    """Two gc runs that act: the first moves the object to the trash, the second deletes it."""
    for _ in range(2):
        await asyncio.sleep(3.2)  # past --older-than, as measured from the last write or move
        result = await cli(
            capsys, "gc", store, "--namespace", "default", "--older-than", "3s",
            "--delete", "--json",
        )  # fmt: skip
        assert result.code == 0, result


async def test_the_codec_servers_encode_follows_the_manifest_across_gc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = await _short_manifest(tmp_path / "store")
    app = create_app(store, payload_size_threshold=0)
    plain = Payloads(payloads=DataConverter.default.payload_converter.to_payloads([VALUE]))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://codec.test"
    ) as client:
        first = await _post(client, "/default/encode", plain)
        await _collect_twice(capsys, store)
        # The same value again: the server must not vouch for the object gc deleted.
        second = await _post(client, "/default/encode", plain)
    assert second == first  # the same reference (content addressed) ...
    cold = create_app(store)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=cold), base_url="http://codec.test"
    ) as reader:
        decoded = await _post(reader, "/default/decode", second)  # ... and it points at data
    assert DataConverter.default.payload_converter.from_payloads(list(decoded.payloads)) == [VALUE]


def _plugin_with_ready_driver(backend: Backend) -> CasStorageDriver:
    return CasStorePlugin(CasStorageDriver(backend), payload_size_threshold=0).driver


def _plugin_with_backend(backend: Backend) -> CasStorageDriver:
    return CasStorePlugin(backend, payload_size_threshold=0).driver


def _plugin_with_backend_opting_out(backend: Backend) -> CasStorageDriver:
    return CasStorePlugin(backend, payload_size_threshold=0, lifecycle_manifest=False).driver


@pytest.mark.parametrize(
    "build",
    [
        CasStorageDriver,
        lambda backend: CasStorageDriver(backend, lifecycle_manifest=True),
        lambda backend: CasStorageDriver(backend, refresh_after=None),
        _plugin_with_ready_driver,
        _plugin_with_backend,
        _plugin_with_backend_opting_out,
    ],
    ids=["driver", "recording", "no-own-bound", "plugin-driver", "plugin-backend", "plugin-opt"],
)
async def test_every_way_of_building_a_writer_vouches_no_longer_than_the_manifest(
    tmp_path: Path, build: Callable[[Backend], CasStorageDriver]
) -> None:
    store = await _short_manifest(tmp_path / "store")
    backend = open_backend(store)
    driver = build(backend)
    worker = in_workflow(make_converter(driver))
    [first] = await worker.encode([VALUE])
    # What gc does once the object is old enough, done directly.
    [(key, _)] = [item async for item in backend.scan("v1/")]
    await asyncio.sleep(SHORT.refresh_after.total_seconds() + 0.1)
    await backend.delete(key)
    [second] = await worker.encode([VALUE])
    assert second == first
    fresh = make_converter(CasStorageDriver(LocalBackend(tmp_path / "store", fsync=False)))
    assert await fresh.decode([second]) == [VALUE]
    await backend.aclose()


async def test_only_a_recording_driver_writes_a_manifest(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path, fsync=False)
    await in_workflow(make_converter(CasStorageDriver(backend))).encode([VALUE])
    with pytest.raises(ObjectNotFoundError):
        await backend.get(MANIFEST_KEY)
    recording = CasStorageDriver(backend, lifecycle_manifest=True)
    await in_workflow(make_converter(recording)).encode([VALUE])
    assert LifecyclePolicy.decode(await backend.get(MANIFEST_KEY)) == LifecyclePolicy()
