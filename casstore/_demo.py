"""``casstore demo``: a fan-out workflow on a real Temporal server, and what it cost.

Also home to the history helpers the demo measures with (and the end-to-end
tests reuse): finding the external-storage references a history holds and
reading the casstore claims inside them.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.sdk.v1.external_storage_pb2 import ExternalStorageReference
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.service import RPCError
from temporalio.worker import Worker

from casstore._claim import Claim, parse_claim_data
from casstore._demo_workflows import FanOutChild, FanOutParent, FanOutSummary, analyze_shard
from casstore._keys import Scope
from casstore._stats import DriverStats
from casstore.plugin import CasStorePlugin

DEFAULT_STORE = "casstore-demo-data"
_REFERENCE_MESSAGE_TYPE = ExternalStorageReference.DESCRIPTOR.full_name.encode()
_MIB = 1024 * 1024
_FAILURE_POLL_SECONDS = 1.0
_STAT_CONCURRENCY = 32


# History helpers.


def iter_payloads(message: Message) -> Iterator[Payload]:
    """Yield every ``Payload`` inside a protobuf message, at any depth."""
    if isinstance(message, Payload):
        yield message
        return
    for descriptor, value in message.ListFields():
        entry = descriptor.message_type
        if descriptor.type != FieldDescriptor.TYPE_MESSAGE or entry is None:
            continue
        if entry.GetOptions().map_entry:
            values = [v for v in value.values() if isinstance(v, Message)]
        elif descriptor.is_repeated:
            values = list(value)
        else:
            values = [value]
        for item in values:
            yield from iter_payloads(item)


def reference_in(payload: Payload) -> ExternalStorageReference | None:
    """Return the external-storage reference a payload holds, or ``None`` if it is inline."""
    if payload.metadata.get("encoding") != b"json/protobuf":
        return None
    if payload.metadata.get("messageType") != _REFERENCE_MESSAGE_TYPE:
        return None
    return json_format.Parse(payload.data, ExternalStorageReference())


@dataclass(frozen=True)
class HistoryReference:
    """One external-storage reference found in an event of a workflow history."""

    workflow_id: str
    event_id: int
    event_type: str
    size: int
    """Bytes the reference payload occupies in history."""
    reference: ExternalStorageReference

    def casstore_claim(self) -> Claim:
        """Parse the reference's claim as a casstore claim (raises ``ClaimError`` if it is not)."""
        return parse_claim_data(dict(self.reference.claim_data), max_size=1 << 62)

    def object_key(self) -> str:
        """The key of the object this casstore reference points at."""
        return self.casstore_claim().key


def history_references(history: WorkflowHistory) -> list[HistoryReference]:
    """Every external-storage reference in a workflow history, in event order."""
    found: list[HistoryReference] = []
    for event in history.events:
        for payload in iter_payloads(event):
            reference = reference_in(payload)
            if reference is not None:
                found.append(
                    HistoryReference(
                        workflow_id=history.workflow_id,
                        event_id=event.event_id,
                        event_type=EventType.Name(event.event_type),
                        size=payload.ByteSize(),
                        reference=reference,
                    )
                )
    return found


def workflow_task_failures(history: WorkflowHistory) -> list[str]:
    """The failure messages of every failed workflow task in a history."""
    return [
        _failure_text(event)
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]


def _failure_text(event: HistoryEvent) -> str:
    failure = event.workflow_task_failed_event_attributes.failure
    messages = []
    while failure.message:
        messages.append(failure.message)
        failure = failure.cause
    return ": ".join(messages)


# The demo.


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


@dataclass
class DemoReport:
    """What the demo measured."""

    workflow_id: str
    summary: FanOutSummary
    stats: DriverStats
    input_bytes: int
    distinct_payloads: int
    distinct_bytes: int
    stored_bytes: int
    references: int
    reference_bytes: int
    history_events: int
    run_seconds: float


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
    document = make_document(int(options.input_mib * _MIB))
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


class DemoError(Exception):
    """The demo could not complete; the message says why."""


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


def format_report(report: DemoReport, options: DemoOptions, *, threshold: int) -> str:
    """Render the report as an aligned table."""
    s = report.stats
    retrieved = s.payloads_retrieved
    memory_hits = s.retrieval_cache_hits + s.retrieval_inflight_hits
    requests = ", ".join(f"{k} {v}" for k, v in sorted(s.backend_requests.items())) or "none"
    rows: list[tuple[str, str]] = [
        ("workflow", report.workflow_id),
        (
            "work done",
            f"1 parent + {report.summary.children} children, "
            f"{report.summary.activities} activities, {report.history_events} history events",
        ),
        ("input", f"{_size(report.input_bytes)} JSON, to every workflow and activity"),
        ("threshold / scope", f"{threshold} B / {options.scope}"),
        ("", ""),
        ("payloads stored", f"{s.payloads_stored:,}"),
        ("distinct payloads", f"{report.distinct_payloads:,}"),
        (
            "objects written",
            f"{s.objects_written:,} ({s.dedup_hits:,} stores deduplicated)",
        ),
        ("logical bytes", f"{_size(s.logical_bytes_stored)} (every payload, serialized)"),
        ("distinct bytes", f"{_size(report.distinct_bytes)} (each distinct payload once)"),
        ("stored bytes", f"{_size(report.stored_bytes)} (the objects, after zstd)"),
        ("dedup ratio", _ratio(s.logical_bytes_stored, report.distinct_bytes)),
        ("compression ratio", _ratio(report.distinct_bytes, report.stored_bytes)),
        ("logical / stored", _ratio(s.logical_bytes_stored, report.stored_bytes)),
        (
            "payloads retrieved",
            f"{retrieved:,} ({memory_hits:,} from memory, {s.objects_read:,} objects read)",
        ),
        ("backend requests", requests),
        (
            "references in history",
            f"{report.references:,} using {_size(report.reference_bytes)}"
            + (
                f" ({report.reference_bytes / report.references:.0f} B each)"
                if report.references
                else ""
            ),
        ),
        ("wall time", f"{report.run_seconds:.1f} s"),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"  {label:<{width}}  {value}".rstrip() for label, value in rows]
    return "\n".join(lines)


def _size(n: int) -> str:
    if n >= _MIB:
        return f"{n / _MIB:,.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:,.1f} KiB"
    return f"{n:,} B"


def _ratio(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator:,.1f}x" if denominator else "n/a"


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
    print("\n" + format_report(report, options, threshold=threshold), file=out, flush=True)
    return report


def _store_url(store: str) -> str:
    """Make a plain folder absolute, so the printed location is unambiguous."""
    if "://" in store:
        return store
    return str(Path(store).expanduser().resolve())


__all__ = [
    "DemoError",
    "DemoOptions",
    "DemoReport",
    "HistoryReference",
    "demo_main",
    "format_report",
    "history_references",
    "iter_payloads",
    "make_document",
    "reference_in",
    "run_demo",
    "workflow_task_failures",
]
