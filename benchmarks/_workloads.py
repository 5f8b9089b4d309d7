"""The payloads the scenarios store: deterministic, and shaped like real workflow data."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import cache
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter

_VOCABULARY = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu pending "
    "shipped delivered invoiced refunded express standard warehouse north south east west"
)
_WORDS = tuple(_VOCABULARY.split())
_STATUSES: tuple[Any, ...] = (
    {"status": "ok"},
    {"status": "done", "code": 200},
    {"status": "pending", "retry": 0},
    {"ok": True},
    True,
)


def to_payload(value: Any) -> Payload:
    """Convert a value the way a worker does (JSON, or ``binary/plain`` for bytes)."""
    return DataConverter.default.payload_converter.to_payloads([value])[0]


def records_json(size: int, seed: int = 0) -> dict[str, Any]:
    """A JSON document of about ``size`` bytes: order records with varied fields.

    It compresses like business data does (repeated field names and
    vocabulary, unique ids, numbers and timestamps), about 4-6x with zstd.
    """
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    total = 0
    while total < size:
        record = {
            "id": f"ord-{rng.getrandbits(40):010x}",
            "customer": f"cust-{rng.randrange(50_000):05d}",
            "created": f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T"
            f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z",
            "status": rng.choice(_WORDS[-10:]),
            "amount": round(rng.uniform(1, 5000), 2),
            "items": rng.randrange(1, 20),
            "note": " ".join(rng.choices(_WORDS, k=rng.randrange(0, 8))),
        }
        records.append(record)
        total += len(json.dumps(record, separators=(",", ":"))) + 1
    return {"kind": "orders", "records": records}


@cache
def json_payload(size: int, seed: int = 0) -> Payload:
    """``records_json(size)`` as a payload, built once per size."""
    return to_payload(records_json(size, seed))


@cache
def random_payload(size: int, seed: int = 0) -> Payload:
    """``size`` incompressible bytes as a ``binary/plain`` payload, built once per size."""
    return to_payload(random.Random(seed).randbytes(size))


@dataclass(frozen=True)
class WorkflowPayloads:
    """The small payloads one workflow stores, in the order it stores them."""

    workflow_id: str
    payloads: tuple[Payload, ...]


# How often each kind of small value occurs among a workflow's payloads.
SMALL_VALUE_MIX = {
    "null (activities returning None)": 0.25,
    "status records from a handful of shapes": 0.25,
    "the workflow's own ids (order id, customer id)": 0.15,
    "a reference record repeated within the workflow": 0.10,
    "unique records of 20-500 bytes": 0.25,
}


def small_payload_workload(
    count: int, per_workflow: int = 50, seed: int = 0
) -> list[WorkflowPayloads]:
    """``count`` small payloads spread over workflows of ``per_workflow`` each.

    Each workflow stores values in the proportions of :data:`SMALL_VALUE_MIX`:
    the same few values come back again and again within a workflow, as they
    do when activities take ids and return ``None`` or a status.
    """
    rng = random.Random(seed)
    workflows: list[WorkflowPayloads] = []
    kinds = list(range(len(SMALL_VALUE_MIX)))
    weights = list(SMALL_VALUE_MIX.values())
    for w in range((count + per_workflow - 1) // per_workflow):
        order_id = f"order-{w:06d}"
        customer_id = f"cust-{rng.randrange(50_000):05d}"
        reference = {"order_id": order_id, "customer_id": customer_id, "region": rng.choice(_WORDS)}
        values: list[Any] = []
        for _ in range(min(per_workflow, count - w * per_workflow)):
            kind = rng.choices(kinds, weights)[0]
            if kind == 0:
                values.append(None)
            elif kind == 1:
                values.append(rng.choice(_STATUSES))
            elif kind == 2:
                values.append(rng.choice((order_id, customer_id)))
            elif kind == 3:
                values.append(reference)
            else:
                values.append(_unique_record(rng, order_id, len(values)))
        workflows.append(WorkflowPayloads(f"wf-{order_id}", tuple(to_payload(v) for v in values)))
    return workflows


def _unique_record(rng: random.Random, order_id: str, step: int) -> dict[str, Any]:
    record: dict[str, Any] = {"order_id": order_id, "step": step}
    target = rng.randrange(20, 501)
    while len(json.dumps(record)) < target:
        record[rng.choice(_WORDS)] = rng.choice(
            (rng.randrange(10_000), rng.choice(_WORDS), round(rng.random() * 100, 2))
        )
    return record
