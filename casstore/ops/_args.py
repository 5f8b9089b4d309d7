"""The arguments operator commands share: the store, --json, --keyring, counts."""

from __future__ import annotations

import argparse

from casstore._docs import link_docs
from casstore._driver_options import DEFAULTS
from casstore._keyring import KeyRing
from casstore.errors import ConfigurationError
from casstore.ops._run import CommandError

STORE_HELP = (
    "the store: a folder, file:///path, s3://bucket/prefix?endpoint_url=...&region=..., "
    "az://container/prefix, gs://bucket/prefix or redis://host:6379/0?prefix=... "
    "(options and credentials in backends.md, linked below)"
)


def add_store_argument(
    parser: argparse.ArgumentParser, *, help: str = STORE_HELP, then: str | None = None
) -> None:
    """Add the store URL: ``--store URL``, or the same as the first positional argument.

    Every command takes the store both ways, so a script need not remember
    which command wants which; ``--store`` is the documented form. Call
    :func:`resolve_store` after parsing (the ``casstore`` dispatcher does).

    Args:
        parser: The command's parser.
        help: What the store is, for ``--help``.
        then: The name of a positional argument the command adds after this
            one (``cat``'s ``REF``): with ``--store`` given, a lone positional
            is that argument, not the store.
    """
    parser.add_argument("--store", metavar="URL", help=help)
    parser.add_argument(
        "store_positional",
        nargs="?",
        metavar="STORE_URL",
        help="the store, as --store (give it one way, not both)",
    )
    parser.set_defaults(store_parser=parser, store_then=then)
    link_docs(parser, "Store URLs and their options", "backends.md")


def resolve_store(args: argparse.Namespace) -> None:
    """Set ``args.store`` from ``--store`` or the positional form, or exit with a usage error.

    Giving both, or neither, ends the command (exit status 2) with a message
    that says which forms exist.
    """
    parser: argparse.ArgumentParser | None = getattr(args, "store_parser", None)
    if parser is None:
        return  # a command without a store
    option, positional = args.store, args.store_positional
    then: str | None = args.store_then
    if option is not None and positional is not None:
        if then is not None and getattr(args, then) is None:
            setattr(args, then, positional)  # casstore cat --store URL REF
            positional = None
        else:
            parser.error(
                f"the store was given twice ({positional!r} and --store {option!r}): "
                "give it once, as --store URL (or as the first argument)"
            )
    if option is None and then is not None and getattr(args, then) is None:
        positional = None  # casstore cat REF: a lone positional is the reference
    store = option if option is not None else positional
    if not store:
        also = f"or STORE_URL before {then.upper()}" if then else "or as the first argument"
        parser.error(
            f"no store given: pass --store URL ({also}); a folder, file:///path or s3://..."
        )
    args.store = store


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--json``: one machine-readable document on stdout instead of text."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="write one JSON document to stdout instead of text (errors stay on stderr)",
    )


def add_keyring_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--keyring SPEC`` (``env:VAR`` or ``file:PATH``, see encryption.md)."""
    parser.add_argument(
        "--keyring",
        metavar="SPEC",
        help="keyring for encrypted objects: env:VAR (env: alone reads CASSTORE_KEYRING) "
        "or file:PATH (encryption.md, linked below)",
    )
    link_docs(parser, "Keyrings", "encryption.md")


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
        if spec.startswith(("env:", "file:")):
            raise CommandError(f"bad keyring: {exc}") from exc
        # A bare value is read as a path; it may have been meant as a variable.
        raise CommandError(
            f"bad keyring {spec!r}: {exc}; --keyring takes env:VAR (a variable holding the "
            "keyring; env: alone reads CASSTORE_KEYRING) or file:PATH (a bare value is read "
            "as a file path)"
        ) from exc


def add_concurrency_argument(parser: argparse.ArgumentParser, *, what: str, default: int) -> None:
    """Add ``--concurrency N``: how many ``what`` (e.g. "objects read") run at once."""
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=default,
        metavar="N",
        help=f"{what} at once (default {default})",
    )


def add_max_payload_size_argument(parser: argparse.ArgumentParser, *, limit: str) -> None:
    """Add ``--max-payload-size BYTES``, defaulting to the driver's ``max_payload_size``."""
    default = DEFAULTS["max_payload_size"]
    parser.add_argument(
        "--max-payload-size",
        type=positive_int,
        default=default,
        metavar="BYTES",
        help=f"largest payload {limit}, as the driver's max_payload_size (default {default})",
    )


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
