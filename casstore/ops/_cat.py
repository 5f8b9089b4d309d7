"""``casstore cat``: print the payloads that references in a history point at."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TextIO

from temporalio.api.common.v1 import Payload
from temporalio.converter import StorageDriverClaim, StorageDriverRetrieveContext

from casstore._driver import CasStorageDriver
from casstore._format.claims import parse_claim_data
from casstore.errors import BackendPermissionError, BackendUnavailableError, CasstoreError
from casstore.ops._common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    CommandError,
    add_json_argument,
    add_keyring_argument,
    add_store_argument,
    open_keyring,
    open_store,
    positive_int,
    run_command,
    write_json,
)
from casstore.ops._refs import (
    FoundReference,
    InputError,
    find_references,
    looks_like_text_claim,
    parse_input,
)

DEFAULT_MAX_PAYLOAD_SIZE = 50 * 1024 * 1024
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
            entry["value"] = json.loads(payload.data)
            return entry
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass  # not what its encoding says: show the bytes
    entry["data_base64"] = base64.b64encode(payload.data).decode("ascii")
    return entry


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode("ascii")


def read_input(ref: str | None, stdin: TextIO) -> tuple[str, str]:
    """Return ``(text, source)``: the argument itself, a file it names, or stdin."""
    if ref is None or ref == "-":
        return stdin.read(), "standard input"
    if ref.lstrip()[:1] in ("{", "[", '"') or looks_like_text_claim(ref):
        return ref, "the argument"
    path = Path(ref)
    if not path.is_file():
        raise CommandError(f"not JSON, and no file named {ref!r}")
    try:
        return path.read_text(encoding="utf-8"), f"file {ref}"
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read file {ref}: {exc}") from exc


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
    parser.add_argument(
        "ref",
        nargs="?",
        metavar="REF",
        help="the reference JSON, or a file holding it (default: standard input)",
    )
    add_store_argument(parser, option=True)
    add_keyring_argument(parser)
    parser.add_argument(
        "--max-payload-size",
        type=positive_int,
        default=DEFAULT_MAX_PAYLOAD_SIZE,
        metavar="BYTES",
        help="largest payload a claim may promise, as the driver's max_payload_size "
        f"(default {DEFAULT_MAX_PAYLOAD_SIZE})",
    )
    add_json_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``casstore cat`` with parsed arguments; return the exit status."""

    def work() -> Awaitable[int]:
        # Read the input before the event loop starts, where Ctrl-C interrupts it.
        text, source = read_input(args.ref, sys.stdin)
        return _cat(args, text, source, out, sys.stderr)

    return run_command("cat", work)


async def _cat(args: argparse.Namespace, text: str, source: str, out: TextIO, err: TextIO) -> int:
    keyring = open_keyring(args.keyring)
    try:
        references = find_references(parse_input(text, source=source))
    except InputError as exc:
        raise CommandError(str(exc)) from exc
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
