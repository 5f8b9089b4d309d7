"""Running the demo: a fan-out workflow with a worker, then measuring what it stored."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Worker

from casstore._keys import Scope
from casstore.demo._errors import DemoError
from casstore.demo._report import MIB, DemoReport, format_report
from casstore.demo._workflows import FanOutChild, FanOutParent, FanOutSummary, analyze_shard
from casstore.history import HistoryReference, history_references, workflow_task_failures
from casstore.plugin import CasStorePlugin

DEFAULT_STORE = "casstore-demo-data"
_FAILURE_POLL_SECONDS = 1.0
_STAT_CONCURRENCY = 32


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
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[FanOutParent, FanOutChild],
        activities=[analyze_shard],
        max_concurrent_activities=max(options.activities, options.child_activities, 1),
    ):
        handle = await client.start_workflow(
            FanOutParent.run,
            args=[document, options.activities, options.children, options.child_activities],
            id=workflow_id,
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=options.timeout),
        )
        workflow_ids = [workflow_id] + [f"{workflow_id}-child-{i}" for i in range(options.children)]
        summary = await _result_or_failure(client, handle, workflow_ids)
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


async def _result_or_failure(
    client: Client, handle: WorkflowHandle[Any, FanOutSummary], workflow_ids: list[str]
) -> FanOutSummary:
    """Wait for the result, failing fast if any workflow task fails.

    A failed workflow task is retried forever by Temporal, so waiting for the
    result alone would hang until the timeout; the histories say why sooner.
    """
    result = asyncio.ensure_future(handle.result())
    try:
        while True:
            done, _ = await asyncio.wait({result}, timeout=_FAILURE_POLL_SECONDS)
            if done:
                try:
                    return result.result()
                except Exception as exc:
                    raise DemoError(f"workflow {handle.id} failed: {_causes(exc)}") from exc
            for wid in workflow_ids:
                try:
                    history = await client.get_workflow_handle(wid).fetch_history()
                except RPCError:
                    continue  # a child not started yet
                failures = workflow_task_failures(history)
                if failures:
                    await handle.terminate(reason="casstore demo: a workflow task failed")
                    raise DemoError(f"a workflow task of {wid} failed: {failures[-1]}")
    finally:
        result.cancel()


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
