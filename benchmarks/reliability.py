"""Reliability figures for docs/reliability.md: faults survived, payloads lost, stalls, memory.

Run with ``make reliability`` (or ``python -m benchmarks.reliability``). Two
parts, each reproducible from a seed:

* **Faults**: many payloads stored and retrieved through the driver and
  ``S3Backend`` while the fault proxy (testrig/chaos.py) in front of a
  real moto or rclone server fails a share of requests. Reports requests,
  faults by kind, payloads lost or wrong (read back with the faults gone),
  clear failures, and the worst time any store or retrieve took against its
  deadline.
* **Memory**: peak RSS above the baseline, as a multiple of the payload size,
  for one 50 MiB store and retrieve (local backend), and for 200 concurrent
  retrievals of a corrupted 50 MiB object plus what stays resident after 30
  more failed ones with the garbage collector off. Each scenario runs in a
  fresh process, so peaks do not mix.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aioboto3
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from casstore import CasStorageDriver
from casstore.backends import LocalBackend
from casstore.backends.s3 import S3Backend
from casstore.errors import CasstoreError
from testrig import MotoS3Server, RcloneS3Server, S3Server
from testrig.chaos import ChaosProxy

MIB = 1024 * 1024
CONTEXT = StorageDriverStoreContext(
    target=StorageDriverWorkflowInfo(namespace="default", id="reliability", run_id=None, type="W")
)
RETRIEVE = StorageDriverRetrieveContext()
SIZES = [10, 200, 3_000, 40_000, 150_000, 1_000_000]


# Faults.


def _payload(size: int, seed: int) -> Payload:
    rng = random.Random(seed)
    data = rng.randbytes(size // 2) + bytes([seed % 256]) * (size - size // 2)
    return Payload(metadata={"encoding": b"binary/plain"}, data=data)


async def _timed(work: Any) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        return await work, time.monotonic() - started
    except CasstoreError as exc:
        return exc, time.monotonic() - started


async def _fault_run(
    server: S3Server, *, conditional: bool, rate: float, count: int, seed: int
) -> dict[str, Any]:
    port = urlsplit(server.endpoint_url).port
    assert port is not None
    bucket = f"reliability-{seed}-{int(time.time())}"
    server.create_bucket(bucket)
    session = aioboto3.Session(
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )
    payloads = [_payload(SIZES[i % len(SIZES)], seed * 100_000 + i) for i in range(count)]
    with ChaosProxy(("127.0.0.1", port), fault_rate=rate, seed=seed) as proxy:
        options: dict[str, Any] = {"conditional_writes": conditional}
        async with (
            S3Backend(
                bucket, session=session, endpoint_url=proxy.endpoint_url, **options
            ) as faulty,
            S3Backend(
                bucket, session=session, endpoint_url=server.endpoint_url, **options
            ) as clean,
        ):
            writer = CasStorageDriver(faulty, retrieval_cache_bytes=0)
            reader = CasStorageDriver(faulty, retrieval_cache_bytes=0)
            # Batches of 16, as workflow tasks bring them; every payload on its own.
            stores: list[tuple[Any, float]] = []
            for start in range(0, count, 16):
                batch = payloads[start : start + 16]
                stores += await asyncio.gather(*(_timed(writer.store(CONTEXT, [p])) for p in batch))
            claims = [None if isinstance(r, BaseException) else r[0] for r, _ in stores]
            retrieves: list[tuple[Any, float]] = []
            for start in range(0, count, 16):
                batch_claims = [c for c in claims[start : start + 16] if c is not None]
                retrieves += await asyncio.gather(
                    *(_timed(reader.retrieve(RETRIEVE, [c])) for c in batch_claims)
                )
            requests, injected = proxy.requests, Counter(proxy.injected)
            lost, wrong = await _check(clean, claims, payloads)
    stored = [p for c, p in zip(claims, payloads, strict=True) if c]
    timings = [*zip(stores, payloads, strict=True), *zip(retrieves, stored, strict=True)]
    worst = max(took - _deadline(len(p.data)) for (_, took), p in timings)
    failures = [r for r, _ in stores + retrieves if isinstance(r, BaseException)]
    return {
        "server": type(server).__name__,
        "fault_rate": rate,
        "payloads": count,
        "requests": requests,
        "faults_injected": sum(injected.values()),
        "faults_by_kind": dict(sorted(injected.items())),
        "payloads_lost": lost,
        "payloads_wrong": wrong,
        "clear_failures": len(failures),
        "worst_stall_s": round(max(took for _, took in stores + retrieves), 2),
        "worst_margin_to_deadline_s": round(-worst, 2),
    }


def _deadline(size: int) -> float:
    return 5.0 + size / (2 * MIB)


async def _check(clean: S3Backend, claims: list[Any], payloads: list[Payload]) -> tuple[int, int]:
    """With the faults gone and a cold cache, read back every claim handed out."""
    fresh = CasStorageDriver(clean, retrieval_cache_bytes=0)
    lost = wrong = 0
    for claim, payload in zip(claims, payloads, strict=True):
        if claim is None:
            continue
        try:
            [back] = await fresh.retrieve(RETRIEVE, [claim])
        except CasstoreError:
            lost += 1
            continue
        wrong += back != payload
    return lost, wrong


def run_faults(rate: float, count: int, seed: int) -> list[dict[str, Any]]:
    """Run the fault scenario against moto (conditional writes) and rclone."""
    results = []
    for server_type, conditional in ((MotoS3Server, True), (RcloneS3Server, False)):
        with server_type() as server:
            results.append(
                asyncio.run(
                    _fault_run(server, conditional=conditional, rate=rate, count=count, seed=seed)
                )
            )
    return results


# Memory (each scenario in its own process).


def _rss() -> int:
    return _status_kib("VmRSS") * 1024


def _hwm() -> int:
    return _status_kib("VmHWM") * 1024


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    Path("/proc/self/clear_refs").write_text("5")


async def _memory_scenario(name: str, root: str) -> dict[str, Any]:
    size = 50 * MIB - 16  # serialized: just under the default max_payload_size
    payload = Payload(data=os.urandom(size))
    backend = LocalBackend(root, fsync=False)
    driver = CasStorageDriver(backend)
    if name == "store":
        gc.collect()
        _reset_peak()
        base = _rss()
        await driver.store(CONTEXT, [payload])
        return {"peak_multiplier": round((_hwm() - base) / size, 2)}
    [claim] = await driver.store(CONTEXT, [payload])
    del payload, driver
    if name == "retrieve":
        reader = CasStorageDriver(backend)
        gc.collect()
        _reset_peak()
        base = _rss()
        await reader.retrieve(RETRIEVE, [claim])
        return {"peak_multiplier": round((_hwm() - base) / size, 2)}
    # Corrupt the object: every retrieval fails its integrity check.
    [key] = [k async for k, _ in backend.scan()]
    path = backend.path_for(key)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    del data
    reader = CasStorageDriver(backend, retrieval_cache_bytes=0)
    gc.collect()
    gc.disable()
    _reset_peak()
    base = _rss()
    results = await asyncio.gather(
        *(reader.retrieve(RETRIEVE, [claim]) for _ in range(200)), return_exceptions=True
    )
    assert all(isinstance(r, CasstoreError) for r in results)
    peak = _hwm() - base
    del results
    for _ in range(30):
        with contextlib.suppress(CasstoreError):
            await reader.retrieve(RETRIEVE, [claim])
    retained = _rss() - base
    return {
        "peak_multiplier": round(peak / size, 2),
        "retained_after_30_more_mib": round(retained / MIB, 1),
    }


def run_memory() -> dict[str, dict[str, Any]]:
    """Run each memory scenario in a fresh interpreter; return their figures."""
    results = {}
    for name in ("store", "retrieve", "failures"):
        with tempfile.TemporaryDirectory() as root:
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.reliability", "--memory-scenario", name, root],
                check=True,
                capture_output=True,
                text=True,
            )
        results[name] = json.loads(out.stdout)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--payloads", type=int, default=160)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument(
        "--memory-scenario", nargs=2, metavar=("NAME", "ROOT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.memory_scenario:
        name, root = args.memory_scenario
        print(json.dumps(asyncio.run(_memory_scenario(name, root))))
        return 0
    report = {
        "faults": run_faults(args.fault_rate, args.payloads, args.seed),
        "memory": run_memory(),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
