"""The codec-server wire format: proto3 JSON of ``temporal.api.common.v1.Payloads``.

Request bodies are untrusted: every problem is reported as a
:class:`ProtocolError` whose message says where (``payloads[2].data``) and what
was wrong. Parsing follows protojson, which is what the Go SDK's handler uses:
both field spellings (``externalPayloads`` and ``external_payloads``), int64 as
a JSON string or number, bytes in standard or URL-safe base64 with or without
padding, ``null`` for a default value, and unknown fields refused.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from temporalio.api.common.v1 import Payload

_PAYLOADS_FIELDS = {"payloads"}
_PAYLOAD_FIELDS = {
    "metadata": "metadata",
    "data": "data",
    "externalPayloads": "externalPayloads",
    "external_payloads": "externalPayloads",
}
_EXTERNAL_FIELDS = {"sizeBytes": "sizeBytes", "size_bytes": "sizeBytes"}
_INT64_MAX = (1 << 63) - 1
_URL_SAFE = str.maketrans("-_", "+/")
TOO_DEEP = "is JSON nested too deeply to parse (Payloads are at most 4 levels deep)"
EXPECTED = 'proto3 JSON of temporal.api.common.v1.Payloads, like {"payloads": [...]}'


class ProtocolError(Exception):
    """A request or reference the server cannot act on; carries the HTTP status to answer."""

    def __init__(self, status: int, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.key = key


def parse_payloads(body: bytes) -> list[Payload]:
    """Parse a request body into payloads.

    Raises:
        ProtocolError: 400, naming what was wrong and where.
    """
    if not body.strip():
        raise ProtocolError(400, f"request body is empty; expected {EXPECTED}")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(
            400, f"request body is not valid JSON ({exc}); expected {EXPECTED}"
        ) from exc
    except RecursionError as exc:
        raise ProtocolError(400, f"request body {TOO_DEEP}; expected {EXPECTED}") from exc
    if not isinstance(document, dict):
        raise ProtocolError(
            400, f"request body is a JSON {_kind(document)}, not an object; expected {EXPECTED}"
        )
    _refuse_unknown(document, _PAYLOADS_FIELDS, "request body", "Payloads")
    items = document.get("payloads")
    if items is None:
        return []
    if not isinstance(items, list):
        raise ProtocolError(400, f'"payloads" must be a JSON array, got {_kind(items)}')
    return [_parse_payload(item, f"payloads[{i}]") for i, item in enumerate(items)]


def _parse_payload(item: Any, where: str) -> Payload:
    if not isinstance(item, dict):
        raise ProtocolError(400, f"{where} must be a JSON object (a Payload), got {_kind(item)}")
    fields = _canonical(item, _PAYLOAD_FIELDS, where, "Payload")
    payload = Payload()
    metadata = fields.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise ProtocolError(
                400,
                f"{where}.metadata must be a JSON object of base64 strings, got {_kind(metadata)}",
            )
        for name, value in metadata.items():
            payload.metadata[name] = _bytes(value, f"{where}.metadata[{name!r}]")
    data = fields.get("data")
    if data is not None:
        payload.data = _bytes(data, f"{where}.data")
    externals = fields.get("externalPayloads")
    if externals is not None:
        if not isinstance(externals, list):
            raise ProtocolError(
                400, f"{where}.externalPayloads must be a JSON array, got {_kind(externals)}"
            )
        for j, external in enumerate(externals):
            at = f"{where}.externalPayloads[{j}]"
            if not isinstance(external, dict):
                raise ProtocolError(400, f"{at} must be a JSON object, got {_kind(external)}")
            details = _canonical(external, _EXTERNAL_FIELDS, at, "ExternalPayloadDetails")
            payload.external_payloads.add().size_bytes = _int64(
                details.get("sizeBytes"), f"{at}.sizeBytes"
            )
    return payload


def _canonical(
    item: dict[str, Any], names: dict[str, str], where: str, message: str
) -> dict[str, Any]:
    """Map both JSON spellings of each field to one name, refusing unknown or repeated fields."""
    _refuse_unknown(item, set(names), where, message)
    fields: dict[str, Any] = {}
    for name, value in item.items():
        canonical = names[name]
        if canonical in fields:
            raise ProtocolError(400, f"{where} sets field {canonical!r} twice (in both spellings)")
        fields[canonical] = value
    return fields


def _refuse_unknown(item: dict[str, Any], known: set[str], where: str, message: str) -> None:
    unknown = sorted(set(item) - known)
    if unknown:
        raise ProtocolError(
            400,
            f"{where} has unknown field(s) {', '.join(map(repr, unknown))} for a {message} "
            f"(known: {', '.join(sorted(known))})",
        )


def _bytes(value: Any, where: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise ProtocolError(400, f"{where} must be a base64 string, got {_kind(value)}")
    text = value.strip().translate(_URL_SAFE)
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(
            400, f"{where} is not valid base64 ({exc}) [value={value[:40]!r}]"
        ) from exc


def _int64(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ProtocolError(
            400, f"{where} must be an integer (number or string), got {_kind(value)}"
        )
    try:
        number = int(value)
    except ValueError as exc:
        raise ProtocolError(400, f"{where} is not an integer [value={str(value)[:40]!r}]") from exc
    if not 0 <= number <= _INT64_MAX:
        raise ProtocolError(400, f"{where} is out of range [value={number}]")
    return number


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def dump_payloads(payloads: Sequence[Payload]) -> bytes:
    """Serialize payloads as proto3 JSON (camelCase names, int64 as strings, defaults omitted)."""
    return json.dumps(
        {"payloads": [_payload_json(p) for p in payloads]}, separators=(",", ":")
    ).encode()


def _payload_json(payload: Payload) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if payload.metadata:
        out["metadata"] = {name: _b64(value) for name, value in payload.metadata.items()}
    if payload.data:
        out["data"] = _b64(payload.data)
    if payload.external_payloads:
        out["externalPayloads"] = [
            {"sizeBytes": str(e.size_bytes)} if e.size_bytes else {}
            for e in payload.external_payloads
        ]
    return out


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def error_body(message: str, *, status: int, key: str | None = None) -> bytes:
    """The JSON body of an error response."""
    body: dict[str, Any] = {"status": status, "message": message}
    if key is not None:
        body["key"] = key
    return json.dumps(body).encode()
