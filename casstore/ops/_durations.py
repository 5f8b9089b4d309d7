"""Durations as the CLI writes them (``26h``, ``3d``, ``1.5s``), the way it reads them."""

from __future__ import annotations

from datetime import timedelta


def format_duration(value: timedelta) -> str:
    """Format a duration the way the CLI takes it (``26h``, ``3d``, ``1.5s``)."""
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"
