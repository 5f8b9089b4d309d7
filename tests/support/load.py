"""Raw HTTP/1.1 clients for loading a ``casstore serve`` process on loopback.

httpx would parse and hold every response; these read a response as bytes and
keep only its status, size and timing, so hundreds of 10 MiB responses can be
in flight from one test process. Every loop here is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    status: int
    size: int
    seconds: float
    finished_at: float
    body: bytes  # the first 4 KiB


def request_bytes(path: str, body: bytes, namespace: str = "default") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: codec\r\nContent-Type: application/json\r\n"
        f"X-Namespace: {namespace}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def post(url: str, path: str, body: bytes, *, within: float = 60.0) -> Answer:
    """POST and read the whole response (up to EOF), keeping its first 4 KiB."""
    parts = urlsplit(url)
    started = time.monotonic()
    async with asyncio.timeout(within):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port, limit=1 << 20)
        try:
            writer.write(request_bytes(path, body))
            await writer.drain()
            first = await reader.readuntil(b"\r\n\r\n")
            status = int(first.split(b" ", 2)[1])
            kept = b""
            size = 0
            while chunk := await reader.read(1 << 20):
                size += len(chunk)
                if len(kept) < 4096:
                    kept += chunk[: 4096 - len(kept)]
        finally:
            writer.close()
    now = time.monotonic()
    return Answer(status, size, now - started, now, kept)


def json_of(answer: Answer) -> dict[str, object]:
    """The JSON error body of a small answer (chunked framing removed)."""
    text = answer.body.decode()
    start, end = text.index("{"), text.rindex("}") + 1
    document: dict[str, object] = json.loads(text[start:end])
    return document


def open_stalled(url: str, path: str, body: bytes, count: int) -> list[socket.socket]:
    """Send ``count`` requests whose responses are never read (tiny receive buffers)."""
    parts = urlsplit(url)
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
        sock.sendall(request_bytes(path, body))
        sockets.append(sock)
    return sockets


def open_trickling(url: str, count: int) -> list[socket.socket]:
    """Open ``count`` connections that have sent one byte of a request line."""
    parts = urlsplit(url)
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
        sock.setblocking(False)
        sock.send(b"P")
        sockets.append(sock)
    return sockets


def trickle(sockets: list[socket.socket], byte: bytes = b"O") -> int:
    """Send one more byte on each; return how many the server has closed."""
    closed = 0
    for sock in sockets:
        try:
            if sock.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
                continue
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
            continue
        try:
            sock.send(byte)
        except OSError:
            closed += 1
    return closed


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A /proc/PID/status figure in KiB: VmRSS now, VmHWM the peak."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for process {pid}")
