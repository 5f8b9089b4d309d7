"""The arguments operator commands share: the store, --json, --keyring, counts."""

from __future__ import annotations

import argparse

from casstore._keyring import KeyRing
from casstore.errors import ConfigurationError
from casstore.ops._run import CommandError

STORE_HELP = (
    "the store: a folder, file:///path, or s3://bucket/prefix?endpoint_url=...&region=... "
    "(options in docs/backends.md; S3 credentials from the standard AWS chain)"
)


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
