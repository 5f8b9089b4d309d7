"""How every operator command ends: exit statuses, one-line errors, Ctrl-C.

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

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TextIO

from casstore.errors import CasstoreError

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)


class CommandError(Exception):
    """A problem to report as one line, ending the command with ``exit_code``."""

    def __init__(self, message: str, *, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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
