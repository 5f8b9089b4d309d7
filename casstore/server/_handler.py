"""Handling one codec server request: route, namespace, auth, body, work, response.

Every failure becomes a JSON error body with the status it deserves; nothing
a client sends ends in a traceback.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from casstore.server._admission import Admission, request_cost
from casstore.server._auth import Authorizer
from casstore.server._protocol import ProtocolError, dump_payloads, error_body, parse_payloads
from casstore.server._sending import TicketedResponse
from casstore.server._service import PayloadService

__all__ = ["Handler", "http_error", "namespace_problem"]

logger = logging.getLogger("casstore.server")
_A = TypeVar("_A")
_T = TypeVar("_T")

OPERATIONS = ("encode", "decode", "download")
_OFFLOAD_BYTES = 256 * 1024
"""Bodies at least this large are parsed and serialized in a worker thread."""
_SERIALIZER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="casstore-server-json")
"""Threads of their own, so large bodies' JSON work never queues ahead of the
default executor's jobs: small requests' file reads and verification."""
_MAX_NAMESPACE_LENGTH = 1000


class Handler:
    """One request: route, namespace, auth, body, work, response; every failure as JSON."""

    def __init__(
        self,
        service: PayloadService,
        *,
        authorize: Authorizer | None,
        default_namespace: str | None,
        max_body_bytes: int,
        admission: Admission,
        body_timeout: float,
        send_timeout: float,
    ) -> None:
        self._service = service
        self._authorize = authorize
        self._default_namespace = default_namespace
        self._max_body_bytes = max_body_bytes
        self._admission = admission
        self._body_timeout = body_timeout
        self._send_timeout = send_timeout

    async def handle(self, request: Request) -> Response:
        operation = request.path_params["operation"]
        if operation not in OPERATIONS:
            return _refused(request, 404, _unknown_path(request))
        try:
            namespace = self._namespace(request)
            await self._check_authorized(request, namespace)
            _check_content_type(request)
            body = await self._read_body(request)
            return await self._respond(request, operation, namespace, body)
        except ProtocolError as exc:
            return _refused(request, exc.status, exc.message, key=exc.key)
        except ClientDisconnect:
            return _refused(request, 400, "the client disconnected before sending the whole body")
        except Exception as exc:  # the server keeps serving and never shows a traceback
            logger.exception("%s %s failed", request.method, request.url.path)
            return _error(
                500, f"internal error while handling /{operation}: {type(exc).__name__}: {exc}"
            )

    def _namespace(self, request: Request) -> str:
        from_path = request.path_params.get("namespace")
        from_header = request.headers.get("x-namespace")
        for value, what in ((from_path, "the namespace in the path"), (from_header, "X-Namespace")):
            problem = None if value is None else namespace_problem(value, what)
            if problem is not None:
                raise ProtocolError(400, problem)
        if from_path and from_header and from_path != from_header:
            raise ProtocolError(
                400,
                f"the path names namespace {from_path!r} but X-Namespace says "
                f"{from_header!r}; send one or make them agree",
            )
        namespace = from_path or from_header or self._default_namespace
        if namespace is None:
            raise ProtocolError(
                400,
                "no namespace: send the X-Namespace header or use /{namespace}/"
                + request.path_params["operation"]
                + " (this server has no default namespace)",
            )
        return namespace

    async def _check_authorized(self, request: Request, namespace: str) -> None:
        if self._authorize is None:
            return
        verdict = self._authorize(dict(request.headers), namespace)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if verdict is True:
            return
        if "authorization" not in request.headers:
            raise ProtocolError(
                401,
                f"authorization required for namespace {namespace!r}: "
                "send Authorization: Bearer <token>",
            )
        raise ProtocolError(403, f"not authorized for namespace {namespace!r}")

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body_bytes:
            raise self._too_large(int(declared))
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self._body_timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > self._max_body_bytes:
                        raise self._too_large(size)
                    chunks.append(chunk)
        except TimeoutError as exc:
            raise ProtocolError(
                408,
                f"the request body did not arrive within {self._body_timeout:g} s "
                f"(body_timeout; {size} bytes received)",
            ) from exc
        return b"".join(chunks)

    def _too_large(self, size: int) -> ProtocolError:
        return ProtocolError(
            413,
            f"request body of {size}+ bytes is above this server's "
            f"limit of {self._max_body_bytes} bytes (max_body_bytes)",
        )

    async def _respond(
        self, request: Request, operation: str, namespace: str, body: bytes
    ) -> Response:
        payloads = await _off_loop_if_large(len(body), parse_payloads, body)
        preserve = request.query_params.get("preserveStorageRefs", "").lower() == "true"
        preserve = preserve and operation == "decode"
        resolved = self._service.cost(payloads, operation, preserve=preserve)
        ticket = await self._admission.admit(request_cost(len(body), resolved))
        try:
            if operation == "decode":
                result = await self._service.decode(
                    payloads, namespace, preserve_references=preserve
                )
            elif operation == "download":
                result = await self._service.download(payloads, namespace)
            else:
                result = await self._service.encode(payloads, namespace)
            size = sum(p.ByteSize() for p in result)
            content = await _off_loop_if_large(size, dump_payloads, result)
        except BaseException:
            ticket.release()
            raise
        return TicketedResponse(content, ticket, self._send_timeout)


async def _off_loop_if_large(size: int, func: Callable[[_A], _T], arg: _A) -> _T:
    if size >= _OFFLOAD_BYTES:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_SERIALIZER, func, arg)
    return func(arg)


def _check_content_type(request: Request) -> None:
    # A JSON content type makes browsers preflight, so a foreign page cannot
    # post here with a "simple" text/plain request.
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise ProtocolError(
            415, f"Content-Type must be application/json, got {content_type or 'none'!r}"
        )


def namespace_problem(value: str, what: str) -> str | None:
    if not value or len(value) > _MAX_NAMESPACE_LENGTH or not value.isprintable():
        return f"{what} is not a valid namespace name [namespace={value[:100]!r}]"
    return None


def _error(status: int, message: str, *, key: str | None = None) -> Response:
    return Response(
        error_body(message, status=status, key=key),
        status_code=status,
        media_type="application/json",
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}; use POST"
        response = _refused(request, 405, message)
        response.headers["Allow"] = "POST, OPTIONS"
        return response
    if exc.status_code == 404:
        return _refused(request, 404, _unknown_path(request))
    return _refused(request, exc.status_code, str(exc.detail))


def _unknown_path(request: Request) -> str:
    return (
        f"unknown path {request.url.path}; expected /encode, /decode or "
        "/download, optionally under /{namespace}/"
    )


def _refused(request: Request, status: int, message: str, *, key: str | None = None) -> Response:
    """Log a refused (4xx, info) or failed (5xx, error) request, then answer it."""
    level = logging.ERROR if status >= 500 else logging.INFO
    logger.log(level, "%s %s -> %d: %s", request.method, request.url.path, status, message)
    return _error(status, message, key=key)
