"""The demo's measurements and the table it prints."""

from __future__ import annotations

from dataclasses import dataclass

from casstore._stats import DriverStats
from casstore.demo._workflows import FanOutSummary

MIB = 1024 * 1024


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


def format_report(report: DemoReport, *, threshold: int, scope: str) -> str:
    """Render the report as an aligned table (``threshold`` and ``scope`` as configured)."""
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
        ("threshold / scope", f"{threshold} B / {scope}"),
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
    if n >= MIB:
        return f"{n / MIB:,.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:,.1f} KiB"
    return f"{n:,} B"


def _ratio(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator:,.1f}x" if denominator else "n/a"
