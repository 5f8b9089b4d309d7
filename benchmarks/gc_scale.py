"""``casstore gc`` on a namespace of many closed workflows: mark rate, memory, time.

Builds, on a real Temporal dev server, ``--workflows`` closed workflows with
threshold 0 (each started with ``--payloads`` small JSON arguments through
``CasStorePlugin``, so each argument is one object, then terminated: closed
without a worker), deletes ``--deleted`` of them from Temporal (their objects
become garbage), and then measures, one run each:

* the mark phase in this process (``mark_namespace``, ``--concurrency``):
  histories per second, and the dev server's CPU over the same seconds
  (from /proc), to tell whether the client or the server is what limits it;
* ``casstore gc --json`` (a dry run) as a user runs it, in its own process:
  wall time, CPU and peak RSS (VmHWM), and what it judged;
* ``casstore stats`` and ``casstore verify`` on the same store: objects per second.

Every object gc would quarantine is checked against the workflows deleted:
exactly their objects, and nothing of a live workflow.

    .venv/bin/python -m benchmarks.gc_scale [--workflows 10000] [--store local|s3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client

from casstore import CasStorePlugin, open_backend
from casstore._format.manifest import LifecyclePolicy
from casstore._freshness import ensure_policy
from casstore.ops._gc_mark import mark_namespace

_TICKS = os.sysconf("SC_CLK_TCK")
_POLICY = LifecyclePolicy(refresh_after=timedelta(seconds=1), claim_delay=timedelta(seconds=1))
_GRACE_S = 3  # the shortest grace the policy allows: refresh_after + 2 x claim_delay


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def peak_rss(pid: int) -> int:
    """Peak resident set (VmHWM) of process ``pid``, in bytes (0 if it has none).

    Not ``ru_maxrss``: Linux carries that over ``execve`` from the parent that
    forked the process, so a small child would report its parent's size.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _tree_cpu_s(pid: int) -> float:
    """CPU of a process and its direct children (the CLI wrapper starts the server)."""
    total = _cpu_s(pid)
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(OSError):
                total += _cpu_s(int(child))
    return total


async def build(
    client: Client, store: str, workflows: int, payloads: int, deleted: int
) -> tuple[set[str], set[str]]:
    """Start and terminate ``workflows`` workflows; delete ``deleted``. Return (kept, gone) ids."""
    async with CasStorePlugin(store, payload_size_threshold=0) as plugin:
        plugged = await Client.connect(client.service_client.config.target_host, plugins=[plugin])
        limit = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with limit:
                args = [
                    {"order": i, "line": j, "sku": f"sku-{i}-{j}", "qty": j}
                    for j in range(payloads)
                ]
                handle = await plugged.start_workflow(
                    "Order", args=args, id=f"order-{i}", task_queue="gc-scale-none"
                )
                await handle.terminate(reason="closed for the benchmark")

        await asyncio.gather(*(one(i) for i in range(workflows)))
    _say(f"started and terminated {workflows:,} workflows")
    gone = {f"order-{i}" for i in range(0, workflows, max(1, workflows // max(deleted, 1)))}
    gone = set(sorted(gone)[:deleted])
    for workflow_id in gone:
        await client.workflow_service.delete_workflow_execution(
            DeleteWorkflowExecutionRequest(
                namespace=client.namespace,
                workflow_execution=WorkflowExecution(workflow_id=workflow_id),
            )
        )
    kept = {f"order-{i}" for i in range(workflows)} - gone
    _say(f"deleted {len(gone):,}; waiting for visibility")
    # Deletion is asynchronous: wait until visibility lists only what is kept.
    for _ in range(600):
        count = (await client.count_workflows()).count
        if count == len(kept):
            break
        await asyncio.sleep(0.5)
    else:
        raise RuntimeError(f"visibility still lists {count:,} workflows, expected {len(kept):,}")
    return kept, gone


def run_command(argv: list[str]) -> dict[str, Any]:
    """Run a casstore command in its own process: wall, CPU, peak RSS, its JSON."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "casstore", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    peak, cpu = 0, 0.0
    while proc.poll() is None:
        with contextlib.suppress(OSError):
            peak = max(peak, peak_rss(proc.pid))
            cpu = _cpu_s(proc.pid)
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"casstore {' '.join(argv)} failed ({proc.returncode}): {err.decode()}")
    return {
        "wall_s": time.monotonic() - started,
        "cpu_s": cpu,
        "peak_rss_bytes": peak,
        "json": json.loads(out) if out.strip().startswith(b"{") else None,
    }


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    from testrig import RcloneS3Server

    with RcloneS3Server() as server:
        import boto3  # type: ignore[import-untyped]

        boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
            region_name=server.region,
        ).create_bucket(Bucket="gc-scale")
        os.environ["AWS_ACCESS_KEY_ID"] = server.access_key
        os.environ["AWS_SECRET_ACCESS_KEY"] = server.secret_key
        yield f"s3://gc-scale/store?endpoint_url={server.endpoint_url}&region={server.region}"


async def measure(
    args: argparse.Namespace, address: str, server_pid: int, store: str
) -> dict[str, Any]:
    client = await Client.connect(address)
    async with open_backend(store) as backend:
        await ensure_policy(backend, _POLICY)
    started = time.monotonic()
    kept, gone = await build(client, store, args.workflows, args.payloads, args.deleted)
    build_s = time.monotonic() - started
    await asyncio.sleep(_GRACE_S + 1)  # every object older than the grace: judged by the mark

    cpu0, server0, wall0 = time.process_time(), _tree_cpu_s(server_pid), time.monotonic()
    marked = await mark_namespace(client, concurrency=args.concurrency)
    mark_s = time.monotonic() - wall0
    mark = {
        "executions": marked.executions,
        "references": marked.references,
        "objects": len(marked.keys),
        "wall_s": mark_s,
        "histories_per_s": marked.executions / mark_s,
        "client_cpu_s": time.process_time() - cpu0,
        "server_cpu_s": _tree_cpu_s(server_pid) - server0,
    }
    common = ["--namespace", "default", "--address", address, "--json"]
    gc = run_command(
        ["gc", store, *common, "--grace", f"{_GRACE_S}s", "--concurrency", str(args.concurrency)]
    )
    # Every object gc would move belongs to a deleted workflow, and all of theirs are found.
    plan = gc["json"]
    moved = {item["key"].split("/")[2] for item in plan["to_trash"]}
    assert moved == gone, (sorted(moved - gone)[:5], sorted(gone - moved)[:5])
    assert len(plan["to_trash"]) == len(gone) * args.payloads, (
        len(plan["to_trash"]),
        plan["kept"],
        plan["marked"],
    )
    assert plan["marked"]["objects"] == len(kept) * args.payloads
    gc["json"] = {k: plan[k] for k in ("marked", "scanned", "kept")}
    stats = run_command(["stats", store, "--json"])
    verify = run_command(["verify", store, "--json"])
    objects = args.workflows * args.payloads
    for result in (stats, verify):
        result["objects_per_s"] = objects / result["wall_s"]
    return {
        "store": store.split("?")[0],
        "workflows": args.workflows,
        "payloads_per_workflow": args.payloads,
        "deleted": len(gone),
        "objects": objects,
        "build_s": build_s,
        "mark": mark,
        "gc": gc,
        "stats": {k: v for k, v in stats.items() if k != "json"},
        "verify": {k: v for k, v in verify.items() if k != "json"} | {"json": verify["json"]},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gc_scale", description=__doc__)
    parser.add_argument("--workflows", type=int, default=10_000)
    parser.add_argument("--payloads", type=int, default=20)
    parser.add_argument("--deleted", type=int, help="workflows deleted (default 10%%)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--store", choices=("local", "s3"), default="local")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.deleted is None:
        args.deleted = args.workflows // 10
    from testrig import TemporalDevServer

    with TemporalDevServer() as temporal, tempfile.TemporaryDirectory() as scratch:
        pid = temporal.pid
        assert pid is not None
        with contextlib.ExitStack() as stack:
            if args.store == "s3":
                store = stack.enter_context(s3_server())
            else:
                store = f"file://{Path(scratch) / 'store'}?fsync=false"
            result = asyncio.run(measure(args, temporal.address, pid, store))
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    mark, stats, verify = result["mark"], result["stats"], result["verify"]
    print(
        f"{result['workflows']:,} workflows x {result['payloads_per_workflow']} payloads "
        f"({result['deleted']:,} deleted) on {result['store']}; "
        f"built in {result['build_s']:.1f} s\n"
        f"mark: {mark['executions']:,} histories in {mark['wall_s']:.2f} s = "
        f"{mark['histories_per_s']:,.0f}/s; client CPU {mark['client_cpu_s']:.2f} s, "
        f"server CPU {mark['server_cpu_s']:.2f} s\n"
        f"gc (dry run): {result['gc']['wall_s']:.2f} s, CPU {result['gc']['cpu_s']:.2f} s, "
        f"peak RSS {result['gc']['peak_rss_bytes'] / 2**20:.1f} MiB\n"
        f"stats: {stats['wall_s']:.2f} s ({stats['objects_per_s']:,.0f} objects/s); "
        f"verify: {verify['wall_s']:.2f} s ({verify['objects_per_s']:,.0f} objects/s)"
    )


if __name__ == "__main__":
    main()
