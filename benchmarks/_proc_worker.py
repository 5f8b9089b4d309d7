"""One worker process of the multi-process scenarios: its own driver, client and caches.

Started by :mod:`benchmarks.procs` as ``python -m benchmarks._proc_worker
'<spec json>'``. It builds the driver named in the spec on the shared S3
bucket, runs a Temporal worker on the run's task queue, writes ``ready`` once
it polls, and on SIGTERM shuts down gracefully and writes what it measured
(requests by kind, bytes, CPU since ready, peak RSS) to ``out``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.converter import DataConverter, ExternalStorage, StorageDriver
from temporalio.worker import Worker

from benchmarks._e2e import _quiet_runtime
from benchmarks._proc_workflows import Chain, FanOutDigests, digest, step
from benchmarks._s3 import S3Endpoint, Traffic, add_latency, count_requests
from benchmarks.gc_scale import peak_rss
from casstore import CasStorageDriver
from casstore.backends import CountingBackend
from casstore.backends._wrappers import LatencyBackend

DRIVERS = {
    "sdk-s3": "the SDK's S3StorageDriver (aioboto3)",
    "casstore": "casstore on the s3:// default client (obstore)",
    "casstore-aioboto3": "casstore on client=aioboto3 (S3Backend)",
}


@dataclasses.dataclass
class Built:
    """A driver and a way to read what it sent."""

    driver: StorageDriver
    traffic: Callable[[], Traffic]


@asynccontextmanager
async def open_driver(spec: dict[str, Any]) -> AsyncIterator[Built]:
    """Build ``spec["driver"]`` on ``spec["bucket"]``, counting its requests."""
    s3 = S3Endpoint(spec["endpoint"], spec["access_key"], spec["secret_key"], spec["region"])
    latency = float(spec["latency_s"])
    kind = spec["driver"]
    if kind == "casstore":
        from casstore.backends.objectstore import ObjectStoreBackend

        backend = ObjectStoreBackend.s3(
            spec["bucket"],
            endpoint=s3.endpoint_url,
            region=s3.region,
            access_key_id=s3.access_key,
            secret_access_key=s3.secret_key,
        )
        # One backend call is one request here (no multipart, no retries on loopback).
        counted = CountingBackend(LatencyBackend(backend, latency) if latency else backend)

        def counts() -> Traffic:
            # The lifecycle manifest's requests are requests too (counted apart).
            manifest = {f"{k} (manifest)": n for k, n in counted.manifest_calls.items()}
            calls = Counter(counted.calls) + Counter(manifest)
            return Traffic(calls, counted.bytes_written, counted.bytes_read)

        async with counted:
            yield Built(CasStorageDriver(counted), counts)
        return
    import aioboto3

    async with aioboto3.Session().client("s3", **s3.client_kwargs()) as client:
        traffic = Traffic()
        count_requests(client, traffic)
        if latency:
            add_latency(client, latency)
        driver: StorageDriver
        if kind == "sdk-s3":
            from temporalio.contrib.aws.s3driver import S3StorageDriver
            from temporalio.contrib.aws.s3driver.aioboto3 import new_aioboto3_client

            driver = S3StorageDriver(new_aioboto3_client(client), bucket=spec["bucket"])
        elif kind == "casstore-aioboto3":
            from casstore.backends.s3 import S3Backend

            driver = CasStorageDriver(S3Backend(bucket=spec["bucket"], client=client))
        else:
            raise ValueError(f"unknown driver {kind!r}; expected one of {', '.join(DRIVERS)}")
        yield Built(driver, traffic.snapshot)


async def connect(spec: dict[str, Any], driver: StorageDriver) -> Client:
    """A client whose converter externalizes payloads of at least ``spec["threshold"]`` bytes."""
    converter = dataclasses.replace(
        DataConverter.default,
        external_storage=ExternalStorage(
            drivers=[driver], payload_size_threshold=spec["threshold"]
        ),
    )
    return await Client.connect(spec["address"], data_converter=converter, runtime=_quiet_runtime())


def report(traffic: Traffic, cpu_s: float, driver: StorageDriver) -> dict[str, Any]:
    """What one process measured, as JSON."""
    stats = driver.stats.as_dict() if isinstance(driver, CasStorageDriver) else {}
    return {
        "requests": dict(traffic.requests),
        "bytes_sent": traffic.bytes_sent,
        "bytes_received": traffic.bytes_received,
        "cpu_s": cpu_s,
        "peak_rss_bytes": peak_rss(os.getpid()),
        "driver_stats": stats,
    }


async def serve(spec: dict[str, Any]) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with open_driver(spec) as built:
        client = await connect(spec, built.driver)
        async with Worker(
            client,
            task_queue=spec["task_queue"],
            workflows=[FanOutDigests, Chain],
            activities=[digest, step],
        ):
            before, cpu0 = built.traffic(), time.process_time()
            await asyncio.to_thread(Path(spec["ready"]).write_text, "ready")
            await stop.wait()
        result = report(built.traffic() - before, time.process_time() - cpu0, built.driver)
    await asyncio.to_thread(Path(spec["out"]).write_text, json.dumps(result))


if __name__ == "__main__":
    asyncio.run(serve(json.loads(sys.argv[1])))
