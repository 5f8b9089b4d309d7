"""Read external-storage references out of a Temporal workflow history.

A payload that external storage took out of history is replaced there by a
small reference payload (``json/protobuf`` encoding of
``temporal.api.sdk.v1.ExternalStorageReference``) naming the driver and its
claim. These helpers find those references in a fetched
:class:`~temporalio.client.WorkflowHistory`, and read the casstore claims
inside them, for tools that inspect or account for stored objects (the demo's
report, the end-to-end tests).

Example::

    history = await client.get_workflow_handle(workflow_id).fetch_history()
    for ref in history_references(history):
        if ref.reference.driver_name == driver.name():
            print(ref.event_type, ref.object_key())
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.sdk.v1.external_storage_pb2 import ExternalStorageReference
from temporalio.client import WorkflowHistory

from casstore._format.claims import Claim, parse_claim_data

__all__ = [
    "HistoryReference",
    "history_references",
    "iter_payloads",
    "reference_in",
    "workflow_task_failures",
]

_REFERENCE_MESSAGE_TYPE = ExternalStorageReference.DESCRIPTOR.full_name.encode()


def iter_payloads(message: Message) -> Iterator[Payload]:
    """Yield every ``Payload`` inside a protobuf message, at any depth.

    Only fields whose message type can hold a ``Payload`` (directly or
    nested) are visited: a history event's timestamps, task queues and
    identities are never walked.

    Args:
        message: Any protobuf message, e.g. a ``HistoryEvent``.

    Yields:
        Each payload, in field order (map values and repeated fields included).
    """
    if isinstance(message, Payload):
        yield message
        return
    for descriptor, value in message.ListFields():
        kind = _PAYLOAD_FIELD_KINDS.get(descriptor)
        if kind is None:
            kind = _payload_field_kind(descriptor)
        if kind == _SKIP:
            continue
        if kind == _MAP:
            values = [v for v in value.values() if isinstance(v, Message)]
        elif kind == _REPEATED:
            values = list(value)
        else:
            values = [value]
        for item in values:
            yield from iter_payloads(item)


_SKIP, _SINGLE, _REPEATED, _MAP = range(4)
_PAYLOAD_FIELD_KINDS: dict[FieldDescriptor, int] = {}
_HOLDS_PAYLOAD: dict[str, bool] = {}


def _payload_field_kind(field: FieldDescriptor) -> int:
    """How to walk ``field``, or ``_SKIP`` if no value of it can hold a Payload."""
    entry = field.message_type
    if field.type != FieldDescriptor.TYPE_MESSAGE or entry is None:
        kind = _SKIP
    elif entry.GetOptions().map_entry:
        value = entry.fields_by_name["value"].message_type
        kind = _MAP if value is not None and _holds_payload(value, set()) else _SKIP
    elif not _holds_payload(entry, set()):
        kind = _SKIP
    else:
        kind = _REPEATED if field.is_repeated else _SINGLE
    _PAYLOAD_FIELD_KINDS[field] = kind
    return kind


def _holds_payload(descriptor: Any, visiting: set[str]) -> bool:
    """Whether a message of this type can contain a Payload; a cycle counts as yes."""
    name = descriptor.full_name
    known = _HOLDS_PAYLOAD.get(name)
    if known is not None:
        return known
    if name == Payload.DESCRIPTOR.full_name or name in visiting:
        return True  # a cycle: assumed yes, so that nothing is ever skipped wrongly
    visiting.add(name)
    holds = any(
        field.message_type is not None and _holds_payload(field.message_type, visiting)
        for field in descriptor.fields
    )
    visiting.discard(name)
    if not visiting:  # only answers not resting on an assumed cycle are kept
        _HOLDS_PAYLOAD[name] = holds
    return holds


def reference_in(payload: Payload) -> ExternalStorageReference | None:
    """Return the external-storage reference a payload holds.

    Args:
        payload: A payload as it appears in history.

    Returns:
        The decoded reference, or ``None`` if the payload is inline data.
    """
    if payload.metadata.get("encoding") != b"json/protobuf":
        return None
    if payload.metadata.get("messageType") != _REFERENCE_MESSAGE_TYPE:
        return None
    return json_format.Parse(payload.data, ExternalStorageReference())


@dataclass(frozen=True)
class HistoryReference:
    """One external-storage reference found in an event of a workflow history.

    Attributes:
        workflow_id: Workflow whose history holds the reference.
        event_id: Id of the event holding it.
        event_type: Event type name, e.g. ``"EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"``.
        size: Bytes the reference payload occupies in history.
        reference: The reference itself (driver name and claim).
    """

    workflow_id: str
    event_id: int
    event_type: str
    size: int
    reference: ExternalStorageReference

    def casstore_claim(self) -> Claim:
        """Parse the reference's claim as a casstore claim.

        Returns:
            The claim.

        Raises:
            ClaimError: If the claim is not a valid casstore claim.
        """
        return parse_claim_data(dict(self.reference.claim_data), max_size=1 << 62)

    def object_key(self) -> str:
        """Return the key of the object this casstore reference points at.

        Raises:
            ClaimError: If the claim is not a valid casstore claim.
        """
        return self.casstore_claim().key


def history_references(history: WorkflowHistory) -> list[HistoryReference]:
    """Return every external-storage reference in a workflow history, in event order.

    Args:
        history: A fetched history (``WorkflowHandle.fetch_history()``).

    Returns:
        The references of every driver, casstore's and others'.
    """
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
    """Return the failure messages of every failed workflow task in a history.

    Args:
        history: A fetched history.

    Returns:
        One message per failed workflow task, its causes joined with ``": "``;
        a failing payload retrieval shows up here (the task is retried forever).
    """
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
