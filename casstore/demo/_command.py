"""``casstore demo``: its flags, and running it with a dev server when none is given."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from casstore import __version__
from casstore.demo._errors import DemoError
from casstore.demo._run import DEFAULT_STORE, DemoOptions, demo_main
from casstore.demo._runner import Interrupted, exit_now_if_stuck, run_interruptible
from casstore.errors import CasstoreError

INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``demo`` subcommand to the ``casstore`` parser."""
    defaults = DemoOptions()
    demo = subparsers.add_parser(
        "demo",
        help="run a fan-out workflow on Temporal with casstore and print what it stored",
        description=(
            "Start a Temporal dev server (unless --address is given) and a worker, run a "
            "parent workflow that hands one large JSON document to many activities and to "
            "child workflows that fan out again, with every payload stored by casstore "
            "(threshold 0), and print what was stored, deduplicated and left in history."
        ),
    )
    demo.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="use this Temporal front end instead of starting a dev server",
    )
    demo.add_argument("--namespace", default=defaults.namespace, help="Temporal namespace")
    demo.add_argument(
        "--store",
        default=DEFAULT_STORE,
        metavar="URL",
        help="casstore backend: a folder, file://, memory:// or s3://bucket/prefix?... URL "
        f"(default: ./{DEFAULT_STORE})",
    )
    for flag, default, what in (
        ("--fan-out", defaults.activities, "activities the parent starts"),
        ("--children", defaults.children, "child workflows the parent starts"),
        ("--child-fan-out", defaults.child_activities, "activities each child starts"),
    ):
        demo.add_argument(
            flag, type=_count, default=default, metavar="N", help=f"{what} (default {default})"
        )
    demo.add_argument(
        "--input-mib",
        type=_mib,
        default=defaults.input_mib,
        metavar="X",
        help=f"size of the JSON input in MiB (default {defaults.input_mib:g})",
    )
    demo.add_argument(
        "--scope",
        choices=["workflow", "namespace"],
        default=defaults.scope,
        help="casstore dedup scope (default %(default)s; namespace also dedups across children)",
    )
    demo.add_argument(
        "--timeout",
        type=float,
        default=defaults.timeout,
        metavar="SECONDS",
        help=f"give up after this long (default {defaults.timeout:g})",
    )
    demo.set_defaults(func=run)


def _count(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 2000:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2000, got {value}")
    return value


def _mib(text: str) -> float:
    value = float(text)
    if not 0 < value <= 40:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 40 MiB, got {value:g}")
    return value


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run the demo as the parsed flags say; return the exit code.

    Ctrl-C or SIGTERM stops the worker (giving up on it after a bounded
    wait), then the dev server, prints one line and exits with 128 + the
    signal number; if a worker thread is still busy then, the process ends
    without waiting for it (see :func:`~casstore.demo._runner.exit_now_if_stuck`).
    """
    code = _run(args, out)
    exit_now_if_stuck(code)
    return code


def _run(args: argparse.Namespace, out: TextIO) -> int:
    started = time.monotonic()
    print(f"casstore {__version__} demo", file=out)
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        with _temporal(args.address, args.namespace, out) as address:
            options = DemoOptions(
                address=address,
                store=args.store,
                activities=args.fan_out,
                children=args.children,
                child_activities=args.child_fan_out,
                input_mib=args.input_mib,
                scope=args.scope,
                namespace=args.namespace,
                timeout=args.timeout,
            )
            run_interruptible(demo_main(options, out))
    except KeyboardInterrupt:
        return _interrupted(out, INTERRUPTED)
    except Interrupted as exc:
        return _interrupted(out, exc.exit_code)
    except (DemoError, CasstoreError) as exc:
        print(f"\ncasstore demo failed: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a CLI reports, it does not dump a traceback
        print(f"\ncasstore demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"  {'total time':<21}  {time.monotonic() - started:.1f} s", file=out)
    return 0


def _interrupted(out: TextIO, code: int) -> int:
    out.flush()
    print("\ncasstore demo: interrupted; worker and servers stopped", file=sys.stderr)
    return code


def _raise_interrupted(signum: int, frame: object) -> None:
    """SIGTERM outside the event loop (e.g. while the dev server starts): unwind like Ctrl-C."""
    raise Interrupted(signum)


@contextlib.contextmanager
def _temporal(address: str | None, namespace: str, out: TextIO) -> Iterator[str]:
    """Yield a Temporal address: the given one, or a dev server started (and stopped) here."""
    if address is not None:
        print(f"  temporal   {address} (given)", file=out, flush=True)
        yield address
        return
    from casstore.demo._devserver import dev_server

    with dev_server(namespace) as (server_address, pid):
        print(
            f"  temporal   {server_address} (dev server started for the demo, pid {pid})",
            file=out,
            flush=True,
        )
        yield server_address
