"""Storage references as the SDKs write and read them.

A reference is a payload that stands for a stored one. Two encodings are read,
as every SDK reads them: ``json/protobuf`` with ``messageType``
``temporal.api.sdk.v1.ExternalStorageReference`` (proto3 JSON
``{"driverName": ..., "claimData": {...}}``), and the legacy
``json/external-storage-reference`` (JSON ``{"driver_name": ..., "driver_claim":
{"claim_data": {...}}}``). A reference that went through a payload codec carries
the metadata marker ``__temporal_external_storage_reference: true``; it is
codec-decoded before it can be read (the SDK writes none of these yet, but reads
them, and so does this server).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.api.sdk.v1.external_storage_pb2 import ExternalStorageReference
from temporalio.converter import JSONProtoPayloadConverter

from casstore.server._protocol import ProtocolError

REFERENCE_ENCODING = b"json/protobuf"
REFERENCE_MESSAGE_TYPE = ExternalStorageReference.DESCRIPTOR.full_name.encode()
LEGACY_REFERENCE_ENCODING = b"json/external-storage-reference"
ENCODED_REFERENCE_MARKER = "__temporal_external_storage_reference"

_converter = JSONProtoPayloadConverter()
_TOO_DEEP = "is JSON nested too deeply to parse (a reference is 3 levels deep)"


def is_reference(payload: Payload) -> bool:
    """Return True if ``payload`` is a storage reference in either encoding."""
    encoding = payload.metadata.get("encoding")
    if encoding == LEGACY_REFERENCE_ENCODING:
        return True
    return (
        encoding == REFERENCE_ENCODING
        and payload.metadata.get("messageType") == REFERENCE_MESSAGE_TYPE
    )


def is_encoded_reference(payload: Payload) -> bool:
    """Return True if ``payload`` is a reference that went through a payload codec."""
    return payload.metadata.get(ENCODED_REFERENCE_MARKER) == b"true"


def unwrap_for_codec(payload: Payload) -> Payload:
    """A copy of a codec-encoded reference with the marker and sizes removed, for decoding."""
    copy = Payload()
    copy.CopyFrom(payload)
    del copy.metadata[ENCODED_REFERENCE_MARKER]
    del copy.external_payloads[:]
    return copy


def rewrap_decoded(original: Payload, decoded: Payload, where: str) -> Payload:
    """Check that a codec-decoded reference is a reference; keep the original's sizes."""
    if not is_reference(decoded):
        raise ProtocolError(
            422,
            f"{where} is marked as a codec-encoded storage reference, but the payload codec "
            "did not decode it to a reference; is the codec that wrote it configured?",
        )
    if not decoded.external_payloads:
        decoded.external_payloads.extend(original.external_payloads)
    return decoded


def read_reference(payload: Payload, where: str) -> ExternalStorageReference:
    """Read the reference a payload holds (either encoding).

    Raises:
        ProtocolError: 400 if the payload claims to be a reference but is not a valid one.
    """
    if payload.metadata.get("encoding") == LEGACY_REFERENCE_ENCODING:
        return _read_legacy(payload, where)
    try:
        reference = json_format.Parse(
            payload.data, ExternalStorageReference(), ignore_unknown_fields=True
        )
    except (json_format.ParseError, UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(
            400,
            f"{where} is a storage reference whose data is not a valid "
            f"ExternalStorageReference: {exc}",
        ) from exc
    except RecursionError as exc:
        raise ProtocolError(400, f"{where} is a storage reference whose data {_TOO_DEEP}") from exc
    if not reference.driver_name:
        raise ProtocolError(400, f"{where} is a storage reference without a driverName")
    return reference


def check_reference_to_write(payload: Payload, where: str) -> None:
    """Refuse a reference that workers could not read, before it goes into history.

    ``/encode`` output is written to Event History, and the SDK reads references
    strictly (unknown fields refused); so a payload typed as a reference must be
    one, exactly, in either encoding. Readers here stay lenient (unknown fields
    ignored) so that histories written by newer SDKs still resolve.

    Raises:
        ProtocolError: 400 naming the payload and what is wrong with it.
    """
    if payload.metadata.get("encoding") == LEGACY_REFERENCE_ENCODING:
        _read_legacy(payload, where)
        document = json.loads(payload.data)
        unknown = sorted(set(document) - {"driver_name", "driver_claim"})
        unknown += sorted(
            f"driver_claim.{k}" for k in set(document["driver_claim"]) - {"claim_data"}
        )
        if unknown:
            raise ProtocolError(
                400,
                f"{where} is a legacy storage reference with unknown field(s) "
                f"{', '.join(map(repr, unknown))}; workers could not read it",
            )
        return
    read_reference(payload, where)
    try:
        json_format.Parse(payload.data, ExternalStorageReference())
    except (json_format.ParseError, UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(
            400,
            f"{where} is a storage reference that workers could not read "
            f"(the SDK refuses unknown fields): {exc}",
        ) from exc


def _read_legacy(payload: Payload, where: str) -> ExternalStorageReference:
    try:
        document: Any = json.loads(payload.data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(
            400, f"{where} is a legacy storage reference whose data is not JSON: {exc}"
        ) from exc
    except RecursionError as exc:
        raise ProtocolError(
            400, f"{where} is a legacy storage reference whose data {_TOO_DEEP}"
        ) from exc
    driver_name = document.get("driver_name") if isinstance(document, dict) else None
    claim = document.get("driver_claim") if isinstance(document, dict) else None
    claim_data = claim.get("claim_data") if isinstance(claim, dict) else None
    if (
        not isinstance(driver_name, str)
        or not driver_name
        or not isinstance(claim_data, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in claim_data.items())
    ):
        raise ProtocolError(
            400,
            f"{where} is a legacy storage reference but not of the form "
            '{"driver_name": "...", "driver_claim": {"claim_data": {"...": "..."}}}',
        )
    return ExternalStorageReference(driver_name=driver_name, claim_data=claim_data)


def make_reference(driver_name: str, claim_data: Mapping[str, str], size: int) -> Payload:
    """The reference payload the SDK writes for a stored payload of ``size`` bytes."""
    payload = _converter.to_payload(
        ExternalStorageReference(driver_name=driver_name, claim_data=dict(claim_data))
    )
    assert payload is not None  # the proto converter always converts a proto message
    payload.external_payloads.add().size_bytes = size
    return payload
