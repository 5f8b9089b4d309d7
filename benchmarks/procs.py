"""Fan-out and threshold 0 across worker processes, each with its own driver and caches.

Production runs many worker processes against one Temporal and one bucket;
each has its own driver, so a payload is read about once per process, not
once per worker. Each run starts ``N`` fresh worker processes
(``benchmarks._proc_worker``) on a real Temporal dev server and one
``rclone serve s3`` server, a client in this process with its own driver,
and a fresh bucket:

* ``fanout``: one workflow hands a ``--size`` (1 MiB) JSON input to
  ``--activities`` (1,000) activities; the SDK's default
  ``payload_size_threshold`` (256 KiB), so only the input is externalized.
  Each activity returns the SHA-256 of the input it read; the run fails
  unless all of them match what was sent.
* ``threshold0``: ``--workflows`` (1,000) workflows of 20 small payloads each
  (an input, nine sequential activities' arguments and results, a result)
  with ``payload_size_threshold=0``; each workflow's result depends on every
  byte of every payload, and the run fails unless it is the one computed here.

Reported per run: wall time (start to last result), requests by kind and
bytes (all processes, this one included), CPU of each worker process (from
ready to stop) and its peak RSS. Latency is simulated in each process as the
other benchmarks do (``--latency-ms``, slept before every request).

    .venv/bin/python -m benchmarks.procs [--scenario fanout|threshold0]
        [--procs 1,2,4,8] [--latency-ms 0,20] [--drivers sdk-s3,casstore,casstore-aioboto3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks._proc_worker import DRIVERS, connect, open_driver, report
from benchmarks._proc_workflows import Chain, FanOutDigests, expected_chain
from benchmarks._workloads import records_json

_READY_TIMEOUT_S = 120.0
_RUN_TIMEOUT_S = 900.0


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Run:
    """One scenario, one driver, ``procs`` worker processes, one latency."""

    def __init__(self, args: argparse.Namespace, base: dict[str, Any], driver: str) -> None:
        self.args = args
        self.spec = {
            **base,
            "driver": driver,
            "task_queue": f"procs-{uuid.uuid4().hex[:8]}",
            "threshold": 0 if args.scenario == "threshold0" else 256 * 1024,
        }
        self.logs: list[Path] = []

    async def measure(self, procs: int, latency_s: float, scratch: Path) -> dict[str, Any]:
        spec = {**self.spec, "latency_s": latency_s}
        workers = [self._start(spec, i, scratch) for i in range(procs)]
        try:
            await _wait_ready([ready for _, ready, _ in workers])
            async with open_driver(spec) as built:
                client = await connect(spec, built.driver)
                before, cpu0 = built.traffic(), time.process_time()
                started = time.monotonic()
                await asyncio.wait_for(self._workload(client), _RUN_TIMEOUT_S)
                wall = time.monotonic() - started
                mine = report(built.traffic() - before, time.process_time() - cpu0, built.driver)
        finally:
            outs = _stop(workers)
        # Worker log lines that show Temporal retrying work: a workflow task that
        # timed out before its completion arrived, or a deadlock-detector hit.
        logs = "".join(log.read_text(errors="replace") for log in self.logs)
        return {
            "workflow_tasks_lost": logs.count("Workflow task not found"),
            "deadlocks": logs.count("Potential deadlock detected"),
            "driver": spec["driver"],
            "procs": procs,
            "latency_ms": round(latency_s * 1000),
            "wall_s": wall,
            "client": mine,
            "workers": outs,
        }

    def _start(
        self, spec: dict[str, Any], i: int, scratch: Path
    ) -> tuple[subprocess.Popen[bytes], Path, Path]:
        ready, out = scratch / f"{spec['task_queue']}-{i}.ready", scratch / f"{i}.json"
        out.unlink(missing_ok=True)
        self.args.logs.mkdir(parents=True, exist_ok=True)
        name = f"{self.args.scenario}-{spec['driver']}-{spec['task_queue']}-{i}.log"
        self.logs.append(self.args.logs / name)
        log = self.logs[-1].open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks._proc_worker",
                json.dumps({**spec, "ready": str(ready), "out": str(out)}),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return proc, ready, out

    async def _workload(self, client: Any) -> None:
        queue, args = self.spec["task_queue"], self.args
        if args.scenario == "fanout":
            document = json.dumps(records_json(args.size, seed=7), separators=(",", ":")).encode()
            result = await client.execute_workflow(
                FanOutDigests.run,
                args=[document, args.activities],
                id=f"fanout-{queue}",
                task_queue=queue,
            )
            want = {"count": args.activities, "digests": [hashlib.sha256(document).hexdigest()]}
            if result != want:
                raise AssertionError(f"{self.spec['driver']}: activities read {result}, not {want}")
            return
        limit = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            state = {"order": i, "step": 0, "trail": [], "sku": f"sku-{i:06d}", "qty": i % 7}
            async with limit:
                handle = await client.start_workflow(
                    Chain.run, state, id=f"t0-{queue}-{i}", task_queue=queue
                )
            result = await handle.result()
            if result != await expected_chain(state):
                raise AssertionError(f"{self.spec['driver']}: workflow {i} returned {result}")

        await asyncio.gather(*(one(i) for i in range(args.workflows)))


async def _wait_ready(paths: list[Path]) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            raise RuntimeError(f"worker processes not ready within {_READY_TIMEOUT_S:.0f}s")
        await asyncio.sleep(0.1)


def _stop(workers: list[tuple[subprocess.Popen[bytes], Path, Path]]) -> list[dict[str, Any]]:
    for proc, _, _ in workers:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    outs = []
    for proc, _, out in workers:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if out.exists():
            outs.append(json.loads(out.read_text()))
    if len(outs) != len(workers):
        raise RuntimeError(f"{len(workers) - len(outs)} worker process(es) wrote no report")
    return outs


def totals(result: dict[str, Any]) -> dict[str, Any]:
    """Requests, bytes, CPU and RSS of a run summed (or maxed) over its processes."""
    parts = [result["client"], *result["workers"]]
    requests: Counter[str] = Counter()
    for part in parts:
        requests.update(part["requests"])
    workers = result["workers"]
    return {
        "requests": sum(requests.values()),
        "by_kind": dict(requests.most_common()),
        "bytes_received": sum(p["bytes_received"] for p in parts),
        "bytes_sent": sum(p["bytes_sent"] for p in parts),
        "worker_cpu_s_mean": statistics.mean(w["cpu_s"] for w in workers),
        "worker_cpu_s_total": sum(w["cpu_s"] for w in workers),
        "worker_peak_rss_max": max(w["peak_rss_bytes"] for w in workers),
    }


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: one row per run, ratios against the SDK's driver of the same shape."""
    sdk = {(r["procs"], r["latency_ms"]): r for r in results if r["driver"] == "sdk-s3"}
    lines = [
        "| procs | latency | driver | wall s | vs SDK | requests | fewer | MiB read "
        "| worker CPU s (mean / all) | worker peak RSS MiB | workflow tasks timed out |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t, base = totals(r), sdk.get((r["procs"], r["latency_ms"]))
        faster = fewer = "-"
        if base is not None and r is not base:
            faster = f"{base['wall_s'] / r['wall_s']:.1f}x"
            fewer = f"{totals(base)['requests'] / max(t['requests'], 1):.0f}x"
        kinds = ", ".join(f"{k} {v:,}" for k, v in t["by_kind"].items())
        lines.append(
            f"| {r['procs']} | {r['latency_ms']} ms | {r['driver']} | {r['wall_s']:.2f} | {faster} "
            f"| {t['requests']:,} ({kinds}) | {fewer} | {t['bytes_received'] / 2**20:,.1f} "
            f"| {t['worker_cpu_s_mean']:.2f} / {t['worker_cpu_s_total']:.2f} "
            f"| {t['worker_peak_rss_max'] / 2**20:.0f} | {r['workflow_tasks_lost']} |"
        )
    return "\n".join(lines)


def _csv(kind: type[Any], text: str) -> list[Any]:
    return [kind(part) for part in text.split(",") if part]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.procs", description=__doc__)
    parser.add_argument("--scenario", choices=("fanout", "threshold0"), default="fanout")
    parser.add_argument("--procs", default="1,2,4,8")
    parser.add_argument("--latency-ms", default="0,20")
    parser.add_argument("--drivers", default=",".join(DRIVERS))
    parser.add_argument("--activities", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument(
        "--logs", type=Path, default=Path("test-artifacts/procs"), help="worker processes' logs"
    )
    args = parser.parse_args(argv)
    drivers = _csv(str, args.drivers)
    if unknown := set(drivers) - set(DRIVERS):
        parser.error(f"unknown driver(s) {sorted(unknown)}; expected some of {', '.join(DRIVERS)}")
    from testrig import RcloneS3Server, TemporalDevServer

    results: list[dict[str, Any]] = []
    with (
        TemporalDevServer() as temporal,
        RcloneS3Server() as s3,
        tempfile.TemporaryDirectory() as scratch,
    ):
        base = {
            "address": temporal.address,
            "endpoint": s3.endpoint_url,
            "access_key": s3.access_key,
            "secret_key": s3.secret_key,
            "region": s3.region,
        }
        for latency_ms in _csv(int, args.latency_ms):
            for procs in _csv(int, args.procs):
                for driver in drivers:
                    bucket = f"procs-{uuid.uuid4().hex[:12]}"
                    # rclone keeps keys as files: make the shared parent directories
                    # that concurrent first writes would race to create (see _cli).
                    for parent in ("v1/default", "v0/ns/default/wt/Chain/wi"):
                        (s3.root / bucket / parent).mkdir(parents=True)
                    s3.flush_dir_cache()
                    run = Run(args, {**base, "bucket": bucket}, driver)
                    _say(f"{args.scenario}: {driver}, {procs} process(es), {latency_ms} ms")
                    result = asyncio.run(run.measure(procs, latency_ms / 1000, Path(scratch)))
                    _say(f"  {result['wall_s']:.2f} s, {totals(result)['requests']:,} requests")
                    results.append(result)
    print(
        f"{args.scenario} on {os.cpu_count()} cores, Python {platform.python_version()}; "
        "every payload read was checked against what was written.\n"
    )
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
