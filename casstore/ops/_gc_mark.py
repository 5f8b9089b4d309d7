"""gc's mark phase: every casstore object key a namespace's Temporal state still references.

Sources, all in one namespace: the history of every execution visibility lists
(open and closed, within retention; children, continue-as-new runs, signals
and updates sent between workflows are all events of some history), the
mutable state of open executions that is not in history yet (pending
activities' heartbeat details and the like, via DescribeWorkflowExecution),
schedules (the start arguments of their actions) and standalone activities.
A claim that fails to parse aborts the mark: gc never deletes what it could
not judge.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.workflowservice.v1 import (
    DescribeActivityExecutionRequest,
    DescribeNamespaceRequest,
    DescribeScheduleRequest,
    DescribeWorkflowExecutionRequest,
    ListActivityExecutionsRequest,
    ListSchedulesRequest,
    ListWorkflowExecutionsRequest,
)
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from casstore._format.claims import parse_claim_data
from casstore.errors import CasstoreError
from casstore.history import iter_payloads, reference_in

DEFAULT_CONCURRENCY = 16
_PAGE_SIZE = 1000
_CLAIM_FIELD = "c"  # the one entry of a casstore claim (docs/formats.md)


class MarkError(CasstoreError):
    """The mark phase could not account for every reference; nothing may be deleted."""


@dataclass
class Marked:
    """What the mark phase found."""

    started_at: float
    """Wall-clock time (``time.time()``) the mark began; ages are judged against it."""
    keys: set[str] = field(default_factory=set)
    """Every casstore object key referenced."""
    executions: int = 0
    open_executions: int = 0
    schedules: int = 0
    activities: int = 0
    references: int = 0
    """casstore references seen (one key may be referenced many times)."""
    foreign_references: int = 0
    """References of other storage drivers (not casstore claims), ignored."""
    seen: dict[bytes, str] = field(default_factory=dict, repr=False)
    """Reference payloads decoded lately, by their bytes: one claim recurs in
    many events (a fan-out input in every activity's scheduled event)."""
    chunk_references: int = 0
    """Objects kept only because a marked chunked object reads chunks from them."""


Progress = Callable[[int], None]
"""Called with the number of executions marked so far."""


async def mark_namespace(
    client: Client,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress | None = None,
) -> Marked:
    """Collect every casstore object key referenced in the client's namespace.

    Args:
        client: Connected to the namespace to mark.
        concurrency: Histories fetched at once.
        progress: Told the running count of executions marked.

    Raises:
        MarkError: Temporal failed, or a reference could not be read; the
            message names the execution and the cause.
    """
    marked = Marked(started_at=time.time())
    namespace = client.namespace
    try:
        await _mark_executions(client, marked, concurrency, progress)
        await _mark_schedules(client, marked)
        await _mark_activities(client, marked)
        # An execution that answers "not found" is skipped as deleted; make sure
        # that was not the whole namespace going away under the mark.
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), retry=True
        )
    except RPCError as exc:
        raise MarkError(
            f"Temporal refused to list or read [namespace={namespace}]: {exc.message}"
        ) from exc
    return marked


async def _mark_executions(
    client: Client, marked: Marked, concurrency: int, progress: Progress | None
) -> None:
    queue: asyncio.Queue[tuple[str, str, bool] | None] = asyncio.Queue(maxsize=concurrency * 4)

    async def producer() -> None:
        try:
            async for workflow_id, run_id, status in _executions(client):
                marked.executions += 1
                is_open = is_open_status(status)
                if is_open:
                    marked.open_executions += 1
                await queue.put((workflow_id, run_id, is_open))
        finally:
            for _ in range(concurrency):
                await queue.put(None)

    done = 0

    async def worker() -> None:
        nonlocal done
        while (item := await queue.get()) is not None:
            workflow_id, run_id, is_open = item
            await _mark_execution(client, marked, workflow_id, run_id, is_open=is_open)
            done += 1
            if progress is not None:
                progress(done)

    tasks = [asyncio.create_task(producer())] + [
        asyncio.create_task(worker()) for _ in range(concurrency)
    ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


_CLOSED_STATUSES = frozenset(
    {
        WorkflowExecutionStatus.COMPLETED,
        WorkflowExecutionStatus.FAILED,
        WorkflowExecutionStatus.CANCELED,
        WorkflowExecutionStatus.TERMINATED,
        WorkflowExecutionStatus.CONTINUED_AS_NEW,
        WorkflowExecutionStatus.TIMED_OUT,
    }
)


def is_open_status(status: int) -> bool:
    """Whether an execution in ``status`` may still change and must be described too.

    Only the closed statuses this SDK knows are closed. Running, unspecified,
    paused (8, Temporal's pause feature) and any status newer than this SDK
    count as open: their pending state is marked as well, and nothing of
    theirs is ever collected for a status gc does not understand.
    """
    return status not in _CLOSED_STATUSES


async def _executions(client: Client) -> AsyncIterator[tuple[str, str, int]]:
    """Every execution visibility lists, with its raw status number.

    The raw API, not ``Client.list_workflows``: the SDK turns each status into
    its enum and fails on one newer than itself (a paused run is 8), which
    would stop gc for the whole namespace.
    """
    token = b""
    while True:
        page = await client.workflow_service.list_workflow_executions(
            ListWorkflowExecutionsRequest(
                namespace=client.namespace, page_size=_PAGE_SIZE, next_page_token=token
            ),
            retry=True,
        )
        for info in page.executions:
            yield info.execution.workflow_id, info.execution.run_id, int(info.status)
        token = page.next_page_token
        if not token:
            return


async def _mark_execution(
    client: Client, marked: Marked, workflow_id: str, run_id: str, *, is_open: bool
) -> None:
    where = f"workflow_id={workflow_id}, run_id={run_id}, namespace={client.namespace}"
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        async for event in handle.fetch_history_events():
            _collect(marked, [event], f"{where}, event_id={event.event_id}")
        if is_open:
            # State not in history yet: pending activities' heartbeat details,
            # pending children, callbacks. Described after the history, so a
            # run that closes in between has its last events in the history.
            description = await client.workflow_service.describe_workflow_execution(
                DescribeWorkflowExecutionRequest(
                    namespace=client.namespace,
                    execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
                ),
                retry=True,
            )
            _collect(marked, [description], f"{where}, describe")
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return  # deleted since it was listed: nothing of it needs keeping
        raise MarkError(f"could not read the history [{where}]: {exc.message}") from exc


async def _mark_schedules(client: Client, marked: Marked) -> None:
    service = client.workflow_service
    token = b""
    while True:
        page = await service.list_schedules(
            ListSchedulesRequest(
                namespace=client.namespace, maximum_page_size=_PAGE_SIZE, next_page_token=token
            ),
            retry=True,
        )
        for entry in page.schedules:
            marked.schedules += 1
            try:
                described = await service.describe_schedule(
                    DescribeScheduleRequest(
                        namespace=client.namespace, schedule_id=entry.schedule_id
                    ),
                    retry=True,
                )
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    continue
                raise
            _collect(marked, [described], f"schedule_id={entry.schedule_id}")
        token = page.next_page_token
        if not token:
            return


async def _mark_activities(client: Client, marked: Marked) -> None:
    """Standalone activities (not started by a workflow): input, outcome, heartbeats."""
    service = client.workflow_service
    async for activity_id, run_id in _standalone_activities(client):
        marked.activities += 1
        try:
            described = await service.describe_activity_execution(
                DescribeActivityExecutionRequest(
                    namespace=client.namespace,
                    activity_id=activity_id,
                    run_id=run_id,
                    include_input=True,
                    include_outcome=True,
                    include_heartbeat_details=True,
                    include_last_failure=True,
                ),
                retry=True,
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                continue
            raise
        _collect(marked, [described], f"activity_id={activity_id}, run_id={run_id}")


async def _standalone_activities(client: Client) -> AsyncIterator[tuple[str, str]]:
    token = b""
    while True:
        try:
            page = await client.workflow_service.list_activity_executions(
                ListActivityExecutionsRequest(
                    namespace=client.namespace, page_size=_PAGE_SIZE, next_page_token=token
                ),
                retry=True,
            )
        except RPCError as exc:
            # A server without standalone activities has none to keep.
            if exc.status == RPCStatusCode.UNIMPLEMENTED:
                return
            raise
        for info in page.executions:
            yield info.activity_id, info.run_id
        token = page.next_page_token
        if not token:
            return


_REFERENCE_TYPE = b"temporal.api.sdk.v1.ExternalStorageReference"
_FAST_REFERENCE = msgspec.json.Decoder(dict[str, Any])
_SEEN_LIMIT = 65536


def _collect(marked: Marked, messages: Iterable[Message], where: str) -> None:
    for message in messages:
        for payload in iter_payloads(message):
            metadata = payload.metadata
            if metadata.get("messageType") != _REFERENCE_TYPE:
                continue  # inline data: the common case, decided without decoding
            if metadata.get("encoding") != b"json/protobuf":
                continue
            data = payload.data
            key = marked.seen.get(data)
            if key is None:
                key = _claim_key(marked, payload, where)
                if key is None:
                    continue
                if len(marked.seen) >= _SEEN_LIMIT:
                    marked.seen.clear()
                marked.seen[data] = key
            marked.references += 1
            marked.keys.add(key)


def _claim_key(marked: Marked, payload: Payload, where: str) -> str | None:
    """The object key a reference payload names, or None for another driver's reference."""
    claim_data, driver = _fast_reference(payload.data)
    if claim_data is None:
        try:  # any other spelling protobuf's JSON allows
            reference = reference_in(payload)
        except Exception as exc:  # a malformed reference payload: untrusted input
            raise MarkError(
                f"a storage reference in Temporal is malformed, so gc cannot tell what "
                f"it needs [{where}]: {exc}"
            ) from exc
        if reference is None:
            return None
        claim_data, driver = dict(reference.claim_data), reference.driver_name
    if _CLAIM_FIELD not in claim_data:
        marked.foreign_references += 1
        return None
    try:
        return parse_claim_data(claim_data, max_size=1 << 62).key
    except CasstoreError as exc:
        raise MarkError(
            f"a reference in Temporal is not a claim this casstore can read, so "
            f"gc cannot tell what it needs [{where}, driver={driver}]: {exc}"
        ) from exc


def _fast_reference(data: bytes) -> tuple[dict[str, str] | None, str]:
    """Decode the SDK's own spelling of a reference (``{"claimData": {...}, "driverName": ...}``).

    Returns ``(None, "")`` for anything else, which then goes through
    protobuf's full JSON parser (and its errors).
    """
    try:
        decoded = _FAST_REFERENCE.decode(data)
    except msgspec.DecodeError:
        return None, ""
    claim, driver = decoded.get("claimData"), decoded.get("driverName", "")
    if (
        set(decoded) <= {"claimData", "driverName"}
        and isinstance(claim, dict)
        and isinstance(driver, str)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in claim.items())
    ):
        return claim, driver
    return None, ""
