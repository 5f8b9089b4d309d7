"""``casstore cat``: print the payloads that references in a history point at."""

from __future__ import annotations

import argparse
import base64
import json
import os
import stat
import sys
from collections.abc import Awaitable
from typing import Any, BinaryIO, TextIO

from temporalio.api.common.v1 import Payload
from temporalio.converter import StorageDriverClaim, StorageDriverRetrieveContext

from casstore._driver import CasStorageDriver
from casstore._format.claims import parse_claim_data
from casstore.backends._filekind import file_kind
from casstore.errors import BackendPermissionError, BackendUnavailableError, CasstoreError
from casstore.ops._args import (
    add_json_argument,
    add_keyring_argument,
    add_max_payload_size_argument,
    add_store_argument,
    open_keyring,
    positive_int,
)
from casstore.ops._output import write_json
from casstore.ops._refs import (
    FoundReference,
    InputError,
    find_references,
    looks_like_text_claim,
    parse_input,
)
from casstore.ops._run import EXIT_OK, EXIT_PROBLEMS, CommandError, run_command
from casstore.ops._store import open_store

DEFAULT_MAX_INPUT_SIZE = 256 * 1024 * 1024
"""Largest input ``cat`` reads. Temporal caps a history at 50 MiB by default; its
JSON form (base64 payloads, field names) is a few times larger at most."""
_CHUNK = 1024 * 1024
_JSON_ENCODINGS = ("json/plain", "json/protobuf")


def payload_value(payload: Payload) -> dict[str, Any]:
    """A payload as JSON: its value where the encoding is JSON, else base64.

    Returns:
        ``{"encoding": ..., "metadata": {...}, "value": ...}`` for JSON
        encodings (and ``binary/null``), ``{..., "data_base64": ...}`` otherwise.
    """
    metadata = {k: _text(v) for k, v in sorted(payload.metadata.items())}
    encoding = metadata.get("encoding", "")
    entry: dict[str, Any] = {"encoding": encoding, "metadata": metadata}
    if encoding == "binary/null":
        entry["value"] = None
        return entry
    if encoding in _JSON_ENCODINGS:
        try:
            value = json.loads(payload.data)
            json.dumps(value, indent=2)  # printable too (nesting within the recursion limit)
            entry["value"] = value
            return entry
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            pass  # not what its encoding says: show the bytes
    entry["data_base64"] = base64.b64encode(payload.data).decode("ascii")
    return entry


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode("ascii")


def read_input(
    ref: str | None, stdin: TextIO, *, max_size: int = DEFAULT_MAX_INPUT_SIZE
) -> tuple[str, str]:
    """Return ``(text, source)``: the argument itself, a file it names, or stdin.

    At most ``max_size`` bytes are read: a larger input is refused, not held.

    Raises:
        CommandError: The input is larger than ``max_size``, not UTF-8, or
            names something that is not a regular file.
    """
    if ref is None or ref == "-":
        return _read_bounded(stdin, "standard input", max_size), "standard input"
    if ref.lstrip()[:1] in ("{", "[", '"') or looks_like_text_claim(ref):
        return ref, "the argument"
    try:
        st = os.stat(ref)
    except FileNotFoundError:
        raise CommandError(f"not JSON, and no file named {ref!r}") from None
    except OSError as exc:
        raise CommandError(f"cannot read file {ref}: {exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        # A device or FIFO could stream forever; a history is always a file.
        raise CommandError(f"{ref} is {file_kind(st.st_mode)}, not a regular file holding JSON")
    source = f"file {ref}"
    try:
        with open(ref, encoding="utf-8") as stream:
            return _read_bounded(stream, source, max_size), source
    except OSError as exc:
        raise CommandError(f"cannot read file {ref}: {exc}") from exc


def _read_bounded(stream: TextIO, source: str, max_size: int) -> str:
    """Read a whole stream as UTF-8 text, refusing more than ``max_size`` bytes."""
    binary: BinaryIO | None = getattr(stream, "buffer", None)
    too_large = CommandError(
        f"{source} is larger than {max_size:,} bytes (--max-input-size); a history or "
        "reference is far smaller"
    )
    if binary is None:  # a text stream without bytes underneath (tests, io.StringIO)
        text = stream.read(max_size + 1)
        if len(text.encode("utf-8", errors="surrogatepass")) > max_size:
            raise too_large
        return text
    data = bytearray()
    while chunk := binary.read(min(_CHUNK, max_size + 1 - len(data))):
        data += chunk
        if len(data) > max_size:
            raise too_large
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"{source} is not UTF-8 text: {exc}") from None


def _where(found: FoundReference) -> str:
    parts = []
    if found.event_id is not None:
        parts.append(f"event {found.event_id}")
    if found.event_type:
        parts.append(found.event_type.removeprefix("EVENT_TYPE_"))
    if found.path:
        parts.append(found.path)
    return " ".join(parts) or "reference"


# The command.


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``cat`` subcommand to the ``casstore`` parser."""
    parser = subparsers.add_parser(
        "cat",
        help="print the stored payloads that a reference or a whole history points at",
        description=(
            "Read a reference as `temporal workflow show --output json` prints it (the whole "
            "history, one payload, the reference inside it, or a bare claim), from the "
            "argument, a file it names, or standard input, and print the payloads it points "
            "at: the value where the encoding is JSON, base64 otherwise. Each object is "
            "checked against its claim before it is printed. Exit status: 0 every payload "
            "printed, 1 some could not be (missing, corrupt, not casstore's), 2 bad input "
            "or store."
        ),
    )
    add_store_argument(parser, then="ref")
    parser.add_argument(
        "ref",
        nargs="?",
        metavar="REF",
        help="the reference JSON, or a file holding it (default: standard input)",
    )
    add_keyring_argument(parser)
    add_max_payload_size_argument(parser, limit="a claim may promise")
    parser.add_argument(
        "--max-input-size",
        type=positive_int,
        default=DEFAULT_MAX_INPUT_SIZE,
        metavar="BYTES",
        help=f"largest input read from a file or stdin (default {DEFAULT_MAX_INPUT_SIZE})",
    )
    add_json_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``casstore cat`` with parsed arguments; return the exit status."""

    def work() -> Awaitable[int]:
        # Read the input before the event loop starts, where Ctrl-C interrupts it.
        text, source = read_input(args.ref, sys.stdin, max_size=args.max_input_size)
        return _cat(args, text, source, out, sys.stderr)

    return run_command("cat", work)


async def _cat(args: argparse.Namespace, text: str, source: str, out: TextIO, err: TextIO) -> int:
    keyring = open_keyring(args.keyring)
    try:
        references = find_references(parse_input(text, source=source))
    except InputError as exc:
        raise CommandError(str(exc)) from exc
    except RecursionError:  # belt and braces: the walk itself is not recursive
        raise CommandError(f"{source} is nested too deeply to read") from None
    if not references:
        raise CommandError(
            f"{source} holds no storage references (inline payloads are in the history itself)"
        )
    single = len(references) == 1 and references[0].event_id is None
    entries: list[dict[str, Any]] = []
    failed = 0
    async with open_store(args.store) as backend:
        driver = CasStorageDriver(backend, max_payload_size=args.max_payload_size, keyring=keyring)
        for found in references:
            entry = await _fetch(driver, found, args.max_payload_size)
            if "error" in entry:
                failed += 1
                print(f"casstore cat: {_where(found)}: {entry['error']}", file=err)
            if args.json:
                entries.append(entry)
            elif "error" not in entry:
                _print_entry(entry, found, out, header=not single)
    if args.json:
        write_json(entries, out)
    return EXIT_PROBLEMS if failed else EXIT_OK


async def _fetch(driver: CasStorageDriver, found: FoundReference, max_size: int) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if found.event_id is not None:
        entry["event_id"] = found.event_id
    if found.event_type is not None:
        entry["event_type"] = found.event_type
    if found.path:
        entry["path"] = found.path
    if found.driver_name is not None:
        entry["driver"] = found.driver_name
    try:
        record = parse_claim_data(found.claim_data, max_size=max_size)
    except CasstoreError as exc:
        if found.driver_name not in (None, driver.name()):
            entry["error"] = f"not a casstore reference (driver {found.driver_name!r}): {exc}"
        else:
            entry["error"] = str(exc)
        return entry
    entry["key"] = record.key
    claim = StorageDriverClaim(claim_data=found.claim_data)
    try:
        [payload] = await driver.retrieve(StorageDriverRetrieveContext(), [claim])
    except (BackendUnavailableError, BackendPermissionError):
        raise  # the store, not this object: stop here
    except CasstoreError as exc:
        entry["error"] = str(exc)
        return entry
    entry.update(payload_value(payload))
    return entry


def _print_entry(
    entry: dict[str, Any], found: FoundReference, out: TextIO, *, header: bool
) -> None:
    if header:
        print(f"# {_where(found)}  {entry['key']}  {entry['encoding']}", file=out)
    if "value" in entry:
        print(json.dumps(entry["value"], indent=2, ensure_ascii=False), file=out)
    else:
        print(entry["data_base64"], file=out)
    out.flush()
