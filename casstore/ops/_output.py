"""What the operator commands print: JSON documents and sizes for people."""

from __future__ import annotations

import json
from typing import TextIO


def write_json(data: object, out: TextIO) -> None:
    """Write ``data`` as one indented JSON document and a newline."""
    json.dump(data, out, indent=2, ensure_ascii=False)
    out.write("\n")
    out.flush()


def format_bytes(n: float) -> str:
    """Format a byte count for people: ``512 B``, ``1.5 KiB``, ``12.0 MiB``."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            break
    return f"{n:.1f} {unit}"
