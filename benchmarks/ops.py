"""How long ``casstore verify`` and ``casstore stats`` take on a store of small objects.

Builds a local store of ``--objects`` small payloads (100 workflows, objects of
about 100 B to 1 KiB, mixed raw and zstd) with the driver, then times, in this
process and one run each: a plain listing, ``stats``, ``stats --deep`` and
``verify``, and reports objects per second. The goal: 10,000 small
objects verified on the local backend in well under a minute.

    .venv/bin/python -m benchmarks.ops [--objects 10000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import StorageDriverStoreContext, StorageDriverWorkflowInfo

import casstore
from casstore import CasStorageDriver
from casstore.backends import LocalBackend
from casstore.ops import store_stats, verify_store

_WORKFLOWS = 100


async def build(root: str, objects: int) -> None:
    driver = CasStorageDriver(LocalBackend(root, fsync=False))
    per_workflow = max(1, objects // _WORKFLOWS)
    made = 0
    for w in range(_WORKFLOWS):
        target = StorageDriverWorkflowInfo(
            namespace="default", id=f"order-{w}", run_id=None, type=None
        )
        count = min(per_workflow, objects - made)
        if count <= 0:
            break
        payloads = [
            Payload(
                metadata={"encoding": b"json/plain"},
                data=json.dumps({"n": w * per_workflow + i, "pad": "x" * (i % 90) * 10}).encode(),
            )
            for i in range(count)
        ]
        await driver.store(StorageDriverStoreContext(target=target), payloads)
        made += count


async def measure(objects: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="casstore-bench-ops-") as root:
        await build(root, objects)
        backend = LocalBackend(root)
        results: dict[str, Any] = {}

        started = time.perf_counter()
        listed = sum([1 async for _ in backend.scan()])
        results["list"] = time.perf_counter() - started

        started = time.perf_counter()
        stats = await store_stats(backend)
        results["stats"] = time.perf_counter() - started

        started = time.perf_counter()
        deep = await store_stats(backend, deep=True)
        results["stats_deep"] = time.perf_counter() - started

        started = time.perf_counter()
        report = await verify_store(backend)
        results["verify"] = time.perf_counter() - started

        assert listed == stats.total.objects == deep.total.objects == report.good == objects
        return {
            "objects": objects,
            "stored_bytes": stats.total.stored_bytes,
            "logical_bytes": deep.total.logical_bytes,
            "seconds": {k: round(v, 3) for k, v in results.items()},
            "objects_per_second": {k: round(objects / v) for k, v in results.items()},
            "casstore": casstore.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg()[0],
        }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ops", description=__doc__)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(measure(args.objects))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{result['objects']:,} objects, {result['stored_bytes']:,} B stored "
        f"({result['logical_bytes']:,} B of payloads); {result['cpus']} CPUs, "
        f"load average {result['load_average']:.1f}"
    )
    for step, seconds in result["seconds"].items():
        rate = result["objects_per_second"][step]
        print(f"  {step:<11} {seconds:7.2f} s  {rate:>9,} objects/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
