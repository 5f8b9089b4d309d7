"""kill -9 during local writes: every object valid, every handed-out claim readable.

A writer process stores random payloads through the driver and sends each
claim once ``store`` has returned it; the test kills it with SIGKILL at
random moments, many times over, then checks the store as a restarted
worker would find it.
"""

import asyncio
import contextlib
import multiprocessing
import os
import random
import signal
import time
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from casstore import CasStorageDriver
from casstore.backends import LocalBackend
from casstore.ops import verify_store

KILLS = 12


async def _write_forever(root: str, seed: int, out: Connection) -> None:
    rng = random.Random(seed)
    driver = CasStorageDriver(LocalBackend(root), offload_threshold=1 << 30)
    context = StorageDriverStoreContext(
        target=StorageDriverWorkflowInfo(namespace="default", id="crash", run_id=None, type="W")
    )
    out.send("ready")
    while True:
        size = rng.choice([100, 5_000, 300_000, 2_000_000])
        data = rng.randbytes(size // 2) * 2
        claims = await driver.store(context, [Payload(data=data)])
        # Handed out: from here on the claim may be in some workflow's history.
        out.send(dict(claims[0].claim_data))


def _writer(root: str, seed: int, out: Connection) -> None:
    asyncio.run(_write_forever(root, seed, out))


def _run_and_kill(root: Path, seed: int, claims: list[dict[str, str]]) -> None:
    # Forked, not spawned: the writer starts in milliseconds with casstore loaded.
    receiver, sender = multiprocessing.get_context("fork").Pipe(duplex=False)
    writer = multiprocessing.get_context("fork").Process(
        target=_writer, args=(str(root), seed, sender), daemon=True
    )
    writer.start()
    sender.close()
    assert receiver.recv() == "ready"
    time.sleep(random.Random(seed).uniform(0.05, 0.5))
    assert writer.pid is not None
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    with contextlib.suppress(EOFError):
        while True:
            claims.append(receiver.recv())


def test_kill_9_during_writes_loses_nothing_and_leaves_no_garbage(tmp_path: Path) -> None:
    claims: list[dict[str, str]] = []
    for seed in range(KILLS):
        _run_and_kill(tmp_path, seed, claims)
    assert len(claims) >= KILLS  # the writers got some work done between kills

    asyncio.run(_check_store(tmp_path, claims))
    # Temporary files of killed writers are kept while they may be a live
    # writer's, and reclaimed once stale.
    left = len(list((tmp_path / ".tmp").iterdir()))
    LocalBackend(tmp_path)
    assert len(list((tmp_path / ".tmp").iterdir())) == left
    LocalBackend(tmp_path, stale_temp_age=timedelta(0))
    print(f"{len(claims)} claims, {left} temp files left by {KILLS} kills")
    assert list((tmp_path / ".tmp").iterdir()) == []
    assert [p for p in tmp_path.rglob("*") if p.name.startswith(".") and p.name != ".tmp"] == []


async def _check_store(root: Path, claims: list[dict[str, str]]) -> None:
    backend = LocalBackend(root)
    # Every object in the store is whole and hashes to its key (a chunked one
    # with every chunk it reads from earlier objects), as verify checks it.
    report = await verify_store(backend)
    assert report.listed
    assert report.ok, report.bad
    assert report.good == report.listed
    # Every claim a writer handed out reads back, verified.
    driver = CasStorageDriver(backend)
    payloads = await driver.retrieve(
        StorageDriverRetrieveContext(), [StorageDriverClaim(claim_data=c) for c in claims]
    )
    assert len(payloads) == len(claims)
