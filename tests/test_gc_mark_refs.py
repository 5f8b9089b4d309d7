"""gc's mark: references decoded fast, in either JSON spelling, and malformed ones refused."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.sdk.v1.external_storage_pb2 import ExternalStorageReference
from temporalio.converter import JSONProtoPayloadConverter

from casstore._format.claims import make_claim_data
from casstore._format.header import Codec
from casstore._format.keys import location_for, object_key
from casstore.ops._gc_mark import Marked, MarkError, _collect

LOCATION = location_for(scope="workflow", namespace="default", workflow_id="order-42")


def _key(i: int) -> str:
    return object_key(LOCATION, i.to_bytes(32, "big"))


def _reference(i: int, *, spelling: str = "sdk") -> Payload:
    claim = make_claim_data(LOCATION, i.to_bytes(32, "big"), 10, Codec.RAW)
    reference = ExternalStorageReference(driver_name="casstore", claim_data=claim)
    payload = JSONProtoPayloadConverter().to_payload(reference)
    assert payload is not None
    if spelling == "snake":  # protobuf's JSON also accepts the field names
        payload.data = json.dumps({"driver_name": "casstore", "claim_data": claim}).encode()
    return payload


def _event(*payloads: Payload) -> HistoryEvent:
    event = HistoryEvent(event_id=1)
    event.workflow_execution_started_event_attributes.input.payloads.extend(payloads)
    return event


@pytest.mark.parametrize("spelling", ["sdk", "snake"])
def test_references_in_either_json_spelling_mark_their_key(spelling: str) -> None:
    marked = Marked(started_at=0.0)
    inline = Payload(metadata={"encoding": b"json/plain"}, data=b"1")
    _collect(marked, [_event(_reference(1, spelling=spelling), inline, _reference(2))], "test")
    _collect(marked, [_event(_reference(1, spelling=spelling))], "test")  # from the cache
    assert (marked.references, len(marked.keys)) == (3, 2)
    assert _key(1) in marked.keys
    assert _key(2) in marked.keys


def test_a_foreign_reference_is_counted_and_a_malformed_one_stops_the_mark() -> None:
    marked = Marked(started_at=0.0)
    foreign = ExternalStorageReference(driver_name="s3", claim_data={"bucket": "b", "key": "k"})
    payload = JSONProtoPayloadConverter().to_payload(foreign)
    assert payload is not None
    _collect(marked, [_event(payload)], "test")
    assert (marked.foreign_references, len(marked.keys)) == (1, 0)
    broken = _reference(3)
    broken.data = b'{"claimData": {"c": "not a claim"}}'
    with pytest.raises(MarkError, match="not a claim this casstore can read"):
        _collect(marked, [_event(broken)], "workflow_id=w")
    broken.data = b"{not json"
    with pytest.raises(MarkError, match="malformed"):
        _collect(marked, [_event(broken)], "workflow_id=w")
    assert json_format  # the slow path's parser is protobuf's own
