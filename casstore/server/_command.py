"""``casstore serve``: run the codec server until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import ipaddress
import logging
import math
import os
import signal
import socket
import sys
from types import FrameType
from typing import Any, TextIO

from casstore._docs import docs_url, link_docs
from casstore.ops._args import add_store_argument, open_keyring
from casstore.ops._run import CommandError
from casstore.ops._store import require_local_store

DEFAULT_PORT = 8081
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
_EXIT_USAGE = 2


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``serve`` subcommand (imports nothing from the web stack)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run a Codec Server so the Temporal Web UI and CLI show casstore payloads",
        description=(
            "Serve POST /encode, /decode and /download (also under /{namespace}/) for the "
            "Temporal Web UI (--ui-codec-endpoint) and CLI (--codec-endpoint), resolving "
            "casstore references from --store. Prints the URL once listening; stops on "
            f"Ctrl-C or SIGTERM. See {docs_url('codec-server.md')}."
        ),
    )
    add_store_argument(parser, help="the workers' store URL")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s)"
    )
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help="port (default %(default)s; 0 picks one)"
    )
    parser.add_argument(
        "--cors-origin",
        action="extend",
        nargs="+",
        default=[],
        metavar="ORIGIN",
        help="browser origin allowed to call (the Web UI's: http://localhost:8233); repeatable",
    )
    parser.add_argument(
        "--codec", metavar="MODULE:ATTR", help="the workers' PayloadCodec (instance or factory)"
    )
    parser.add_argument(
        "--keyring",
        metavar="SPEC",
        help="the workers' keyring, for encrypted objects: env:VAR (env: alone reads "
        "CASSTORE_KEYRING) or file:PATH (encryption.md, linked below)",
    )
    link_docs(parser, "Keyrings", "encryption.md")
    parser.add_argument(
        "--require-encryption",
        action="store_true",
        help="refuse plain (unencrypted) references and objects; needs --keyring",
    )
    parser.add_argument(
        "--auth-token-env",
        metavar="VAR",
        help="require Authorization: Bearer <token>, the token read from this environment variable",
    )
    parser.add_argument(
        "--namespace", help="namespace of requests that name none (default: refuse them)"
    )
    parser.add_argument(
        "--driver-name", default="casstore", help="the workers' driver name (default %(default)s)"
    )
    parser.add_argument(
        "--threshold",
        type=int,
        default=256 * 1024,
        metavar="BYTES",
        help="/encode stores payloads at least this large (default %(default)s)",
    )
    parser.add_argument(
        "--inline-max-bytes",
        type=int,
        default=0,
        metavar="BYTES",
        help="show payloads up to this size decoded in the Web UI instead of as a download "
        "(default 0: every stored payload is a download, as the Go SDK's handler does)",
    )
    _add_limits(parser)
    parser.set_defaults(func=run)


def _add_limits(parser: argparse.ArgumentParser) -> None:
    """Flags bounding what one request and all clients together can take (see "Limits")."""
    limits = parser.add_argument_group("limits (codec-server.md, Limits; linked above)")
    for flag, kind, default, metavar, text in (
        ("--max-references", int, 1000, "N", "distinct references one request may resolve"),
        ("--max-reads-per-request", int, 8, "N", "reads one request has in flight at once"),
        ("--max-bytes-in-flight", int, 128 * 1024 * 1024, "BYTES",
         "bytes all requests hold together, counted until each response is sent"),
        ("--max-concurrent-requests", int, 4, "N", "large requests (over 1 MiB) run at once"),
        ("--max-connections", int, DEFAULT_MAX_CONNECTIONS, "N",
         "open connections (kept 256 below the descriptor limit)"),
        ("--header-timeout", float, DEFAULT_HEADER_TIMEOUT, "SECONDS",
         "time a connection has to send its request line and headers"),
        ("--body-timeout", float, 60.0, "SECONDS", "time a client has to send the body"),
        ("--send-timeout", float, 30.0, "SECONDS",
         "time a client may take to accept each 256 KiB of its response"),
        ("--shutdown-timeout", float, DEFAULT_SHUTDOWN_TIMEOUT, "SECONDS",
         "on SIGTERM, time running requests get before they are cancelled"),
    ):  # fmt: skip
        limits.add_argument(
            flag, type=_positive(kind), default=default, metavar=metavar,
            help=f"{text} (default %(default)s)",
        )  # fmt: skip


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be greater than zero, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


class ServeError(Exception):
    """``casstore serve`` cannot start; the message says why."""


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run the server; return the exit code (0 after Ctrl-C or SIGTERM)."""
    from casstore.errors import CasstoreError
    from casstore.server import _require_server_extra

    _log_requests_to_stderr()
    try:
        _require_server_extra()
        app = _build_app(args)
        warning = exposure_warning(args.host, authenticated=bool(args.auth_token_env))
        if warning:
            print(f"casstore serve: warning: {warning}", file=sys.stderr)
        return asyncio.run(_serve(app, args, out))
    except (ServeError, CasstoreError) as exc:
        print(f"casstore serve: error: {exc}", file=sys.stderr)
        return _EXIT_USAGE


def _log_requests_to_stderr() -> None:
    """Show refused (4xx, info) and failed (5xx, with traceback) requests to the operator."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("casstore serve: %(message)s"))
    log = logging.getLogger("casstore.server")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    # A dropped slow reader is logged by casstore.server; uvicorn's traceback adds nothing.
    logging.getLogger("uvicorn.error").addFilter(_not_a_slow_client)


def _not_a_slow_client(record: logging.LogRecord) -> bool:
    from casstore.server._sending import SlowClientError

    return not (record.exc_info and isinstance(record.exc_info[1], SlowClientError))


def _build_app(args: argparse.Namespace) -> Any:
    from casstore.server import bearer_token_authorizer, create_app

    try:
        # A driver creates a missing folder on first write; a server that only
        # reads would create it and answer 404 forever: a typo must fail here.
        require_local_store(args.store)
        keyring = open_keyring(args.keyring)
    except CommandError as exc:
        raise ServeError(str(exc)) from exc

    authorize = None
    if args.auth_token_env:
        token = os.environ.get(args.auth_token_env, "")
        if not token:
            raise ServeError(f"environment variable {args.auth_token_env} is not set or empty")
        authorize = bearer_token_authorizer(token)
    if args.require_encryption and keyring is None:
        raise ServeError("--require-encryption needs --keyring (the workers' keyring)")
    return create_app(
        args.store,
        codec=load_codec(args.codec) if args.codec else None,
        authorize=authorize,
        cors_origins=args.cors_origin,
        namespace=args.namespace,
        payload_size_threshold=args.threshold,
        inline_max_bytes=args.inline_max_bytes,
        max_references=args.max_references,
        max_reads_per_request=args.max_reads_per_request,
        max_bytes_in_flight=args.max_bytes_in_flight,
        max_concurrent_requests=args.max_concurrent_requests,
        body_timeout=args.body_timeout,
        send_timeout=args.send_timeout,
        name=args.driver_name,
        keyring=keyring,
        require_encryption=args.require_encryption,
    )


def exposure_warning(host: str, *, authenticated: bool) -> str | None:
    """Say so when the server answers beyond this machine to anyone who asks."""
    if authenticated or host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return None
    except ValueError:
        pass  # a host name: not known to be loopback
    return (
        f"listening on {host} without --auth-token-env: anyone who can reach this port can "
        "read every payload of the store; add a token or put an authenticating proxy in front"
    )


def load_codec(spec: str) -> Any:
    """Import ``module:attr``; call it if it is a class or factory; return the PayloadCodec."""
    from temporalio.converter import PayloadCodec

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ServeError(
            f"--codec takes MODULE:ATTR, like myapp.codec:EncryptionCodec, got {spec!r}"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ServeError(f"--codec: cannot import module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise ServeError(f"--codec: {module_name!r} has no attribute {attr!r}") from exc
    if not isinstance(target, PayloadCodec) and callable(target):
        try:
            target = target()
        except Exception as exc:
            raise ServeError(
                f"--codec: calling {spec} failed: {type(exc).__name__}: {exc}"
            ) from exc
    if not isinstance(target, PayloadCodec):
        raise ServeError(
            f"--codec: {spec} is a {type(target).__name__}, not a temporalio PayloadCodec"
        )
    return target


async def _serve(app: Any, args: argparse.Namespace, out: TextIO) -> int:
    import uvicorn

    from casstore.server._connections import ACCEPT_BACKLOG, connection_cap, guarded_protocol

    host, port = args.host, args.port
    # Bind here, so a taken port or a bad address is reported in our words,
    # and the printed port is the real one (--port 0).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(ACCEPT_BACKLOG)
    except OSError as exc:
        sock.close()
        raise ServeError(f"could not listen on {host}:{port}: {exc.strerror or exc}") from exc
    ready = asyncio.Event()

    class Server(uvicorn.Server):
        """uvicorn that says when it serves and does not re-raise the stop signal after."""

        stopped_by: str | None = None

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                ready.set()

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            self.stopped_by = signal.Signals(sig).name
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        backlog=ACCEPT_BACKLOG,
        http=guarded_protocol(connection_cap(args.max_connections), args.header_timeout),
        # limit_concurrency is not set: it answers 503 yet keeps the connections open.
        timeout_graceful_shutdown=math.ceil(args.shutdown_timeout),
    )
    server = Server(config)

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits when its startup fails; it logged why
            raise ServeError("the server failed to start (see the message above)") from exc
        finally:
            sock.close()

    task = asyncio.create_task(serve())
    started = asyncio.create_task(ready.wait())
    await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    started.cancel()
    if task.done():
        await task  # raises why it stopped before serving
        raise ServeError("the server stopped before it started serving")
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"casstore serve: listening on http://{shown}:{bound}", file=out, flush=True)
    await task
    print(f"casstore serve: stopped ({server.stopped_by or 'shutdown'})", file=out, flush=True)
    return 0
