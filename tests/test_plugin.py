"""CasStorePlugin: what it installs on clients and replayers, and what it refuses."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import cast

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverter,
    DefaultPayloadConverter,
    ExternalStorage,
    PayloadCodec,
)
from temporalio.worker import Replayer, ReplayerConfig, Worker

from casstore import CasStorageDriver
from casstore.backends import Backend, CountingBackend, LocalBackend, MemoryBackend
from casstore.errors import ConfigurationError
from casstore.plugin import CasStorePlugin, DriverOptions
from tests.support.sdk import OpenCloseBackend, big_json, in_workflow, make_converter, reference_of
from tests.support.workflows_fanout import FanOutChild


class TaggingCodec(PayloadCodec):
    """Marks payloads so a test can see the codec ran."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            tagged = Payload()
            tagged.CopyFrom(p)
            tagged.metadata["tagged"] = b"yes"
            out.append(tagged)
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            plain = Payload()
            plain.CopyFrom(p)
            del plain.metadata["tagged"]
            out.append(plain)
        return out


class MyPayloadConverter(DefaultPayloadConverter):
    pass


class MyFailureConverter(DefaultFailureConverter):
    pass


def configured(plugin: CasStorePlugin, existing: DataConverter | None = None) -> DataConverter:
    """The data converter the plugin leaves on a replayer (the same hook as on a client)."""
    config = ReplayerConfig(workflows=[])
    if existing is not None:
        config["data_converter"] = existing
    converter = plugin.configure_replayer(config).get("data_converter")
    assert isinstance(converter, DataConverter)
    return converter


async def test_installs_casstore_and_keeps_the_converter_codec_and_failure_converter() -> None:
    backend = CountingBackend(MemoryBackend())
    plugin = CasStorePlugin(backend, payload_size_threshold=0)
    existing = DataConverter(
        payload_converter_class=MyPayloadConverter,
        payload_codec=TaggingCodec(),
        failure_converter_class=MyFailureConverter,
    )
    converter = configured(plugin, existing)
    assert converter.payload_converter_class is MyPayloadConverter
    assert converter.payload_codec is existing.payload_codec
    assert converter.failure_converter_class is MyFailureConverter
    assert converter.external_storage is plugin.external_storage
    assert converter.external_storage.payload_size_threshold == 0
    assert converter.external_storage.drivers == [plugin.driver]

    bound = in_workflow(converter)
    [reference] = await bound.encode(["hello"])
    assert reference_of(reference).driver_name == "casstore"
    assert backend.calls["put"] == 1
    assert await bound.decode([reference], [str]) == ["hello"]


async def test_a_client_gets_the_storage_and_the_default_converter_otherwise_unchanged() -> None:
    plugin = CasStorePlugin(MemoryBackend())
    client = await Client.connect("127.0.0.1:1", plugins=[plugin], lazy=True)
    converter = client.data_converter
    assert converter.external_storage is plugin.external_storage
    assert converter.payload_converter_class is DataConverter.default.payload_converter_class
    assert converter.payload_codec is None
    assert converter.external_storage.payload_size_threshold == 256 * 1024


async def test_a_replayer_gets_the_storage() -> None:
    plugin = CasStorePlugin(MemoryBackend())
    replayer = Replayer(workflows=[FanOutChild], plugins=[plugin])
    converter = replayer.config(active_config=True).get("data_converter")
    assert converter is not None
    assert converter.external_storage is plugin.external_storage


def test_applying_twice_changes_nothing() -> None:
    plugin = CasStorePlugin(MemoryBackend())
    once = configured(plugin)
    assert configured(plugin, once) is once


def test_refuses_a_converter_that_already_has_external_storage() -> None:
    other = CasStorageDriver(MemoryBackend(), name="legacy")
    plugin = CasStorePlugin(MemoryBackend())
    with pytest.raises(ConfigurationError, match=r"legacy.*extra_drivers"):
        configured(plugin, make_converter(other))


async def test_extra_drivers_stay_readable_while_new_payloads_go_to_casstore() -> None:
    legacy_backend = CountingBackend(MemoryBackend())
    legacy = CasStorageDriver(legacy_backend, name="legacy")
    [old_reference] = await in_workflow(make_converter(legacy)).encode([big_json(4000)])

    plugin = CasStorePlugin(MemoryBackend(), payload_size_threshold=0, extra_drivers=[legacy])
    converter = in_workflow(configured(plugin))
    assert await converter.decode([old_reference], [dict]) == [big_json(4000)]
    [new_reference] = await converter.encode(["new"])
    assert reference_of(new_reference).driver_name == "casstore"
    assert legacy_backend.calls["put"] == 1  # only the payload written before the move


async def test_a_custom_selector_decides() -> None:
    plugin = CasStorePlugin(
        MemoryBackend(),
        payload_size_threshold=0,
        driver_selector=lambda _context, payload: None,
    )
    [payload] = await in_workflow(configured(plugin)).encode(["stays inline"])
    assert payload.data == b'"stays inline"'


def test_driver_options_reach_the_driver(tmp_path: Path) -> None:
    plugin = CasStorePlugin(str(tmp_path), name="cas-eu", scope="namespace")
    assert plugin.driver.name() == "cas-eu"
    assert isinstance(plugin.backend, LocalBackend)
    assert plugin.backend.root == tmp_path


async def test_a_backend_opened_from_a_url_is_closed_by_the_plugin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened = OpenCloseBackend()
    monkeypatch.setattr("casstore.plugin.open_backend", lambda url: opened)
    async with CasStorePlugin("s3://bucket/prefix") as plugin:
        assert plugin.backend is opened
    assert opened.closed == 1
    await plugin.aclose()
    assert opened.closed == 1


async def test_a_worker_or_replayer_run_opens_the_backend_before_any_task() -> None:
    # The SDK wraps Worker.run and Replayer runs in the plugin's run context.
    backend = OpenCloseBackend()
    plugin = CasStorePlugin(backend)
    opened_when_running: list[int] = []

    async def run_worker(_worker: Worker) -> None:
        opened_when_running.append(backend.opened)

    await plugin.run_worker(cast(Worker, None), run_worker)
    replayer = Replayer(workflows=[FanOutChild], plugins=[plugin])
    async with replayer.workflow_replay_iterator(_no_histories()) as results:
        opened_when_running.append(backend.opened)
        assert [result async for result in results] == []
    assert opened_when_running == [1, 2]
    assert backend.calls == {}  # opening makes no request


async def _no_histories() -> AsyncIterator[WorkflowHistory]:
    histories: list[WorkflowHistory] = []
    for history in histories:
        yield history


@pytest.mark.parametrize("kind", ["backend", "driver"])
async def test_a_backend_or_driver_passed_in_stays_the_callers(kind: str) -> None:
    backend = OpenCloseBackend()
    store: Backend | CasStorageDriver = backend if kind == "backend" else CasStorageDriver(backend)
    async with CasStorePlugin(store):
        assert backend.opened == 1  # built before the first request, not during it
    assert backend.closed == 0


def test_a_ready_driver_takes_no_driver_options() -> None:
    with pytest.raises(ConfigurationError, match="scope"):
        CasStorePlugin(CasStorageDriver(MemoryBackend()), scope="namespace")


def test_driver_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="scope"):
        CasStorePlugin("memory://", scope="planet")  # type: ignore[arg-type]


@pytest.mark.parametrize("store", [42, None, b"memory://"])
def test_refuses_a_store_of_the_wrong_type(store: object) -> None:
    with pytest.raises(ConfigurationError, match="store must be"):
        CasStorePlugin(store)  # type: ignore[arg-type]


def test_refuses_a_negative_threshold() -> None:
    with pytest.raises(ConfigurationError, match="payload_size_threshold"):
        CasStorePlugin("memory://", payload_size_threshold=-1)


def test_refuses_clashing_driver_names() -> None:
    with pytest.raises(ConfigurationError, match="'casstore' is used more than once"):
        CasStorePlugin("memory://", extra_drivers=[CasStorageDriver(MemoryBackend())])


def test_refuses_an_extra_driver_that_is_not_a_driver() -> None:
    with pytest.raises(ConfigurationError, match="extra_drivers"):
        CasStorePlugin("memory://", extra_drivers=["s3"])  # type: ignore[list-item]


def test_the_external_storage_matches_what_the_sdk_expects() -> None:
    legacy = CasStorageDriver(MemoryBackend(), name="legacy")
    plugin = CasStorePlugin("memory://", extra_drivers=[legacy])
    storage = plugin.external_storage
    assert isinstance(storage, ExternalStorage)
    assert [d.name() for d in storage.drivers] == ["casstore", "legacy"]
    # Rebuilding it the way the SDK copies converters keeps it valid.
    assert dataclasses.replace(storage).drivers == storage.drivers


def test_driver_options_name_every_driver_option() -> None:
    keyword_only = {
        name
        for name, parameter in inspect.signature(CasStorageDriver).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert set(DriverOptions.__annotations__) == keyword_only
