"""Running the demo: a fan-out workflow with a worker, then measuring what it stored."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.service import RPCError
from temporalio.worker import Worker

from casstore._format.keys import Scope
from casstore.demo._errors import DemoError
from casstore.demo._report import MIB, DemoReport, format_report
from casstore.demo._runner import abandon
from casstore.demo._workflows import FanOutChild, FanOutParent, FanOutSummary, analyze_shard
from casstore.history import HistoryReference, history_references, workflow_task_failures
from casstore.plugin import CasStorePlugin

DEFAULT_STORE = "casstore-demo-data"
_log = logging.getLogger(__name__)
_FAILURE_POLL_SECONDS = 1.0
_STAT_CONCURRENCY = 32
_WORKFLOW_THREADS = 16
WORKER_SHUTDOWN_SECONDS = 10.0
"""Seconds the worker may take to stop (after a run, an error or Ctrl-C) before it is given up."""


@dataclass(frozen=True)
class DemoOptions:
    """What ``casstore demo`` runs; the CLI flags map onto these."""

    address: str | None = None
    """Temporal front end to use; ``None`` starts a dev server."""
    store: str = DEFAULT_STORE
    """Backend URL or folder for the casstore store."""
    activities: int = 100
    """Activities the parent fans out to."""
    children: int = 3
    """Child workflows the parent starts."""
    child_activities: int = 20
    """Activities each child fans out to."""
    input_mib: float = 3.0
    """Size of the JSON document handed to every workflow and activity."""
    scope: Scope = "workflow"
    """casstore dedup scope."""
    namespace: str = "default"
    timeout: float = 300.0
    """Seconds the workflow may run before the demo gives up."""


def make_document(size: int, seed: int = 7) -> dict[str, Any]:
    """A JSON order book of about ``size`` bytes that compresses like real data."""
    rng = random.Random(seed)
    regions = ["eu-west", "us-east", "us-west", "ap-south", "sa-east"]
    statuses = ["paid", "shipped", "delivered", "returned", "pending"]
    rows: list[dict[str, Any]] = []
    length = 0
    while length < size:
        row = {
            "order_id": f"ord-{len(rows):08d}",
            "customer": f"customer-{rng.randrange(5000):05d}",
            "sku": f"SKU-{rng.randrange(800):04d}",
            "quantity": rng.randrange(1, 20),
            "price_cents": rng.randrange(199, 99_999),
            "region": rng.choice(regions),
            "status": rng.choice(statuses),
        }
        rows.append(row)
        length += len(json.dumps(row, separators=(",", ":"))) + 1
    return {"source": "casstore demo", "rows": rows}


async def run_demo(client: Client, plugin: CasStorePlugin, options: DemoOptions) -> DemoReport:
    """Run the fan-out workflow with a worker on ``client`` and measure it.

    Args:
        client: A client connected with ``plugin``.
        plugin: The casstore plugin whose driver stats are reported.
        options: Sizes of the run.

    Returns:
        The measurements.
    """
    document = make_document(int(options.input_mib * MIB))
    input_bytes = len(json.dumps(document, separators=(",", ":")))
    workflow_id = f"casstore-demo-{uuid.uuid4().hex[:12]}"
    task_queue = f"{workflow_id}-queue"
    before = plugin.driver.stats.snapshot()
    started = time.monotonic()
    # Our own executor: the SDK joins its default one on the event loop when
    # the worker stops, which a stuck workflow thread would turn into a hang.
    workflow_threads = concurrent.futures.ThreadPoolExecutor(
        max_workers=_WORKFLOW_THREADS, thread_name_prefix="casstore_demo_workflow_"
    )
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[FanOutParent, FanOutChild],
        activities=[analyze_shard],
        max_concurrent_activities=max(options.activities, options.child_activities, 1),
        max_concurrent_workflow_tasks=_WORKFLOW_THREADS,
        workflow_task_executor=workflow_threads,
    )
    workflow_ids = [workflow_id] + [f"{workflow_id}-child-{i}" for i in range(options.children)]
    running = asyncio.create_task(worker.run())
    try:
        handle = await client.start_workflow(
            FanOutParent.run,
            args=[document, options.activities, options.children, options.child_activities],
            id=workflow_id,
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=options.timeout),
        )
        summary = await _result_or_failure(client, handle, workflow_ids, running)
    finally:
        await stop_worker(worker)
        workflow_threads.shutdown(wait=False)  # exit_now_if_stuck() bounds the join
    run_seconds = time.monotonic() - started
    stats = plugin.driver.stats - before

    references: list[HistoryReference] = []
    events = 0
    for wid in workflow_ids:
        history = await client.get_workflow_handle(wid).fetch_history()
        events += len(history.events)
        references.extend(history_references(history))
    distinct: dict[str, int] = {}
    for ref in references:
        if ref.reference.driver_name == plugin.driver.name():
            distinct[ref.object_key()] = ref.casstore_claim().size
    limit = asyncio.Semaphore(_STAT_CONCURRENCY)

    async def stored_size(key: str) -> int:
        async with limit:
            found = await plugin.backend.stat(key)
        return found.size if found else 0

    stored_bytes = sum(await asyncio.gather(*(stored_size(key) for key in distinct)))
    return DemoReport(
        workflow_id=workflow_id,
        summary=summary,
        stats=stats,
        input_bytes=input_bytes,
        distinct_payloads=len(distinct),
        distinct_bytes=sum(distinct.values()),
        stored_bytes=stored_bytes,
        references=len(references),
        reference_bytes=sum(r.size for r in references),
        history_events=events,
        run_seconds=run_seconds,
    )


async def stop_worker(worker: Worker) -> None:
    """Shut ``worker`` down, giving up on it after :data:`WORKER_SHUTDOWN_SECONDS`.

    The SDK's shutdown waits for every workflow to be evicted, and a workflow
    whose task tripped the deadlock detector may never be (the SDK retries
    the eviction forever, swallowing cancellation), so an unbounded wait here
    would make Ctrl-C hang. A worker given up on is logged and recorded with
    :func:`~casstore.demo._runner.abandon`, so the CLI exits without joining
    its threads. Never raises for that: it runs in a ``finally`` whose own
    exception (an error, Ctrl-C) is the one to report.
    """
    stopping = asyncio.ensure_future(worker.shutdown())
    try:
        await asyncio.wait_for(asyncio.shield(stopping), WORKER_SHUTDOWN_SECONDS)
    except TimeoutError:
        abandon("the demo's worker")
        _log.warning(
            "casstore demo: the worker did not stop within %.0f s; giving up on it",
            WORKER_SHUTDOWN_SECONDS,
        )
    except asyncio.CancelledError:
        # Cancelled again while stopping (a second Ctrl-C): stop waiting.
        if not stopping.done():
            abandon("the demo's worker")
        raise


async def _result_or_failure(
    client: Client,
    handle: WorkflowHandle[Any, FanOutSummary],
    workflow_ids: list[str],
    running: asyncio.Task[None],
) -> FanOutSummary:
    """Wait for the result, failing fast if the worker or a workflow task fails.

    A failed or timed-out workflow task is retried forever by Temporal, so
    waiting for the result alone would hang until the timeout; the histories
    say why sooner. A task the SDK's deadlock detector interrupted shows up as
    a failed task; a worker stuck on one shows up as a task that timed out.
    """
    result = asyncio.ensure_future(handle.result())
    try:
        while True:
            done, _ = await asyncio.wait({result, running}, timeout=_FAILURE_POLL_SECONDS)
            if result in done:
                try:
                    return result.result()
                except Exception as exc:
                    raise DemoError(f"workflow {handle.id} failed: {_causes(exc)}") from exc
            if running in done:
                await _terminate(handle, "the worker stopped")
                error = running.exception() if not running.cancelled() else None
                why = _causes(error) if error else "cancelled"
                raise DemoError(f"the worker stopped before workflow {handle.id} ended: {why}")
            for wid in workflow_ids:
                try:
                    history = await client.get_workflow_handle(wid).fetch_history()
                except RPCError:
                    continue  # a child not started yet
                failures = workflow_task_failures(history) + _task_timeouts(history)
                if failures:
                    await _terminate(handle, "a workflow task failed")
                    raise DemoError(f"a workflow task of {wid} failed: {failures[-1]}")
    finally:
        result.cancel()


def _task_timeouts(history: WorkflowHistory) -> list[str]:
    """Describe the workflow tasks a worker took and did not complete in time."""
    return [
        "the worker took it and did not complete it in time (stuck or overloaded)"
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT
        and event.workflow_task_timed_out_event_attributes.timeout_type
        == TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE
    ]


async def _terminate(handle: WorkflowHandle[Any, FanOutSummary], why: str) -> None:
    """Terminate the demo's workflow (and so its children), best effort."""
    with contextlib.suppress(RPCError):
        await handle.terminate(reason=f"casstore demo: {why}")


def _causes(exc: BaseException) -> str:
    messages: list[str] = []
    cause: BaseException | None = exc
    while cause is not None:
        messages.append(str(cause) or type(cause).__name__)
        cause = cause.__cause__
    return ": ".join(messages)


async def demo_main(options: DemoOptions, out: TextIO) -> DemoReport:
    """Connect (server given or started), run the demo and print its report.

    The caller starts the dev server when ``options.address`` is ``None`` and
    passes its address in; this function only needs a reachable front end.
    """
    assert options.address is not None
    store = _store_url(options.store)
    async with CasStorePlugin(store, payload_size_threshold=0, scope=options.scope) as plugin:
        print(f"  store      {store} ({type(plugin.backend).__name__})", file=out)
        client = await Client.connect(
            options.address, namespace=options.namespace, plugins=[plugin]
        )
        print(
            f"\nRunning a fan-out of {options.activities} activities and {options.children} "
            f"children x {options.child_activities} activities "
            f"on a {options.input_mib:g} MiB input ...",
            file=out,
            flush=True,
        )
        report = await run_demo(client, plugin, options)
        threshold = plugin.external_storage.payload_size_threshold
    print(
        "\n" + format_report(report, threshold=threshold, scope=options.scope), file=out, flush=True
    )
    return report


def _store_url(store: str) -> str:
    """Make a plain folder absolute, so the printed location is unambiguous."""
    if "://" in store:
        return store
    return str(Path(store).expanduser().resolve())
