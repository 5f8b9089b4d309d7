"""Finding external-storage references in JSON, as Temporal's tools print them.

``temporal workflow show --output json`` prints a history as protobuf JSON:
payload bytes and metadata values are base64, and a payload that external
storage took out of history is a ``json/protobuf`` payload whose message type
is ``temporal.api.sdk.v1.ExternalStorageReference``. ``casstore cat`` accepts
that whole document, one payload cut out of it, the reference inside a payload
(``{"driverName": ..., "claimData": {"c": ...}}``), or a bare claim (the
``claimData`` mapping, the claim string, or its array).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from temporalio.api.sdk.v1.external_storage_pb2 import ExternalStorageReference

from casstore._format.claims import CLAIM_DATA_KEY

REFERENCE_ENCODING = "json/protobuf"
REFERENCE_MESSAGE_TYPE = ExternalStorageReference.DESCRIPTOR.full_name


class InputError(ValueError):
    """The input is not JSON, or holds no reference in a shape casstore knows."""


@dataclass(frozen=True)
class FoundReference:
    """One storage reference found in the input."""

    driver_name: str | None
    """The driver named by the reference; ``None`` for a bare claim."""
    claim_data: dict[str, str]
    event_id: int | None = None
    """The history event holding it, for a whole history."""
    event_type: str | None = None
    path: str = ""
    """Where in the input (or in the event) it was, e.g. ``input.payloads[0]``."""


_TEXT_CLAIM = re.compile(r"[0-9]+,[^\s]")


def looks_like_text_claim(text: str) -> bool:
    """True for a bare version 2 claim, ``2,location,digest,size[,key_id]`` (not JSON)."""
    return bool(_TEXT_CLAIM.match(text.strip()))


def parse_input(text: str, *, source: str) -> Any:
    """Parse the input as JSON (or a bare version 2 claim), else raise :class:`InputError`."""
    if _TEXT_CLAIM.match(text.strip()):
        return text.strip()  # "2,location,digest,size[,key_id]" is not JSON
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source} is not JSON: {exc}") from None
    except RecursionError:
        raise InputError(
            f"{source} is nested too deeply to read (arrays and objects inside each other "
            "hundreds of levels deep; a Temporal history is a few dozen)"
        ) from None


def find_references(document: Any) -> list[FoundReference]:
    """Every storage reference in a parsed input, in document order.

    Raises:
        InputError: If the document is a lone value that is neither a
            history, a payload, a reference nor a claim.
    """
    bare = _bare_claim(document)
    if bare is not None:
        return [FoundReference(driver_name=None, claim_data=bare)]
    reference = _reference(document)
    if reference is not None:
        return [reference]
    if isinstance(document, dict) and isinstance(document.get("events"), list):
        return list(_in_history(document["events"]))
    if isinstance(document, dict | list):
        return list(_walk(document, ""))
    raise InputError(
        "input is neither a history, a payload, a storage reference nor a claim "
        f"(got a JSON {type(document).__name__})"
    )


def _in_history(events: list[Any]) -> Iterator[FoundReference]:
    for event in events:
        if not isinstance(event, dict):
            continue
        event_id = _int(event.get("eventId"))
        event_type = event.get("eventType")
        for found in _walk(event, ""):
            yield FoundReference(
                driver_name=found.driver_name,
                claim_data=found.claim_data,
                event_id=event_id,
                event_type=event_type if isinstance(event_type, str) else None,
                path=found.path,
            )


def _walk(value: Any, path: str) -> Iterator[FoundReference]:
    """Every reference under ``value``, in document order.

    An explicit stack, not recursion: input is untrusted, and a document
    nested deeper than Python's recursion limit must not end in a traceback.
    """
    stack: list[Iterator[tuple[Any, str]]] = [iter([(value, path)])]
    while stack:
        item = next(stack[-1], _DONE)
        if item is _DONE:
            stack.pop()
            continue
        node, where = item
        if isinstance(node, dict):
            found = _payload_reference(node)
            if found is not None:
                yield FoundReference(found.driver_name, found.claim_data, path=where)
                continue
            stack.append(_members(node, where))
        elif isinstance(node, list):
            stack.append(_items(node, where))


def _members(node: dict[str, Any], path: str) -> Iterator[tuple[Any, str]]:
    for name, item in node.items():
        yield item, f"{path}.{name}" if path else str(name)


def _items(node: list[Any], path: str) -> Iterator[tuple[Any, str]]:
    for i, item in enumerate(node):
        yield item, f"{path}[{i}]"


_DONE: Any = object()


def _reference(value: Any) -> FoundReference | None:
    """A payload holding a reference, or a reference's own JSON."""
    if not isinstance(value, dict):
        return None
    found = _payload_reference(value)
    if found is not None:
        return found
    claim_data = value.get("claimData")
    if isinstance(claim_data, dict) and "driverName" in value:
        driver = value["driverName"]
        return FoundReference(
            driver_name=driver if isinstance(driver, str) else None,
            claim_data={str(k): v for k, v in claim_data.items()},
        )
    return None


def _payload_reference(value: dict[str, Any]) -> FoundReference | None:
    """The reference inside a protobuf-JSON payload, if it is a reference payload."""
    metadata = value.get("metadata")
    data = value.get("data")
    if not isinstance(metadata, dict) or not isinstance(data, str):
        return None
    encoding = _b64_text(metadata.get("encoding"))
    message_type = _b64_text(metadata.get("messageType"))
    if encoding != REFERENCE_ENCODING or message_type != REFERENCE_MESSAGE_TYPE:
        return None
    raw = _b64(data)
    try:
        inner = json.loads(raw) if raw is not None else None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        inner = None
    if not isinstance(inner, dict) or not isinstance(inner.get("claimData", {}), dict):
        raise InputError("a storage reference payload holds no readable reference JSON")
    driver = inner.get("driverName")
    return FoundReference(
        driver_name=driver if isinstance(driver, str) else None,
        claim_data={str(k): v for k, v in inner.get("claimData", {}).items()},
    )


def _bare_claim(value: Any) -> dict[str, str] | None:
    """``{"c": "..."}``, a claim string ``"[1,...]"`` / ``"2,..."``, or the array ``[1, ...]``."""
    if isinstance(value, dict) and set(value) == {CLAIM_DATA_KEY}:
        return {CLAIM_DATA_KEY: value[CLAIM_DATA_KEY]}
    if isinstance(value, str) and (value.lstrip().startswith("[") or _TEXT_CLAIM.match(value)):
        return {CLAIM_DATA_KEY: value}
    if isinstance(value, list) and value and isinstance(value[0], int):
        return {CLAIM_DATA_KEY: json.dumps(value, separators=(",", ":"))}
    return None


def _b64(text: object) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _b64_text(text: object) -> str | None:
    raw = _b64(text)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _int(value: object) -> int | None:
    """An event id: protobuf JSON prints 64-bit integers as strings."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
