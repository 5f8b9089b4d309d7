"""create_app: the codec server as an ASGI (Starlette) application."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, Unpack

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.converter import PayloadCodec, StorageDriver

from casstore._driver import CasStorageDriver
from casstore._url import open_backend
from casstore.backends._base import Backend
from casstore.errors import ConfigurationError
from casstore.plugin import DEFAULT_PAYLOAD_SIZE_THRESHOLD, DriverOptions
from casstore.server._admission import Admission, request_cost
from casstore.server._auth import Authorizer
from casstore.server._cors import CorsMiddleware, normalize_origin
from casstore.server._namespaces import ClaimNamespace
from casstore.server._protocol import ProtocolError, dump_payloads, error_body, parse_payloads
from casstore.server._sending import TicketedResponse
from casstore.server._service import PayloadService

logger = logging.getLogger("casstore.server")
_A = TypeVar("_A")
_T = TypeVar("_T")

OPERATIONS = ("encode", "decode", "download")
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_BYTES_IN_FLIGHT = 128 * 1024 * 1024
DEFAULT_MAX_REFERENCES = 1000
DEFAULT_MAX_READS_PER_REQUEST = 8
DEFAULT_BODY_TIMEOUT = 60.0
DEFAULT_SEND_TIMEOUT = 30.0
_OFFLOAD_BYTES = 256 * 1024
"""Bodies at least this large are parsed and serialized in a worker thread."""
_SERIALIZER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="casstore-server-json")
"""Threads of their own, so large bodies' JSON work never queues ahead of the
default executor's jobs: small requests' file reads and verification."""
_MAX_NAMESPACE_LENGTH = 1000


def create_app(
    store: str | Backend | CasStorageDriver,
    *,
    extra_drivers: Sequence[StorageDriver] = (),
    codec: PayloadCodec | None = None,
    authorize: Authorizer | None = None,
    cors_origins: Sequence[str] = (),
    namespace: str | None = None,
    payload_size_threshold: int = DEFAULT_PAYLOAD_SIZE_THRESHOLD,
    claim_namespace: ClaimNamespace | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    max_concurrent_requests: int = 4,
    inline_max_bytes: int = 0,
    max_references: int = DEFAULT_MAX_REFERENCES,
    max_reads_per_request: int = DEFAULT_MAX_READS_PER_REQUEST,
    max_bytes_in_flight: int = DEFAULT_MAX_BYTES_IN_FLIGHT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    send_timeout: float = DEFAULT_SEND_TIMEOUT,
    **driver_options: Unpack[DriverOptions],
) -> Starlette:
    """Build the codec server: ``POST /encode``, ``/decode``, ``/download`` (also ``/{ns}/...``).

    Args:
        store: The casstore store the workers use: a backend URL, a
            :class:`~casstore.backends.Backend`, or a ready
            :class:`~casstore.CasStorageDriver` (its ``name`` must be the
            workers' driver name, ``"casstore"`` by default).
        extra_drivers: More drivers to resolve references with, e.g. the SDK's
            ``S3StorageDriver`` for histories written before a migration.
        codec: The workers' payload codec (e.g. encryption): ``/decode`` and
            ``/download`` decode with it after resolving, ``/encode`` encodes.
        authorize: ``(headers, namespace) -> allowed`` (may be async), asked
            before the body is read; see :func:`bearer_token_authorizer`.
        cors_origins: Origins allowed to call from a browser (the Web UI's,
            e.g. ``http://localhost:8233``), or ``*`` (never with credentials).
        namespace: The namespace of requests that name none (no path prefix,
            no ``X-Namespace``); ``None`` refuses such requests.
        payload_size_threshold: ``/encode`` stores payloads at least this large.
        claim_namespace: ``(driver name, claim data) -> namespace or None`` for
            extra drivers whose claims casstore cannot read (it reads the SDK's
            S3 and GCS drivers' keys itself).
        max_body_bytes: Larger request bodies get 413.
        max_response_bytes: Most payload bytes one response may carry (413).
        max_concurrent_requests: Large requests (holding more than 1 MiB)
            processed at once; more wait. Small ones have their own lane. Large
            requests are CPU-bound (verification, base64, JSON): a few at a
            time serve as many bytes per second and leave the CPU to small ones.
        inline_max_bytes: The Web UI asks ``/decode`` to keep references
            (``preserveStorageRefs=true``) and offers a download button for
            each; references to payloads at most this large are resolved
            anyway, so small values show on the page. 0 (the default, as the
            Go SDK's handler) keeps them all.
        max_references: Most distinct references one request may resolve (413).
        max_reads_per_request: Reads one request has in flight at once.
        max_bytes_in_flight: Bytes all admitted requests hold together: their
            bodies and the payloads they resolve, counted until the response
            is sent (see docs/codec-server.md, "Limits").
        body_timeout: Seconds a client has to send the whole body (408).
        send_timeout: Seconds a client may take to accept one 256 KiB chunk
            of its response before its connection is dropped.
        **driver_options: Options for the driver built from a URL or backend.

    Returns:
        A Starlette app: serve it with any ASGI server or mount it in
        FastAPI/Starlette. A backend it opened from a URL is closed when the
        app's lifespan ends (mounted sub-apps get no lifespan: pass a backend
        or driver you close yourself).

    Raises:
        ConfigurationError: For bad options or clashing driver names.
    """
    owned: Backend | None = None
    if isinstance(store, CasStorageDriver):
        if driver_options:
            raise ConfigurationError(
                "driver options cannot be combined with a ready CasStorageDriver "
                f"[options={sorted(driver_options)}]"
            )
        driver = store
    else:
        backend = store if isinstance(store, Backend) else open_backend(store)
        owned = None if isinstance(store, Backend) else backend
        driver = CasStorageDriver(backend, **driver_options)
    drivers: list[StorageDriver] = [driver, *extra_drivers]
    names = [d.name() if isinstance(d, StorageDriver) else None for d in drivers]
    if None in names:
        bad = next(d for d in drivers if not isinstance(d, StorageDriver))
        raise ConfigurationError(
            f"extra_drivers must hold StorageDriver instances, got {type(bad).__name__}"
        )
    if len(set(names)) != len(names):
        raise ConfigurationError(f"driver names must be unique, got {names}")
    for option, value in (
        ("max_body_bytes", max_body_bytes),
        ("max_response_bytes", max_response_bytes),
        ("max_concurrent_requests", max_concurrent_requests),
        ("max_references", max_references),
        ("max_reads_per_request", max_reads_per_request),
        ("max_bytes_in_flight", max_bytes_in_flight),
        ("body_timeout", body_timeout),
        ("send_timeout", send_timeout),
    ):
        if value <= 0:
            raise ConfigurationError(f"{option} must be greater than zero, got {value}")
    if inline_max_bytes < 0:
        raise ConfigurationError(f"inline_max_bytes must not be negative, got {inline_max_bytes}")
    if payload_size_threshold < 0:
        raise ConfigurationError(
            f"payload_size_threshold must not be negative, got {payload_size_threshold}"
        )
    problem = None if namespace is None else _namespace_problem(namespace, "namespace")
    if problem is not None:
        raise ConfigurationError(problem)
    origins = [normalize_origin(o) for o in cors_origins]

    handler = _Handler(
        PayloadService(
            drivers,
            codec=codec,
            payload_size_threshold=payload_size_threshold,
            claim_namespace=claim_namespace,
            max_response_bytes=max_response_bytes,
            inline_max_bytes=inline_max_bytes,
            max_references=max_references,
            max_reads_per_request=max_reads_per_request,
        ),
        authorize=authorize,
        default_namespace=namespace,
        max_body_bytes=max_body_bytes,
        admission=Admission(max_bytes_in_flight, max_concurrent_requests),
        body_timeout=body_timeout,
        send_timeout=send_timeout,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            # Build clients at startup: the first request should not pay for it.
            await driver.backend.open()
            yield
        finally:
            if owned is not None:
                await owned.aclose()

    app = Starlette(
        routes=[
            Route("/{operation}", handler.handle, methods=["POST"]),
            Route("/{namespace}/{operation}", handler.handle, methods=["POST"]),
        ],
        middleware=[Middleware(CorsMiddleware, origins=origins)],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.driver = driver
    return app


class _Handler:
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
            problem = None if value is None else _namespace_problem(value, what)
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


def _namespace_problem(value: str, what: str) -> str | None:
    if not value or len(value) > _MAX_NAMESPACE_LENGTH or not value.isprintable():
        return f"{what} is not a valid namespace name [namespace={value[:100]!r}]"
    return None


def _error(status: int, message: str, *, key: str | None = None) -> Response:
    return Response(
        error_body(message, status=status, key=key),
        status_code=status,
        media_type="application/json",
    )


async def _http_error(request: Request, exc: Exception) -> Response:
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
