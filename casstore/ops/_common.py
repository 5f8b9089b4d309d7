"""Plumbing shared by the operator commands (stats, verify, cat, gc).

Every command follows the same contract, so scripts can rely on it:

* exit status :data:`EXIT_OK` (0) when the command did its job and found
  nothing wrong, :data:`EXIT_PROBLEMS` (1) when it ran and found problems
  (a corrupt object, a missing one), :data:`EXIT_USAGE` (2) when it could
  not do its job: bad arguments, a store that does not exist or cannot be
  reached, unreadable input (argparse exits 2 for usage errors too), and
  :data:`EXIT_INTERRUPTED` (130) on Ctrl-C;
* errors are one line on stderr, ``casstore COMMAND: error: ...``, never a
  traceback;
* ``--json`` writes one JSON document to stdout and nothing else there;
* progress goes to stderr, and only when stderr is a terminal.

A command module exposes ``register(subparsers)``, which adds its parser and
sets ``func(args, out) -> int``; the work itself is a coroutine run by
:func:`run_command`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TextIO
from urllib.parse import unquote, urlsplit

from casstore._keyring import KeyRing
from casstore._url import open_backend
from casstore.backends._base import Backend
from casstore.backends._s3url import has_attempts
from casstore.errors import (
    BackendPermissionError,
    BackendUnavailableError,
    CasstoreError,
    ConfigurationError,
)

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)

OPERATOR_S3_ATTEMPTS = 5
"""Attempts per request for commands on an ``s3://`` store, whichever client
builds it. Workers default to one, because the driver retries within each
payload's deadline; listings, moves and deletes have no such deadline, and one
503 must not end an hour-long gc or stats run. ``max_attempts`` in the URL wins."""

STORE_HELP = (
    "the store: a folder, file:///path, or s3://bucket/prefix?endpoint_url=...&region=... "
    "(options in docs/backends.md; S3 credentials from the standard AWS chain)"
)


class CommandError(Exception):
    """A problem to report as one line, ending the command with ``exit_code``."""

    def __init__(self, message: str, *, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# Arguments.


def add_store_argument(parser: argparse.ArgumentParser, *, option: bool = False) -> None:
    """Add the store URL: positional ``STORE_URL``, or ``--store URL`` when ``option``."""
    if option:
        parser.add_argument("--store", required=True, metavar="URL", help=STORE_HELP)
    else:
        parser.add_argument("store", metavar="STORE_URL", help=STORE_HELP)


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--json``: one machine-readable document on stdout instead of text."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="write one JSON document to stdout instead of text (errors stay on stderr)",
    )


def add_keyring_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--keyring SPEC`` (``env:VAR`` or ``file:PATH``, see docs/encryption.md)."""
    parser.add_argument(
        "--keyring",
        metavar="SPEC",
        help="keyring for encrypted objects: env:VAR (env: alone reads CASSTORE_KEYRING) "
        "or file:PATH",
    )


def open_keyring(spec: str | None) -> KeyRing | None:
    """Open the keyring ``--keyring`` names, or None when it was not given.

    Raises:
        CommandError: If the spec cannot be read or holds no valid keyring
            (the message names the source, never key material).
    """
    if spec is None:
        return None
    try:
        return KeyRing.open(spec)
    except ConfigurationError as exc:
        raise CommandError(f"bad keyring: {exc}") from exc


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}


def parse_duration(text: str) -> timedelta:
    """An argparse type: a duration like ``90s``, ``36h``, ``30d`` or ``1d12h``.

    Units: ``ms``, ``s``, ``m`` (minutes), ``h``, ``d``, ``w``.
    """
    spec = text.strip().lower()
    parts = list(_DURATION_RE.finditer(spec))
    if not parts or "".join(p.group(0) for p in parts) != spec:
        raise argparse.ArgumentTypeError(
            f"expected a duration like 90s, 36h, 30d or 1d12h, got {text!r}"
        )
    return sum((float(p.group(1)) * _DURATION_UNITS[p.group(2)] for p in parts), timedelta())


# Running a command.


def run_command(name: str, work: Callable[[], Awaitable[int]], *, err: TextIO | None = None) -> int:
    """Run a command's coroutine and turn every failure into one line and an exit status.

    ``work`` is called before the event loop starts, and what it returns is
    awaited inside it. Blocking preparation, such as reading standard input,
    belongs in ``work`` itself, not in the coroutine: inside ``asyncio.run`` the
    first Ctrl-C only cancels the main task, which a blocked read never notices.

    Args:
        name: The subcommand, for messages (``casstore NAME: error: ...``).
        work: Makes the coroutine that does the work and returns the exit status.
        err: Where errors go (default stderr).

    Returns:
        The exit status: the coroutine's, or one of the ``EXIT_*`` codes.
    """
    stream = err or sys.stderr
    prefix = f"casstore {name}"

    async def main(awaitable: Awaitable[int]) -> int:
        return await awaitable

    try:
        return asyncio.run(main(work()))
    except KeyboardInterrupt:
        print(f"\n{prefix}: interrupted", file=stream)
        return EXIT_INTERRUPTED
    except CommandError as exc:
        print(f"{prefix}: error: {exc}", file=stream)
        return exc.exit_code
    except CasstoreError as exc:
        print(f"{prefix}: error: {exc}", file=stream)
        return EXIT_USAGE
    except BrokenPipeError:
        # Output piped into a reader that stopped early (| head): not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush stays quiet.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # a command reports, it does not dump a traceback
        print(f"{prefix}: error: {type(exc).__name__}: {exc}", file=stream)
        return EXIT_USAGE


@contextlib.asynccontextmanager
async def open_store(url: str, **options: Any) -> AsyncIterator[Backend]:
    """Open an existing store for an operator command, and close it afterwards.

    Unlike a driver, which creates a local store's folder on first use, a
    command refuses a store that does not exist: a typo must not look like an
    empty store. The store is probed with one listing request, so an
    unreachable endpoint, a missing bucket or refused credentials fail here,
    in one line, before any work.

    Raises:
        CommandError: Naming the URL and what is wrong with it.
    """
    root = _local_root(url)
    if root is not None and not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise CommandError(f"store {what}: {root} [url={url}]")
    try:
        backend = open_backend(url, **_operator_defaults(url, options))
    except ConfigurationError as exc:
        raise CommandError(f"bad store URL: {exc}") from exc
    try:
        if root is None:  # a local folder that exists is open; listing it all would be slow
            await _probe(backend)
        yield backend
    finally:
        await backend.aclose()


def _operator_defaults(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """Add retries for an ``s3://`` store (either client) unless the URL or caller sets them."""
    if urlsplit(url).scheme.lower() != "s3" or has_attempts(url, options):
        return options
    return {**options, "max_attempts": OPERATOR_S3_ATTEMPTS}


async def _probe(backend: Backend) -> None:
    listing = backend.scan()
    try:
        async for _ in listing:
            break
    except (BackendUnavailableError, BackendPermissionError) as exc:
        raise CommandError(f"cannot open store: {exc}") from exc
    finally:
        close = getattr(listing, "aclose", None)
        if close is not None:
            await close()


def _local_root(url: str) -> Path | None:
    """The folder a local store URL names, or None for other schemes."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        return Path(url).expanduser()
    if scheme == "file":
        return Path(unquote(parts.path))
    return None


# Output.


def write_json(data: object, out: TextIO) -> None:
    """Write ``data`` as one indented JSON document and a newline."""
    json.dump(data, out, indent=2, ensure_ascii=False)
    out.write("\n")
    out.flush()


def format_bytes(n: float) -> str:
    """Format a byte count for people: ``512 B``, ``1.5 KiB``, ``12.0 MiB``."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            break
    return f"{n:.1f} {unit}"


class Progress:
    """A one-line progress display on stderr, drawn only when stderr is a terminal.

    Redraws at most ten times a second; :meth:`close` (or leaving the
    ``with`` block) erases the line so the command's own output starts clean.

    Args:
        label: What is being counted (``verifying``, ``scanning``).
        total: How many items to expect, if known (shows a bar and percentage).
        stream: Where to draw (default stderr).
        enabled: Force drawing on or off; by default, on only for a terminal.
        unit: What the items are (``objects``, ``executions``); bytes are shown
            only when counted.
    """

    _INTERVAL = 0.1
    _WIDTH = 24

    def __init__(
        self,
        label: str,
        *,
        total: int | None = None,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        unit: str = "objects",
    ) -> None:
        self._stream = stream or sys.stderr
        self._unit = unit
        self._enabled = _is_terminal(self._stream) if enabled is None else enabled
        self._label = label
        self._total = total
        self._count = 0
        self._bytes = 0
        self._started = time.monotonic()
        self._drawn_at = 0.0

    @property
    def enabled(self) -> bool:
        """Whether anything is drawn."""
        return self._enabled

    def set_total(self, total: int | None) -> None:
        """Set (or learn later) how many items to expect."""
        self._total = total

    def advance(self, count: int = 1, nbytes: int = 0) -> None:
        """Count ``count`` more items of ``nbytes`` bytes in all."""
        self._count += count
        self._bytes += nbytes
        if self._enabled and time.monotonic() - self._drawn_at >= self._INTERVAL:
            self._draw()

    def line(self) -> str:
        """The progress text as it would be drawn now."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = f"{self._count / elapsed:,.0f}/s"
        done = f"{self._count:,}"
        if self._total:
            fraction = min(self._count / self._total, 1.0)
            filled = int(fraction * self._WIDTH)
            bar = "#" * filled + "." * (self._WIDTH - filled)
            done = f"[{bar}] {fraction:4.0%} {self._count:,}/{self._total:,}"
        size = f", {format_bytes(self._bytes)}" if self._bytes or self._unit == "objects" else ""
        return f"{self._label} {done} {self._unit}{size}, {rate}"

    def _draw(self) -> None:
        self._drawn_at = time.monotonic()
        self._stream.write("\r" + self.line() + "\x1b[K")
        self._stream.flush()

    def clear(self) -> None:
        """Erase the progress line, e.g. to print a message; the next update redraws it."""
        if self._enabled and self._drawn_at:
            self._stream.write("\r\x1b[K")
            self._stream.flush()

    def close(self) -> None:
        """Erase the progress line (if one was drawn) and stop drawing."""
        self.clear()
        self._enabled = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False
