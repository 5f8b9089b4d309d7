"""The ``casstore`` command line (also ``python -m casstore``): a dispatcher.

Each subcommand lives in its own module exposing
``register(subparsers: argparse._SubParsersAction) -> None``, which adds its
parser and sets ``func(args, out) -> int`` with ``set_defaults``. Adding a
command means adding its module to :data:`_COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from casstore import __version__
from casstore.demo import _command as demo_command
from casstore.ops import _cat as cat_command
from casstore.ops import _gc as gc_command
from casstore.ops import _stats as stats_command
from casstore.ops import _verify as verify_command
from casstore.ops._args import resolve_store
from casstore.server import _command as serve_command

_INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)

_COMMANDS = [
    demo_command,
    stats_command,
    verify_command,
    cat_command,
    gc_command,
    serve_command,
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="casstore",
        description="Content-addressed, deduplicating payload storage for Temporal.",
    )
    parser.add_argument("--version", action="version", version=f"casstore {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = _parser().parse_args(argv)
    resolve_store(args)  # every command takes the store as --store URL or positionally
    try:
        code: int = args.func(args, out or sys.stdout)
    except KeyboardInterrupt:
        print(f"\ncasstore {args.command}: interrupted", file=sys.stderr)
        return _INTERRUPTED
    return code
