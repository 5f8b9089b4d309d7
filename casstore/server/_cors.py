"""CORS for the Web UI, as an ASGI middleware around the whole app.

Only the configured origins get CORS headers. A preflight from another origin
is refused (403), and so is a request that carries another origin's ``Origin``
header: the server acts on nothing a foreign page sent. ``*`` allows every
origin but never credentials; an exact origin also gets
``Access-Control-Allow-Credentials: true`` (the UI's "include credentials").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from casstore.errors import ConfigurationError

logger = logging.getLogger("casstore.server")

ALLOWED_HEADERS = ("Content-Type", "X-Namespace", "Authorization", "Authorization-Extras")
ALLOWED_METHODS = ("POST", "OPTIONS")
_MAX_AGE = "600"


def normalize_origin(origin: str) -> str:
    """Check a configured origin (``scheme://host[:port]`` or ``*``) and drop a trailing slash."""
    if origin == "*":
        return origin
    parts = urlsplit(origin.rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
        raise ConfigurationError(
            f"a CORS origin is scheme://host[:port] (like http://localhost:8233) or *, "
            f"got {origin!r}"
        )
    return f"{parts.scheme}://{parts.netloc}".lower()


class CorsMiddleware:
    """Answer preflights and label responses for the configured origins only."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        normalized = [normalize_origin(o) for o in origins]
        self._app = app
        self._any = "*" in normalized
        self._exact = frozenset(o for o in normalized if o != "*")
        self._allowed_headers = {h.lower() for h in ALLOWED_HEADERS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self._app(scope, receive, send)
            return
        exact = origin.lower() in self._exact
        if not (exact or self._any):
            allowed = ", ".join(sorted(self._exact | ({"*"} if self._any else set()))) or "none"
            await _refuse(
                scope,
                send,
                f"origin {origin!r} is not allowed by this codec server "
                f"(allowed origins: {allowed}; see --cors-origin)",
            )
            return
        cors = {"Access-Control-Allow-Origin": origin if exact else "*", "Vary": "Origin"}
        if exact:
            cors["Access-Control-Allow-Credentials"] = "true"
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(scope, headers, cors, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for name, value in cors.items():
                    response_headers[name] = value
            await send(message)

        await self._app(scope, receive, send_with_cors)

    async def _preflight(
        self, scope: Scope, headers: Headers, cors: dict[str, str], send: Send
    ) -> None:
        method = headers["access-control-request-method"].upper()
        if method not in ALLOWED_METHODS:
            await _refuse(
                scope, send, f"method {method} is not allowed; this codec server takes POST"
            )
            return
        requested = [
            h.strip().lower()
            for h in headers.get("access-control-request-headers", "").split(",")
            if h.strip()
        ]
        refused = [h for h in requested if h not in self._allowed_headers]
        if refused:
            await _refuse(
                scope,
                send,
                f"request header(s) {', '.join(refused)} not allowed "
                f"(allowed: {', '.join(ALLOWED_HEADERS)})",
            )
            return
        response = {
            **cors,
            "Access-Control-Allow-Methods": ", ".join(ALLOWED_METHODS),
            "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
            "Access-Control-Max-Age": _MAX_AGE,
        }
        if headers.get("access-control-request-private-network") == "true":
            response["Access-Control-Allow-Private-Network"] = "true"
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [(k.lower().encode(), v.encode()) for k, v in response.items()],
            }
        )
        await send({"type": "http.response.body", "body": b""})


async def _refuse(scope: Scope, send: Send, message: str) -> None:
    logger.info("%s %s -> 403: %s", scope.get("method"), scope.get("path"), message)
    body = json.dumps({"status": 403, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
