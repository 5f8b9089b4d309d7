"""A one-line progress display for long commands, drawn on stderr only for a terminal."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Self, TextIO

from casstore.ops._output import format_bytes


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
