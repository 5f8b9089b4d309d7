"""create_app: the codec server as an ASGI (Starlette) application."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Unpack

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route
from temporalio.converter import PayloadCodec, StorageDriver

from casstore._driver import CasStorageDriver
from casstore._url import open_backend
from casstore.backends._base import Backend
from casstore.errors import ConfigurationError
from casstore.plugin import DEFAULT_PAYLOAD_SIZE_THRESHOLD, DriverOptions
from casstore.server._admission import Admission
from casstore.server._auth import Authorizer
from casstore.server._cors import CorsMiddleware, normalize_origin
from casstore.server._handler import Handler, http_error, namespace_problem
from casstore.server._namespaces import ClaimNamespace
from casstore.server._service import PayloadService

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_BYTES_IN_FLIGHT = 128 * 1024 * 1024
DEFAULT_MAX_REFERENCES = 1000
DEFAULT_MAX_READS_PER_REQUEST = 8
DEFAULT_BODY_TIMEOUT = 60.0
DEFAULT_SEND_TIMEOUT = 30.0


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
        if owned is not None:  # a shared store, as the plugin treats one: record its policy
            driver_options.setdefault("lifecycle_manifest", True)
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
    problem = None if namespace is None else namespace_problem(namespace, "namespace")
    if problem is not None:
        raise ConfigurationError(problem)
    origins = [normalize_origin(o) for o in cors_origins]

    handler = Handler(
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
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.driver = driver
    return app
