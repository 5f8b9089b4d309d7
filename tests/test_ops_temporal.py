"""Operating a store next to a real Temporal dev server.

- ``casstore cat`` reads a history exported by the real ``temporal`` CLI
  (``temporal workflow show --output json``) and prints every stored payload,
  on the local backend and on S3 (moto);
- the plugin's metrics reach a real runtime's Prometheus endpoint, scraped
  over HTTP after a workflow, and equal the driver's stats.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from casstore._metrics import COUNTERS, REQUEST_LATENCY
from casstore.plugin import CasStorePlugin
from testrig import TemporalDevServer
from testrig.processes import find_temporal_cli, free_port
from tests.support.cli import cli, s3_url
from tests.support.s3 import S3Target, s3_place
from tests.support.workflows_e2e import ManySmall, echo


async def run_many_small(client: Client, count: int) -> str:
    workflow_id = f"ops-{uuid.uuid4().hex[:12]}"
    queue = f"q-{workflow_id}"
    async with Worker(client, task_queue=queue, workflows=[ManySmall], activities=[echo]):
        result = await client.execute_workflow(
            ManySmall.run, count, id=workflow_id, task_queue=queue
        )
    assert result == [2 * i for i in range(count)]
    return workflow_id


@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_cat_round_trips_a_history_exported_by_the_temporal_cli(
    kind: str,
    temporal: TemporalDevServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    if kind == "local":
        await cat_round_trip(str(tmp_path / "store"), temporal, tmp_path, capsys)
        return
    target: S3Target = request.getfixturevalue("aws_env")
    async with s3_place(target) as place:
        await cat_round_trip(s3_url(place), temporal, tmp_path, capsys)


async def cat_round_trip(
    url: str, temporal: TemporalDevServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with CasStorePlugin(url, payload_size_threshold=0) as plugin:
        client = await Client.connect(temporal.address, plugins=[plugin])
        workflow_id = await run_many_small(client, 3)
    show = await asyncio.to_thread(
        subprocess.run,
        [
            find_temporal_cli(),
            "workflow",
            "show",
            "--address",
            temporal.address,
            "--workflow-id",
            workflow_id,
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    exported = show.stdout
    history = tmp_path / "history.json"
    history.write_text(exported)

    result = await cli(capsys, "cat", str(history), "--store", url, "--json")
    assert result.code == 0, result
    values: dict[str, list[object]] = {}
    for entry in result.json():
        values.setdefault(entry["event_type"].removeprefix("EVENT_TYPE_"), []).append(
            entry["value"]
        )
    assert values["WORKFLOW_EXECUTION_STARTED"] == [3]
    assert sorted(values["ACTIVITY_TASK_SCHEDULED"]) == [0, 1, 2]  # type: ignore[type-var]
    assert sorted(values["ACTIVITY_TASK_COMPLETED"]) == [0, 2, 4]  # type: ignore[type-var]
    assert values["WORKFLOW_EXECUTION_COMPLETED"] == [[0, 2, 4]]

    # The same history on stdin, as text: one headed block per reference.
    piped = await cli(capsys, "cat", "--store", url, stdin=exported)
    assert piped.code == 0, piped
    assert piped.out.count("# event ") == sum(len(v) for v in values.values())


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    """Every sample on the runtime's Prometheus endpoint: (name, labels, value)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(_LABEL.findall(match.group(2) or ""))
            samples.append((match.group(1), labels, float(match.group(3))))
    return samples


async def test_metrics_reach_the_runtimes_prometheus_endpoint(
    temporal: TemporalDevServer, tmp_path: Path
) -> None:
    port = free_port()
    runtime = Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{port}"))
    )
    async with CasStorePlugin(str(tmp_path / "store"), payload_size_threshold=0) as plugin:
        client = await Client.connect(temporal.address, runtime=runtime, plugins=[plugin])
        await run_many_small(client, 5)
        stats = plugin.driver.stats

        samples: list[tuple[str, dict[str, str], float]] = []
        for _ in range(50):  # the exporter publishes what it has on each scrape
            samples = scrape(port)
            got = Counter[tuple[str, str]]()
            for name, labels, value in samples:
                if name.startswith("casstore_") and not name.startswith(REQUEST_LATENCY):
                    assert labels["driver"] == "casstore"
                    got[(name, labels.get("kind", ""))] += int(value)
            want = Counter[tuple[str, str]]()
            for counter in COUNTERS:
                for kind, value in counter.values(stats).items():
                    if value:
                        want[(counter.name, kind)] = value
            if got == want:
                break
            await asyncio.sleep(0.1)
        assert got == want
    assert stats.payloads_stored > 10
    assert got[("casstore_payloads_stored", "")] == stats.payloads_stored
    assert got[("casstore_objects_written", "")] == stats.objects_written
    latency_counts = {
        labels["kind"]: int(value)
        for name, labels, value in samples
        if name == f"{REQUEST_LATENCY}_count"
    }
    assert latency_counts == dict(stats.backend_requests)
    # Series that saw no event yet are exported at 0, so alerts on them work from the start.
    assert ("casstore_errors", {"driver": "casstore", "kind": "integrity"}, 0.0) in [
        (name, {k: v for k, v in labels.items() if k != "service_name"}, value)
        for name, labels, value in samples
    ]
    # Temporal's own metrics come through the same endpoint: one runtime, one exporter.
    assert any(name.startswith("temporal_") for name, _, _ in samples)
