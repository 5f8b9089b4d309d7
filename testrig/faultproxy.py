"""An HTTP proxy in front of a real server that answers chosen requests itself.

Faults are injected on the wire, so the client under test runs unchanged:
:class:`FaultProxy` forwards every request to ``upstream`` and relays the
answer, except that a request matching a queued :class:`Fault` gets the
fault's canned answer instead (and is not forwarded). Plain HTTP/1.1 with
keep-alive, one thread per connection, loopback only.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from testrig.processes import LOOPBACK

__all__ = ["Fault", "FaultProxy"]

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


@dataclass
class Fault:
    """A canned answer for the next request ``matches`` accepts."""

    matches: Callable[[str, str, dict[str, str]], bool]
    """``(method, path, headers)`` -> whether this fault answers the request."""
    status: int
    body: bytes = b""
    content_type: str = "application/xml"


class FaultProxy:
    """Forwards to ``upstream`` (``http://127.0.0.1:P``), answering queued faults itself."""

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self._upstream = (target.hostname or LOOPBACK, target.port or 80)
        self.faults: list[Fault] = []
        """Pending faults, each used once, first match first."""
        self.injected: list[tuple[str, str]] = []
        """``(method, path)`` of every request answered by a fault."""
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Stay quiet: tests read :attr:`FaultProxy.injected` instead."""

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()}
                fault = proxy._take(self.command, self.path, headers)
                if fault is not None:
                    self.send_response(fault.status)
                    self.send_header("Content-Type", fault.content_type)
                    self.send_header("Content-Length", str(len(fault.body)))
                    self.end_headers()
                    self.wfile.write(fault.body)
                    return
                upstream = http.client.HTTPConnection(*proxy._upstream, timeout=30)
                try:
                    forwarded = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body, headers=forwarded)
                    answer = upstream.getresponse()
                    data = answer.read()
                    self.send_response(answer.status)
                    for name, value in answer.getheaders():
                        if name.lower() not in _HOP_BY_HOP | {"content-length"}:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:P``: point the client here instead of at the server."""
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def _take(self, method: str, path: str, headers: dict[str, str]) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path, headers):
                    self.faults.remove(fault)
                    self.injected.append((method, path))
                    return fault
        return None

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
