"""A worker in its own OS process, for the worker-restart test.

Run as ``python -m tests.support.e2e_worker --address HOST:PORT --task-queue Q --store URL``.
It prints ``worker running`` once polling and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from casstore.plugin import CasStorePlugin
from tests.support.workflows_e2e import WaitsForSignal, describe, echo


async def run(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with CasStorePlugin(args.store, payload_size_threshold=0) as plugin:
        client = await Client.connect(args.address, plugins=[plugin])
        async with Worker(
            client,
            task_queue=args.task_queue,
            workflows=[WaitsForSignal],
            activities=[describe, echo],
            # A killed worker's sticky queue holds the next task this long
            # before the server hands it to another worker.
            sticky_queue_schedule_to_start_timeout=timedelta(seconds=1),
        ):
            print("worker running", flush=True)
            await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--store", required=True)
    asyncio.run(run(parser.parse_args()))
    sys.exit(0)


if __name__ == "__main__":
    main()
