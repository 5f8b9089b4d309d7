"""End to end on a real Temporal dev server: workflows, workers, replay, failures, the demo.

One ``temporal server start-dev`` serves the whole module (unique task queues
and workflow ids keep tests apart); every test that stores payloads runs on the
local backend and on S3 (``rclone serve s3``); the fan-out runs on Azure
(Azurite), Redis (redis-server) and GCS (fake-gcs-server) too.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import blake3
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowHistory
from temporalio.converter import (
    DataConverter,
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
)
from temporalio.worker import Replayer, Worker

import casstore
from casstore._cli import main as cli_main
from casstore._format.compression import encode_object
from casstore.backends import Backend
from casstore.history import (
    HistoryReference,
    history_references,
    iter_payloads,
    reference_in,
    workflow_task_failures,
)
from casstore.plugin import CasStorePlugin
from testrig import AzuriteBlobServer, TemporalDevServer
from tests.support.cli import s3_url
from tests.support.fanout import run_fan_out
from tests.support.objectstore import DEAD_ENDPOINT, objstore_place
from tests.support.s3 import S3Place
from tests.support.sdk import big_json
from tests.support.wait import wait_until_sync
from tests.support.workflows_e2e import ActivityElsewhere, ManySmall, WaitsForSignal, describe, echo
from tests.support.workflows_fanout import FanOutChild, FanOutParent

REPO_ROOT = Path(__file__).resolve().parents[1]
WAIT_SECONDS = 60.0


# Servers and stores.


@pytest.fixture
async def azure_url(
    azurite: AzuriteBlobServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    """A fresh container on Azurite, as an ``az://`` URL (ObjectStoreBackend, obstore).

    The account key goes in the environment, which worker subprocesses
    inherit; managed identity points at a dead port, so nothing else is tried.
    """
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", azurite.key)
    async with objstore_place("azurite", azurite) as place:
        yield (
            f"az://{place.container}/{place.prefix}?account={azurite.account}"
            f"&endpoint={azurite.endpoint}&msi_endpoint={DEAD_ENDPOINT}"
        )


@pytest.fixture(params=["local", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store for one test, as a URL every process can open."""
    if request.param == "local":
        return str(tmp_path / "store")
    if request.param == "azure":
        url: str = request.getfixturevalue("azure_url")
        return url
    if request.param == "redis":
        redis_url: str = request.getfixturevalue("redis_place").url
        return redis_url
    if request.param == "gcs":
        gcs_url: str = request.getfixturevalue("gcs_place").url
        return gcs_url
    place: S3Place = request.getfixturevalue("rclone_place")
    return s3_url(place)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def connected(
    temporal: TemporalDevServer, store: str, **plugin_options: Any
) -> AsyncIterator[tuple[Client, CasStorePlugin]]:
    """A client with its own CasStorePlugin (fresh caches) on ``store``, threshold 0."""
    plugin_options.setdefault("payload_size_threshold", 0)
    async with CasStorePlugin(store, **plugin_options) as plugin:
        yield await Client.connect(temporal.address, plugins=[plugin]), plugin


async def objects_in(backend: Backend) -> dict[str, int]:
    return {key: size async for key, size in backend.scan("v1/")}


async def references(client: Client, workflow_ids: list[str]) -> list[HistoryReference]:
    found: list[HistoryReference] = []
    for wid in workflow_ids:
        found += history_references(await client.get_workflow_handle(wid).fetch_history())
    return found


async def wait_for_history(
    handle: WorkflowHandle[Any, Any], done: Callable[[WorkflowHistory], bool], what: str
) -> WorkflowHistory:
    """Poll the history until ``done`` holds; fail with the event types if it never does."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while True:
        history = await handle.fetch_history()
        if done(history):
            return history
        if asyncio.get_running_loop().time() > deadline:
            types = [EventType.Name(e.event_type) for e in history.events]
            pytest.fail(f"{handle.id}: no {what} after {WAIT_SECONDS:.0f}s; events: {types}")
        await asyncio.sleep(0.1)


def has_event(event_type: EventType.ValueType) -> Callable[[WorkflowHistory], bool]:
    return lambda history: any(e.event_type == event_type for e in history.events)


def waiting_after_first_activity(history: WorkflowHistory) -> bool:
    """The first activity completed and the workflow task that saw it completed too."""
    types = [e.event_type for e in history.events]
    if EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED not in types:
        return False
    after = types[types.index(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) :]
    return EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED in after


# Dedup and references.


@pytest.mark.parametrize(
    ("store_url", "width"),
    [
        *((store, width) for store in ("local", "s3", "azure") for width in (1, 6)),
        ("redis", 6),
        ("gcs", 6),
    ],
    indirect=["store_url"],
)
async def test_fan_out_writes_each_distinct_payload_once_and_a_rerun_writes_nothing(
    temporal: TemporalDevServer, store_url: str, width: int
) -> None:
    document = big_json(64 * 1024)
    workflow_id, task_queue = unique("fan-out"), unique("q")
    children = 2
    workflow_ids = [workflow_id] + [f"{workflow_id}-child-{i}" for i in range(children)]

    async def run() -> tuple[int, int, set[str], dict[str, int]]:
        async with connected(temporal, store_url) as (client, plugin):
            summary = await run_fan_out(
                client,
                document,
                activities=width,
                children=children,
                child_activities=width,
                workflow_id=workflow_id,
                task_queue=task_queue,
            )
            assert summary.activities == width * (1 + children)
            assert summary.rows == len(document["rows"]) * (1 + children)
            keys = {r.object_key() for r in await references(client, workflow_ids)}
            stats = plugin.driver.stats
            return (
                stats.payloads_stored,
                stats.objects_written,
                keys,
                await objects_in(plugin.backend),
            )

    stored, written, keys, objects = await run()
    assert written == len(keys) == len(objects)
    assert set(objects) == keys
    assert stored > written  # the document went to every activity and child

    # Same workflow id, fresh worker caches: every object is found in the store.
    stored_again, written_again, keys_again, objects_again = await run()
    assert (stored_again, written_again) == (stored, 0)
    assert keys_again == keys
    assert objects_again == objects


async def test_threshold_zero_with_many_small_payloads_every_reference_decodes(
    temporal: TemporalDevServer, store_url: str
) -> None:
    count = 40
    workflow_id, task_queue = unique("small"), unique("q")
    async with connected(temporal, store_url) as (client, _plugin):
        async with Worker(client, task_queue=task_queue, workflows=[ManySmall], activities=[echo]):
            result = await client.execute_workflow(
                ManySmall.run, count, id=workflow_id, task_queue=task_queue
            )
        history = await client.get_workflow_handle(workflow_id).fetch_history()
    assert result == [2 * i for i in range(count)]

    payloads = [p for event in history.events for p in iter_payloads(event)]
    inline = [p for p in payloads if reference_in(p) is None]
    assert not inline, f"threshold 0 left payloads inline: {inline[:3]}"

    # Every reference decodes, through a driver that has never seen the payloads.
    async with CasStorePlugin(store_url) as fresh:
        values = []
        for payload in payloads:
            reference = reference_in(payload)
            assert reference is not None
            assert reference.driver_name == "casstore"
            [stored] = await fresh.driver.retrieve(
                StorageDriverRetrieveContext(),
                [StorageDriverClaim(claim_data=dict(reference.claim_data))],
            )
            values.append(DataConverter.default.payload_converter.from_payload(stored))
        assert fresh.driver.stats.objects_read > 0
    assert len(payloads) == 1 + 2 * count + 1  # input, activity inputs and results, result
    assert sorted(v for v in values if not isinstance(v, list)) == sorted(
        [count, *range(count), *(2 * i for i in range(count))]
    )
    assert [v for v in values if isinstance(v, list)] == [result]


# Workers, replay, migration.


def start_worker_process(temporal: TemporalDevServer, task_queue: str, store: str) -> Any:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.e2e_worker",
            "--address",
            temporal.address,
            "--task-queue",
            task_queue,
            "--store",
            store,
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "worker running":
        proc.kill()
        proc.wait()
        pytest.fail(f"worker process said {line!r}, exit code {proc.returncode}")
    return proc


def stop_process(proc: Any, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.wait(timeout=30)


async def test_a_new_worker_process_with_only_the_store_finishes_a_workflow(
    temporal: TemporalDevServer, store_url: str
) -> None:
    document = big_json(100 * 1024)
    workflow_id, task_queue = unique("restart"), unique("q")
    async with connected(temporal, store_url) as (client, _plugin):
        handle = await client.start_workflow(
            WaitsForSignal.run, document, id=workflow_id, task_queue=task_queue
        )
        first = start_worker_process(temporal, task_queue, store_url)
        try:
            await wait_for_history(handle, waiting_after_first_activity, "first activity")
        finally:
            stop_process(first, signal.SIGKILL)  # a crash: no clean shutdown

        second = start_worker_process(temporal, task_queue, store_url)
        try:
            await handle.signal(WaitsForSignal.proceed)
            result = await asyncio.wait_for(handle.result(), WAIT_SECONDS)
        finally:
            stop_process(second)
        history = await handle.fetch_history()

    rows = len(document["rows"])
    assert result == [f"first:{rows}", f"second:{rows}"]
    started = [
        e.activity_task_started_event_attributes.identity
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert len(started) == 2
    assert started[0].startswith(f"{first.pid}@")
    assert started[1].startswith(f"{second.pid}@")


async def test_a_history_replays_with_a_replayer_configured_with_casstore(
    temporal: TemporalDevServer, store_url: str
) -> None:
    workflow_id, task_queue = unique("replay"), unique("q")
    async with connected(temporal, store_url) as (client, _plugin):
        await run_fan_out(
            client,
            big_json(32 * 1024),
            activities=3,
            children=1,
            child_activities=2,
            workflow_id=workflow_id,
            task_queue=task_queue,
        )
        history = await client.get_workflow_handle(workflow_id).fetch_history()

    async with CasStorePlugin(store_url, payload_size_threshold=0) as fresh:
        replayer = Replayer(workflows=[FanOutParent, FanOutChild], plugins=[fresh])
        result = await replayer.replay_workflow(history)
        assert result.replay_failure is None
        assert fresh.driver.stats.objects_read > 0  # the inputs came from the store


async def test_payloads_of_the_sdk_s3_driver_stay_readable_after_moving_to_casstore(
    temporal: TemporalDevServer, store_url: str, rclone_place: S3Place
) -> None:
    from temporalio.contrib.aws.s3driver import S3StorageDriver
    from temporalio.contrib.aws.s3driver.aioboto3 import new_aioboto3_client

    document = big_json(50 * 1024)
    workflow_id, task_queue = unique("migrate"), unique("q")
    sdk_driver = S3StorageDriver(
        client=new_aioboto3_client(rclone_place.raw), bucket=rclone_place.bucket
    )
    old_client = await Client.connect(
        temporal.address, data_converter=sdk_only_converter(sdk_driver)
    )
    async with Worker(
        old_client, task_queue=task_queue, workflows=[WaitsForSignal], activities=[describe]
    ):
        handle = await old_client.start_workflow(
            WaitsForSignal.run, document, id=workflow_id, task_queue=task_queue
        )
        await wait_for_history(handle, waiting_after_first_activity, "first activity")

    async with connected(temporal, store_url, extra_drivers=[sdk_driver]) as (client, plugin):
        async with Worker(
            client, task_queue=task_queue, workflows=[WaitsForSignal], activities=[describe]
        ):
            handle = client.get_workflow_handle(workflow_id)
            await handle.signal(WaitsForSignal.proceed)
            result = await asyncio.wait_for(handle.result(), WAIT_SECONDS)
        refs = await references(client, [workflow_id])
        retrieved = plugin.driver.stats.payloads_retrieved

    rows = len(document["rows"])
    assert result == [f"first:{rows}", f"second:{rows}"]
    drivers = [r.reference.driver_name for r in refs]
    # Everything before the move went to the SDK driver, everything after to casstore.
    assert drivers[0] == "aws.s3driver"
    assert "casstore" in drivers
    first_casstore = drivers.index("casstore")
    assert set(drivers[:first_casstore]) == {"aws.s3driver"}
    assert set(drivers[first_casstore:]) == {"casstore"}
    assert retrieved > 0


def sdk_only_converter(driver: StorageDriver) -> DataConverter:
    return dataclasses.replace(
        DataConverter.default,
        external_storage=ExternalStorage(drivers=[driver], payload_size_threshold=0),
    )


# Failures: a bad object never reaches workflow or activity code.


DAMAGE = {
    "missing": "not found",
    "corrupted": "does not match its claim",
}


async def damage(backend: Backend, reference: HistoryReference, how: str) -> str:
    """Delete the referenced object, or replace it with other bytes of the same size
    (so that only the digest check can tell); return its key."""
    key = reference.object_key()
    await backend.delete(key)
    if how == "corrupted":
        await backend.put(key, encode_object(b"x" * reference.casstore_claim().size, None)[1])
    return key


def workflow_input(history: WorkflowHistory) -> HistoryReference:
    return next(
        r
        for r in history_references(history)
        if r.event_type == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED"
    )


@pytest.mark.parametrize("how", DAMAGE)
async def test_a_bad_workflow_input_fails_the_workflow_task_naming_key_and_cause(
    temporal: TemporalDevServer, store_url: str, how: str
) -> None:
    workflow_id, task_queue = unique(how), unique("q")
    async with connected(temporal, store_url) as (client, plugin):
        handle = await client.start_workflow(
            WaitsForSignal.run, big_json(8 * 1024), id=workflow_id, task_queue=task_queue
        )
        key = await damage(plugin.backend, workflow_input(await handle.fetch_history()), how)
        async with (
            connected(temporal, store_url) as (worker_client, _),
            Worker(
                worker_client,
                task_queue=task_queue,
                workflows=[WaitsForSignal],
                activities=[describe],
            ),
        ):
            history = await wait_for_history(
                handle,
                has_event(EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED),
                "workflow task failure",
            )
        await handle.terminate(reason="test done")

    [message, *_] = workflow_task_failures(history)
    assert key in message
    assert DAMAGE[how] in message
    # The workflow code never ran: it would have scheduled an activity first thing.
    assert not has_event(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)(history)


@pytest.mark.parametrize("how", DAMAGE)
async def test_a_bad_activity_input_fails_the_activity_naming_key_and_cause(
    temporal: TemporalDevServer, store_url: str, how: str
) -> None:
    workflow_id, workflow_queue, activity_queue = unique(how), unique("q"), unique("q")
    async with (
        connected(temporal, store_url) as (client, plugin),
        Worker(client, task_queue=workflow_queue, workflows=[ActivityElsewhere]),
    ):
        handle = await client.start_workflow(
            ActivityElsewhere.run,
            args=[big_json(8 * 1024), activity_queue],
            id=workflow_id,
            task_queue=workflow_queue,
        )
        history = await wait_for_history(
            handle,
            has_event(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
            "scheduled activity",
        )
        # The activity's input is the workflow's input: one object. The workflow
        # worker has it cached; the activity worker below has to read it.
        key = await damage(plugin.backend, workflow_input(history), how)
        async with (
            connected(temporal, store_url) as (activity_client, _),
            Worker(activity_client, task_queue=activity_queue, activities=[describe]),
        ):
            with pytest.raises(WorkflowFailureError) as failed:
                await asyncio.wait_for(handle.result(), WAIT_SECONDS)

    messages = []
    cause: BaseException | None = failed.value
    while cause is not None:
        messages.append(str(cause))
        cause = cause.__cause__
    text = " / ".join(messages)
    assert key in text
    assert DAMAGE[how] in text
    assert "Failed decoding arguments" in text  # the activity itself never ran


# The demo.

DEMO = [sys.executable, "-m", "casstore", "demo"]


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DEMO, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_the_demo_prints_its_summary(temporal: TemporalDevServer, tmp_path: Path) -> None:
    store = tmp_path / "demo-store"
    done = run_demo(
        "--address",
        temporal.address,
        "--store",
        str(store),
        "--fan-out",
        "6",
        "--children",
        "2",
        "--child-fan-out",
        "3",
        "--input-mib",
        "0.25",
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    lines = {
        line.split("  ", 2)[1].strip(): line.split("  ", 2)[2].strip()
        for line in out.splitlines()
        if line.startswith("  ") and len(line.split("  ", 2)) == 3
    }
    assert lines["work done"].startswith("1 parent + 2 children, 12 activities")
    assert lines["store"].startswith(str(store))
    for label in (
        "payloads stored",
        "objects written",
        "logical bytes",
        "stored bytes",
        "dedup ratio",
        "compression ratio",
        "payloads retrieved",
        "references in history",
        "wall time",
    ):
        assert label in lines, out
    assert int(lines["objects written"].split()[0]) == int(lines["distinct payloads"])
    assert any(store.iterdir())


@pytest.mark.integration  # the demo starts its own dev server
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_the_demo_stops_its_worker_and_server_on_ctrl_c(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    # Thousands of small activities: cheap per step, but far from done when
    # the signal arrives, so it lands on a busy worker with workflow tasks,
    # activities and stores in flight.
    args = ["--store", str(tmp_path), "--fan-out", "2000", "--children", "0", "--input-mib", "0.25"]
    demo = subprocess.Popen(
        [*DEMO, *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        lines = [demo.stdout.readline() for _ in range(5)]
        assert lines[-1].startswith("Running"), lines
        server_pid = int(lines[1].split("pid ")[1].rstrip(")\n"))
        # The worker got going: its first activities have stored payloads.
        stored = tmp_path / "v1"
        wait_until_sync(
            lambda: stored.is_dir() and any(p.is_file() for p in stored.rglob("*")),
            60,
            what="the demo stores a payload",
        )
        demo.send_signal(sig)
        out, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == code, err
    assert "interrupted; worker and servers stopped" in err
    assert "work done" not in out  # it was stopped, not finished
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)


def test_the_demo_fails_clearly() -> None:
    done = run_demo("--address", "127.0.0.1:1", "--store", "ftp://x")
    assert done.returncode == 1
    assert "casstore demo failed: unknown backend URL scheme 'ftp'" in done.stderr


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--fan-out", "-1"], "must be between 0 and 2000"),
        (["--input-mib", "0"], "must be above 0"),
        (["--scope", "planet"], "invalid choice"),
    ],
)
def test_the_demo_refuses_bad_flags(
    args: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["demo", *args])
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


def test_the_cli_says_its_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"casstore {casstore.__version__}"


# Encryption at rest through a real server.


async def test_encrypted_fan_out_dedups_and_leaves_nothing_readable_in_history_or_store(
    temporal: TemporalDevServer, tmp_path: Path
) -> None:
    keyring = casstore.KeyRing.from_bytes(os.urandom(32), key_id="e2e")
    document = big_json(64 * 1024)
    workflow_id, task_queue = unique("encrypted"), unique("q")
    workflow_ids = [workflow_id, f"{workflow_id}-child-0"]
    store = tmp_path / "store"
    # Uncompressed, so that plaintext would show verbatim if it were stored.
    options: dict[str, Any] = {"keyring": keyring, "compression_level": None}
    async with connected(temporal, str(store), **options) as (client, plugin):
        summary = await run_fan_out(
            client,
            document,
            activities=3,
            children=1,
            child_activities=3,
            workflow_id=workflow_id,
            task_queue=task_queue,
        )
        assert summary.activities == 6
        refs = await references(client, workflow_ids)
        histories = [await client.get_workflow_handle(w).fetch_history() for w in workflow_ids]
        stats = plugin.driver.stats
    assert stats.payloads_stored > stats.objects_written  # the document was deduplicated
    assert {ref.casstore_claim().key_id for ref in refs} == {"e2e"}
    history_bytes = b"".join(e.SerializeToString() for h in histories for e in h.events)
    [document_payload] = DataConverter.default.payload_converter.to_payloads([document])
    plain = blake3.blake3(document_payload.SerializeToString(deterministic=True)).digest()
    stored = b"".join(p.read_bytes() for p in store.rglob("*") if p.is_file())
    names = "/".join(p.name for p in store.rglob("*")).encode()
    for needle in (b"ord-00000001", b"customer-", plain.hex().encode()):
        assert needle not in history_bytes
        assert needle not in stored
        assert needle not in names
    assert base64.urlsafe_b64encode(plain).rstrip(b"=") not in history_bytes
