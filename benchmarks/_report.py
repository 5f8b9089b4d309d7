"""Turn results into the markdown table, the JSON file and the PNG chart."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._drivers import BASELINE, ENCRYPTED, FILE_OPS
from benchmarks._gcs_redis import GCS_DRIVERS, SDK_GCS
from benchmarks._measure import Sample


@dataclass
class Result:
    """All repetitions of one scenario for one driver."""

    scenario: str
    driver: str
    unit: str
    samples: list[Sample] = field(default_factory=list)
    median: Sample | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "driver": self.driver,
            "request_unit": self.unit,
            "repetitions": len(self.samples),
            "median": self.median.as_dict() if self.median else None,
            "samples": [s.as_dict() for s in self.samples],
            "error": self.error,
        }


@dataclass(frozen=True)
class Goal:
    scenario: str
    label: str
    target: str
    metric: str  # "wall", "requests", "reference", "at_rest"
    threshold: float
    """For wall/requests: the SDK's figure over casstore's must be at least this;
    for reference/at_rest: casstore's figure over the SDK's must be at most this."""


GOALS = (
    Goal("fanout", "fan-out requests", ">= 100x fewer", "requests", 100),
    Goal("fanout", "fan-out wall time", ">= 10x less", "wall", 10),
    Goal("threshold0", "threshold 0 wall time", ">= 2x faster", "wall", 2),
    Goal("threshold0", "threshold 0 reference bytes", "<= 55%", "reference", 0.55),
    Goal("large-json", "16 MiB JSON bytes stored", "<= 1/4", "at_rest", 0.25),
    Goal("e2e", "end-to-end fan-out wall time", ">= 3x faster", "wall", 3),
)


def _count(n: float) -> str:
    return f"{n:,.0f}"


def _bytes(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def _seconds(s: float) -> str:
    return f"{s:.3f}" if s < 10 else f"{s:.1f}"


def _ratio(x: float) -> str:
    return f"{x:.1f}x" if x < 100 else f"{x:,.0f}x"


def _requests(sample: Sample, unit: str) -> str:
    kinds = ", ".join(f"{k} {_count(v)}" for k, v in sample.requests.items())
    label = "ops" if unit == FILE_OPS else "req"
    return f"{_count(sample.total_requests)} {label}" + (f" ({kinds})" if kinds else "")


def _goal_value(goal: Goal, mine: Sample, base: Sample) -> float | None:
    if goal.metric == "wall":
        return base.wall_s / mine.wall_s if mine.wall_s else None
    if goal.metric == "requests":
        return base.total_requests / max(mine.total_requests, 1)
    if goal.metric == "reference":
        mine_ref, base_ref = mine.reference_bytes_per_payload, base.reference_bytes_per_payload
        return mine_ref / base_ref if mine_ref and base_ref else None
    return mine.bytes_at_rest / base.bytes_at_rest if base.bytes_at_rest else None


def goal_lines(results: Sequence[Result]) -> list[str]:
    """One line per goal of casstore-s3 against the SDK: the measured figure, met or not."""
    by_key = {(r.scenario, r.driver): r for r in results if r.median}
    lines = []
    for goal in GOALS:
        base = by_key.get((goal.scenario, BASELINE))
        mine = by_key.get((goal.scenario, "casstore-s3"))
        if base is None or mine is None or base.median is None or mine.median is None:
            lines.append(f"- {goal.label} (goal {goal.target}): not measured in this run")
            continue
        value = _goal_value(goal, mine.median, base.median)
        if value is None:
            lines.append(f"- {goal.label} (goal {goal.target}): no figure")
            continue
        if goal.metric in ("wall", "requests"):
            met, shown = value >= goal.threshold, f"{_ratio(value)}"
        else:
            met, shown = value <= goal.threshold, f"{value:.0%} of the SDK's"
        lines.append(f"- {goal.label} (goal {goal.target}): {shown}: {'met' if met else 'NOT met'}")
    return lines


def obstore_goal_lines(results: Sequence[Result]) -> list[str]:
    """One line per goal of casstore-obstore against casstore-s3 and the floor, with a verdict."""
    walls = {(r.scenario, r.driver): r.median.wall_s for r in results if r.median}
    lines = []
    for scenario in ("threshold0", "threshold0-cold"):
        mine, theirs = (
            walls.get((scenario, "casstore-obstore")),
            walls.get((scenario, "casstore-s3")),
        )
        label = f"{scenario} wall time vs casstore-s3 (goal >= 2x faster)"
        if mine and theirs:
            ratio = theirs / mine
            verdict = "met" if ratio >= 2 else "NOT met"
            lines.append(f"- {label}: {theirs:.2f} s / {mine:.2f} s = {ratio:.2f}x: {verdict}")
        else:
            lines.append(f"- {label}: not measured in this run")
    mine, floor = walls.get(("e2e", "casstore-obstore")), walls.get(("e2e", "floor"))
    label = "e2e wall time vs floor (goal <= 1.2x)"
    if mine and floor:
        ratio = mine / floor
        verdict = "met" if ratio <= 1.2 else "NOT met"
        lines.append(f"- {label}: {mine:.2f} s / {floor:.2f} s = {ratio:.2f}x: {verdict}")
    else:
        lines.append(f"- {label}: not measured in this run")
    slower = [
        f"{scenario} ({wall:.2f} s vs {walls[(scenario, 'casstore-s3')]:.2f} s)"
        for (scenario, driver), wall in walls.items()
        if driver == "casstore-obstore"
        and (scenario, "casstore-s3") in walls
        and wall > walls[(scenario, "casstore-s3")]
    ]
    compared = sum(1 for (s, d) in walls if d == "casstore-obstore" and (s, "casstore-s3") in walls)
    if compared:
        verdict = f"NOT met: slower in {', '.join(slower)}" if slower else "met"
        lines.append(f"- no scenario slower than casstore-s3 ({compared} compared): {verdict}")
    return lines


ENCRYPTION_WALL_LIMIT = 1.10
"""Goal: casstore-s3-enc's threshold 0 wall time at most 10% above casstore-s3's."""
ENCRYPTION_CPU_LIMIT = 1.15
"""Goal: encrypted store + retrieve CPU for 1 MiB JSON at most 15% above plain."""
_MiB = 1 << 20


def encryption_goal_lines(results: Sequence[Result], profile: dict[str, Any] | None) -> list[str]:
    """The cost of encryption at rest: encrypted casstore against plain casstore."""
    lines = []
    by_key = {(r.scenario, r.driver): r.median for r in results if r.median}
    plain, encrypted = (
        by_key.get(("threshold0", "casstore-s3")),
        by_key.get(("threshold0", ENCRYPTED)),
    )
    label = f"threshold 0 wall time, encrypted (goal <= {ENCRYPTION_WALL_LIMIT:.2f}x plain)"
    if plain and encrypted and plain.wall_s:
        ratio = encrypted.wall_s / plain.wall_s
        met = "met" if ratio <= ENCRYPTION_WALL_LIMIT else "NOT met"
        lines.append(
            f"- {label}: {_seconds(encrypted.wall_s)} s vs {_seconds(plain.wall_s)} s "
            f"= {ratio:.2f}x: {met}"
        )
    else:
        lines.append(f"- {label}: not measured in this run")
    rows = [r for r in (profile or {}).get("rows", []) if r["size"] == _MiB]
    label = f"1 MiB JSON store+retrieve CPU, encrypted (goal <= {ENCRYPTION_CPU_LIMIT:.2f}x plain)"
    if rows:
        steps = rows[0]["steps_us"]
        ratio = steps["store+retrieve enc"] / steps["store+retrieve"]
        met = "met" if ratio <= ENCRYPTION_CPU_LIMIT else "NOT met"
        lines.append(
            f"- {label}: {steps['store+retrieve enc']:,.0f} us vs "
            f"{steps['store+retrieve']:,.0f} us = {ratio:.2f}x: {met}"
        )
    else:
        lines.append(f"- {label}: not measured in this run")
    return lines


def markdown(
    results: Sequence[Result],
    titles: dict[str, str],
    profile: dict[str, Any] | None,
    notes: Sequence[str] = (),
) -> str:
    """The whole report as markdown: notes, one table per scenario, goals, profile."""
    out: list[str] = [f"> {note}\n" for note in notes]
    scenarios = list(dict.fromkeys(r.scenario for r in results))
    for scenario in scenarios:
        rows = [r for r in results if r.scenario == scenario]
        medians = {r.driver: r.median for r in rows if r.median}
        out += [f"### {titles.get(scenario, scenario)}", ""]
        header = (
            "| driver | wall s | store / retrieve s | speed vs SDK | CPU s | server CPU s "
            "| requests | fewer vs SDK | sent | received | objects at rest | bytes at rest "
            "| ref B/payload |"
        )
        if scenario == "e2e":
            header = header.replace("| ref B/payload |", "| history bytes |")
        out += [header, _rule(header)]
        for r in rows:
            s = r.median
            if s is None:
                out.append(
                    f"| {r.driver} | {r.error or 'no result'} |" + " |" * (header.count("|") - 3)
                )
                continue
            # GCS drivers compare with the SDK's GCS driver on the same server.
            base = medians.get(SDK_GCS if r.driver in GCS_DRIVERS else BASELINE)
            phases = " / ".join(_seconds(v) for v in s.phases.values())
            speed = _ratio(base.wall_s / s.wall_s) if base and s.wall_s else "-"
            fewer = (
                _ratio(base.total_requests / max(s.total_requests, 1))
                if base and r.unit != FILE_OPS
                else "n/a"
            )
            last = (
                _bytes(s.extra.get("history_bytes", 0))
                if scenario == "e2e"
                else f"{s.reference_bytes_per_payload or 0:.0f}"
            )
            server = _seconds(s.server_cpu_s) if s.server_cpu_s is not None else "-"
            out.append(
                f"| {r.driver} | {_seconds(s.wall_s)} | {phases} | {speed} | {_seconds(s.cpu_s)} "
                f"| {server} | {_requests(s, r.unit)} | {fewer} | {_bytes(s.bytes_sent)} "
                f"| {_bytes(s.bytes_received)} | {_count(s.objects_at_rest)} "
                f"| {_bytes(s.bytes_at_rest)} | {last} |"
            )
        out.append("")
    out += ["### Goals (casstore-s3 against sdk-s3)", "", *goal_lines(results), ""]
    out += [
        f"### Goals ({ENCRYPTED} against casstore-s3)",
        "",
        *encryption_goal_lines(results, profile),
        "",
    ]
    if any(r.driver == "casstore-obstore" for r in results):
        out += ["### Goals (casstore-obstore)", "", *obstore_goal_lines(results), ""]
    if profile:
        out += profile_markdown(profile)
    return "\n".join(out)


def _rule(header: str) -> str:
    return "|" + "---|" * (header.count("|") - 1)


def profile_markdown(profile: dict[str, Any]) -> list[str]:
    """The CPU profile as a table: microseconds per payload by step."""
    rows = profile.get("rows", [])
    if not rows:
        return []
    steps = list(rows[0]["steps_us"])
    header = "| payload | " + " | ".join(steps) + " | total / floor |"
    out = ["### casstore CPU per payload (microseconds)", "", header, _rule(header)]
    for row in rows:
        us = row["steps_us"]
        floor = us.get("floor (blake3+zstd)") or 0
        gap = f"{us['store total'] / floor:.1f}x" if floor else "-"
        cells = " | ".join(f"{us[s]:,.1f}" for s in steps)
        out.append(f"| {_bytes(row['serialized'])} | {cells} | {gap} |")
    s3 = profile.get("s3_request_cpu_us")
    if s3:
        out += ["", f"One aioboto3 S3 request costs this process {s3:,.0f} us of CPU."]
    obstore_us = profile.get("obstore_request_cpu_us")
    if obstore_us:
        out += [f"One obstore S3 request costs this process {obstore_us:,.0f} us of CPU."]
    return [*out, ""]


def write_json(path: Path, meta: dict[str, Any], results: Sequence[Result], profile: Any) -> None:
    """Write the results file: metadata, raw samples, medians, profile."""
    document = {
        "meta": meta,
        "results": [r.as_dict() for r in results],
        "goals": goal_lines(results) + encryption_goal_lines(results, profile),
        "obstore_goals": obstore_goal_lines(results),
        "profile": profile,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def write_chart(
    path: Path,
    results: Sequence[Result],
    titles: dict[str, str],
    profile: dict[str, Any] | None = None,
) -> None:
    """One panel per scenario: wall time per driver, phases stacked, requests noted.

    With a profile, one more panel shows casstore's store CPU per payload
    against the floor of BLAKE3 + zstd on the same bytes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(r.scenario for r in results))
    rows_profile = (profile or {}).get("rows", [])
    panels = len(scenarios) + (1 if rows_profile else 0)
    columns = min(3, panels) or 1
    rows_n = (panels + columns - 1) // columns or 1
    fig, axes = plt.subplots(rows_n, columns, figsize=(6 * columns, 3.2 * rows_n), squeeze=False)
    colors = {"store": "#4c72b0", "retrieve": "#dd8452", "run": "#55a868"}
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        rows = [r for r in results if r.scenario == scenario and r.median]
        labels = [r.driver for r in rows]
        lefts = [0.0] * len(rows)
        for phase in ("store", "retrieve", "run"):
            widths = [r.median.phases.get(phase, 0.0) if r.median else 0.0 for r in rows]
            if any(widths):
                ax.barh(labels, widths, left=lefts, color=colors[phase], label=phase)
                lefts = [a + b for a, b in zip(lefts, widths, strict=True)]
        for y, r in enumerate(rows):
            assert r.median is not None
            unit = "ops" if r.unit == FILE_OPS else "req"
            ax.text(
                lefts[y],
                y,
                f" {_seconds(r.median.wall_s)} s, {_count(r.median.total_requests)} {unit}",
                va="center",
                fontsize=8,
            )
        ax.set_title(titles.get(scenario, scenario), fontsize=9)
        ax.set_xlabel("wall seconds (median)")
        ax.invert_yaxis()
        ax.set_xlim(0, max(lefts or [1.0]) * 1.6 or 1.0)
        ax.legend(fontsize=7, loc="lower right")
    if rows_profile:
        ax = list(axes.flat)[len(scenarios)]
        labels = [_bytes(row["serialized"]) for row in rows_profile]
        places = list(range(len(rows_profile)))
        for offset, step, color in (
            (-0.2, "store total", "#4c72b0"),
            (0.2, "floor (blake3+zstd)", "#999999"),
        ):
            values = [row["steps_us"][step] for row in rows_profile]
            ax.bar([p + offset for p in places], values, width=0.4, label=step, color=color)
        ax.set_xticks(places, labels)
        ax.set_yscale("log")
        ax.set_ylabel("CPU us per payload (log)")
        ax.set_title("casstore store CPU per payload vs. hashing + compressing", fontsize=9)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[panels:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
