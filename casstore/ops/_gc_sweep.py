"""gc's sweep: judge one namespace's objects against the mark, then act in two phases.

Phase one moves an unreferenced object that is older than the grace to the
trash (``_casstore/trash/`` + its key); readers fall back to the trash, writers
that need it again write it anew. Phase two, on a later run, deletes a trash
copy that has stayed unreferenced for the grace too, restores one that a
history references again, and drops one made redundant by a rewritten
original. Why each step is safe: docs/operations.md ("The safety rule").
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Container, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from casstore._format.keys import is_object_key, namespace_prefix
from casstore._format.manifest import LifecyclePolicy
from casstore._format.trash import TRASH_PREFIX, lock_key, trash_key
from casstore.backends._base import Backend, describe_suffix
from casstore.errors import CasstoreError, ObjectNotFoundError
from casstore.ops._gc_journal import Leftovers, journaled, read_leftovers, restamp_leftovers

_T = TypeVar("_T")

BATCH_SIZE = 1000
"""Keys per batched request (S3 DeleteObjects takes at most 1,000)."""


@dataclass
class Tally:
    """A count of objects and their stored bytes."""

    objects: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        """Count one object of ``size`` bytes."""
        self.objects += 1
        self.bytes += size


@dataclass
class Plan:
    """What a sweep would do, and why it keeps the rest."""

    namespace: str
    judged_at: float
    """Ages are measured up to this wall-clock time (the mark's start)."""
    min_age: timedelta
    quarantine: list[tuple[str, int]] = field(default_factory=list)
    """Unreferenced objects older than ``min_age``: to move to the trash."""
    purge: list[tuple[str, int]] = field(default_factory=list)
    """Trash keys unreferenced and in the trash longer than ``min_age``: to delete."""
    redundant: list[tuple[str, int]] = field(default_factory=list)
    """Trash keys whose original exists again and stays: to delete."""
    restore: list[str] = field(default_factory=list)
    """Object keys referenced again whose only copy is in the trash: to move back."""
    scanned: Tally = field(default_factory=Tally)
    trash: Tally = field(default_factory=Tally)
    kept_referenced: Tally = field(default_factory=Tally)
    kept_young: Tally = field(default_factory=Tally)
    kept_unjudged: Tally = field(default_factory=Tally)
    """Keys under the namespace prefix that are not casstore object keys."""
    waiting: Tally = field(default_factory=Tally)
    """Trash copies not yet old enough to delete (or left by a crashed run's batch)."""
    leftovers: Leftovers = field(default_factory=lambda: Leftovers([], set()))
    """Move journals a crashed run left, and the trash copies they name: never
    deleted by this run, re-stamped before it acts."""

    @property
    def deletes(self) -> Tally:
        """What phase two deletes for good (purged plus redundant trash copies)."""
        tally = Tally()
        for _, size in (*self.purge, *self.redundant):
            tally.add(size)
        return tally

    @property
    def moves(self) -> Tally:
        """What phase one moves to the trash."""
        tally = Tally()
        for _, size in self.quarantine:
            tally.add(size)
        return tally


Progress = Callable[[int], None]


async def plan_sweep(
    backend: Backend,
    namespace: str,
    *,
    live: Container[str] | None,
    judged_at: float,
    min_age: timedelta,
    progress: Progress | None = None,
) -> Plan:
    """Judge every object of ``namespace`` (and its trash) without changing anything.

    Args:
        backend: The store.
        namespace: Only keys under this namespace's prefix are judged.
        live: Keys the mark found referenced; ``None`` in age-only mode.
        judged_at: Wall-clock time ages are measured up to.
        min_age: Objects (and trash copies) younger than this are kept.
        progress: Told the running count of keys scanned.
    """
    plan = Plan(namespace=namespace, judged_at=judged_at, min_age=min_age)
    plan.leftovers = await read_leftovers(backend, namespace)
    unstamped = plan.leftovers.trash_keys  # their dates may precede their removal
    limit = judged_at - min_age.total_seconds()
    referenced: Container[str] = live if live is not None else frozenset()
    staying: set[str] = set()  # originals present and not moved by this run
    moving: set[str] = set()
    seen = 0
    async for key, stat in backend.scan_stat(namespace_prefix(namespace)):
        seen += 1
        if progress is not None and seen % 256 == 0:
            progress(seen)
        plan.scanned.add(stat.size)
        if not is_object_key(key):
            plan.kept_unjudged.add(stat.size)
        elif key in referenced:
            plan.kept_referenced.add(stat.size)
            staying.add(key)
        elif stat.modified.timestamp() > limit:
            plan.kept_young.add(stat.size)
            staying.add(key)
        else:
            plan.quarantine.append((key, stat.size))
            moving.add(key)
    async for tkey, stat in backend.scan_stat(TRASH_PREFIX + namespace_prefix(namespace)):
        seen += 1
        if progress is not None and seen % 256 == 0:
            progress(seen)
        plan.trash.add(stat.size)
        key = tkey[len(TRASH_PREFIX) :]
        if not is_object_key(key):
            plan.kept_unjudged.add(stat.size)
        elif key in moving:
            # This run replaces the copy (with a fresh quarantine time); deleting
            # it as well could delete the new copy.
            plan.waiting.add(stat.size)
        elif key in staying:
            plan.redundant.append((tkey, stat.size))
        elif key in referenced:
            plan.restore.append(key)
        elif tkey in unstamped:
            plan.waiting.add(stat.size)  # G3 unknown for this copy: not deleted this run
        elif stat.modified.timestamp() <= limit:
            plan.purge.append((tkey, stat.size))
        else:
            plan.waiting.add(stat.size)
    if progress is not None:
        progress(seen)
    return plan


@dataclass
class Applied:
    """What a sweep did."""

    deleted: Tally = field(default_factory=Tally)
    moved: Tally = field(default_factory=Tally)
    restored: int = 0
    restamped: int = 0
    """Trash copies re-stamped because their batch took longer than claim_delay,
    or because a crashed run's journal names them."""


async def apply_plan(
    backend: Backend,
    plan: Plan,
    policy: LifecyclePolicy,
    *,
    progress: Progress | None = None,
) -> Applied:
    """Carry out a plan: re-stamp what a crash left, delete, restore, then move to the trash.

    Moves run in batches, each journaled from before its first change until
    its copies are dated right; a batch that took longer than the store's
    ``claim_delay`` gets its trash copies re-stamped, so a copy's age never
    overstates how long its original has been gone (the proof relies on it,
    crash or not: see casstore/ops/_gc_journal.py).
    """
    applied = Applied()
    applied.restamped += await restamp_leftovers(backend, plan.leftovers)
    done = 0
    deletes = [*plan.purge, *plan.redundant]
    for batch in _batches(deletes):
        await backend.delete_many([key for key, _ in batch])
        for _, size in batch:
            applied.deleted.add(size)
        done += len(batch)
        if progress is not None:
            progress(done)
    for key in plan.restore:
        if await backend.move(trash_key(key), key):
            applied.restored += 1
        done += 1
        if progress is not None:
            progress(done)
    for batch in _batches(plan.quarantine):
        pairs = [(key, trash_key(key)) for key, _ in batch]
        async with journaled(backend, plan.namespace, [dst for _, dst in pairs]):
            started = time.monotonic()
            results = await backend.move_many(pairs)
            if time.monotonic() - started > policy.claim_delay.total_seconds():
                for (_, dst), moved in zip(pairs, results, strict=True):
                    if moved:
                        await backend.touch(dst)
                        applied.restamped += 1
        for (_, size), moved in zip(batch, results, strict=True):
            if moved:
                applied.moved.add(size)
        done += len(batch)
        if progress is not None:
            progress(done)
    return applied


def _batches(items: Sequence[_T]) -> list[Sequence[_T]]:
    return [items[i : i + BATCH_SIZE] for i in range(0, len(items), BATCH_SIZE)]


class LockHeldError(CasstoreError):
    """Another gc holds this namespace's lock (or left it behind)."""


@asynccontextmanager
async def gc_lock(
    backend: Backend, namespace: str, *, break_lock: bool = False
) -> AsyncIterator[str]:
    """Hold the namespace's gc lock while acting.

    Two gc runs at once are not covered by the safety rule (one could drop a
    trash copy the other just made).

    The lock is an object created with create-if-absent, so it excludes another
    gc on stores whose backend has ``conditional_writes``; on others it only
    records who runs. It is deleted when the run ends; a crashed run leaves it
    behind, and ``break_lock`` removes it (only when no gc is running).

    Raises:
        LockHeldError: Naming who holds it and since when.
    """
    key = lock_key(namespace)
    if break_lock:
        await backend.delete(key)
    holder = json.dumps(
        {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
    ).encode()
    if not await backend.put(key, holder):
        try:
            held = (await backend.get(key)).decode(errors="replace")
        except ObjectNotFoundError:
            held = "(released meanwhile)"
        raise LockHeldError(
            f"another gc holds the lock of namespace {namespace!r} [key={key}"
            f"{describe_suffix(backend)}]: {held}; if no gc is running (a crashed one left "
            "it), run again with --break-lock"
        )
    try:
        yield key
    finally:
        await backend.delete(key)
