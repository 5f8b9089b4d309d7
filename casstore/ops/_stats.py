"""``casstore stats``: what a store holds, by namespace, workflow and codec."""

from __future__ import annotations

import argparse
import heapq
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from casstore._crypto import Ciphers
from casstore._format.keys import (
    HOUSEKEEPING_PREFIX,
    BadKeyError,
    ObjectName,
    is_casstore_key,
    parse_object_key,
)
from casstore._keyring import KeyRing
from casstore.backends._base import Backend
from casstore.backends._keys import is_valid_key
from casstore.ops._args import (
    add_concurrency_argument,
    add_json_argument,
    add_keyring_argument,
    add_store_argument,
    open_keyring,
    positive_int,
)
from casstore.ops._check import ObjectFacts, ObjectProblem, declared_facts
from casstore.ops._output import format_bytes, write_json
from casstore.ops._progress import Progress
from casstore.ops._reader import DEFAULT_CONCURRENCY, Outcome, read_each
from casstore.ops._run import EXIT_OK, EXIT_PROBLEMS, run_command
from casstore.ops._store import open_store

DEFAULT_TOP = 10
NO_TARGET = "(no target)"


@dataclass
class Tally:
    """A count of objects and their sizes."""

    objects: int = 0
    stored_bytes: int = 0
    logical_bytes: int = 0
    """Payload bytes (before compression); only with ``deep``."""

    def add(self, stored: int, logical: int = 0) -> None:
        """Count one object."""
        self.objects += 1
        self.stored_bytes += stored
        self.logical_bytes += logical

    def as_dict(self, *, deep: bool) -> dict[str, int]:
        """The tally as JSON-friendly values (logical bytes only when known)."""
        data = {"objects": self.objects, "stored_bytes": self.stored_bytes}
        if deep:
            data["logical_bytes"] = self.logical_bytes
        return data


@dataclass
class StoreStats:
    """What ``stats`` counted."""

    deep: bool
    total: Tally = field(default_factory=Tally)
    by_scope: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    """By scope kind: ``workflow``, ``activity``, ``namespace``, ``none``."""
    by_namespace: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_owner: dict[tuple[str, str, str], Tally] = field(default_factory=lambda: defaultdict(Tally))
    """By (namespace, ``workflow``/``activity``, id)."""
    codecs: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    """By codec; only with ``deep``."""
    encrypted: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    """Encrypted objects by key id; only with ``deep``."""
    chunk_dedup_bytes: int = 0
    """Payload bytes chunked objects read from earlier objects instead of holding
    them: what chunk dedup saved, before compression (``deep``)."""
    unknown_logical: Tally = field(default_factory=Tally)
    """Encrypted zstd objects whose payload size is sealed (no key given): their
    payload bytes are not in any ``logical_bytes``."""
    bad_keys: list[str] = field(default_factory=list)
    """Keys under ``v1/`` that do not follow the key layout."""
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    """(key, reason) for objects whose header could not be read (``deep``)."""
    vanished: int = 0
    """Objects listed, then gone when read (``deep``)."""
    housekeeping: Tally = field(default_factory=Tally)
    """Keys under ``_casstore/``: gc's lifecycle manifest and trash."""
    other_keys: Tally = field(default_factory=Tally)
    """Other keys outside ``v1/``: not casstore objects."""
    seconds: float = 0.0

    def top_owners(self, n: int) -> list[tuple[tuple[str, str, str], Tally]]:
        """The ``n`` workflows (and standalone activities) holding the most stored bytes."""
        return heapq.nlargest(
            n, self.by_owner.items(), key=lambda item: (item[1].stored_bytes, item[0])
        )

    def as_dict(self, *, top: int = DEFAULT_TOP) -> dict[str, Any]:
        """The counts as JSON-friendly values."""
        deep = self.deep

        def tallies(groups: dict[str, Tally]) -> dict[str, dict[str, int]]:
            return {name: t.as_dict(deep=deep) for name, t in sorted(groups.items())}

        data: dict[str, Any] = {
            "deep": deep,
            **self.total.as_dict(deep=deep),
            "by_scope": tallies(self.by_scope),
            "by_namespace": tallies(self.by_namespace),
            "top_workflows": [
                {"namespace": ns, "kind": kind, "id": owner, **t.as_dict(deep=deep)}
                for (ns, kind, owner), t in self.top_owners(top)
            ],
            "bad_keys": self.bad_keys,
            "housekeeping": self.housekeeping.as_dict(deep=False),
            "other_keys": self.other_keys.as_dict(deep=False),
            "seconds": round(self.seconds, 3),
        }
        if deep:
            data["codecs"] = tallies(self.codecs)
            data["encrypted"] = tallies(self.encrypted)
            data["unknown_logical"] = self.unknown_logical.as_dict(deep=False)
            data["chunk_dedup_bytes"] = self.chunk_dedup_bytes
            data["unreadable"] = [{"key": k, "reason": r} for k, r in self.unreadable]
            data["vanished"] = self.vanished
        return data


async def store_stats(
    backend: Backend,
    *,
    deep: bool = False,
    keyring: KeyRing | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress | None = None,
) -> StoreStats:
    """Count a store's objects and bytes by scope, namespace, workflow and (deep) codec.

    Without ``deep`` this is one listing of the store. With ``deep`` every
    object is read too (its header and zstd frame header give its codec and
    payload size); content is not hashed, that is ``verify``'s job. An
    encrypted zstd object's frame header is sealed: its payload size is read
    with ``keyring`` (which authenticates the object) or left unknown.

    Memory grows with the number of distinct workflows (about 200 bytes each),
    not with the number of objects.
    """
    stats = StoreStats(deep=deep)
    ciphers = None if keyring is None else Ciphers(keyring)
    started = time.monotonic()
    names: dict[str, ObjectName] = {}

    def count(name: ObjectName, stored: int, logical: int = 0) -> None:
        stats.total.add(stored, logical)
        stats.by_scope[name.scope].add(stored, logical)
        namespace = NO_TARGET if name.namespace is None else name.namespace
        stats.by_namespace[namespace].add(stored, logical)
        if name.workflow_id is not None:
            stats.by_owner[(namespace, "workflow", name.workflow_id)].add(stored, logical)
        elif name.activity_id is not None:
            stats.by_owner[(namespace, "activity", name.activity_id)].add(stored, logical)

    async def listing() -> AsyncIterator[tuple[str, int]]:
        async for key, size in backend.scan():
            if not is_casstore_key(key) or not is_valid_key(key):  # stray names too
                housekeeping = key.startswith(HOUSEKEEPING_PREFIX)
                (stats.housekeeping if housekeeping else stats.other_keys).add(size)
                continue
            try:
                name = parse_object_key(key)
            except BadKeyError:
                stats.bad_keys.append(key)
                continue
            if not deep:
                count(name, size)
                if progress is not None:
                    progress.advance(1, size)
                continue
            names[key] = name
            yield key, size

    if not deep:
        async for _ in listing():
            pass  # counted while listing
    else:

        def header(key: str, data: bytes) -> ObjectFacts | ObjectProblem:
            try:
                return declared_facts(data, key=key, ciphers=ciphers)
            except ObjectProblem as exc:
                return exc

        def done(outcome: Outcome) -> None:
            name = names.pop(outcome.key)
            if progress is not None:
                progress.advance(1, outcome.size)
            if outcome.missing:
                stats.vanished += 1
            elif outcome.error is not None:
                stats.unreadable.append((outcome.key, outcome.error))
            elif isinstance(outcome.result, ObjectFacts):
                facts = outcome.result
                logical = facts.logical_size or 0
                count(name, outcome.size, logical)
                stats.codecs[facts.codec_name].add(outcome.size, logical)
                stats.chunk_dedup_bytes += facts.shared_bytes or 0
                if facts.key_id is not None:
                    stats.encrypted[facts.key_id].add(outcome.size, logical)
                if facts.logical_size is None:
                    stats.unknown_logical.add(outcome.size)
            else:
                stats.unreadable.append((outcome.key, str(outcome.result)))

        await read_each(backend, listing(), header, done, concurrency=concurrency)
    stats.seconds = time.monotonic() - started
    return stats


# The command.


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``stats`` subcommand to the ``casstore`` parser."""
    parser = subparsers.add_parser(
        "stats",
        help="count a store's objects and bytes by namespace, workflow and codec",
        description=(
            "List a store and report its objects and stored bytes, broken down by scope, "
            "namespace and the workflows holding the most bytes. --deep also reads every "
            "object's header for codecs, payload bytes and compression. Exit status: 0 "
            "counted, 1 some keys or objects are malformed (see verify), 2 the store could "
            "not be opened or read."
        ),
    )
    add_store_argument(parser)
    add_keyring_argument(parser)
    parser.add_argument(
        "--deep",
        action="store_true",
        help="also read every object's header: codecs, payload bytes, compression",
    )
    parser.add_argument(
        "--top",
        type=positive_int,
        default=DEFAULT_TOP,
        metavar="N",
        help=f"how many of the largest workflows to list (default {DEFAULT_TOP})",
    )
    add_concurrency_argument(parser, what="objects --deep reads", default=DEFAULT_CONCURRENCY)
    add_json_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``casstore stats`` with parsed arguments; return the exit status."""
    return run_command("stats", lambda: _stats(args, out))


async def _stats(args: argparse.Namespace, out: TextIO) -> int:
    keyring = open_keyring(args.keyring)
    async with open_store(args.store) as backend:
        with Progress("reading" if args.deep else "listing") as progress:
            stats = await store_stats(
                backend,
                deep=args.deep,
                keyring=keyring,
                concurrency=args.concurrency,
                progress=progress,
            )
        where = ", ".join(f"{k}={v}" for k, v in backend.describe().items())
    if args.json:
        write_json({"store": args.store, **stats.as_dict(top=args.top)}, out)
    else:
        out.write(format_stats(stats, store=where or args.store, top=args.top))
    return EXIT_PROBLEMS if stats.bad_keys or stats.unreadable else EXIT_OK


def format_stats(stats: StoreStats, *, store: str, top: int = DEFAULT_TOP) -> str:
    """The report people read."""
    deep = stats.deep
    lines = [f"store          {store}"]

    def row(label: str, t: Tally, width: int = 13) -> str:
        text = f"{label:<{width}}  {t.objects:>10,} objects  {format_bytes(t.stored_bytes):>10}"
        if deep and t.stored_bytes:
            text += f"  {format_bytes(t.logical_bytes):>10} payload"
            text += f"  {t.logical_bytes / t.stored_bytes:5.1f}x"
        return text

    lines.append(row("objects", stats.total))
    lines.append("by scope")
    for scope in ("workflow", "activity", "namespace", "none"):
        if scope in stats.by_scope:
            lines.append("  " + row(scope, stats.by_scope[scope], 11))
    if stats.by_namespace:
        lines.append("by namespace")
        width = min(max(len(ns) for ns in stats.by_namespace), 40)
        for ns, t in sorted(stats.by_namespace.items(), key=lambda i: -i[1].stored_bytes):
            lines.append("  " + row(ns, t, width))
    owners = stats.top_owners(top)
    if owners:
        lines.append(f"top {len(owners)} workflows by stored bytes")
        labels = [
            f"{ns}/{owner}" if kind == "workflow" else f"{ns}/activity:{owner}"
            for (ns, kind, owner), _ in owners
        ]
        width = min(max(len(label) for label in labels), 60)
        for label, (_, t) in zip(labels, owners, strict=True):
            lines.append("  " + row(label, t, width))
    if deep:
        lines.append("by codec")
        for codec, t in sorted(stats.codecs.items()):
            lines.append("  " + row(codec, t, 11))
        for key_id, t in sorted(stats.encrypted.items()):
            lines.append("  " + row(f"key {key_id}", t, 11))
        if stats.chunk_dedup_bytes:
            lines.append(
                f"chunk dedup    {format_bytes(stats.chunk_dedup_bytes)} of payloads read "
                "from earlier objects instead of stored again"
            )
        if stats.unknown_logical.objects:
            lines.append(
                f"payload bytes leave out {stats.unknown_logical.objects:,} encrypted zstd "
                "objects whose size is sealed (pass --keyring to read it)"
            )
    else:
        lines.append("codecs, payload bytes and compression: run with --deep (reads every object)")
    if stats.housekeeping.objects:
        lines.append(
            f"housekeeping   {stats.housekeeping.objects:,} keys under {HOUSEKEEPING_PREFIX} "
            f"({format_bytes(stats.housekeeping.stored_bytes)}): lifecycle manifest, gc trash"
        )
    if stats.other_keys.objects:
        lines.append(
            f"other keys     {stats.other_keys.objects:,} outside v1/ or not keys "
            f"({format_bytes(stats.other_keys.stored_bytes)}), not casstore objects"
        )
    if stats.vanished:
        lines.append(f"vanished       {stats.vanished:,} objects deleted while reading")
    for key in stats.bad_keys:
        lines.append(f"BAD KEY {key}: not a valid casstore object key")
    for key, reason in stats.unreadable:
        lines.append(f"UNREADABLE {key}: {reason}")
    lines.append(f"took {stats.seconds:.1f} s")
    return "\n".join(lines) + "\n"
