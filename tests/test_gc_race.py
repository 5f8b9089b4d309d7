"""gc's sweep against real stores, and writers racing it (no Temporal: the mark is given).

Each test runs on the memory and local backends and on S3 (moto; rclone too
for the dedup race, since writers there check before writing).
Ages are judged up to a chosen ``judged_at``, so "a grace later" costs no
sleeping. The race tests hand out a claim between gc's planning and acting --
from a backend dedup hit and from the in-memory known-object cache -- and check
that it reads back after the sweep and after the next ones, with the claim in
the next mark (it landed in history) and without it (it has not landed yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from casstore import CasStorageDriver
from casstore._format.manifest import LifecyclePolicy
from casstore._format.trash import trash_key
from casstore._freshness import ensure_policy, read_policy
from casstore.backends import Backend, LocalBackend, MemoryBackend
from casstore.backends._wrappers import LatencyBackend
from casstore.errors import ObjectNotFoundError
from casstore.ops._gc_refs import referenced_objects
from casstore.ops._gc_sweep import LockHeldError, Plan, apply_plan, gc_lock, plan_sweep
from tests.support.agents import agent_turns
from tests.support.gc import NS, context, key_of, writer_for
from tests.support.s3 import S3Target, s3_place

POLICY = LifecyclePolicy(refresh_after=timedelta(seconds=0.2), claim_delay=timedelta(seconds=1))
GRACE = timedelta(seconds=5)
LATER = 1_000.0  # seconds: judging "a grace later" without waiting for it


@pytest.fixture
def policy() -> LifecyclePolicy:
    """The store's lifecycle policy (a test may parametrize its own)."""
    return POLICY


# S3 needs a server: that parameter alone is an integration test (tests/conftest.py).
@pytest.fixture(params=["memory", "local", pytest.param("moto", marks=pytest.mark.integration)])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, policy: LifecyclePolicy
) -> AsyncIterator[Backend]:
    async with contextlib.AsyncExitStack() as stack:
        store: Backend
        if request.param == "memory":
            store = MemoryBackend()
        elif request.param == "local":
            store = LocalBackend(tmp_path / "store", fsync=False)
        else:
            target: S3Target = request.getfixturevalue(f"{request.param}_s3")
            store = (await stack.enter_async_context(s3_place(target))).backend()
        async with store:
            await ensure_policy(store, policy)
            yield store


async def store(driver: CasStorageDriver, workflow_id: str, data: bytes, **kw: str) -> str:
    """Store one payload; return its object key."""
    [claim] = await driver.store(context(workflow_id, **kw), [Payload(data=data)])
    return key_of(claim)


async def read(backend: Backend, workflow_id: str, data: bytes) -> bytes:
    """Read a payload back through a fresh driver (no caches), as another worker would."""
    driver = writer_for(backend)
    [claim] = await CasStorageDriver(MemoryBackend()).store(
        context(workflow_id), [Payload(data=data)]
    )
    [payload] = await driver.retrieve(StorageDriverRetrieveContext(), [claim])
    return payload.data


async def keys(backend: Backend, prefix: str = "") -> set[str]:
    return {key async for key, _ in backend.scan(prefix)}


async def sweep(backend: Backend, live: set[str], *, at: float) -> Plan:
    plan = await plan_sweep(backend, NS, live=live, judged_at=at, min_age=GRACE)
    await apply_plan(backend, plan, POLICY)
    return plan


async def test_sweep_moves_unreferenced_old_objects_then_deletes_them_a_grace_later(
    backend: Backend,
) -> None:
    driver = writer_for(backend)
    kept = await store(driver, "running", b"still referenced")
    gone = await store(driver, "deleted", b"nobody needs this")
    other_ns = await store(driver, "x", b"another namespace", namespace="other")
    no_target = (
        await driver.store(StorageDriverStoreContext(target=None), [Payload(data=b"no target")])
    )[0]
    foreign = "v1/default/notes.txt"  # under the prefix, but not an object key
    await backend.put(foreign, b"not ours")
    now = time.time()

    # Young objects are never candidates, referenced or not.
    plan = await sweep(backend, {kept}, at=now)
    assert plan.quarantine == []
    assert plan.kept_young.objects == 1

    plan = await sweep(backend, {kept}, at=now + LATER)
    assert [k for k, _ in plan.quarantine] == [gone]
    assert plan.kept_referenced.objects == 1
    assert plan.kept_unjudged.objects == 1
    with pytest.raises(ObjectNotFoundError):
        await backend.get(gone)
    assert await read(backend, "deleted", b"nobody needs this") == b"nobody needs this"

    # The trash copy is as young as the move: a run soon after keeps it.
    plan = await sweep(backend, {kept}, at=time.time())
    assert plan.purge == []
    assert plan.waiting.objects == 1

    plan = await sweep(backend, {kept}, at=time.time() + LATER)
    assert [k for k, _ in plan.purge] == [trash_key(gone)]
    everything = await keys(backend)
    assert trash_key(gone) not in everything
    assert gone not in everything
    assert {kept, other_ns, key_of(no_target), foreign} <= everything
    assert await read_policy(backend) == POLICY
    with pytest.raises(ObjectNotFoundError):
        await read(backend, "deleted", b"nobody needs this")


async def test_dry_run_plans_change_nothing(backend: Backend) -> None:
    gone = await store(writer_for(backend), "deleted", b"dry")
    before = await keys(backend)
    plan = await plan_sweep(backend, NS, live=set(), judged_at=time.time() + LATER, min_age=GRACE)
    assert [k for k, _ in plan.quarantine] == [gone]
    assert await keys(backend) == before


# rclone too: it cannot report a lost create race, so writers check first there.
@pytest.mark.parametrize(
    "backend",
    [
        "local",
        pytest.param("moto", marks=pytest.mark.integration),
        pytest.param("rclone", marks=pytest.mark.integration),
    ],
    indirect=True,
)
async def test_claim_handed_out_from_a_dedup_hit_during_the_sweep_stays_readable(
    backend: Backend,
) -> None:
    data = b"old input, stored again while gc decides"
    key = await store(writer_for(backend), "wf", data)
    await asyncio.sleep(0.3)  # older than refresh_after: the next writer refreshes it
    plan = await plan_sweep(backend, NS, live=set(), judged_at=time.time() + LATER, min_age=GRACE)
    assert [k for k, _ in plan.quarantine] == [key]

    # A worker with empty caches stores the same payload: the write finds the
    # object, refreshes it and hands out a claim -- after gc planned to move it.
    writer = writer_for(backend)
    assert await store(writer, "wf", data) == key
    assert writer.stats.objects_refreshed == 1
    await apply_plan(backend, plan, POLICY)
    assert await read(backend, "wf", data) == data  # from the trash

    # The next run, before the claim landed in history: the copy is younger
    # than the grace, so it waits.
    await sweep(backend, set(), at=time.time())
    assert await read(backend, "wf", data) == data
    # The claim landed: the next mark has it, and the object is restored.
    plan = await sweep(backend, {key}, at=time.time() + LATER)
    assert plan.restore == [key]
    assert plan.purge == []
    assert await backend.get(key)
    assert trash_key(key) not in await keys(backend)
    assert await read(backend, "wf", data) == data


@pytest.mark.parametrize("policy", [LifecyclePolicy(refresh_after=timedelta(minutes=10))])
async def test_claim_vouched_by_the_known_object_cache_during_the_sweep_stays_readable(
    backend: Backend,
) -> None:
    data = b"cached by a long-running worker"
    worker = writer_for(backend, refresh_after=timedelta(hours=1))
    key = await store(worker, "wf", data)
    plan = await plan_sweep(backend, NS, live=set(), judged_at=time.time() + LATER, min_age=GRACE)
    await apply_plan(backend, plan, POLICY)
    assert key not in await keys(backend)

    # The worker's cache still vouches (refresh_after has not passed): no
    # request, so the worker cannot know the object moved.
    requests = sum(worker.stats.backend_requests.values())
    assert await store(worker, "wf", data) == key
    assert sum(worker.stats.backend_requests.values()) == requests
    assert await read(backend, "wf", data) == data
    plan = await sweep(backend, {key}, at=time.time() + LATER)
    assert plan.restore == [key]
    assert await read(backend, "wf", data) == data


async def test_a_writer_after_the_move_writes_anew_and_the_copy_is_dropped(
    backend: Backend,
) -> None:
    data = b"needed again after gc moved it"
    key = await store(writer_for(backend), "wf", data)
    await sweep(backend, set(), at=time.time() + LATER)
    assert key not in await keys(backend)

    writer = writer_for(backend)
    assert await store(writer, "wf", data) == key
    assert writer.stats.objects_written == 1
    plan = await sweep(backend, {key}, at=time.time() + LATER)
    assert [k for k, _ in plan.redundant] == [trash_key(key)]
    assert await keys(backend, "v1/") == {key}
    assert trash_key(key) not in await keys(backend)


async def test_without_the_claim_in_any_mark_the_copy_goes_a_grace_later(
    backend: Backend,
) -> None:
    # The control for the tests above: the same sequence with the claim never
    # landing in a history ends with the object gone, so they can fail.
    data = b"handed out, but its workflow was deleted"
    key = await store(writer_for(backend), "wf", data)
    await asyncio.sleep(0.3)
    plan = await plan_sweep(backend, NS, live=set(), judged_at=time.time() + LATER, min_age=GRACE)
    await store(writer_for(backend), "wf", data)
    await apply_plan(backend, plan, POLICY)
    await sweep(backend, set(), at=time.time() + LATER)
    assert key not in await keys(backend)
    assert trash_key(key) not in await keys(backend)
    with pytest.raises(ObjectNotFoundError):
        await read(backend, "wf", data)


async def test_a_slow_batch_of_moves_gets_its_trash_copies_restamped() -> None:
    # G3 (docs/operations.md): a copy's date may not precede its original's
    # removal by more than claim_delay, or the proof's arithmetic fails.
    policy = LifecyclePolicy(
        refresh_after=timedelta(seconds=1), claim_delay=timedelta(seconds=0.05)
    )
    slow = LatencyBackend(MemoryBackend(), latency=0.1)
    await ensure_policy(slow, policy)
    key = await store(writer_for(slow), "wf", b"moved slowly")
    plan = await plan_sweep(slow, NS, live=set(), judged_at=time.time() + LATER, min_age=GRACE)
    started = time.time()
    applied = await apply_plan(slow, plan, policy)
    assert applied.restamped == 1
    copy = await slow.stat(trash_key(key))
    assert copy is not None
    assert copy.modified.timestamp() >= started + 0.1


async def test_one_gc_at_a_time_per_namespace(backend: Backend) -> None:
    async with gc_lock(backend, NS) as key:
        with pytest.raises(LockHeldError, match=r"another gc holds the lock .*'default'.*pid"):
            async with gc_lock(backend, NS):
                pass
        async with gc_lock(backend, "other"):  # other namespaces are not blocked
            pass
    async with gc_lock(backend, NS):  # released at the end of the run
        pass
    await backend.put(key, b"left behind by a crashed run")
    with pytest.raises(LockHeldError, match=r"left behind by a crashed run; .*--break-lock"):
        async with gc_lock(backend, NS):
            pass
    async with gc_lock(backend, NS, break_lock=True):
        pass
    assert not [k async for k, _ in backend.scan("_casstore/gc/")]


# Chunked objects: a manifest vouches for the objects it reads chunks from.


def conversation(turns: int) -> list[bytes]:
    """Agent-shaped payload data: each turn the previous one plus a few KB."""
    return [json.dumps(value).encode() for value in agent_turns(turns)]


async def marked_with_chunks(backend: Backend, marked: set[str]) -> set[str]:
    """What gc's mark keeps: the claims' keys and what their manifests reference."""
    return marked | await referenced_objects(backend, marked)


async def read_turn(backend: Backend, data: bytes) -> bytes:
    return await read(backend, "agent", data)


@pytest.mark.parametrize("policy", [LifecyclePolicy(refresh_after=timedelta(minutes=10))])
async def test_objects_a_new_chunked_object_references_during_the_sweep_stay_readable(
    backend: Backend,
) -> None:
    turns = conversation(6)
    worker = writer_for(backend, refresh_after=timedelta(hours=1))
    earlier = [await store(worker, "agent", data) for data in turns[:5]]
    plan = await plan_sweep(backend, NS, live=set(), judged_at=time.time() + LATER, min_age=GRACE)
    assert sorted(k for k, _ in plan.quarantine) == sorted(earlier)
    await apply_plan(backend, plan, POLICY)

    # The worker's caches still vouch for the earlier turns: the new turn's
    # manifest references them, moved to the trash under its feet.
    newest = await store(worker, "agent", turns[5])
    assert set(await referenced_objects(backend, {newest})) & set(earlier)
    assert await read_turn(backend, turns[5]) == turns[5]

    # Before its claim lands, everything is young (or waits in the trash).
    await sweep(backend, set(), at=time.time())
    assert await read_turn(backend, turns[5]) == turns[5]
    # The claim landed: the mark keeps what its manifest references, restored.
    live = await marked_with_chunks(backend, {newest})
    plan = await sweep(backend, live, at=time.time() + LATER)
    assert set(plan.restore) == live - {newest}
    await sweep(backend, live, at=time.time() + 2 * LATER)
    assert await read_turn(backend, turns[5]) == turns[5]


async def test_without_the_chunked_claim_in_any_mark_its_references_go_too(
    backend: Backend,
) -> None:
    # The control: the references are kept only because the mark reads manifests.
    turns = conversation(6)
    worker = writer_for(backend)
    earlier = [await store(worker, "agent", data) for data in turns[:5]]
    newest = await store(worker, "agent", turns[5])
    referenced = await referenced_objects(backend, {newest})
    assert referenced & set(earlier)
    await sweep(backend, {newest}, at=time.time() + LATER)
    await sweep(backend, {newest}, at=time.time() + 2 * LATER)
    with pytest.raises(ObjectNotFoundError, match="referenced="):
        await read_turn(backend, turns[5])
