"""``casstore gc``: collect a namespace's garbage without breaking a retained history.

Mark (casstore/ops/_gc_mark.py) then sweep (casstore/ops/_gc_sweep.py); the
rule that makes it safe, and its proof sketch, are in docs/operations.md.
Everything that can be refused is refused before the first change: the
store's manifest, the settings against it, Temporal's address and namespace.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, TextIO

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from casstore._docs import docs_url
from casstore._format.manifest import MANIFEST_KEY, LifecyclePolicy
from casstore._freshness import read_policy
from casstore.backends._base import Backend, describe_suffix
from casstore.errors import ConfigurationError
from casstore.ops._args import (
    add_concurrency_argument,
    add_json_argument,
    add_store_argument,
)
from casstore.ops._durations import format_duration, parse_duration
from casstore.ops._gc_mark import DEFAULT_CONCURRENCY, Marked, mark_namespace
from casstore.ops._gc_refs import referenced_objects
from casstore.ops._gc_rule import check_collectable
from casstore.ops._gc_sweep import Applied, Plan, apply_plan, gc_lock, plan_sweep
from casstore.ops._output import format_bytes, write_json
from casstore.ops._progress import Progress
from casstore.ops._run import EXIT_OK, CommandError, run_command
from casstore.ops._store import NOT_A_STORE, open_store

DEFAULT_GRACE = timedelta(days=3)
_LISTED = 20  # keys listed per action in text output; --json lists them all


@dataclass(frozen=True)
class GcOptions:
    """What to collect and how."""

    namespace: str
    address: str | None = None
    grace: timedelta = DEFAULT_GRACE
    older_than: timedelta | None = None
    delete: bool = False
    concurrency: int = DEFAULT_CONCURRENCY
    tls: bool = False
    api_key: str | None = None
    break_lock: bool = False


@dataclass
class GcResult:
    """One run: the policy it checked against, the mark, the plan, and what was done."""

    policy: LifecyclePolicy
    marked: Marked | None
    plan: Plan
    applied: Applied | None


StageProgress = Callable[[str, int], None]
"""Told the stage (``marking``, ``scanning``, ``collecting``) and its running count."""


async def collect_garbage(
    backend: Backend, options: GcOptions, *, progress: StageProgress | None = None
) -> GcResult:
    """Run gc on an open store (refusing unsafe settings before any change).

    Raises:
        CommandError: No manifest, settings below what the manifest allows, or
            Temporal unreachable / namespace unknown.
        MarkError: A history could not be read or judged.
    """
    policy = await read_policy(backend)
    if policy is None:
        raise CommandError(
            f"no lifecycle manifest [key={MANIFEST_KEY}{describe_suffix(backend)}]: "
            f"{NOT_A_STORE}; gc needs the writers' refresh_after ({docs_url('operations.md')})"
        )
    try:
        if options.older_than is not None:
            check_collectable(policy, older_than=options.older_than)
        else:
            check_collectable(policy, grace=options.grace)
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from exc

    async with contextlib.AsyncExitStack() as stack:
        client = None
        if options.older_than is None:
            client = await stack.enter_async_context(_temporal(options))
        if options.delete:
            # Held from before the mark to the last change: the plan must not
            # rest on observations another gc run is invalidating.
            await stack.enter_async_context(
                gc_lock(backend, options.namespace, break_lock=options.break_lock)
            )
        marked: Marked | None = None
        if client is not None:
            marked = await mark_namespace(
                client, concurrency=options.concurrency, progress=_stage(progress, "marking")
            )
            # Objects that chunked objects read their chunks from live as long as they do.
            by_chunks = await referenced_objects(
                backend, marked.keys, concurrency=options.concurrency
            )
            marked.chunk_references = len(by_chunks)
            marked.keys |= by_chunks
            live: set[str] | None = marked.keys
            judged_at = marked.started_at
            min_age = options.grace
        else:
            live, judged_at, min_age = None, time.time(), options.older_than or options.grace
        plan = await plan_sweep(
            backend,
            options.namespace,
            live=live,
            judged_at=judged_at,
            min_age=min_age,
            progress=_stage(progress, "scanning"),
        )
        applied = None
        if options.delete:
            applied = await apply_plan(
                backend, plan, policy, progress=_stage(progress, "collecting")
            )
    return GcResult(policy=policy, marked=marked, plan=plan, applied=applied)


@asynccontextmanager
async def _temporal(options: GcOptions) -> AsyncIterator[Client]:
    address = options.address
    try:
        client = await Client.connect(
            address or "",
            namespace=options.namespace,
            tls=options.tls,
            api_key=options.api_key,
        )
    except Exception as exc:  # the SDK raises RuntimeError with transport details
        reason = str(exc).split("\n")[0]
        raise CommandError(f"cannot connect to Temporal [address={address}]: {reason}") from exc
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=options.namespace), retry=True
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise CommandError(
                f"Temporal has no namespace {options.namespace!r} [address={address}]"
            ) from exc
        raise CommandError(
            f"Temporal refused to describe the namespace [address={address}, "
            f"namespace={options.namespace}]: {exc.message}"
        ) from exc
    yield client


def _stage(progress: StageProgress | None, stage: str) -> Callable[[int], None] | None:
    return None if progress is None else functools.partial(progress, stage)


class _Stages:
    """One progress line per stage, on stderr when it is a terminal."""

    _UNITS: ClassVar[dict[str, str]] = {
        "marking": "executions read",
        "scanning": "keys judged",
        "collecting": "objects moved or deleted",
    }

    def __init__(self) -> None:
        self._stage = ""
        self._bar: Progress | None = None
        self._done = 0

    def __call__(self, stage: str, done: int) -> None:
        bar = self._bar
        if bar is None or stage != self._stage:
            self.close()
            bar = self._bar = Progress(f"gc: {stage}", unit=self._UNITS.get(stage, "items"))
            self._stage, self._done = stage, 0
        bar.advance(done - self._done)
        self._done = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> _Stages:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# Command line.


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``gc`` subcommand to the ``casstore`` parser."""
    parser = subparsers.add_parser(
        "gc",
        help="delete objects no history Temporal keeps refers to (dry run by default)",
        description=(
            "Mark every casstore object a namespace's histories, open runs, schedules and "
            "standalone activities reference, then move unreferenced objects older than the "
            "grace to the store's trash, and delete trash copies that stayed unreferenced for "
            f"the grace too. Dry run unless --delete. The safety rule: {docs_url('operations.md')}."
        ),
    )
    add_store_argument(parser)
    parser.add_argument("--namespace", required=True, help="Temporal namespace to collect")
    parser.add_argument(
        "--address", metavar="HOST:PORT", help="Temporal front end (required unless --older-than)"
    )
    parser.add_argument(
        "--grace",
        type=parse_duration,
        default=DEFAULT_GRACE,
        metavar="DURATION",
        help="minimum age before a move to the trash, and time in the trash before deletion "
        "(default 3d; at least the manifest's refresh_after + 2 x claim_delay)",
    )
    parser.add_argument(
        "--older-than",
        type=parse_duration,
        metavar="DURATION",
        help="age-only mode, without Temporal: collect objects untouched this long",
    )
    parser.add_argument("--delete", action="store_true", help="act (default: dry run)")
    parser.add_argument(
        "--break-lock",
        action="store_true",
        help="remove the namespace's gc lock a crashed run left behind (only if no gc runs)",
    )
    add_concurrency_argument(parser, what="histories read", default=DEFAULT_CONCURRENCY)
    parser.add_argument("--tls", action="store_true", help="connect to Temporal over TLS")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("TEMPORAL_API_KEY"),
        help="Temporal API key (default: $TEMPORAL_API_KEY); implies --tls",
    )
    add_json_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``casstore gc`` with parsed arguments."""
    options = GcOptions(
        namespace=args.namespace,
        address=args.address,
        grace=args.grace,
        older_than=args.older_than,
        delete=args.delete,
        concurrency=args.concurrency,
        tls=args.tls or bool(args.api_key),
        api_key=args.api_key or None,
        break_lock=args.break_lock,
    )

    async def work() -> int:
        if (options.older_than is None) == (options.address is None):
            raise CommandError(
                "give --address HOST:PORT (mark from Temporal) or --older-than DURATION "
                "(age only), not both and not neither"
            )
        async with open_store(args.store) as backend:
            with _Stages() as progress:
                result = await collect_garbage(backend, options, progress=progress)
        if args.json:
            write_json(_as_json(result, args.store, options), out)
        else:
            out.write(format_result(result, args.store, options))
        return EXIT_OK

    return run_command("gc", work)


def format_result(result: GcResult, store: str, options: GcOptions) -> str:
    """The text report: what was marked, kept, and moved or deleted (or would be)."""
    plan, marked, applied = result.plan, result.marked, result.applied
    acting = applied is not None
    age = format_duration(plan.min_age)
    mode = f"older than {age}" if options.older_than else f"grace {age}"
    lines = [
        f"casstore gc: namespace {options.namespace}, store {store} "
        f"({'delete' if acting else 'dry run'}, {mode})"
    ]
    if marked is not None:
        lines.append(
            f"  marked      {marked.executions:,} executions ({marked.open_executions:,} open), "
            f"{marked.schedules:,} schedules, {marked.activities:,} standalone activities: "
            f"{marked.references:,} references to {len(marked.keys):,} objects"
        )
    lines += [
        f"  scanned     {_tally(plan.scanned)}; trash {_tally(plan.trash)}",
        f"  kept        {plan.kept_referenced.objects:,} referenced, "
        f"{plan.kept_young.objects:,} younger than {age}, "
        f"{plan.kept_unjudged.objects:,} not casstore objects, "
        f"{plan.waiting.objects:,} in the trash for less than {age}",
    ]
    verb_move, verb_delete = ("moved", "deleted") if acting else ("would move", "would delete")
    moved = applied.moved if applied else plan.moves
    deleted = applied.deleted if applied else plan.deletes
    lines.append(f"  to trash    {verb_move} {_tally(moved)}")
    lines += _listed(plan.quarantine)
    lines.append(f"  deleted     {verb_delete} {_tally(deleted)} from the trash")
    lines += _listed([*plan.purge, *plan.redundant])
    restored = applied.restored if applied else len(plan.restore)
    lines.append(f"  restored    {'' if acting else 'would restore '}{restored:,} referenced again")
    if not acting and (plan.quarantine or plan.purge or plan.redundant or plan.restore):
        lines.append("  (dry run: nothing changed; add --delete to act)")
    return "\n".join(lines) + "\n"


def _tally(tally: Any) -> str:
    return f"{tally.objects:,} objects, {format_bytes(tally.bytes)}"


def _listed(items: list[tuple[str, int]]) -> list[str]:
    shown = [f"      {key}  {format_bytes(size)}" for key, size in items[:_LISTED]]
    if len(items) > _LISTED:
        shown.append(f"      ... and {len(items) - _LISTED:,} more (--json lists them all)")
    return shown


def _as_json(result: GcResult, store: str, options: GcOptions) -> dict[str, Any]:
    plan, marked, applied = result.plan, result.marked, result.applied
    return {
        "store": store,
        "namespace": options.namespace,
        "dry_run": applied is None,
        "mode": "age" if options.older_than else "temporal",
        "min_age_seconds": plan.min_age.total_seconds(),
        "policy": {
            "refresh_after_seconds": result.policy.refresh_after.total_seconds(),
            "claim_delay_seconds": result.policy.claim_delay.total_seconds(),
        },
        "marked": None
        if marked is None
        else {
            "executions": marked.executions,
            "open_executions": marked.open_executions,
            "schedules": marked.schedules,
            "standalone_activities": marked.activities,
            "references": marked.references,
            "foreign_references": marked.foreign_references,
            "objects": len(marked.keys),
        },
        "scanned": vars(plan.scanned),
        "trash": vars(plan.trash),
        "kept": {
            "referenced": vars(plan.kept_referenced),
            "young": vars(plan.kept_young),
            "unjudged": vars(plan.kept_unjudged),
            "waiting_in_trash": vars(plan.waiting),
        },
        "to_trash": [{"key": k, "size": s} for k, s in plan.quarantine],
        "delete": [{"key": k, "size": s} for k, s in (*plan.purge, *plan.redundant)],
        "restore": plan.restore,
        "applied": None
        if applied is None
        else {
            "moved": vars(applied.moved),
            "deleted": vars(applied.deleted),
            "restored": applied.restored,
            "restamped": applied.restamped,
        },
    }
