"""``casstore gc`` end to end: a real Temporal dev server, the local backend and S3.

One dev server for the module, started with fast visibility acks so that a
``temporal workflow delete`` (standing in for retention) shows in listings
within a second or two. Stores get a lifecycle manifest with sub-second
``refresh_after``/``claim_delay``, so a grace of a few seconds is allowed.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import RawValue
from temporalio.converter import StorageDriverClaim, StorageDriverRetrieveContext
from temporalio.worker import Worker

from casstore import CasStorageDriver, open_backend
from casstore._cli import main as cli_main
from casstore._format.manifest import MANIFEST_KEY, LifecyclePolicy
from casstore._format.trash import trash_key
from casstore._freshness import ensure_policy
from casstore.backends import Backend
from casstore.history import history_references
from casstore.ops._gc_mark import is_open_status, mark_namespace
from casstore.ops._gc_refs import referenced_objects
from casstore.ops._gc_sweep import apply_plan, plan_sweep
from casstore.plugin import CasStorePlugin
from testrig import TemporalDevServer, find_temporal_cli, free_port
from tests.support.cli import s3_url
from tests.support.gc import context, key_of, writer_for
from tests.support.s3 import S3Place
from tests.support.wait import wait_until
from tests.support.workflows_gc import (
    AbandonedChild,
    AbandoningParent,
    AgentLoop,
    Finishes,
    Holds,
    Receiver,
    Sender,
    Sleeps,
    model_call,
    shout,
)

POLICY = LifecyclePolicy(refresh_after=timedelta(seconds=0.5), claim_delay=timedelta(seconds=0.5))
GRACE = "2s"
BOGUS_NAMESPACE = "gc-bogus"  # holds a history gc cannot judge
GRACE_SECONDS = 2.0
WAIT_SECONDS = 30.0
PAUSED = 8  # WORKFLOW_EXECUTION_STATUS_PAUSED, newer than the SDK's enum


# Fast visibility acks: a deleted workflow leaves listings within a second or two.
TEMPORAL_ARGS = [
    "--namespace",
    BOGUS_NAMESPACE,
    "--dynamic-config-value",
    'history.transferProcessorUpdateAckInterval="1s"',
    "--dynamic-config-value",
    'history.visibilityProcessorUpdateAckInterval="1s"',
    "--dynamic-config-value",
    "frontend.WorkflowPauseEnabled=true",  # temporal workflow pause (experimental)
]


@pytest.fixture(params=["local", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store with a short-lived lifecycle policy, as a URL."""
    if request.param == "local":
        url = str(tmp_path / "store")
    else:
        place: S3Place = request.getfixturevalue("rclone_place")
        url = s3_url(place)
    asyncio.run(record_policy(url))
    return url


async def record_policy(url: str) -> None:
    async with open_backend(url) as backend:
        await ensure_policy(backend, POLICY)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def gc(*args: str) -> tuple[int, str, str]:
    """Run the ``casstore`` command line in a thread (it runs its own event loop)."""
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        import contextlib

        with contextlib.redirect_stderr(err):
            return cli_main(["gc", *args], out=out)

    code = await asyncio.to_thread(call)
    return code, out.getvalue(), err.getvalue()


async def all_keys(url: str) -> set[str]:
    async with open_backend(url) as backend:
        return {key async for key, _ in backend.scan()}


async def keys_of(client: Client, workflow_id: str) -> set[str]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return {ref.object_key() for ref in history_references(history)}


def delete_workflow(temporal: TemporalDevServer, workflow_id: str) -> None:
    """``temporal workflow delete``: the execution goes, as if retention ran out."""
    done = subprocess.run(
        [find_temporal_cli(), "workflow", "delete", "--address", temporal.address,
         "--namespace", "default", "--workflow-id", workflow_id, "--yes", "--disable-config-file",
         "--disable-config-env"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


async def wait_until_unlisted(client: Client, workflow_ids: set[str]) -> None:
    async def unlisted() -> bool:
        listed = {execution.id async for execution in client.list_workflows()}
        return not listed & workflow_ids

    await wait_until(unlisted, WAIT_SECONDS, what=f"{sorted(workflow_ids)} leave the listing")


@asynccontextmanager
async def worker(temporal: TemporalDevServer, url: str) -> AsyncIterator[Client]:
    async with CasStorePlugin(url, payload_size_threshold=0) as plugin:
        client = await Client.connect(temporal.address, plugins=[plugin])
        queue = unique("gc")
        async with Worker(
            client,
            task_queue=queue,
            workflows=[
                Finishes,
                Sleeps,
                Holds,
                AbandonedChild,
                AbandoningParent,
                Receiver,
                Sender,
                AgentLoop,
            ],
            activities=[shout, model_call],
        ):
            client.gc_test_queue = queue  # type: ignore[attr-defined]
            yield client


async def test_gc_deletes_exactly_what_temporal_no_longer_has(
    temporal: TemporalDevServer, store_url: str
) -> None:
    async with worker(temporal, store_url) as client:
        queue: str = client.gc_test_queue  # type: ignore[attr-defined]

        async def run(workflow: Any, *args: Any, workflow_id: str) -> None:
            await client.execute_workflow(
                workflow, args=list(args), id=workflow_id, task_queue=queue
            )

        finished, deleted_too, sleeper = unique("finished"), unique("deleted"), unique("sleeper")
        parent, child = unique("parent"), unique("child")
        receiver, sender = unique("receiver"), unique("sender")
        finished_text = unique("input")
        await run(Finishes.run, finished_text, workflow_id=finished)
        await run(Finishes.run, unique("input"), workflow_id=deleted_too)
        await client.start_workflow(Sleeps.run, unique("input"), id=sleeper, task_queue=queue)
        await run(AbandoningParent.run, unique("input"), child, workflow_id=parent)
        # The child finishes after its parent closed: its result is stored
        # under the parent's workflow id, and only the child's history has it.
        await client.get_workflow_handle(child).signal(AbandonedChild.go)
        await client.get_workflow_handle(child).result()
        receiver_handle = await client.start_workflow(
            Receiver.run, unique("input"), id=receiver, task_queue=queue
        )
        # The signal is stored under the receiver's id and referenced by both.
        await run(Sender.run, receiver, unique("note"), workflow_id=sender)
        await receiver_handle.result()
        sleeper_handle = client.get_workflow_handle(sleeper)
        await _wait_for_activity(sleeper_handle)

        refs = {wid: await keys_of(client, wid) for wid in
                (finished, deleted_too, sleeper, parent, child, receiver, sender)}  # fmt: skip
        for wid in (finished, deleted_too, parent, receiver):
            delete_workflow(temporal, wid)
        await wait_until_unlisted(client, {finished, deleted_too, parent, receiver})
        kept = refs[sleeper] | refs[child] | refs[sender]
        garbage = (refs[finished] | refs[deleted_too] | refs[parent] | refs[receiver]) - kept
        # The cross-scope cases really are cross-scope: kept objects stored
        # under the ids of deleted workflows.
        assert any(f"/{parent}/" in key for key in kept & refs[child])
        assert any(f"/{receiver}/" in key for key in kept & refs[sender])
        before = await all_keys(store_url)
        assert garbage
        assert garbage <= before
        await asyncio.sleep(GRACE_SECONDS + 0.5)  # everything older than the grace

        code, out, err = await gc(store_url, "--namespace", "default", "--address",
                                  temporal.address, "--grace", GRACE, "--json")  # fmt: skip
        assert code == 0, err
        report = json.loads(out)
        assert report["dry_run"] is True
        assert {item["key"] for item in report["to_trash"]} == garbage
        assert await all_keys(store_url) == before

        # Phase one, with a race: between gc's planning and acting, a new run
        # of a deleted workflow id hands out a claim for one of the objects
        # gc is about to move (a dedup hit on the same input).
        async with open_backend(store_url) as backend:
            marked = await mark_namespace(client)
            plan = await plan_sweep(
                backend, "default", live=marked.keys, judged_at=marked.started_at,
                min_age=timedelta(seconds=GRACE_SECONDS),
            )  # fmt: skip
            assert {key for key, _ in plan.quarantine} == garbage
            raced = await client.start_workflow(
                Holds.run, finished_text, id=finished, task_queue=queue
            )
            raced_keys = await keys_of(client, finished)
            assert raced_keys
            assert raced_keys <= garbage
            await apply_plan(backend, plan, POLICY)
            for key in garbage:
                assert key not in await all_keys(store_url)
            # The raced claim reads back (from the trash) through a fresh driver.
            await _read_all(backend, client, finished)

        await asyncio.sleep(GRACE_SECONDS + 0.5)
        gc_args = ["--namespace", "default", "--address", temporal.address, "--grace", GRACE]
        code, out, err = await gc(store_url, *gc_args, "--delete", "--json")
        assert code == 0, err
        report = json.loads(out)
        assert set(report["restore"]) == raced_keys
        after = await all_keys(store_url)
        assert before - after == garbage - raced_keys
        assert not {key for key in after if key.startswith("_casstore/trash/")}
        async with open_backend(store_url) as backend:
            for wid in (sleeper, child, sender, finished):
                await _read_all(backend, client, wid)
        await raced.terminate()
        await sleeper_handle.terminate()


# Local only: on a store that cannot report a lost create race (rclone), a
# writer learns chunk locations only from reads, and this worker reads nothing
# it did not write itself (its verified cache answers).
@pytest.mark.parametrize("store_url", ["local"], indirect=True)
async def test_gc_keeps_what_an_agents_chunked_payloads_read_from_an_earlier_run(
    temporal: TemporalDevServer, store_url: str
) -> None:
    # A second run of one workflow id continues the first run's conversation:
    # its payloads read most of their chunks from the first run's objects,
    # which no kept history references once the first run is deleted.
    async with worker(temporal, store_url) as client:
        queue: str = client.gc_test_queue  # type: ignore[attr-defined]
        agent = unique("agent")
        prompt = " ".join(f"instruction-{i}" for i in range(3_000))  # about 40 KB
        first = await client.execute_workflow(
            AgentLoop.run, args=[[prompt], 6], id=agent, task_queue=queue
        )
        first_keys = await keys_of(client, agent)
        delete_workflow(temporal, agent)
        await wait_until_unlisted(client, {agent})
        await client.execute_workflow(AgentLoop.run, args=[first, 4], id=agent, task_queue=queue)
        second_keys = await keys_of(client, agent)
        async with open_backend(store_url) as backend:
            read_from = await referenced_objects(backend, second_keys)
        only_first = first_keys - second_keys
        assert read_from & only_first  # what the mark alone would not keep

        gc_args = ["--namespace", "default", "--address", temporal.address, "--grace", GRACE]
        for _ in range(2):  # move to the trash, then delete: two graces
            await asyncio.sleep(GRACE_SECONDS + 0.5)
            code, _, err = await gc(store_url, *gc_args, "--delete", "--json")
            assert code == 0, err
        after = await all_keys(store_url)
        assert read_from <= after
        assert only_first - read_from - after  # the rest of the first run went
        async with open_backend(store_url) as backend:
            await _read_all(backend, client, agent)


async def _wait_for_activity(handle: Any) -> None:
    async def completed() -> bool:
        history = await handle.fetch_history()
        return any(e.HasField("activity_task_completed_event_attributes") for e in history.events)

    await wait_until(completed, WAIT_SECONDS, what="the sleeping workflow's activity completes")


async def _read_all(backend: Backend, client: Client, workflow_id: str) -> None:
    """Retrieve every payload a history references, through a driver with empty caches."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    claims = [
        StorageDriverClaim(dict(ref.reference.claim_data)) for ref in history_references(history)
    ]
    assert claims
    await CasStorageDriver(backend).retrieve(StorageDriverRetrieveContext(), claims)


# Bad inputs: one line on stderr, exit status 2, nothing deleted.


@pytest.fixture(scope="module")
def local_store_with_garbage(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local store holding one old, unreferenced object of namespace ``default``."""
    url = str(tmp_path_factory.mktemp("garbage") / "store")

    async def fill() -> None:
        async with open_backend(url) as backend:
            await ensure_policy(backend, POLICY)
            for namespace in ("default", BOGUS_NAMESPACE):
                garbage = [Payload(data=b"garbage")]
                await writer_for(backend).store(context("gone", namespace), garbage)

    asyncio.run(fill())
    time.sleep(GRACE_SECONDS + 0.2)
    return url


def one_line_error(code: int, out: str, err: str, expected: str) -> None:
    assert code == 2, (out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("casstore gc: error: "), err
    assert expected in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--address", "127.0.0.1:{free}"], "cannot connect to Temporal [address=127.0.0.1:"),
        (["--address", "{temporal}", "--namespace", "nope"], "Temporal has no namespace 'nope'"),
        (["--address", "{temporal}", "--grace", "1s"], "--grace 1s is too short"),
        (["--older-than", "1s"], "--older-than 1s is too short"),
        (["--older-than", "1d", "--address", "{temporal}"], "not both and not neither"),
        ([], "not both and not neither"),
    ],
)
async def test_bad_inputs_fail_in_one_line_and_delete_nothing(
    temporal: TemporalDevServer, local_store_with_garbage: str, args: list[str], expected: str
) -> None:
    url = local_store_with_garbage
    before = await all_keys(url)
    args = [a.format(free=free_port(), temporal=temporal.address) for a in args]
    if "--namespace" not in args:
        args += ["--namespace", "default"]
    if "--grace" not in args and "--older-than" not in args:
        args += ["--grace", GRACE]
    one_line_error(*await gc(url, *args, "--delete"), expected)
    assert await all_keys(url) == before


async def test_a_store_that_does_not_exist_or_has_no_manifest_is_refused(
    temporal: TemporalDevServer, tmp_path: Path, rclone_place: S3Place
) -> None:
    common = ["--namespace", "default", "--address", temporal.address, "--delete"]
    missing = tmp_path / "no-such-store"
    one_line_error(*await gc(str(missing), *common), "store does not exist")
    assert not missing.exists()
    target = rclone_place.target
    no_bucket = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/p?endpoint_url={target.endpoint_url}"
    one_line_error(*await gc(no_bucket, *common), "cannot open store")
    (tmp_path / "empty").mkdir()
    one_line_error(*await gc(str(tmp_path / "empty"), *common), "no lifecycle manifest")


async def test_age_only_mode_collects_what_writers_stopped_refreshing(tmp_path: Path) -> None:
    """--older-than without Temporal: a reused object is refreshed (local backend too) and stays."""
    url = str(tmp_path / "archive")
    async with open_backend(url) as backend:
        await ensure_policy(backend, POLICY)
        [old] = await writer_for(backend).store(context("a"), [Payload(data=b"forgotten")])
        [reused] = await writer_for(backend).store(context("b"), [Payload(data=b"reused")])
        await asyncio.sleep(1.6)
        # A worker stores the reused payload again: older than refresh_after, so refreshed.
        writer = writer_for(backend)
        await writer.store(context("b"), [Payload(data=b"reused")])
        assert writer.stats.objects_refreshed == 1
    args = ["--namespace", "default", "--older-than", "1.5s", "--delete", "--json"]
    code, out, err = await gc(url, *args)
    assert code == 0, err
    assert [item["key"] for item in json.loads(out)["to_trash"]] == [key_of(old)]
    await asyncio.sleep(1.6)
    async with open_backend(url) as backend:  # still in use: refreshed again
        await writer_for(backend).store(context("b"), [Payload(data=b"reused")])
    code, out, err = await gc(url, *args)
    assert code == 0, err
    assert json.loads(out)["to_trash"] == []
    assert [item["key"] for item in json.loads(out)["delete"]] == [trash_key(key_of(old))]
    assert await all_keys(url) == {key_of(reused), MANIFEST_KEY}


async def test_a_reference_gc_cannot_read_stops_it_before_any_change(
    temporal: TemporalDevServer, local_store_with_garbage: str
) -> None:
    # Histories holding a casstore reference whose claim is not one, and a
    # reference that is not even JSON: gc cannot tell what those histories
    # need, so it must not delete anything.
    client = await Client.connect(temporal.address, namespace=BOGUS_NAMESPACE)
    handles = []
    for data in (
        b'{"driverName":"casstore","claimData":{"c":"[1,\\"not a claim\\"]"}}',
        b"{not json",
    ):
        reference = Payload(
            metadata={
                "encoding": b"json/protobuf",
                "messageType": b"temporal.api.sdk.v1.ExternalStorageReference",
            },
            data=data,
        )
        handles.append(
            await client.start_workflow(
                "Holds", RawValue(reference), id=unique("bogus"), task_queue=unique("no-worker")
            )
        )
    url = local_store_with_garbage
    before = await all_keys(url)
    args = ["--namespace", BOGUS_NAMESPACE, "--address", temporal.address, "--grace", GRACE]
    one_line_error(*await gc(url, *args, "--delete"), "so gc cannot tell what it needs")
    assert await all_keys(url) == before
    for handle in handles:
        await handle.terminate()


async def test_schedule_arguments_are_kept(temporal: TemporalDevServer, tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    await record_policy(url)
    schedule_id = unique("schedule")
    async with CasStorePlugin(url, payload_size_threshold=0) as plugin:
        client = await Client.connect(temporal.address, plugins=[plugin])
        handle = await client.create_schedule(
            schedule_id,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    Finishes.run, unique("scheduled input"), id=unique("run"), task_queue="none"
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(days=1))]),
                state=ScheduleState(paused=True),
            ),
        )
    try:
        stored = {key for key in await all_keys(url) if key.startswith("v1/")}
        assert len(stored) == 1  # the action's argument, held only by the schedule
        await asyncio.sleep(GRACE_SECONDS + 0.5)
        args = ["--namespace", "default", "--address", temporal.address, "--grace", GRACE]
        code, out, err = await gc(url, *args, "--delete", "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["marked"]["schedules"] >= 1
        assert report["to_trash"] == []
        assert stored <= await all_keys(url)
    finally:
        await handle.delete()


async def test_a_lock_left_behind_refuses_deletion_until_broken(
    local_store_with_garbage: str,
) -> None:
    url = local_store_with_garbage
    lock = "_casstore/gc/default.lock"
    async with open_backend(url) as backend:
        await backend.put(lock, b'{"host": "elsewhere", "pid": 1}')
    try:
        before = await all_keys(url)
        args = ["--namespace", "default", "--older-than", "2s", "--delete"]
        one_line_error(*await gc(url, *args), "another gc holds the lock of namespace 'default'")
        assert await all_keys(url) == before
        # A dry run needs no lock; --break-lock is for a crashed run's lock.
        code, _, err = await gc(url, "--namespace", "default", "--older-than", "2s")
        assert code == 0, err
        assert await all_keys(url) == before
    finally:
        async with open_backend(url) as backend:
            await backend.delete(lock)


def pause_workflow(temporal: TemporalDevServer, workflow_id: str) -> None:
    """``temporal workflow pause``: the run stays open with status 8 (paused)."""
    done = subprocess.run(
        [find_temporal_cli(), "workflow", "pause", "--address", temporal.address,
         "--namespace", "default", "--workflow-id", workflow_id, "--reason", "gc test",
         "--disable-config-file", "--disable-config-env"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


async def listed_status(client: Client, workflow_id: str) -> int:
    page = await client.workflow_service.list_workflow_executions(
        ListWorkflowExecutionsRequest(namespace="default", query=f"WorkflowId = '{workflow_id}'")
    )
    return int(page.executions[0].status) if page.executions else 0


async def test_a_paused_workflow_is_open_and_keeps_its_payloads(
    temporal: TemporalDevServer, tmp_path: Path
) -> None:
    url = str(tmp_path / "store")
    await record_policy(url)
    workflow_id = unique("paused")
    async with worker(temporal, url) as client:
        handle = await client.start_workflow(
            Holds.run,
            unique("paused input"),
            id=workflow_id,
            task_queue=client.gc_test_queue,  # type: ignore[attr-defined]
        )
        kept = await keys_of(client, workflow_id)
        assert kept
        pause_workflow(temporal, workflow_id)

        async def paused() -> bool:
            return await listed_status(client, workflow_id) == PAUSED

        await wait_until(paused, WAIT_SECONDS, what="the pause shows in visibility")
        try:
            await asyncio.sleep(GRACE_SECONDS + 0.5)
            args = ["--namespace", "default", "--address", temporal.address, "--grace", GRACE]
            code, out, err = await gc(url, *args, "--delete", "--json")
            assert code == 0, err
            report = json.loads(out)
            assert report["marked"]["open_executions"] >= 1
            assert kept <= await all_keys(url)  # still at their keys, not in the trash
            assert not {trash_key(key) for key in kept} & await all_keys(url)
        finally:
            await handle.terminate()


def test_every_status_but_the_closed_ones_counts_as_open() -> None:
    closed = {2, 3, 4, 5, 6, 7}  # completed, failed, canceled, terminated, continued, timed out
    for status in range(20):
        assert is_open_status(status) is (status not in closed), status
