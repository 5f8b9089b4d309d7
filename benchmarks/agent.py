"""Scenario ``agent``: 50 model calls of an agent loop, each input the whole conversation.

``python -m benchmarks.agent [--turns 50] [--png docs/benchmarks-agent.png]``

For each integration (see :mod:`benchmarks.agent_payloads`) and each driver --
the SDK's S3 driver, casstore with ``chunking=False`` and casstore with
chunking (the default) -- the turns' inputs go one after the other through the
SDK's External Storage path (threshold 0) into a fresh bucket of one S3
server (moto, in a separate process, so this process's CPU time is the
drivers'), with 0 and 20 ms added to every request. Then a reader with cold
caches retrieves the last turn's input. Reported per driver: bytes at rest,
uploaded and downloaded by the cold reader, requests per turn, store and
retrieve CPU, wall times, and stored bytes after every turn (the PNG). Also:
the floor (the run's distinct chunks as one zstd-19 stream), and a 16 MiB
JSON and a 16 MiB random payload stored with chunking off and on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aioboto3
import zstandard
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    ExternalStorage,
    StorageDriver,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from benchmarks._s3 import S3Endpoint, Traffic, add_latency, bucket_name, count_requests
from benchmarks._s3 import objects_at_rest as at_rest
from benchmarks._workloads import json_payload, random_payload
from benchmarks.agent_payloads import MAKERS
from casstore import CasStorageDriver
from casstore._chunker import cut, split_payload
from casstore.backends.s3 import S3Backend
from testrig.processes import free_port

DRIVERS = ("sdk-s3", "casstore-nochunk", "casstore")
MiB = 1024 * 1024


@contextlib.contextmanager
def moto_process() -> Iterator[S3Endpoint]:
    """Moto's S3 server as its own process on a free loopback port."""
    port = free_port()
    server = subprocess.Popen(
        ["moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = S3Endpoint(f"http://127.0.0.1:{port}", "testing", "testing")
        import urllib.request

        for _ in range(100):
            try:
                urllib.request.urlopen(endpoint.endpoint_url, timeout=1).close()
                break
            except Exception:
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(10)


def make_driver(kind: str, client: Any, bucket: str) -> StorageDriver:
    if kind == "sdk-s3":
        from temporalio.contrib.aws.s3driver import S3StorageDriver
        from temporalio.contrib.aws.s3driver.aioboto3 import new_aioboto3_client

        return S3StorageDriver(new_aioboto3_client(client), bucket=bucket)
    backend = S3Backend(bucket=bucket, client=client)
    return CasStorageDriver(backend, chunking=kind == "casstore")


def converter(driver: StorageDriver, workflow_id: str | None = None) -> DataConverter:
    bound = dataclasses.replace(
        DataConverter.default,
        external_storage=ExternalStorage(drivers=[driver], payload_size_threshold=0),
    )
    if workflow_id is None:
        return bound
    return bound._with_store_context(
        StorageDriverStoreContext(
            target=StorageDriverWorkflowInfo(
                namespace="default", id=workflow_id, run_id="run-1", type="Agent"
            )
        )
    )


@contextlib.asynccontextmanager
async def bucket_client(
    endpoint: S3Endpoint, latency: float
) -> AsyncIterator[tuple[Any, Any, str, Traffic]]:
    session = aioboto3.Session()
    async with (
        session.client("s3", **endpoint.client_kwargs()) as client,
        session.client("s3", **endpoint.client_kwargs()) as lister,
    ):
        bucket = bucket_name("agent")
        await client.create_bucket(Bucket=bucket)
        traffic = Traffic()
        count_requests(client, traffic)
        if latency:
            add_latency(client, latency)
        yield client, lister, bucket, traffic


async def run_driver(
    endpoint: S3Endpoint, kind: str, payloads: list[Payload], latency: float, curve: bool
) -> dict[str, Any]:
    async with bucket_client(endpoint, latency) as (client, lister, bucket, traffic):
        driver = make_driver(kind, client, bucket)
        store = converter(driver, "agent-1")
        stored_curve: list[int] = []
        refs: list[Payload] = []
        cpu = wall = 0.0
        for payload in payloads:
            copy = Payload()
            copy.CopyFrom(payload)
            c0, w0 = time.process_time(), time.perf_counter()
            refs.append(await store._transform_outbound_payload(copy))
            cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
            if curve:
                stored_curve.append((await at_rest(lister, bucket))[1])
        stored = traffic.snapshot()
        objects, at_rest_bytes = await at_rest(lister, bucket)
        reader = converter(make_driver(kind, client, bucket))
        c0, w0 = time.process_time(), time.perf_counter()
        got = await reader._transform_inbound_payload(refs[-1])
        read_cpu, read_wall = time.process_time() - c0, time.perf_counter() - w0
        if got != payloads[-1]:
            raise AssertionError(f"{kind} returned a different last payload")
        read = traffic.snapshot() - stored
        turns = len(payloads)
        return {
            "objects": objects,
            "at_rest": at_rest_bytes,
            "uploaded": stored.bytes_sent,
            "puts_per_turn": stored.requests["PutObject"] / turns,
            "requests_per_turn": sum(stored.requests.values()) / turns,
            "store_cpu_ms_per_turn": 1000 * cpu / turns,
            "store_wall_s": wall,
            "cold_read_bytes": read.bytes_received,
            "cold_read_requests": sum(read.requests.values()),
            "cold_read_cpu_ms": 1000 * read_cpu,
            "cold_read_wall_ms": 1000 * read_wall,
            "curve": stored_curve,
        }


def floor_bytes(payloads: list[Payload]) -> tuple[int, int]:
    """The run's distinct content (its distinct chunks, first seen first): raw, and as zstd-19."""
    seen: set[bytes] = set()
    distinct: list[bytes] = []
    for payload in payloads:
        data = payload.SerializeToString(deterministic=True)
        split = split_payload(payload, data)
        assert split is not None
        for piece in cut(data, split, None):
            if piece.digest not in seen:
                seen.add(piece.digest)
                distinct.append(data[piece.offset : piece.offset + piece.length])
    raw = b"".join(distinct)
    params = zstandard.ZstdCompressionParameters.from_level(19, enable_ldm=True, window_log=27)
    return len(raw), len(zstandard.ZstdCompressor(compression_params=params).compress(raw))


async def regression(endpoint: S3Endpoint) -> dict[str, Any]:
    """16 MiB JSON and random payloads: at rest and store CPU, chunking off and on."""
    out: dict[str, Any] = {}
    for name, payload in (("json", json_payload(16 * MiB)), ("random", random_payload(16 * MiB))):
        for kind in ("casstore-nochunk", "casstore"):
            best = float("inf")
            size = 0
            for rep in range(3):
                async with bucket_client(endpoint, 0.0) as (client, lister, bucket, _):
                    store = converter(make_driver(kind, client, bucket), f"big-{rep}")
                    copy = Payload()
                    copy.CopyFrom(payload)
                    c0 = time.process_time()
                    await store._transform_outbound_payload(copy)
                    best = min(best, time.process_time() - c0)
                    size = (await at_rest(lister, bucket))[1]
            out[f"{name}/{kind}"] = {"at_rest": size, "store_cpu_ms": 1000 * best}
    return out


def plot(results: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    integrations = list(results["runs"])
    fig, axes = plt.subplots(1, len(integrations), figsize=(6 * len(integrations), 4))
    for ax, integration in zip(axes, integrations, strict=True):
        for kind in DRIVERS:
            curve = results["runs"][integration]["0ms"][kind]["curve"]
            ax.plot(range(1, len(curve) + 1), [b / MiB for b in curve], label=kind)
        ax.set_title(f"{integration}: bytes at rest after each model call")
        ax.set_xlabel("turn")
        ax.set_ylabel("MiB at rest")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def main(turns: int, png: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {"turns": turns, "runs": {}, "floor": {}}
    with moto_process() as endpoint:
        for integration, make in MAKERS.items():
            payloads = make(turns)
            raw, compressed = floor_bytes(payloads)
            results["floor"][integration] = {
                "logical": sum(p.ByteSize() for p in payloads),
                "distinct_raw": raw,
                "distinct_zstd19": compressed,
            }
            by_latency: dict[str, Any] = {}
            for latency in (0.0, 0.020):
                label = f"{round(latency * 1000)}ms"
                by_latency[label] = {
                    kind: await run_driver(endpoint, kind, payloads, latency, curve=latency == 0)
                    for kind in DRIVERS
                }
            results["runs"][integration] = by_latency
        results["regression"] = await regression(endpoint)
    if png:
        plot(results, png)
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--png", default=None, help="write the stored-bytes curve here")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    results = asyncio.run(main(args.turns, args.png))
    text = json.dumps(results, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    summary = {k: v for k, v in results.items() if k != "runs"}
    for integration, by_latency in results["runs"].items():
        for latency, by_kind in by_latency.items():
            for kind, row in by_kind.items():
                trimmed = {k: v for k, v in row.items() if k != "curve"}
                curve = row["curve"]
                if curve:
                    trimmed["growth_50_over_25"] = curve[-1] / curve[len(curve) // 2 - 1]
                summary[f"{integration}/{latency}/{kind}"] = trimmed
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    cli()
