"""HTTP/1.1 on asyncio streams for :mod:`testrig.chaos`: read requests, frame answers, reset.

Only what a loopback proxy in front of S3 emulators needs: requests with a
``Content-Length`` or a chunked body, answers read until the upstream closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass
from http import HTTPStatus

MAX_HEAD = 64 * 1024
"""Longest request head accepted (S3 clients send a few KiB at most)."""


@dataclass
class Request:
    """One request as read from a client, ready to forward."""

    method: str
    target: str
    head: bytes
    """The head to send upstream: no ``Expect``, ``Connection: close``."""
    body: bytes
    headers: dict[str, str]
    """The client's headers, names lower-cased (the last of repeated ones)."""


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Request | None:
    """Read one request (answering ``Expect: 100-continue``); None at a clean EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    except asyncio.LimitOverrunError as exc:
        raise ValueError("request head too large") from exc
    if len(head) > MAX_HEAD:
        raise ValueError("request head too large")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    names = {name.lower(): value for name, value in headers}
    if names.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    if names.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
        headers = [(n, v) for n, v in headers if n.lower() != "transfer-encoding"]
        headers.append(("Content-Length", str(len(body))))
    else:
        body = await reader.readexactly(int(names.get("content-length", "0")))
    forwarded = [
        (n, v) for n, v in headers if n.lower() not in ("expect", "connection", "keep-alive")
    ]
    forwarded.append(("Connection", "close"))
    new_head = (
        f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in forwarded) + "\r\n"
    ).encode("latin-1")
    return Request(method, target, new_head, body, names)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            # Trailers, up to the blank line.
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def frame_response(raw: bytes, method: str) -> bytes:
    """Make a close-delimited upstream answer safe to send on a kept-alive connection."""
    head_end = raw.find(b"\r\n\r\n")
    if head_end < 0:
        raise ConnectionError("upstream closed without a complete answer")
    head, body = raw[:head_end], raw[head_end + 4 :]
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = [line for line in lines[1:] if line]
    names = {line.partition(":")[0].strip().lower() for line in headers}
    headers = [h for h in headers if h.partition(":")[0].strip().lower() != "connection"]
    bodiless = method == "HEAD" or status in (204, 304) or 100 <= status < 200
    if not bodiless and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(f"Content-Length: {len(body)}")
    return ("\r\n".join([lines[0], *headers]) + "\r\n\r\n").encode("latin-1") + body


def response(status: int, body: bytes, content_type: str, method: str) -> bytes:
    """An answer made up by the proxy (no body where HTTP forbids one)."""
    if method == "HEAD" or status in (204, 304):
        body = b""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1") + body


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed server or middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
