"""Durations as the operator commands read and write them (``90s``, ``36h``, ``1d12h``)."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta

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


def format_duration(value: timedelta) -> str:
    """Format a duration the way the CLI takes it (``26h``, ``3d``, ``1.5s``)."""
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"
