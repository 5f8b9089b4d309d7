"""kill -9 at every step of gc's moves: no trash copy is left dated before its original left.

Rule G3 (docs/operations.md): a trash copy's date is never earlier than its
original's removal by more than ``claim_delay``, or a later run deletes it for
good too soon. A forked gc process applies a plan that moves a namespace's
objects to the trash and kills itself with SIGKILL right after its k-th step
(a backend change; on S3 also the batch's copies; on a local store every
rename and every time set), for k = 1, 2, ... until a run finishes. After each
crash, a rerun (as ``--break-lock`` would start it) plans and acts, and then
every object is still readable (at its key or in the trash) and every trash
copy is dated no earlier than its original's removal minus ``claim_delay``.

The removals are made to stand out: a local store's objects are dated a day
back (a rename keeps that date until gc sets the move's time), and on S3 a
batch takes longer than ``claim_delay`` between its copies and its
``DeleteObjects`` (S3 dates a copy when it is made, to the second).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import StorageDriverStoreContext, StorageDriverWorkflowInfo

from casstore import CasStorageDriver
from casstore._format.claims import parse_claim_data
from casstore._format.manifest import LifecyclePolicy
from casstore._format.trash import journal_prefix, trash_key
from casstore._freshness import ensure_policy
from casstore.backends import Backend, LocalBackend
from casstore.ops._gc_sweep import apply_plan, plan_sweep
from tests.support.s3 import S3Target, s3_place

POLICY = LifecyclePolicy(refresh_after=timedelta(seconds=0.5), claim_delay=timedelta(seconds=1))
RERUN_GRACE = timedelta(seconds=30)  # the rerun only recovers and moves; nothing is old enough
SLOW_BATCH = 2.5  # seconds between an S3 batch's copies and its DeleteObjects (> claim_delay + 1)
S3_DATE_RESOLUTION = 1.0  # LastModified is whole seconds
OBJECTS = 3
MAX_STEPS = 40
_MUTATIONS = ("put", "delete", "delete_many", "move", "move_many", "touch")


class Steps:
    """Counts a gc process's steps and kills it right after the k-th."""

    def __init__(self, kill_after: int, log: Connection) -> None:
        self._kill_after = kill_after
        self._log = log
        self._count = 0
        self._lock = threading.Lock()

    def removing(self, digests: list[str]) -> None:
        """Record, before it happens, that these originals are about to be removed."""
        self._log.send(("removing", time.time(), digests))

    def done(self, what: str) -> None:
        with self._lock:
            self._count += 1
            self._log.send(("step", self._count, what))
            if self._count == self._kill_after:
                os.kill(os.getpid(), signal.SIGKILL)


def _hook_backend(backend: Backend, steps: Steps, *, slow_batch: float) -> None:
    """Make every change through ``backend`` a step (its own internal calls too)."""
    in_move = False

    def wrap(name: str) -> Callable[..., Any]:
        original = getattr(backend, name)

        async def step(*args: Any, **kwargs: Any) -> Any:
            nonlocal in_move
            if name == "move_many":
                in_move = True
            if name == "delete_many" and in_move:  # S3: the batch's DeleteObjects
                await asyncio.sleep(slow_batch)
                steps.removing([key.rsplit("/", 1)[1] for key in args[0]])
            try:
                result = await original(*args, **kwargs)
            finally:
                if name == "move_many":
                    in_move = False
            steps.done(name)
            return result

        return step

    for name in _MUTATIONS:
        setattr(backend, name, wrap(name))  # S3's move_many calls self.delete_many


def _hook_s3_copies(steps: Steps) -> None:
    from casstore.backends.s3 import _backend as s3_backend

    copy_objects = s3_backend.copy_objects  # type: ignore[attr-defined]

    async def copies(*args: Any, **kwargs: Any) -> Any:
        result = await copy_objects(*args, **kwargs)
        steps.done("copy_objects")
        return result

    s3_backend.copy_objects = copies  # type: ignore[attr-defined]


def _hook_local_files(steps: Steps) -> None:
    rename, utime = os.rename, os.utime

    def renaming(src: Any, dst: Any, **kwargs: Any) -> None:
        steps.removing([os.fsdecode(src)])  # the object's file name is its digest
        rename(src, dst, **kwargs)
        steps.done("rename")

    def dating(path: Any, *args: Any, **kwargs: Any) -> None:
        utime(path, *args, **kwargs)
        steps.done("utime")

    os.rename, os.utime = renaming, dating


def _gc_process(
    make: Callable[[], Backend], kind: str, namespace: str, kill_after: int, log: Connection
) -> None:
    steps = Steps(kill_after, log)

    async def run() -> None:
        async with make() as backend:
            plan = await plan_sweep(
                backend, namespace, live=set(), judged_at=time.time() + 1_000, min_age=RERUN_GRACE
            )
            assert len(plan.quarantine) == OBJECTS
            _hook_backend(backend, steps, slow_batch=SLOW_BATCH if kind == "s3" else 0)
            if kind == "s3":
                _hook_s3_copies(steps)
            else:
                _hook_local_files(steps)
            await apply_plan(backend, plan, POLICY)

    # A thread of its own: the forked test's event loop is not this process's.
    worker = threading.Thread(target=asyncio.run, args=(run(),))
    worker.start()
    worker.join()
    log.send(("finished", steps._count, ""))


def _crash_at(
    make: Callable[[], Backend], kind: str, namespace: str, kill_after: int
) -> tuple[bool, dict[str, float], list[str]]:
    """Run gc until its ``kill_after``-th step; return (killed, removal times, steps)."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_gc_process, args=(make, kind, namespace, kill_after, sender), daemon=True
    )
    child.start()
    sender.close()
    removed: dict[str, float] = {}
    taken: list[str] = []
    finished = False
    with contextlib.suppress(EOFError):
        while True:
            event, when, what = receiver.recv()
            if event == "removing":
                for digest in what:
                    removed.setdefault(digest, when)
            elif event == "step":
                taken.append(what)
            else:
                finished = True
    child.join(timeout=60)
    if not finished:
        assert child.exitcode == -signal.SIGKILL, (child.exitcode, taken)
    return not finished, removed, taken


async def _put_objects(backend: Backend, namespace: str, kind: str) -> dict[str, bytes]:
    driver = CasStorageDriver(backend)
    target = StorageDriverWorkflowInfo(namespace=namespace, id="wf", run_id=None, type=None)
    payloads = [Payload(data=f"object {i} of {namespace}".encode()) for i in range(OBJECTS)]
    claims = await driver.store(StorageDriverStoreContext(target=target), payloads)
    keys = {parse_claim_data(c.claim_data, max_size=1 << 20).key: b"" for c in claims}
    if kind == "local":
        assert isinstance(backend, LocalBackend)
        day_ago = time.time() - 86_400
        for key in keys:
            os.utime(backend.path_for(key), (day_ago, day_ago))
    return keys


async def _check_after_rerun(
    backend: Backend,
    namespace: str,
    keys: dict[str, bytes],
    removed: dict[str, float],
    slack: float,
) -> None:
    plan = await plan_sweep(
        backend, namespace, live=set(), judged_at=time.time(), min_age=RERUN_GRACE
    )
    await apply_plan(backend, plan, POLICY)
    limit = POLICY.claim_delay.total_seconds() + slack
    for key in keys:
        here, copy = await backend.stat(key), await backend.stat(trash_key(key))
        assert here is not None or copy is not None, f"{key} lost"
        digest = key.rsplit("/", 1)[1]
        if copy is not None and digest in removed:
            early = removed[digest] - copy.modified.timestamp()
            assert early <= limit, f"trash copy of {key} dated {early:.2f} s before its removal"
    assert not [k async for k, _ in backend.scan(journal_prefix(namespace))]


@pytest.fixture(params=["local", pytest.param("moto", marks=pytest.mark.integration)])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, Callable[[], Backend]]]:
    if request.param == "local":
        root = tmp_path / "store"

        def local() -> Backend:
            return LocalBackend(root, fsync=False)

        yield "local", local
        return
    target: S3Target = request.getfixturevalue("moto_s3")
    async with s3_place(target) as place:
        yield "s3", place.backend


async def test_kill_9_at_every_step_of_the_moves_keeps_every_copy_dated_after_its_removal(
    store: tuple[str, Callable[[], Backend]],
) -> None:
    kind, make = store
    slack = S3_DATE_RESOLUTION if kind == "s3" else 0.05
    async with make() as backend:
        await ensure_policy(backend, POLICY)
    for kill_after in range(1, MAX_STEPS):
        namespace = f"crash-{kill_after}"
        async with make() as backend:
            keys = await _put_objects(backend, namespace, kind)
        killed, removed, taken = await asyncio.to_thread(
            _crash_at, make, kind, namespace, kill_after
        )
        async with make() as backend:
            await _check_after_rerun(backend, namespace, keys, removed, slack)
        if not killed:
            assert kill_after > 3, taken  # the run has steps enough to crash between
            return
    pytest.fail(f"gc took more than {MAX_STEPS} steps")
