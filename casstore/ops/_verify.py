"""``casstore verify``: read every object (or a sample) and check it against its key."""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from casstore._crypto import Ciphers
from casstore._driver_options import DEFAULTS
from casstore._format.keys import (
    HOUSEKEEPING_PREFIX,
    BadKeyError,
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
    add_max_payload_size_argument,
    add_store_argument,
    open_keyring,
    positive_int,
)
from casstore.ops._check import NeedsKey, ObjectFacts, ObjectProblem, check_object
from casstore.ops._chunks import VANISHED, read_chunked
from casstore.ops._output import format_bytes, write_json
from casstore.ops._progress import Progress
from casstore.ops._reader import DEFAULT_CONCURRENCY, DEFAULT_MEMORY_BUDGET, Outcome, read_each
from casstore.ops._run import EXIT_OK, EXIT_PROBLEMS, run_command
from casstore.ops._store import open_store, require_casstore_store

DEFAULT_MAX_PAYLOAD_SIZE = DEFAULTS["max_payload_size"]
_LISTED_OTHERS = 5  # other keys named in text output; --json lists them all
_MAX_OBJECT_OVERHEAD = 64
"""Most bytes an object adds to its payload: header and key id (at most 39), AEAD
tag (16); a zstd body is only kept when smaller than the payload."""


@dataclass
class BadObject:
    """An object that failed a check."""

    key: str
    reason: str


@dataclass
class VerifyReport:
    """What ``verify`` found."""

    listed: int = 0
    """Objects under the object prefix that the store listed."""
    checked: int = 0
    """Objects read and checked (all listed ones, or the sample)."""
    good: int = 0
    stored_bytes: int = 0
    """Bytes read."""
    logical_bytes: int = 0
    """Payload bytes the good objects hold."""
    codecs: dict[str, int] = field(default_factory=dict)
    encrypted: dict[str, int] = field(default_factory=dict)
    """Good encrypted objects by the key id they are sealed with."""
    bad: list[BadObject] = field(default_factory=list)
    unchecked: list[BadObject] = field(default_factory=list)
    """Encrypted objects whose key was not given: not checked, not counted bad."""
    needs_keys: set[str] = field(default_factory=set)
    """The key ids those objects need."""
    vanished: list[str] = field(default_factory=list)
    """Listed, then gone when read (deleted meanwhile, e.g. by gc): not a fault."""
    housekeeping_keys: int = 0
    """Keys under ``_casstore/`` (lifecycle manifest, gc trash): skipped."""
    other_keys: list[str] = field(default_factory=list)
    """Other keys (outside the object prefix, or names that are not keys at all):
    not casstore objects, skipped."""
    sampled: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True if nothing checked was bad."""
        return not self.bad

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-friendly values."""
        return {
            "ok": self.ok,
            "listed": self.listed,
            "checked": self.checked,
            "sampled": self.sampled,
            "good": self.good,
            "bad": [{"key": b.key, "reason": b.reason} for b in self.bad],
            "unchecked": [{"key": b.key, "reason": b.reason} for b in self.unchecked],
            "needs_keys": sorted(self.needs_keys),
            "vanished": self.vanished,
            "housekeeping_keys": self.housekeeping_keys,
            "other_keys": self.other_keys,
            "stored_bytes": self.stored_bytes,
            "logical_bytes": self.logical_bytes,
            "codecs": dict(sorted(self.codecs.items())),
            "encrypted": dict(sorted(self.encrypted.items())),
            "seconds": round(self.seconds, 3),
        }


async def verify_store(
    backend: Backend,
    *,
    sample: int | None = None,
    keyring: KeyRing | None = None,
    max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    on_bad: Callable[[BadObject], None] | None = None,
    progress: Progress | None = None,
    rng: random.Random | None = None,
) -> VerifyReport:
    """Check every object of a store (or a uniform random sample of ``sample``).

    Each object is read once and checked: its key must follow the key layout,
    its header must be valid, its body must decode to the size it declares
    (at most ``max_payload_size``), and the decoded bytes must hash to the
    digest in its key.

    Args:
        backend: The store.
        sample: Check this many objects, chosen uniformly at random
            (reservoir sampling over the listing: memory for ``sample`` keys).
        keyring: Keys for encrypted objects; an encrypted object whose key
            is not in it is reported in ``unchecked`` ("needs key ID").
        max_payload_size: Objects declaring a larger payload are bad, as a
            driver with this limit would refuse them.
        concurrency: Objects read at once.
        memory_budget: Stored bytes held in memory at once.
        on_bad: Called with each :class:`BadObject` as it is found.
        progress: Advanced once per object checked.
        rng: Random source for sampling (tests pass a seeded one).

    Returns:
        The report; ``report.ok`` is False if any object is bad.
    """
    report = VerifyReport(sampled=sample is not None)
    started = time.monotonic()
    ciphers = None if keyring is None else Ciphers(keyring)

    def found_bad(key: str, reason: str) -> None:
        bad = BadObject(key, reason)
        report.bad.append(bad)
        if on_bad is not None:
            on_bad(bad)

    async def objects() -> AsyncIterator[tuple[str, int]]:
        async for key, size in backend.scan():
            # A name no backend accepts as a key (a stray "copy 1" a person or
            # tool left) is not casstore's: listed, never read.
            if not is_casstore_key(key) or not is_valid_key(key):
                if key.startswith(HOUSEKEEPING_PREFIX):
                    report.housekeeping_keys += 1
                else:
                    report.other_keys.append(key)
                continue
            report.listed += 1
            if size > max_payload_size + _MAX_OBJECT_OVERHEAD:
                # Never read: no payload a reader accepts makes an object this large.
                report.checked += 1
                report.stored_bytes += size
                found_bad(
                    key,
                    f"stored object is {size} bytes, larger than any object holding a payload "
                    f"of at most max_payload_size {max_payload_size} bytes",
                )
                continue
            yield key, size

    def check(key: str, data: bytes) -> ObjectFacts | ObjectProblem | BadKeyError | NeedsKey:
        try:
            name = parse_object_key(key)
            return check_object(
                data, name.digest, key=key, max_payload_size=max_payload_size, ciphers=ciphers
            )
        except (ObjectProblem, BadKeyError, NeedsKey) as exc:
            return exc

    chunked: list[tuple[str, ObjectFacts]] = []

    def count_good(facts: ObjectFacts) -> None:
        report.good += 1
        report.logical_bytes += facts.logical_size or 0
        codec = facts.codec_name
        report.codecs[codec] = report.codecs.get(codec, 0) + 1
        if facts.key_id is not None:
            report.encrypted[facts.key_id] = report.encrypted.get(facts.key_id, 0) + 1

    def done(outcome: Outcome) -> None:
        if progress is not None:
            progress.advance(1, outcome.size)
        if outcome.missing:
            report.vanished.append(outcome.key)
            return
        report.checked += 1
        report.stored_bytes += outcome.size
        if outcome.error is not None:
            found_bad(outcome.key, outcome.error)
        elif isinstance(outcome.result, ObjectFacts) and outcome.result.chunked:
            chunked.append((outcome.key, outcome.result))  # judged by the second pass
        elif isinstance(outcome.result, ObjectFacts):
            count_good(outcome.result)
        elif isinstance(outcome.result, NeedsKey):
            report.unchecked.append(BadObject(outcome.key, str(outcome.result)))
            report.needs_keys.add(outcome.result.key_id)
        else:
            found_bad(outcome.key, str(outcome.result))

    listing = objects()
    if sample is not None:
        chosen = await _reservoir(listing, sample, rng or random.Random())
        if progress is not None:
            progress.set_total(len(chosen))
        listing = _replay(chosen)
    await read_each(
        backend, listing, check, done, concurrency=concurrency, memory_budget=memory_budget
    )
    # Chunked objects are read as the driver reads them: every chunk, here and
    # in the objects referenced, against its digest, then the whole payload.
    outcomes = await read_chunked(
        backend,
        chunked,
        keyring=keyring,
        max_payload_size=max_payload_size,
        concurrency=concurrency,
        memory_budget=memory_budget,
    )
    for (key, facts), problem in zip(chunked, outcomes, strict=True):
        if problem is None:
            count_good(facts)
        elif problem == VANISHED:
            report.checked -= 1
            report.vanished.append(key)
        else:
            found_bad(key, problem)
    report.seconds = time.monotonic() - started
    return report


async def _reservoir(
    items: AsyncIterator[tuple[str, int]], k: int, rng: random.Random
) -> list[tuple[str, int]]:
    """Algorithm R: a uniform sample of ``k`` items from a stream of unknown length."""
    chosen: list[tuple[str, int]] = []
    seen = 0
    async for item in items:
        seen += 1
        if len(chosen) < k:
            chosen.append(item)
        else:
            slot = rng.randrange(seen)
            if slot < k:
                chosen[slot] = item
    chosen.sort()
    return chosen


async def _replay(items: list[tuple[str, int]]) -> AsyncIterator[tuple[str, int]]:
    for item in items:
        yield item


# The command.


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``verify`` subcommand to the ``casstore`` parser."""
    parser = subparsers.add_parser(
        "verify",
        help="read every object and check it against the digest in its key",
        description=(
            "Read every object of a store (or a random sample) and check its header, its "
            "size and that its content hashes to the digest in its key. Prints each bad "
            "object with the reason. Exit status: 0 all checked objects are good, 1 some "
            "are bad, 2 the store could not be opened or read."
        ),
    )
    add_store_argument(parser)
    add_keyring_argument(parser)
    parser.add_argument(
        "--sample",
        type=positive_int,
        metavar="N",
        help="check N objects chosen at random instead of all of them",
    )
    add_concurrency_argument(parser, what="objects read", default=DEFAULT_CONCURRENCY)
    add_max_payload_size_argument(parser, limit="an object may hold")
    add_json_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``casstore verify`` with parsed arguments; return the exit status."""
    return run_command("verify", lambda: _verify(args, out))


async def _verify(args: argparse.Namespace, out: TextIO) -> int:
    keyring = open_keyring(args.keyring)
    async with open_store(args.store) as backend:
        await require_casstore_store(backend)
        with Progress("verifying") as progress:

            def on_bad(bad: BadObject) -> None:
                if not args.json:
                    progress.clear()
                    print(f"BAD {bad.key}: {bad.reason}", file=out, flush=True)

            report = await verify_store(
                backend,
                sample=args.sample,
                keyring=keyring,
                max_payload_size=args.max_payload_size,
                concurrency=args.concurrency,
                on_bad=on_bad,
                progress=progress,
            )
    if args.json:
        write_json(report.as_dict(), out)
    else:
        _print_summary(report, out)
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def _print_summary(report: VerifyReport, out: TextIO) -> None:
    what = f"{report.checked:,} of {report.listed:,}" if report.sampled else f"{report.checked:,}"
    print(
        f"checked {what} objects ({format_bytes(report.stored_bytes)} stored, "
        f"{format_bytes(report.logical_bytes)} of payloads) in {report.seconds:.1f} s: "
        f"{report.good:,} good, {len(report.bad):,} bad",
        file=out,
    )
    if report.unchecked:
        print(
            f"{len(report.unchecked):,} encrypted objects not checked: they need keys "
            f"{', '.join(sorted(report.needs_keys))} (pass --keyring)",
            file=out,
        )
    if report.vanished:
        print(
            f"{len(report.vanished):,} objects were deleted while verify ran (not checked)",
            file=out,
        )
    if report.housekeeping_keys:
        print(
            f"{report.housekeeping_keys:,} keys under {HOUSEKEEPING_PREFIX} skipped "
            "(lifecycle manifest, gc trash)",
            file=out,
        )
    if report.other_keys:
        print(
            f"{len(report.other_keys):,} other keys skipped (not casstore objects): "
            + ", ".join(report.other_keys[:_LISTED_OTHERS])
            + (", ..." if len(report.other_keys) > _LISTED_OTHERS else ""),
            file=out,
        )
