"""The codec server with the real clients: the ``temporal`` CLI and the Web UI in Chromium.

One ``casstore serve`` process, one dev server with its Web UI pointed at it and
one browser are shared by the module. A workflow runs at threshold 0 with
casstore, so its history holds only references; the clients must show the
values. The browser's screenshot is saved under ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright
from temporalio.client import Client
from temporalio.worker import Worker

from casstore.plugin import CasStorePlugin
from testrig import CodecServerProcess, TemporalDevServer, find_temporal_cli, free_port
from tests.support.servers import server_fixture
from tests.support.workflows_server import ShipOrder

# A codec server, a Temporal dev server and chromium.
pytestmark = pytest.mark.integration

ARTIFACTS = Path(os.environ.get("CASSTORE_TEST_ARTIFACTS", "test-artifacts"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INLINE_MAX_BYTES = 256
ITEMS = ["sku-1", "sku-2"]
ORDER = {"customer": "ada-lovelace", "items": ITEMS}
NOTE = {
    "shipped_to": "ada-lovelace",
    "lines": [f"{sku}: packed in box {i}" for i, sku in enumerate(ITEMS * 10)],
}


@dataclass(frozen=True)
class Setup:
    codec_url: str
    temporal: TemporalDevServer
    ui_url: str
    workflow_id: str


async def run_workflow(address: str, store: str) -> str:
    workflow_id = f"ship-{uuid.uuid4().hex[:8]}"
    async with CasStorePlugin(store, payload_size_threshold=0) as plugin:
        client = await Client.connect(address, plugins=[plugin])
        async with Worker(client, task_queue=workflow_id, workflows=[ShipOrder]):
            result = await client.execute_workflow(
                ShipOrder.run, ORDER, id=workflow_id, task_queue=workflow_id
            )
    assert result == NOTE
    return workflow_id


@server_fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    store = str(tmp_path_factory.mktemp("codec-store"))
    ui_port = free_port()
    ui_url = f"http://127.0.0.1:{ui_port}"  # the UI's origin, allowed by the codec server
    codec = CodecServerProcess(
        "--store", store, "--port", "0", "--cors-origin", ui_url,
        "--inline-max-bytes", str(INLINE_MAX_BYTES),
    )  # fmt: skip
    try:
        with TemporalDevServer(ui_port=ui_port, ui_codec_endpoint=codec.url) as temporal:
            workflow_id = asyncio.run(run_workflow(temporal.address, store))
            yield Setup(codec.url, temporal, temporal.ui_url, workflow_id)
    finally:
        code, out = codec.stop()
    # Stopping is part of the contract: SIGTERM ends it cleanly.
    assert code == 0, out
    assert "casstore serve: stopped (SIGTERM)" in out


@server_fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def show(setup: Setup, endpoint: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            find_temporal_cli(),
            "workflow", "show", "--workflow-id", setup.workflow_id,
            "--address", setup.temporal.address, "--codec-endpoint", endpoint,
            "--disable-config-file", "--disable-config-env", *extra,
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def event_payloads(history: dict[str, Any], attributes: str, field: str) -> list[Any]:
    for event in history["events"]:
        if attributes in event:
            return [
                json.loads(base64.b64decode(p["data"]))
                for p in event[attributes][field]["payloads"]
                if base64.b64decode(p["metadata"]["encoding"]) == b"json/plain"
            ]
    raise AssertionError(f"no {attributes} event in the history")


def test_cli_prints_decoded_input_and_result(setup: Setup) -> None:
    shown = show(setup, setup.codec_url)
    assert shown.returncode == 0, shown.stderr
    assert "COMPLETED" in shown.stdout
    assert '"shipped_to":"ada-lovelace"' in shown.stdout.replace(" ", "")
    assert "claimData" not in shown.stdout

    as_json = show(setup, setup.codec_url + "/{namespace}", "--output", "json")
    assert as_json.returncode == 0, as_json.stderr
    history = json.loads(as_json.stdout)
    started = event_payloads(history, "workflowExecutionStartedEventAttributes", "input")
    completed = event_payloads(history, "workflowExecutionCompletedEventAttributes", "result")
    assert started == [ORDER]
    assert completed == [NOTE]


def test_web_ui_shows_the_input_and_downloads_the_result(setup: Setup, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    codec_calls: list[str] = []
    page.on(
        "response",
        lambda r: (
            codec_calls.append(f"{r.status} {r.url}") if r.url.startswith(setup.codec_url) else None
        ),
    )
    try:
        page.goto(f"{setup.ui_url}/namespaces/default/workflows/{setup.workflow_id}")
        # The input is small: the server resolves it although the UI asks to keep references.
        page.get_by_text('"ada-lovelace"').first.wait_for(timeout=30_000)
        assert any("/decode?preserveStorageRefs=true" in c for c in codec_calls), codec_calls
        assert all(c.startswith("200 ") for c in codec_calls), codec_calls

        # The result is larger: the UI shows the reference with a download button.
        button = page.get_by_role("button", name="Bytes").first
        button.wait_for(timeout=30_000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "codec-server-web-ui.png"))
        with page.expect_download(timeout=30_000) as download:
            button.click()
        path = download.value.path()
        assert json.loads(Path(path).read_text()) == NOTE
        assert any("/download?preserveStorageRefs=true" in c for c in codec_calls), codec_calls
    finally:
        page.close()
