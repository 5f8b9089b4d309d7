"""Sending a response in chunks, with backpressure and a deadline for slow readers.

The ASGI server waits for its socket buffer to drain before it takes the next
chunk, so a client that reads slowly slows the sending down instead of piling
the whole body up in memory. A client that takes more than ``send_timeout``
seconds to take one chunk is dropped (the connection is closed), and the
request's admission ticket is released either way.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from casstore.server._admission import Ticket

ABORT_EXTENSION = "casstore.abort"
"""Set by ``casstore serve``'s protocol: ``{"abort": callable}`` drops the connection."""

logger = logging.getLogger("casstore.server")
CHUNK_BYTES = 256 * 1024


class SlowClientError(Exception):
    """The client did not take a chunk of its response in time; its connection is dropped."""


class TicketedResponse(Response):
    """A JSON response sent in chunks that releases its admission ticket when done."""

    def __init__(self, content: bytes, ticket: Ticket, send_timeout: float) -> None:
        super().__init__(content, media_type="application/json")
        self._ticket = ticket
        self._send_timeout = send_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._ticket.done_processing()  # sending takes no CPU slot, only the bytes
        try:
            await self._send_in_chunks(scope, send)
        finally:
            self._ticket.release()

    async def _send_in_chunks(self, scope: Scope, send: Send) -> None:
        await self._timed(
            send,
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": self.raw_headers,
            },
            scope,
        )
        body = memoryview(self.body)
        self.body = b""  # the chunks below hold the only reference
        for start in range(0, max(len(body), 1), CHUNK_BYTES):
            chunk = bytes(body[start : start + CHUNK_BYTES])
            more = start + CHUNK_BYTES < len(body)
            await self._timed(
                send, {"type": "http.response.body", "body": chunk, "more_body": more}, scope
            )

    async def _timed(self, send: Send, message: dict[str, object], scope: Scope) -> None:
        try:
            async with asyncio.timeout(self._send_timeout):
                await send(message)
        except TimeoutError as exc:
            abort = scope.get("extensions", {}).get(ABORT_EXTENSION, {}).get("abort")
            if abort is not None:
                abort()  # else the server closes it, once what it buffered is read
            logger.info(
                "%s %s: the client took no response data for %.0f s; connection dropped",
                scope.get("method"),
                scope.get("path"),
                self._send_timeout,
            )
            raise SlowClientError(
                f"the client took no response data for {self._send_timeout} s"
            ) from exc
