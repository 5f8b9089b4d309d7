"""uvicorn's HTTP/1.1 protocol with what it lacks: a header timeout and a connection cap.

uvicorn times out only idle keep-alive connections, and its
``limit_concurrency`` answers 503 to requests but keeps every connection open.
A client that opens connections and sends headers a byte at a time therefore
holds a file descriptor each for as long as it likes, until ``accept`` fails
with EMFILE and real requests time out. This protocol:

* closes a connection whose request line and headers have not all arrived
  ``header_timeout`` seconds after it opened (or after its previous response);
* keeps at most ``max_connections`` open: a new connection over the cap closes
  the oldest connection still waiting for its headers, so a flood of idle or
  trickling connections cannot lock real clients out; when every connection is
  busy with a request, the new one is closed at once instead.

``max_connections`` is kept below the process's descriptor limit
(``RLIMIT_NOFILE``), leaving room for the store's files and sockets.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from casstore.server._sending import ABORT_EXTENSION

logger = logging.getLogger("casstore.server")
DESCRIPTOR_RESERVE = 256
"""Descriptors kept free of client connections: for the store's files and sockets, and
for the connections accepted in one burst (``ACCEPT_BACKLOG`` a loop turn) before the
cap closes any."""
ACCEPT_BACKLOG = 64
"""The listen backlog, which is also how many connections asyncio accepts in one turn."""


def connection_cap(requested: int) -> int:
    """``requested``, lowered to stay ``DESCRIPTOR_RESERVE`` below the descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return requested
    return max(1, min(requested, soft - DESCRIPTOR_RESERVE))


class _Registry:
    """Connections still waiting for their request headers, oldest first."""

    def __init__(self, max_connections: int, header_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.waiting: OrderedDict[GuardedH11Protocol, None] = OrderedDict()
        self.evicted = 0
        self.refused = 0
        self.timed_out = 0


class GuardedH11Protocol(H11Protocol):
    """H11Protocol plus a header timeout and a connection cap; see the module docstring."""

    registry: _Registry  # set on the subclass guarded_protocol() makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.registry.max_connections:
            if self.registry.waiting:
                oldest, _ = self.registry.waiting.popitem(last=False)
                self.registry.evicted += 1
                oldest._close("evicted: at the connection cap, and it had sent no request yet")
            else:
                self.registry.refused += 1
                self._close("refused: at the connection cap, every connection busy")
                return
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self._header_timer is not None and self.conn.their_state is not h11.IDLE:
            self._stop_header_timer()  # the request line and headers are in
        if self.cycle is not None:
            # close() would wait for the client to read what is buffered: a
            # client that never reads is dropped with abort() (see _sending.py).
            extensions = self.cycle.scope.setdefault("extensions", {})
            extensions[ABORT_EXTENSION] = {"abort": self.transport.abort}

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_headers()  # the next request on this connection

    def _await_headers(self) -> None:
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(
            self.registry.header_timeout, self._header_timed_out
        )
        self.registry.waiting[self] = None

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self.registry.waiting.pop(self, None)

    def _header_timed_out(self) -> None:
        self._header_timer = None
        self.registry.timed_out += 1
        self._close(f"no complete request headers within {self.registry.header_timeout:g} s")

    def _close(self, why: str) -> None:
        self._stop_header_timer()
        if not self.transport.is_closing():
            logger.debug("connection from %s closed: %s", self.client, why)
            self.transport.close()


def guarded_protocol(max_connections: int, header_timeout: float) -> type[GuardedH11Protocol]:
    """A protocol class for ``uvicorn.Config(http=...)``, with its own connection registry."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"registry": _Registry(max_connections, header_timeout)},
    )
